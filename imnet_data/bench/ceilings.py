"""The ceilings: decode alone, with no loader around it, on JPEGs read from the shards once up front. DALI's
decoder (the hardware JPEG decoder, then the CUDA one; DALI's CPU decoder without a GPU) and PIL in N processes
(what N cores allow), with and without the fallback loader's train transform."""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from imnet_data.bench.rows import Row, cpu_seconds, measured
from imnet_data.loader.base import LoaderOptions
from imnet_data.loader.loader import Loader
from imnet_data.loader.shardset import ShardSet


def jpeg_batches(source: Path, batch_size: int, count: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """``count`` batches of JPEG bytes from the shards (cycled), read once up front."""
    shards = ShardSet(source)
    options = LoaderOptions(batch_size=batch_size, device="cpu", order="local", remainder="partial")
    reader = Loader(shards, options).reader   # read() holds the shards mapped: the views stay valid
    order = np.arange(batch_size * count) % shards.total
    return [reader.read(order[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def dali_decode_row(name: str, data: list, device_id: int | None, hw_load: float, threads: int,
                    batches: int, seconds: float | None = None) -> Row:
    """DALI decode alone (no crop/resize/normalise) of in-memory JPEG batches: the decoder's ceiling."""
    from nvidia import dali

    fn, types = dali.fn, dali.types
    batch = len(data[0][0])
    cycle = itertools.cycle([images for images, _ in data])

    # device_id None is DALI's CPU-only mode (its stubs say int)
    @dali.pipeline_def(batch_size=batch, num_threads=threads, device_id=device_id,  # type: ignore[arg-type]
                       prefetch_queue_depth=2)
    def pipe():
        jpegs = fn.external_source(source=lambda: next(cycle), batch=True, dtype=types.UINT8)
        extra = {"hw_decoder_load": hw_load} if device_id is not None else {}
        return fn.decoders.image(jpegs, device="mixed" if device_id is not None else "cpu",
                                 output_type=types.RGB, **extra)

    p = pipe()
    p.build()
    return measured(name, batch, (p.run() for _ in range(batches + 3)), 3,
                    f"hw_decoder_load={hw_load}" if device_id is not None else "", seconds)


def _pil_work(task: tuple[list[bytes], int | None]) -> int:
    """Decode ``blobs`` fully with PIL (``image_size`` None), or decode and apply the fallback loader's train
    transform (random resized crop + flip to ``image_size``); returns how many."""
    import io

    from PIL import Image

    from imnet_data.loader.fallback import transform

    blobs, size = task
    options = LoaderOptions(image_size=size or 224)
    rng = np.random.default_rng(0)
    for blob in blobs:
        if size:
            transform(np.frombuffer(blob, np.uint8), options, rng)
        else:
            with Image.open(io.BytesIO(blob)) as img:
                img.convert("RGB").load()
    return len(blobs)


def pil_row(data: list, processes: int, image_size: int | None = None) -> Row:
    """PIL in ``processes`` worker processes on the same JPEGs: full decode (the CPU decode ceiling), or with
    ``image_size`` decode + the train transform (what a PIL pipeline on these cores can do at best)."""
    blobs = [bytes(x) for images, _ in data for x in images]
    blobs *= max(1, 3000 // len(blobs))         # a few seconds of work, so start-up noise does not count
    chunks = [(blobs[i::processes], image_size) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_pil_work, [(c[:8], image_size) for c, _ in chunks]))   # start the workers
        t0, c0 = time.perf_counter(), cpu_seconds()
        total = sum(pool.map(_pil_work, chunks))
        wall = time.perf_counter() - t0
    name = f"PIL decode{' + train transform' if image_size else ''}, {processes} processes"
    return Row(name, total / wall, (cpu_seconds() - c0) / wall, "no loader: the work alone")
