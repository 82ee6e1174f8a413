"""What every store is and shares: the store protocols, the cap on metadata reads and file hashing.

A *store* is where shards live: a folder (:class:`~imnet_data.stores.folder.FolderStore`), an HTTP(S) base URL
(:class:`~imnet_data.stores.http.HttpStore`, read-only) or an object-store prefix
(:class:`~imnet_data.stores.s3.S3Store`). Callers ask for what they use, never for a class:
:class:`ReadableStore` (staging reads any store), :class:`WritableStore` (the plan, the resume checks and the
manifest of ``shard``/``merge``), :class:`UploadStore` (a writable store that is not a local folder: shards are
written into a local work folder and uploaded). The protocols are runtime-checkable: ``isinstance(store,
WritableStore)`` is how a caller that writes refuses a read-only store. A new store is a module with a class
meeting one of them and an :data:`Opener`, plus one line in :data:`imnet_data.stores.SCHEMES`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from imnet_data.report import Report
from imnet_data.stores.errors import Policy, Retry, StoreError

MAX_METADATA = 256 << 20    # bytes of any manifest / index / info file: a 21k manifest is well under this


class Stat(NamedTuple):
    """What a store tells of a file without reading it: its size, and the sha256 it was stored with where the
    store keeps one (an object's metadata: ``""`` for an object stored without it; None for a folder)."""

    size: int
    sha256: str | None = None


Reader = Callable[[memoryview], int]   # ``readinto``: fills a buffer, returns the bytes read (0 at the end)


@runtime_checkable
class ReadableStore(Protocol):
    """A store shards can be read from: names inside it are relative paths (``train/x.tar``)."""

    def __str__(self) -> str:
        """Where it is, for messages and reports."""

    def url(self, name: str) -> str:
        """Where ``name`` is, for messages."""

    def child(self, name: str) -> ReadableStore:
        """The store of a sub-folder or sub-prefix."""

    def local_folder(self) -> Path | None:
        """The folder it is on a local or network filesystem (files can be linked, written in place), else None."""

    def read(self, name: str) -> bytes | None:
        """A metadata file's bytes (at most :data:`MAX_METADATA`, else StoreError); None when absent."""

    def open(self, name: str, start: int) -> contextlib.AbstractContextManager[tuple[int, Reader]]:
        """``(offset, readinto)``: the file from byte ``start``; ``offset`` is 0 when the store cannot seek (the
        caller starts over). StoreError for a permanent failure, :class:`~imnet_data.stores.errors.Retry` else."""


@runtime_checkable
class WritableStore(ReadableStore, Protocol):
    """A store shards can be written into and checked in: it also tells sizes and lists what it holds."""

    def child(self, name: str) -> WritableStore:
        """The store of a sub-folder or sub-prefix."""

    def stat(self, name: str) -> Stat | None:
        """The file's size (and stored sha256, see :class:`Stat`); None when absent."""

    def write(self, name: str, data: bytes) -> None:
        """A small file (a manifest), atomically: a reader sees it whole or not at all."""

    def sha256(self, name: str) -> str:
        """The sha256 of the file's bytes, read through."""

    def names(self) -> list[str]:
        """Every file under it, relative to it."""

    def delete(self, name: str) -> None:
        """Remove the file (nothing when absent)."""


@runtime_checkable
class UploadStore(WritableStore, Protocol):
    """A writable store files are uploaded into (not a local folder): ``shard`` writes into a work folder and
    publishes each shard with :meth:`put`; ``upload`` sends a shard folder."""

    def child(self, name: str) -> UploadStore:
        """The store of a sub-prefix."""

    def put(self, name: str, path: Path, sha256: str) -> None:
        """A (large) local file as ``name`` with its recorded ``sha256``, checked once it has landed:
        StoreError when the file's bytes are not the recorded ones, Retry when the stored object is not the file."""


Opener = Callable[[str, int, tuple[float, float], Policy], contextlib.AbstractContextManager[ReadableStore]]
"""A registry entry: ``(location, jobs, timeout, policy)`` to the store of a URL, as a context manager (its
connections pooled for ``jobs`` threads, closed after; requests under ``policy``, where the store retries)."""


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


def hash_into(h: hashlib._Hash, path: Path, chunk: int = 1 << 22) -> hashlib._Hash:
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
    raw: Any = getattr(response, "_fp", None)   # http.client's response, or None
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
        """No shard failed."""
        return not self.failed

    @property
    def mb_per_s(self) -> float:
        """The rate of the bytes moved this run (0 when no time passed)."""
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    def as_dict(self) -> dict:
        """``ok``, the rate (rounded to 0.1 MB/s), then the fields."""
        return {"ok": self.ok, "mb_per_s": round(self.mb_per_s, 1), **dataclasses.asdict(self)}

    def throughput(self) -> str:
        """The bytes moved, the seconds and the rate, as one phrase."""
        return f"{self.bytes / 1e6:,.1f} MB in {self.seconds:.1f} s ({self.mb_per_s:,.0f} MB/s)"
