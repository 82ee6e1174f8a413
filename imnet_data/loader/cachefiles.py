"""What the shard cache (:mod:`imnet_data.loader.cache`) is made of besides its bookkeeping: its counters, the
checked transfer it fetches with, and the files it looks at and deletes."""
from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

from imnet_data.loader.mapping import close_locked, open_locked
from imnet_data.stage.transfer import FileJob, Transfer
from imnet_data.stores import ReadableStore
from imnet_data.stores.errors import Retry


@dataclass
class Stats:
    """What a cache did for this job."""

    fetched_bytes: int = 0       # bytes downloaded (partial files resumed count what was added)
    fetched: int = 0             # shards downloaded
    hits: int = 0                # shards found complete in the cache (fetched earlier, by another rank, staged)
    evicted: int = 0             # shards deleted to make room
    waited_s: float = 0.0        # seconds the loader waited for a shard
    peak_bytes: int = 0          # the most the folder held after a fetch
    retries: int = 0
    fetch_cpu_s: float = 0.0     # CPU seconds of the fetch threads (requests, reads, sha256, writes)


class CheckedTransfer(Transfer):
    """Stage's transfer, but a file whose bytes are not the manifest's first has the manifest checked."""

    check: object = None

    def attempt(self, source: ReadableStore, job: FileJob) -> None:
        """One try; a sha256 or size mismatch reads the store's manifest again (StoreError if it changed)."""
        try:
            super().attempt(source, job)
        except Retry as e:
            if e.restart and callable(self.check):
                self.check()
            raise


def sized(path: Path, size: int) -> bool:
    """``path`` is a file of ``size`` bytes."""
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def mtime(path: Path) -> float:
    """When a shard was last needed (0 when it is gone)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def evict(tar: Path, index: Path) -> bool:
    """Delete a shard and its index unless a loader has it mapped (its shared flock): True when deleted."""
    try:
        fd = open_locked(tar)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        close_locked(fd)
        return False
    try:
        tar.unlink(missing_ok=True)
        index.unlink(missing_ok=True)
    finally:
        close_locked(fd)
    return True
