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

    ``source`` may also be a store URL (``s3://bucket/prefix/train``, ``gs://``, ``http(s)://``): the shards are
    streamed into a bounded local cache (``cache``, ``cache_limit``, ``read_ahead``...: see
    :mod:`imnet_data.loader.cache`). ``split`` defaults to the manifest's (it must agree with it);
    ``rank``/``world_size`` default to torch.distributed, then the RANK/WORLD_SIZE variables, then 0/1. Other
    settings are the fields of :class:`LoaderOptions` (order, image_size, device, dtype, layout, seed,
    num_threads, prefetch, remainder, on_error, return_real, scale, ratio, mean, std, ...).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    unknown = set(settings) - {f.name for f in dataclasses.fields(LoaderOptions)}
    if unknown:
        raise TypeError(f"unknown loader settings: {', '.join(sorted(unknown))}")
    rank, world_size = distributed_defaults(rank, world_size)
    options = LoaderOptions(split=split or "train", batch_size=batch_size, rank=rank, world_size=world_size,
                            **settings)  # type: ignore[arg-type]
    options.check()
    cache = None
    if is_store_url(source):
        from imnet_data.loader.remote import streamed

        shards, cache = streamed(os.fspath(source), split, options, options.cache)
    else:
        shards = ShardSet(source, split)
    split = split or (shards.manifest or {}).get("split") or "train"
    options = dataclasses.replace(options, split=split)
    try:
        if backend == "dali":
            from imnet_data.loader.dali import DaliLoader
            return DaliLoader(shards, options, cache)
        from imnet_data.loader.fallback import TorchLoader
        return TorchLoader(shards, options, cache)
    except BaseException:
        if cache is not None:
            cache.close()
        raise


def is_store_url(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a URL of a store :mod:`imnet_data.stores` opens (``s3://``, ``gs://``, ``http(s)://``)."""
    from imnet_data.stores import SCHEMES

    scheme, sep, _ = os.fspath(source).partition("://")
    return bool(sep) and scheme in SCHEMES


__all__ = ["BACKENDS", "Loader", "LoaderOptions", "ShardError", "ShardSet", "build_loader"]
