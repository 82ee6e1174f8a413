"""The usual alternatives the loader is measured against, on the same shards or images: plain DALI, the pipeline a
user writes by hand from DALI's docs, and torchvision ImageFolder + DataLoader on an organized copy."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imnet_data.bench.rows import Row, cuda, limited, measured
from imnet_data.loader.base import MEAN, STD
from imnet_data.loader.shardset import ShardSet, index_path


def plain_dali(folder: Path, batch_size: int, threads: int, device_id: int | None, *, image_size: int = 224,
               decode: bool = True, hw_decoder_load: float | None = None, seed: int = 0) -> Iterator:
    """DALI's documented WebDataset training pipeline over the split's shards (with their ``.idx``), DALI's
    defaults throughout; ``decode=False`` stops after parsing each JPEG header (the reader's host path).
    Yields ``(images, labels)`` torch tensors through ``DALIGenericIterator``."""
    from nvidia import dali
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    fn, types = dali.fn, dali.types
    tars = [str(p) for p in ShardSet(folder).paths]
    gpu = device_id is not None

    # device_id None is DALI's CPU-only mode (its stubs say int)
    @dali.pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id, seed=seed)  # type: ignore[arg-type]
    def pipeline():
        jpegs, cls = fn.readers.webdataset(paths=tars, index_paths=[str(index_path(Path(t))) for t in tars],
                                           ext=["jpg", "cls"], random_shuffle=True, name="Reader")
        labels = fn.pad(cls)           # variable-length ASCII digits -> a dense batch the iterator accepts
        if not decode:
            return fn.peek_image_shape(jpegs), labels
        extra = {"hw_decoder_load": hw_decoder_load} if gpu and hw_decoder_load is not None else {}
        images = fn.decoders.image_random_crop(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB,
                                               **extra)
        images = fn.resize(images, resize_x=image_size, resize_y=image_size)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=[m * 255 for m in MEAN], std=[s * 255 for s in STD],
                                          mirror=fn.random.coin_flip())
        return images, (labels.gpu() if gpu else labels)

    iterator = DALIGenericIterator(pipeline(), ["images", "labels"], reader_name="Reader", auto_reset=True,
                                   last_batch_policy=LastBatchPolicy.DROP)
    for batch in limited(iterator):
        out = batch[0]
        yield out["images"], ascii_labels(out["labels"])


def ascii_labels(padded: Any) -> Any:
    """Class indices from a batch of zero-padded ASCII digit rows (what ``fn.pad`` makes of ``.cls``)."""
    import torch

    digits = padded.long() - 48
    count = (padded > 0).sum(1, keepdim=True)
    place = torch.arange(padded.shape[1], device=padded.device)
    weights = torch.where(place < count, 10 ** (count - 1 - place).clamp(min=0), 0)
    return (digits.clamp(min=0) * weights).sum(1)


def plain_dali_row(name: str, folder: Path, batch_size: int, threads: int, device_id: int | None, batches: int,
                   seconds: float | None = None, **settings: Any) -> Row:
    """A row of :func:`plain_dali` (``settings``: its keyword options)."""
    return measured(name, batch_size, itertools.islice(plain_dali(folder, batch_size, threads, device_id,
                                                                  **settings), batches + 3), 3,
                    "readers.webdataset + DALI defaults", seconds)


def imagefolder(folder: Path, batch_size: int, workers: int, image_size: int) -> Iterator:
    """Torchvision ImageFolder + DataLoader with the standard train transforms (the usual alternative),
    batches on the GPU when there is one."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    data = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder / "train"), tf), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, pin_memory=cuda(), drop_last=True,
                                       persistent_workers=workers > 0)
    for x, y in limited(data):
        yield (x.cuda(non_blocking=True), y.cuda(non_blocking=True)) if cuda() else (x, y)


def imagefolder_row(folder: Path, batch_size: int, workers: int, batches: int, image_size: int,
                    seconds: float | None = None) -> Row:
    """A row of :func:`imagefolder` over the organized copy ``folder``."""
    return measured(f"torchvision ImageFolder, {workers} workers", batch_size,
                    itertools.islice(imagefolder(folder, batch_size, workers, image_size), batches + 2), 2,
                    "train transforms", seconds)
