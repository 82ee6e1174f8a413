"""Training batches straight from the shards: DALI (GPU nvJPEG decode, or DALI CPU-only) or a PIL + torch
DataLoader fallback, with the same API and outputs.

``build_loader(source, split, batch_size, backend="dali"|"torch", device="cuda"|"cpu", ...)`` returns a
:class:`~imnet_data.loader.loader.Loader`: iterate for ``(images, labels)`` torch tensors, ``len()`` is exact,
``set_epoch``, ``state_dict``/``load_state_dict`` resume mid-epoch. See ``base.py`` for the remainder policy.
"""
from __future__ import annotations

import dataclasses
import os

from imnet_data.loader.base import LoaderOptions, distributed_defaults
from imnet_data.loader.loader import Loader
from imnet_data.loader.shardset import ShardError, ShardSet

BACKENDS = ("dali", "torch")


def build_loader(source: str | os.PathLike, split: str | None = None, batch_size: int = 256, *,
                 backend: str = "dali", rank: int | None = None, world_size: int | None = None,
                 **settings: object) -> Loader:
    """A loader over the shards at ``source``: a shard root with ``split`` (``DEST`` holding ``DEST/val/``), a
    split folder, its manifest, or a shard pattern.

    ``split`` defaults to the manifest's (it must agree with it); ``rank``/``world_size`` default to
    torch.distributed, then the RANK/WORLD_SIZE variables, then 0/1. Other settings are the fields of
    :class:`LoaderOptions` (image_size, device, dtype, layout, seed, num_threads, prefetch, remainder, on_error,
    return_real, scale, ratio, mean, std, ...).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    unknown = set(settings) - {f.name for f in dataclasses.fields(LoaderOptions)}
    if unknown:
        raise TypeError(f"unknown loader settings: {', '.join(sorted(unknown))}")
    shards = ShardSet(source, split)
    split = split or (shards.manifest or {}).get("split") or "train"
    rank, world_size = distributed_defaults(rank, world_size)
    options = LoaderOptions(split=split, batch_size=batch_size, rank=rank, world_size=world_size,
                            **settings)  # type: ignore[arg-type]
    if backend == "dali":
        from imnet_data.loader.dali import DaliLoader
        return DaliLoader(shards, options)
    from imnet_data.loader.fallback import TorchLoader
    return TorchLoader(shards, options)


__all__ = ["BACKENDS", "Loader", "LoaderOptions", "ShardError", "ShardSet", "build_loader"]
