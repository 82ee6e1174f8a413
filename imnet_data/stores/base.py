"""What every store shares: the cap on metadata reads and file hashing.

A *store* is where shards live: a folder (:class:`~imnet_data.stores.folder.FolderStore`), an HTTP(S) base URL
(:class:`~imnet_data.stores.http.HttpStore`, read-only) or an object-store prefix
(:class:`~imnet_data.stores.s3.S3Store`). Each gives names inside it the same methods, so staging, uploading
and the manifest code never ask which one they have:

* ``str(store)``, ``url(name)``, ``child(name)``: where it is, for messages; a sub-folder / sub-prefix;
* ``read(name)``: a metadata file's bytes (at most :data:`MAX_METADATA`), None when absent;
* ``open(name, start)``: a context manager giving ``(offset, readinto)``, the object from byte ``start``
  (``offset`` is 0 when the store cannot seek: the caller starts over);
* writable stores also: ``stat(name)`` (a :class:`Stat`, None when absent), ``write(name, data)`` (atomic),
  ``sha256(name)`` (of the bytes, read through), ``names()`` (what is under it) and ``delete(name)``; an
  object store also ``put(name, path, sha256)`` (a large file, checked after it lands).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from imnet_data.report import Report
from imnet_data.stores.errors import Retry, StoreError

MAX_METADATA = 256 << 20    # bytes of any manifest / index / info file: a 21k manifest is well under this


class Stat(NamedTuple):
    """What a store tells of a file without reading it: its size, and the sha256 it was stored with where the
    store keeps one (an object's metadata: ``""`` for an object stored without it; None for a folder)."""

    size: int
    sha256: str | None = None


def check_range(content_range: str | None, start: int, where: str) -> None:
    """Retry (restart from 0) unless a ranged answer's ``Content-Range`` starts at ``start``."""
    m = re.match(r"bytes (\d+)-", content_range or "")
    if not m or int(m.group(1)) != start:
        raise Retry(f"{where}: unexpected Content-Range {content_range!r}", True)


def capped_read(read: Callable[[int], bytes], where: str, declared: int | None = None) -> bytes:
    """A metadata file's bytes through ``read`` (asked for one byte past the cap); StoreError when its
    ``declared`` size (a Content-Length) is past the metadata cap (refused unread) or what came is."""
    if declared is not None and declared > MAX_METADATA:
        raise StoreError(f"{where}: {declared:,} bytes, over the {MAX_METADATA:,}-byte cap for metadata")
    body = read(MAX_METADATA + 1)
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


@contextlib.contextmanager
def direct_reader(response) -> Iterator[Callable[[memoryview], int]]:
    """``readinto`` of a urllib3 response's body (requests' ``r.raw``, botocore's ``Body._raw_stream``).

    An identity-encoded body is read straight from the ``http.client`` response under urllib3's, into the
    caller's buffer: ~20% faster than urllib3's ``readinto`` (which copies), and a read returns what has
    arrived (urllib3's waits for the whole buffer, so a body broken off mid-way would lose what it held instead
    of leaving it to be resumed). Lengths are checked by the caller; a body read to its end hands its
    connection back to the pool (keep-alive).
    """
    raw = getattr(response, "_fp", None)
    plain = response.headers.get("Content-Encoding", "identity") == "identity" and hasattr(raw, "readinto")
    yield raw.readinto if plain else response.readinto
    if plain and raw.length == 0:
        response.release_conn()


class TransferReport(Report):
    """What the reports of moving shards (``stage``, ``upload``; dataclasses with ``failed``, ``bytes`` and
    ``seconds``) share: ``ok``, the rate, the JSON form and the throughput line."""

    failed: list
    bytes: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"ok": self.ok, "mb_per_s": round(self.mb_per_s, 1), **dataclasses.asdict(self)}

    def throughput(self) -> str:
        return f"{self.bytes / 1e6:,.1f} MB in {self.seconds:.1f} s ({self.mb_per_s:,.0f} MB/s)"
