"""Where shards live: a folder, an HTTP(S) server (read-only) or an object store (``s3://``, ``gs://``), each a
:class:`~imnet_data.stores.base.ReadableStore` (and :class:`~imnet_data.stores.base.WritableStore` /
:class:`~imnet_data.stores.base.UploadStore` where it can be written); :func:`open_store` picks one from a path
or URL by its scheme in :data:`SCHEMES`.

Adding a store (as webdataset's ``gopen_schemes``): a module with the store's class and its
:data:`~imnet_data.stores.base.Opener`, and one line here, e.g. ``"ftp": ftp_store,``.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from imnet_data.stores.base import Opener, ReadableStore, UploadStore, WritableStore
from imnet_data.stores.errors import Policy, Retry, StoreError, once
from imnet_data.stores.folder import FolderStore
from imnet_data.stores.http import HttpStore, http_store
from imnet_data.stores.s3 import S3Store, s3_store

SCHEMES: dict[str, Opener] = {     # the scheme of a URL (``s3`` of ``s3://...``) -> its store; else a folder
    "http": http_store,
    "https": http_store,
    "s3": s3_store,
    "gs": s3_store,                # Google Cloud Storage through its S3 interoperability endpoint
}


def drop_other(store: WritableStore, name: str, raw: bytes) -> None:
    """Remove ``name`` when it holds other bytes than ``raw`` (another shard set's manifest: gone until this
    set is complete, so no reader meets a manifest naming shards that are being replaced)."""
    if store.read(name) not in (None, raw):
        store.delete(name)


@contextlib.contextmanager
def open_store(location: str | os.PathLike, jobs: int = 4, timeout: tuple[float, float] = (10.0, 60.0),
               policy: Policy = once) -> Iterator[ReadableStore]:
    """The store behind a URL whose scheme :data:`SCHEMES` names, or else the folder at the path (connections
    pooled for ``jobs`` threads, closed after; an object store's requests under ``policy``, see
    :func:`~imnet_data.stores.errors.retrying`). Callers that write ask ``isinstance(store, WritableStore)``."""
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    opener = SCHEMES.get(scheme) if sep else None
    if opener is None:
        yield FolderStore(text)
        return
    with opener(text, jobs, timeout, policy) as store:
        yield store


__all__ = ["SCHEMES", "FolderStore", "HttpStore", "ReadableStore", "Retry", "S3Store", "StoreError", "UploadStore",
           "WritableStore", "drop_other", "open_store"]
