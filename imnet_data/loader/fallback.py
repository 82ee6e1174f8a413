"""The CPU / pure-Python backend: PIL decode and augment in ``torch.utils.data.DataLoader`` workers, the same
batches, tensors and randomness rules as the DALI backend (no GPU or DALI needed; a GPU is used when asked).

Each worker gets a whole batch's sample positions, reads the JPEG bytes with the loader's
:class:`~imnet_data.loader.base.BatchReader`, decodes each image with PIL at reduced scale when the crop allows
(``Image.draft``), crops, resizes (bilinear) and flips it into a uint8 ``[B, H, W, 3]`` batch. For CPU output the
worker also converts dtype, normalises and lays it out; for a GPU the main process copies the uint8 batch (pinned,
non-blocking) and converts it there. Augmentation draws come from ``default_rng([seed, epoch, rank, step, slot])``,
so a batch is the same whichever worker makes it, and a resumed epoch repeats the batches it had not yet given.
"""
from __future__ import annotations

import io
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator
from functools import partial

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from imnet_data.loader.base import BatchReader, LoaderOptions, rows_of
from imnet_data.loader.loader import Loader, Streamed
from imnet_data.loader.output import Output
from imnet_data.loader.shardset import ShardSet
from imnet_data.parallel import default_jobs

Box = tuple[float, float, float, float]   # x, y, width, height in source pixels


class TorchLoader(Loader):
    """PIL + DataLoader backend (``options.num_threads`` worker processes, default :func:`default_workers`; 0
    decodes in this process)."""

    backend = "torch"

    def __init__(self, shards: ShardSet, options: LoaderOptions, cache: Streamed | None = None) -> None:
        self.device = torch.device(options.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device={options.device!r} asked but no CUDA GPU is visible; use device='cpu'")
        super().__init__(shards, options, cache)
        self.output = Output(options, self.device)
        self.tasks = Tasks(self.reader)
        self.loader: DataLoader | None = None

    def _reconfigure(self) -> None:
        self.output, self.loader = Output(self.options, self.device), None   # new workers for the new size

    def _run(self, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``self.step``, ``self.step + 1``, ... of ``self.epoch`` (captured now, not when iterated).
        The DataLoader and its worker processes are made once and kept across passes (a worker start costs
        ~0.3 s); each pass hands them its tasks through :class:`Tasks`. For CPU output the workers also convert
        (the main process only hands batches on); for a GPU the uint8 batch is copied and converted there."""
        self.tasks.start([(self.epoch, self.step + k, positions) for k, positions in enumerate(batches)])
        if self.loader is None:
            threads, on_host = self.options.num_threads, self.device.type == "cpu"
            workers = default_workers() if threads is None else threads
            decoder = BatchDecoder(self.reader, self.options, self.output if on_host else None)
            self.loader = DataLoader(decoder, sampler=self.tasks, batch_size=None, num_workers=workers,
                                     prefetch_factor=self.options.prefetch if workers else None,
                                     persistent_workers=workers > 0, pin_memory=not on_host)
        return self._tensors(self.loader)

    def _tensors(self, loader: Iterable) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, skipped in loader:
            self.tasks.finished()
            self.reader.note_skipped(skipped)
            yield (images if self.device.type == "cpu" else self.output(images)), labels.to(self.device,
                                                                                                non_blocking=True)


def default_workers() -> int:
    """DataLoader workers when ``num_threads`` is not given: the cores this process may run on (its CPU
    affinity), shared among the ranks of this node (torchrun's ``LOCAL_WORLD_SIZE``). More workers than cores
    only contend for them (and torch warns about each DataLoader that has them)."""
    return max(1, default_jobs(None) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


class Tasks:
    """The DataLoader's sampler: the current pass's tasks ``(epoch, step, positions)``, replaced every pass.
    Iterated in this process as the DataLoader hands tasks to its workers: each task's shards are held here
    (a streamed shard fetched and pinned in the cache) from then until its batch comes back (:meth:`finished`),
    so a worker finds every shard of its task complete on disk."""

    def __init__(self, reader: BatchReader) -> None:
        self.reader = reader
        self.items: list[tuple[int, int, np.ndarray]] = []
        self.held: deque[np.ndarray] = deque()

    def start(self, items: list[tuple[int, int, np.ndarray]]) -> None:
        """The tasks of a new pass (what the previous one still held is let go)."""
        while self.held:
            self.reader.files.release(self.held.popleft())
        self.items = items

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        for item in self.items:
            shards = self.reader.shards_of(item[2])
            self.reader.files.hold(shards)
            self.held.append(shards)
            yield item

    def finished(self) -> None:
        """The oldest task handed out came back."""
        if self.held:
            self.reader.files.release(self.held.popleft())

    def __len__(self) -> int:
        return len(self.items)


class BatchDecoder(Dataset):
    """Turns one task ``(epoch, step, positions)`` into ``(uint8 images [B, H, W, 3], int64 labels, skipped)``;
    picklable, so DataLoader workers of any start method can run it. A JPEG PIL cannot decode counts as corrupt
    (see :meth:`BatchReader.good_sample`); ``skipped`` carries a worker's new entries back to the loader."""

    def __init__(self, reader: BatchReader, options: LoaderOptions, finish: Output | None = None) -> None:
        self.reader, self.options, self.finish = reader, options, finish

    def __getitem__(self, task: tuple[int, int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        epoch, step, positions = task
        o, size = self.options, self.options.image_size
        batch = torch.empty((len(positions), size, size, 3), dtype=torch.uint8)
        if self.finish is None and torch.utils.data.get_worker_info() is not None:
            batch.share_memory_()   # filled in place: no copy into shared memory when handed to the loader
        images, labels = batch.numpy(), np.empty(len(positions), np.int64)
        before = len(self.reader.skipped)
        shards = self.reader.shards_of(positions)
        self.reader.files.hold(shards)
        try:
            for j, p in enumerate(positions):
                rng = np.random.default_rng([o.seed, epoch, o.rank, step, j]) if o.training else None
                images[j], label = self.reader.good_sample(int(p) if p >= 0 else int(-1 - p),
                                                           partial(transform, options=o, rng=rng))
                labels[j] = label if p >= 0 else -1
        finally:
            self.reader.files.drop(rows_of(positions))
            self.reader.files.release(shards)
        return (self.finish(batch) if self.finish else batch), torch.from_numpy(labels), self.reader.skipped[before:]

def transform(data: np.ndarray, options: LoaderOptions, rng: np.random.Generator | None) -> np.ndarray:
    """JPEG bytes to a uint8 ``[size, size, 3]`` RGB array: a random resized crop and flip when ``rng`` is given
    (training), else the shorter side resized to ``options.val_resize`` (``options.interpolation``) and the centre
    cropped."""
    size = options.image_size
    # an ndarray is a buffer: numpy's stubs declare its __buffer__ only for Python >= 3.12
    with Image.open(io.BytesIO(data)) as img:   # type: ignore[arg-type]
        w, h = img.size
        if rng is not None:
            x, y, cw, ch = random_resized_crop(w, h, options.scale, options.ratio, rng)
            flip = bool(rng.random() < 0.5)
        else:
            x, y, cw, ch = centre_crop(w, h, size, options.val_resize)
            flip = False
        # Decode at 1/2, 1/4 or 1/8 scale when the crop still covers >= size pixels at that scale.
        drafted = img.draft("RGB", (math.ceil(w * size / cw), math.ceil(h * size / ch)))
        f = w / drafted[1][2] if drafted else 1.0
        box = (x / f, y / f, (x + cw) / f, (y + ch) / f)
        if rng is not None:  # RandomResizedCrop resizes the crop alone (its edges clamp), not a window of the image
            left, top = math.floor(box[0]), math.floor(box[1])
            img = img.crop((left, top, math.ceil(box[2]), math.ceil(box[3])))
            box = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
        resample = Image.Resampling.BICUBIC if rng is None and options.interpolation == "bicubic" else \
            Image.Resampling.BILINEAR
        out = img.convert("RGB").resize((size, size), resample, box=box)
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def random_resized_crop(w: int, h: int, scale: tuple[float, float], ratio: tuple[float, float],
                        rng: np.random.Generator) -> Box:
    """Torchvision's ``RandomResizedCrop.get_params``: 10 tries at a random area and log-uniform aspect ratio
    that fits, else the whole image cropped to the nearest allowed ratio, centred."""
    area, log_ratio = w * h, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch
    if w / h < min(ratio):
        cw, ch = w, round(w / min(ratio))
    elif w / h > max(ratio):
        cw, ch = round(h * max(ratio)), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def centre_crop(w: int, h: int, size: int, resize: int) -> Box:
    """The source box of torchvision's ``Resize(resize)`` + ``CenterCrop(size)`` (shorter side to ``resize``, the
    longer truncated; crop offsets rounded in resized pixels), so one resize of the box gives the same pixels."""
    rw, rh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    sx, sy = w / rw, h / rh
    left, top = max(0, round((rw - size) / 2)), max(0, round((rh - size) / 2))
    return left * sx, top * sy, min(size, rw) * sx, min(size, rh) * sy
