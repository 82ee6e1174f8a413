"""A shard set at a store URL, opened for streaming: its manifest read, its cache claimed
(:class:`imnet_data.loader.cache.ShardCache`)."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from imnet_data.loader.cache import ShardCache
from imnet_data.loader.shardset import ShardError, ShardSet, check_split
from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.schema import parse_manifest
from imnet_data.stores.errors import retrying


def streamed(url: str, split: str | None, options, cache: str | os.PathLike | None) -> tuple[ShardSet, ShardCache]:
    """The shard set at a store URL (a split prefix holding ``manifest.json``, or a shard root with ``split``)
    and its cache: ``<cache>/<split>/``; default ``cache``: ``$IMNET_DATA_CACHE`` or ``~/.cache/imnet-data``, under
    a folder named after the URL. ShardError naming the URL when there is no manifest."""
    from imnet_data.stores import open_store

    stack = contextlib.ExitStack()
    store = stack.enter_context(open_store(url, options.fetch_jobs + 2))
    try:
        raw = retrying(store.url(MANIFEST), lambda: store.read(MANIFEST), options.retries, options.backoff)
        if raw is None and split:
            store = store.child(split)
            raw = retrying(store.url(MANIFEST), lambda: store.read(MANIFEST), options.retries, options.backoff)
        if raw is None:
            raise ShardError(f"{url}: no {MANIFEST}" + (f" (nor {split}/{MANIFEST})" if split else "")
                             + ": not a shard folder")
        if cache is None:
            root = Path(os.environ.get("IMNET_DATA_CACHE") or Path.home() / ".cache" / "imnet-data")
            cache = root / hashlib.sha256(str(store).encode()).hexdigest()[:16]
        manifest = parse_manifest(raw, store.url(MANIFEST))
        check_split(manifest, split, url)
        folder = Path(cache) / manifest["split"]
        shards = ShardSet(store.url(MANIFEST), manifest["split"], fetched=(raw, folder))
        held = ShardCache(store, shards, folder, options)
    except BaseException:
        stack.close()
        raise
    held.stack = stack
    return shards, held
