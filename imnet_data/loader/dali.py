"""The DALI backend: JPEG bytes read from the shards by index, decoded and augmented by DALI.

On a GPU (``device="cuda"``) decoding runs on nvJPEG through the ``mixed`` decoder (``hw_decoder_load`` of the
JPEGs go to the hardware JPEG engine of A100/H100-class GPUs), crop-aware for training (``image_random_crop``
decodes only the crop), then resize and a fused crop/flip/normalise/cast/transposition on the GPU. Outputs are
copied into torch tensors on the current CUDA stream: no host synchronisation per batch. On a CPU
(``device="cpu"``) DALI's CPU operators run the graph (``device_id=None``), except that a training batch leaves
DALI as its flipped crops, which the host resizes (antialiased) and normalises into reused buffers
(:mod:`imnet_data.loader.output`: DALI's CPU resize is the slower step there).

The host side stays small and copies no image bytes: threads read the next batches (labels and JPEG markers in
one vectorised gather, JPEGs as views of the mapped shards, see :mod:`imnet_data.loader.mapping`) and hand
them to DALI as one ``TensorListCPU`` without a copy (``no_copy``), while DALI works on earlier ones;
``prefetch`` batches are in flight.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from imnet_data.loader.base import LoaderOptions
from imnet_data.loader.loader import Loader, Streamed
from imnet_data.loader.output import BufferPool, Output, resize_into
from imnet_data.loader.shardset import ShardSet

if TYPE_CHECKING:
    from nvidia.dali.pipeline import Pipeline

INSTALL = "pip install 'imnet-data[dali]' (nvidia-dali-cuda130; CUDA 12: nvidia-dali-cuda120)"
THREADS = 4      # DALI's CPU threads when num_threads is not given


def import_dali():
    """DALI's modules, or ImportError saying how to install it."""
    try:
        import nvidia.dali as dali
        from nvidia.dali.plugin import pytorch as dali_torch
    except ImportError as e:
        raise ImportError(f"the DALI backend needs NVIDIA DALI: {INSTALL}; or use backend='torch' ({e})") from e
    return dali, dali_torch


def cuda_device(options: LoaderOptions) -> int | None:
    """The CUDA device to decode on (LOCAL_RANK's, else the current one), None for ``device="cpu"``; a clear
    error when a GPU was asked for and none is visible."""
    if options.device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("device='cuda' asked but no CUDA GPU is visible; use device='cpu' (DALI CPU-only)")
    if options.device.startswith("cuda:"):
        return int(options.device.split(":", 1)[1])
    return int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))


class BatchSource:
    """DALI's external source: batch ``info.iteration`` of the current pass (JPEG views, labels), the next
    ``ahead`` batches read at once by as many threads (a cold shard's page faults overlap); StopIteration after
    the last batch ends DALI's epoch."""

    def __init__(self, reader, ahead: int, in_flight: int) -> None:
        self.reader, self.ahead, self.in_flight = reader, ahead, in_flight
        self.pool = ThreadPoolExecutor(ahead, thread_name_prefix="imnet-read")
        self.batches: list[np.ndarray] = []
        self.reads: dict = {}
        self.fed: deque = deque()   # no_copy: DALI reads a batch until ``in_flight`` iterations later

    def start(self, batches: list[np.ndarray]) -> None:
        """Serve ``batches`` from iteration 0 on; what the previous pass read and fed is given back (DALI is
        done with it: the pipeline finished its epoch, or was dropped)."""
        for future in self.reads.values():
            if not future.cancel():
                future.add_done_callback(self._give_back)
        while self.fed:
            self.reader.done(self.fed.popleft()[2])
        self.batches, self.reads = batches, {}

    def _give_back(self, future) -> None:
        if future.exception() is None:
            self.reader.done(future.result()[2])

    def __call__(self, info) -> tuple[list[np.ndarray], np.ndarray]:
        """The batch DALI asks for at ``info.iteration`` (StopIteration past the last); reads the next
        ``ahead`` batches in the background."""
        i = info.iteration
        if i >= len(self.batches):
            raise StopIteration
        for j in range(i, min(i + self.ahead + 1, len(self.batches))):
            if j not in self.reads:
                self.reads[j] = self.pool.submit(self.read, self.batches[j])
        self.fed.append(self.reads.pop(i).result())
        if len(self.fed) > self.in_flight:
            self.reader.done(self.fed.popleft()[2])
        return self.fed[-1][:2]

    def read(self, positions: np.ndarray) -> tuple:
        """The batch as DALI takes it fastest: one TensorListCPU over the JPEG views (no copy), labels, and the
        positions (given back with :meth:`BatchReader.done` once DALI is done with the views)."""
        tensors = import_dali()[0].tensors
        images, labels = self.reader.read(positions)
        return tensors.TensorListCPU([tensors.TensorCPU(x, "") for x in images], "", False), labels, positions


def gpu_decoder_args(options: LoaderOptions) -> dict:
    """The ``mixed`` decoder's settings: the hardware-decoder share, and nvJPEG buffers and hardware-decoder
    memory sized up front (as NVIDIA's ResNet-50 example does) so the first epochs do not reallocate."""
    return {"hw_decoder_load": options.hw_decoder_load, "device_memory_padding": 211025920,
            "host_memory_padding": 140544512, "preallocate_width_hint": 5980, "preallocate_height_hint": 6430}


def build_pipeline(options: LoaderOptions, device_id: int | None, source: BatchSource,
                   decode: bool = True) -> Pipeline:
    """The DALI pipeline: JPEG bytes + labels from ``source``, augmented images + labels out. ``decode=False``
    keeps only the host path (the bytes handed to DALI, each JPEG's header parsed: ``bench --host-only``)."""
    dali, _ = import_dali()
    fn, types = dali.fn, dali.types
    gpu = device_id is not None
    decode_device, op_device = ("mixed", "gpu") if gpu else ("cpu", "cpu")
    size = options.image_size
    out_dtype = {"float16": types.FLOAT16, "uint8": types.UINT8}.get(options.dtype, types.FLOAT)
    normalise = options.dtype != "uint8"
    mean = [m * 255 for m in options.mean] if normalise else [0.0, 0.0, 0.0]
    std = [s * 255 for s in options.std] if normalise else [1.0, 1.0, 1.0]
    hw = gpu_decoder_args(options) if gpu else {}

    threads = THREADS if options.num_threads is None else options.num_threads

    @dali.pipeline_def(batch_size=options.batch_size, num_threads=threads, device_id=device_id,
                       prefetch_queue_depth=options.prefetch, seed=options.seed * 1009 + options.rank)
    def pipeline():
        # no_copy: the JPEG views point into the mapped shards, which live as long as the loader
        jpegs, labels = fn.external_source(source=source, num_outputs=2, batch=True, batch_info=True,
                                           dtype=[types.UINT8, types.INT64], no_copy=True)
        if not decode:
            return fn.peek_image_shape(jpegs), labels
        if options.training:
            images = fn.decoders.image_random_crop(jpegs, device=decode_device, output_type=types.RGB,
                                                   random_area=list(options.scale),
                                                   random_aspect_ratio=list(options.ratio), num_attempts=10, **hw)
            mirror = fn.random.coin_flip(probability=0.5)
            if not gpu:     # flipped here, resized (antialiased) and normalised on the host: see .output
                return fn.flip(images, horizontal=mirror), labels
            images = fn.resize(images, device=op_device, resize_x=size, resize_y=size,
                               interp_type=types.INTERP_LINEAR, antialias=False)
            crop = {}
        else:
            images = fn.decoders.image(jpegs, device=decode_device, output_type=types.RGB, **hw)
            images = fn.resize(images, device=op_device, resize_shorter=options.val_resize,
                               interp_type=types.INTERP_CUBIC if options.interpolation == "bicubic"
                               else types.INTERP_TRIANGULAR)
            mirror, crop = 0, {"crop": (size, size)}
        images = fn.crop_mirror_normalize(images, device=op_device, dtype=out_dtype, mean=mean, std=std,
                                          output_layout="CHW" if options.layout == "NCHW" else "HWC",
                                          mirror=mirror, **crop)
        return images, (labels.gpu() if gpu else labels)   # both outputs on the device torch gets them on

    pipe = pipeline()
    pipe.build()
    return pipe


class DaliLoader(Loader):
    """The loader on DALI (GPU or CPU-only)."""

    backend = "dali"

    def __init__(self, shards: ShardSet, options: LoaderOptions, cache: Streamed | None = None,
                 decode: bool = True) -> None:
        super().__init__(shards, options, cache)
        self.device_id, self.decode = cuda_device(options), decode
        self.source = BatchSource(self.reader, options.prefetch + 1, 2 * options.prefetch + 2)
        self.pipe: Pipeline | None = None
        self._, self.dali_torch = import_dali()
        if self.device_id is None:
            self.pool = BufferPool()
            self.parts = options.num_threads or THREADS
            self.host = ThreadPoolExecutor(self.parts, thread_name_prefix="imnet-resize")
        self._reconfigure()

    def _reconfigure(self) -> None:
        """A new pipeline for the options now set (built at the next pass) and, on the CPU, their output."""
        self.pipe = None
        if self.device_id is None:
            self.output = Output(self.options, torch.device("cpu"), self.pool)

    def _run(self, batches: list[np.ndarray]) -> Iterator[tuple]:
        """One pass: DALI pulls ``batches`` from the source; a pass left early leaves prefetched work behind,
        so the pipeline is rebuilt for the next one (DALI cannot reset mid-epoch)."""
        self.source.start(batches)
        if self.pipe is None:
            self.pipe = build_pipeline(self.options, self.device_id, self.source, self.decode)
        pipe = self.pipe
        finished = False
        try:
            for _ in range(len(batches)):
                yield self._to_torch(pipe.run())
            try:
                pipe.run()
            except StopIteration:
                pipe.reset()
                finished = True
        finally:
            if not finished:
                self.pipe = None

    def _to_torch(self, outputs) -> tuple:
        """Copy the pipeline outputs into torch tensors (on the decoding GPU's current stream, no sync)."""
        if self.device_id is None:
            return self._on_host(outputs)
        tensors = []
        for out in outputs:
            dense = out.as_tensor()
            dtype = {"FLOAT": torch.float32, "FLOAT16": torch.float16, "UINT8": torch.uint8,
                     "INT64": torch.int64}[str(dense.dtype).rsplit(".", 1)[-1]]
            target = torch.empty(dense.shape(), dtype=dtype, device=f"cuda:{self.device_id}")
            self.dali_torch.feed_ndarray(dense, target, cuda_stream=torch.cuda.current_stream(self.device_id))
            tensors.append(target)
        return self._finish(*tensors)

    def _on_host(self, outputs) -> tuple:
        """The CPU pipeline's outputs as torch tensors in pooled buffers (:class:`.output.BufferPool`): a training
        batch's (flipped) crops resized and normalised on the host (:func:`.output.resize_into`, :class:`.Output`),
        a val batch copied."""
        labels = torch.from_numpy(np.array(outputs[1].as_tensor()))
        if self.options.training and self.decode:
            crops = [np.asarray(outputs[0][i]) for i in range(len(outputs[0]))]   # views, valid until next run
            return self._resized(crops), labels.reshape(-1)
        dense = torch.from_numpy(np.asarray(outputs[0].as_tensor()))
        return self._finish(self.pool.take(dense.shape, dense.dtype).copy_(dense), labels)

    def _resized(self, crops: list[np.ndarray]) -> torch.Tensor:
        """The crops resized and normalised into a pooled batch, in parts by ``num_threads`` threads (torch's
        resize and numpy release the GIL): one thread would be the pipeline's narrow step."""
        n, size = len(crops), self.options.image_size
        scratch, out = self.pool.take((n, size, size, 3), torch.uint8), self.output.empty(n, size, size)

        def part(lo: int, hi: int) -> None:
            self.output.into(resize_into(crops[lo:hi], scratch[lo:hi]), out[lo:hi])

        bounds = np.linspace(0, n, self.parts + 1).astype(int).tolist()
        list(self.host.map(part, bounds[:-1], bounds[1:]))
        return self.output.view(out)

    def _finish(self, images, labels) -> tuple:
        """The images in the options' dtype and layout, the labels flat."""
        if not self.decode:
            return images, labels
        if self.options.dtype == "bfloat16":
            images = images.to(torch.bfloat16)
        if self.options.layout == "channels_last":   # decoded as HWC: the NCHW view has channels_last strides
            images = images.permute(0, 3, 1, 2)
        return images, labels.reshape(-1)
