"""Moving one file from a source to DEST, checked: retries with backoff, the rate limit, resumable ``.partial``
files hashed while they are written, hard or symbolic links for a filesystem source; :class:`Transfer` stages a
:class:`ShardJob` (a shard and its index)."""
from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from imnet_data.stores import ReadableStore
from imnet_data.stores.base import file_sha256, hash_into
from imnet_data.stores.errors import Retry, StoreError, retrying

if TYPE_CHECKING:
    from imnet_data.progress import Progress

CHUNK = 256 << 10         # bytes per read, hash and write: reused buffers that stay in the CPU cache
RING = 8                  # buffers in flight between the reading thread and its hashing helper


class Stopped(Exception):
    """A transfer ended because the run was interrupted (not retried, not a failure to report)."""


@dataclass(frozen=True)
class FileJob:
    """One file to stage: its name in the source folder, the manifest's size and sha256, where it goes."""

    name: str
    bytes: int
    sha256: str
    dest: Path

    @property
    def partial(self) -> Path:
        """Where the file streams to before it is checked and renamed."""
        return self.dest.with_name(self.dest.name + ".partial")


@dataclass(frozen=True)
class ShardJob:
    """A shard and its index, staged together from one source folder."""

    label: str                  # <split>/<shard name>
    source: ReadableStore
    files: tuple[FileJob, ...]


class RateLimit:
    """A limit on the bytes per second all transfers together move (a shared schedule: each chunk books its
    time slot, and its reader sleeps until then)."""

    def __init__(self, rate: float) -> None:
        self.rate, self.lock, self.next = rate, threading.Lock(), time.monotonic()

    def take(self, n: int) -> None:
        """Book ``n`` bytes in the shared schedule and sleep until their slot."""
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + n / self.rate
            wait = slot - now
        if wait > 0:
            time.sleep(wait)


@dataclass
class Transfer:
    """What every worker thread shares: the settings, the rate limit, the progress bar and the counters."""

    verify: bool = False
    link: bool = False
    retries: int = 5
    backoff: float = 0.2
    max_rate: float | None = None
    fsync: bool = False
    hash_aside: bool = True     # sha256 in a helper thread (one stream's speed) or in the reading one (less CPU)
    bar: Progress | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    moved: int = 0
    resumed: int = 0
    retried: int = 0

    def __post_init__(self) -> None:
        self.limit = RateLimit(self.max_rate) if self.max_rate else None
        self.chunk = CHUNK if not self.max_rate else int(min(CHUNK, max(self.max_rate / 20, 1 << 12)))
        self.stopped = threading.Event()

    def stop(self) -> None:
        """The run was interrupted: every running transfer ends at its next block (:class:`Stopped`), its
        ``.partial`` kept for the next run to resume."""
        self.stopped.set()

    def count(self, moved: int = 0, resumed: int = 0, retried: int = 0) -> None:
        """Add to the counters (from any thread); moved bytes also advance the progress bar."""
        with self.lock:
            self.moved, self.resumed, self.retried = self.moved + moved, self.resumed + resumed, self.retried + retried
            if moved and self.bar is not None:
                self.bar.update(moved)

    def tick(self, n: int) -> None:
        """``n`` more bytes arrived: obey the rate limit, count them (Stopped once :meth:`stop` was called)."""
        if self.stopped.is_set():
            raise Stopped("interrupted")
        if self.limit:
            self.limit.take(n)
        self.count(moved=n)

    def present(self, job: FileJob) -> bool:
        """The file is at its final name with the manifest's size (and sha256, with ``verify``)."""
        try:
            if job.dest.stat().st_size != job.bytes:
                return False
        except FileNotFoundError:
            return False
        return not self.verify or file_sha256(job.dest) == job.sha256

    def read(self, source: ReadableStore, name: str) -> bytes | None:
        """A small file (a manifest) of the source, with retries; None when absent."""
        return retrying(source.url(name), lambda: source.read(name), self.retries, self.backoff)

    def fetch(self, source: ReadableStore, job: FileJob) -> None:
        """Stream one file to its ``.partial`` (resuming one left by an earlier attempt), check it, rename it."""
        retrying(source.url(job.name), lambda: self.attempt(source, job), self.retries, self.backoff,
                 lambda: self.count(retried=1))

    def attempt(self, source: ReadableStore, job: FileJob) -> None:
        """One try; a Retry with ``restart`` deletes the partial file (its bytes are wrong)."""
        try:
            self.transfer(source, job)
        except Retry as e:
            if e.restart:
                job.partial.unlink(missing_ok=True)
            raise

    def transfer(self, source: ReadableStore, job: FileJob) -> None:
        """Stream the rest of the file onto its ``.partial`` (the bytes already there hashed first), check
        its size and sha256, rename it; Retry when they do not match."""
        h, have = hashlib.sha256(), partial_size(job)
        if have:
            hash_into(h, job.partial)
        if have < job.bytes:
            with source.open(job.name, have) as (offset, readinto):
                if offset != have:          # the server sent the whole file: start over
                    h, have = hashlib.sha256(), 0
                self.count(resumed=bool(have))
                with open(job.partial, "ab" if have else "wb") as f:
                    try:
                        have += copy_hashed(readinto, f, h, self.chunk, job.bytes - have, self.tick,
                                            self.hash_aside)
                    except OverflowError:
                        raise Retry(f"more than the manifest's {job.bytes:,} bytes", restart=True) from None
                    if self.fsync:
                        os.fsync(f.fileno())
        if have != job.bytes:
            raise Retry(f"got {have:,} of {job.bytes:,} bytes")
        if h.hexdigest() != job.sha256:
            raise Retry(f"sha256 {h.hexdigest()[:12]}... differs from the manifest's {job.sha256[:12]}...", True)
        os.replace(job.partial, job.dest)

    def link_file(self, source: ReadableStore, job: FileJob) -> str:
        """Hard-link (or, across filesystems, symlink) the source file after checking it; the kind made."""
        folder = source.local_folder()
        if folder is None:
            raise StoreError(f"{source.url(job.name)}: not on a filesystem; cannot be linked")
        src = folder / job.name
        if not src.is_file():
            raise StoreError(f"{src}: not found")
        if src.stat().st_size != job.bytes:
            raise StoreError(f"{src}: {src.stat().st_size:,} bytes, the manifest says {job.bytes:,}")
        if self.verify and file_sha256(src) != job.sha256:
            raise StoreError(f"{src}: sha256 differs from the manifest")
        job.partial.unlink(missing_ok=True)
        try:
            os.link(src, job.partial)
            kind = "hardlink"
        except OSError:
            os.symlink(src.resolve(), job.partial)
            kind = "symlink"
        os.replace(job.partial, job.dest)
        return kind

    def stage_shard(self, shard: ShardJob) -> tuple[bool, dict]:
        """Stage a shard's files: ``(transferred anything, link kinds made)``; StoreError/OSError on failure."""
        did, kinds = False, {"hardlink": 0, "symlink": 0}
        for job in shard.files:
            if self.present(job):
                continue
            did = True
            if self.link:
                kinds[self.link_file(shard.source, job)] += 1
            else:
                self.fetch(shard.source, job)
        return did, kinds


def copy_hashed(readinto: Callable[[memoryview], int], out: BinaryIO, h: hashlib._Hash, chunk: int,
                room: int, tick: Callable[[int], None], aside: bool = True) -> int:
    """Copy to ``out`` until end of input, updating ``h``; returns the bytes copied (OverflowError past ``room``).

    ``aside``: blocks are read into a ring of buffers and written here, while a helper thread hashes them (hashlib
    releases the GIL): hashing overlaps the next read and write, ~1.4x faster than doing all three in turn (what
    ``stage`` wants of each stream). Else all three in turn in this thread, into one buffer: no thread per file
    nor hand-over per block (at most ~0.1 CPU s less per 683 MB, ``tools/bench_fetch_cpu.py``), and all of the
    CPU on this thread's clock (the loader's cache: several fetch threads beside a decode that keeps the cores
    busy, where CPU, not one stream's speed, is what counts, and is counted).
    """
    if not aside:
        buf = memoryview(bytearray(chunk))
        return pump(readinto, out, lambda b, n: h.update(b[:n]), lambda: buf, room, tick)
    free: queue.SimpleQueue = queue.SimpleQueue()
    full: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(RING):
        free.put(memoryview(bytearray(chunk)))

    def hash_blocks() -> None:
        while (item := full.get()) is not None:
            h.update(item[0][:item[1]])
            free.put(item[0])

    helper = threading.Thread(target=hash_blocks, daemon=True)
    helper.start()
    try:
        return pump(readinto, out, lambda b, n: full.put((b, n)), free.get, room, tick)
    finally:
        full.put(None)
        helper.join()


def pump(readinto: Callable[[memoryview], int], out: BinaryIO, hashed: Callable[[memoryview, int], None],
         take: Callable[[], memoryview], room: int, tick: Callable[[int], None]) -> int:
    """Read blocks into the buffers ``take`` gives, write each to ``out`` and hand it to ``hashed`` (with its
    length) until end of input; the bytes copied (OverflowError past ``room``)."""
    done = 0
    while n := readinto(buf := take()):
        done += n
        if done > room:
            raise OverflowError
        out.write(buf[:n])
        hashed(buf, n)
        tick(n)
    return done


def partial_size(job: FileJob) -> int:
    """Bytes of a usable ``.partial`` (one longer than the file is deleted)."""
    try:
        size = job.partial.stat().st_size
    except FileNotFoundError:
        return 0
    if size > job.bytes:
        job.partial.unlink()
        return 0
    return size
