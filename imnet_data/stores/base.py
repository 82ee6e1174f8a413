"""What every store shares: the cap on metadata reads and file hashing.

A *store* is where shards live: a folder (:class:`~imnet_data.stores.folder.FolderStore`), an HTTP(S) base URL
(:class:`~imnet_data.stores.http.HttpStore`, read-only) or an object-store prefix
(:class:`~imnet_data.stores.s3.S3Store`). Each gives names inside it the same methods, so staging, uploading
and the manifest code never ask which one they have:

* ``str(store)``, ``url(name)``, ``child(name)``: where it is, for messages; a sub-folder / sub-prefix;
* ``read(name)``: a metadata file's bytes (at most :data:`MAX_METADATA`), None when absent;
* ``open(name, start)``: a context manager giving ``(offset, readinto)``, the object from byte ``start``
  (``offset`` is 0 when the store cannot seek: the caller starts over);
* writable stores also: ``size(name)`` (None when absent), ``write(name, data)`` (atomic), ``put(name, path,
  sha256)`` (a large file, checked after it lands), ``sha256(name)`` (of the bytes, read through), ``names()``
  (what is under it) and ``delete(name)``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from imnet_data.stores.errors import StoreError

MAX_METADATA = 256 << 20    # bytes of any manifest / index / info file: a 21k manifest is well under this


def capped(body: bytes, where: str) -> bytes:
    """``body`` (read up to one byte past the cap), or StoreError when it is past the metadata cap."""
    if len(body) > MAX_METADATA:
        raise StoreError(f"{where}: over the {MAX_METADATA:,}-byte cap for metadata; refused")
    return body


def hash_into(h: "hashlib._Hash", path: Path, chunk: int = 1 << 22) -> "hashlib._Hash":
    """``h`` updated with the bytes of a file (read in 4 MiB chunks), e.g. a partial download being resumed."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h


def file_sha256(path: Path) -> str:
    """The sha256 of a file."""
    return hash_into(hashlib.sha256(), path).hexdigest()
