"""Where shards live: a folder, an HTTP(S) server (read-only) or an object store (``s3://``, ``gs://``), all
behind the methods of :mod:`imnet_data.stores.base`; :func:`open_store` picks one from a path or URL."""
from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator, Union

from imnet_data.stores.errors import Policy, Retry, StoreError, once
from imnet_data.stores.folder import FolderStore
from imnet_data.stores.http import HttpStore, http_store
from imnet_data.stores.s3 import S3Store, s3_store

Store = Union[FolderStore, HttpStore, S3Store]


def drop_other(store: Store, name: str, raw: bytes) -> None:
    """Remove ``name`` when it holds other bytes than ``raw`` (another shard set's manifest: gone until this
    set is complete, so no reader meets a manifest naming shards that are being replaced)."""
    if store.read(name) not in (None, raw):
        store.delete(name)


@contextlib.contextmanager
def open_store(location: str | os.PathLike, jobs: int = 4, timeout: tuple[float, float] = (10.0, 60.0),
               policy: Policy = once) -> Iterator[Store]:
    """The store behind a path or URL (connections pooled for ``jobs`` threads, closed after; an object
    store's requests under ``policy``, see :func:`~imnet_data.stores.errors.retrying`)."""
    text = os.fspath(location)
    if re.match(r"^https?://", text):
        with http_store(text, jobs, timeout) as store:
            yield store
    elif re.match(r"^(s3|gs)://", text):
        with s3_store(text, jobs, timeout, policy) as store:
            yield store
    else:
        yield FolderStore(text)


__all__ = ["FolderStore", "HttpStore", "Retry", "S3Store", "Store", "StoreError", "drop_other", "open_store"]
