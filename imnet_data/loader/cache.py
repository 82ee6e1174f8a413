"""Shards streamed from a store (``s3://``, ``gs://``, ``http(s)://``: :mod:`imnet_data.stores`) into a bounded
local cache, fetched in the order the schedule will need them, ahead of use.

The cache folder is ``<cache>/<split>/``, the layout ``imnet-data stage`` writes: a node that staged the shards
there has them already (each is used without a fetch, a *hit*). Its ``manifest.json`` says whose data it holds:
a job whose manifest differs is refused (two jobs with different data in one folder would evict each other's
shards and mix them up). Jobs with the same data share it, the ranks of a node first of all (one fetch per
node).

Fetching (``fetch_jobs`` threads): the next shards the loader will need (:meth:`ShardCache.plan`, in order of
first need, the next epoch's first ones included; planned as soon as the loader is built, so the first fetches
overlap its setup), at most ``read_ahead`` shards and ``read_ahead_bytes`` past the one in use; a shard asked
for out of plan comes first. Each file streams to ``<name>.partial`` (read, hashed and written in turn by its
fetch thread: the least CPU, for the threads share the decode's cores; ``fetch_cpu_s`` counts it), renamed only
once its size and sha256 are the manifest's (:class:`imnet_data.stage.transfer.Transfer`: retries with
backoff on 503 SlowDown, 5xx, dropped connections; a partial file left by a killed job is resumed with a ranged
GET). Nothing under a ``.partial`` name is ever mapped. A shard whose bytes are not the manifest's is refused
before use, and the store's manifest is read again: one that changed under the running job is refused by name.

Eviction keeps the folder within ``cache_limit``: before a fetch, shards are deleted least-recently-needed first
(the file's mtime, stamped each time a loader maps it), never one in use (a loader holds a shared ``flock`` on
each shard it has mapped, in any process of any job) nor one fetched for the read-ahead window. When everything
else is in use, only the shard the loader waits for is fetched anyway: the folder never holds more than the
limit plus one shard.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from imnet_data.assign import shards_for_ranks
from imnet_data.loader.cachefiles import CheckedTransfer, Stats, evict, mtime, sized
from imnet_data.loader.mapping import close_locked, open_locked
from imnet_data.loader.shardset import ShardError, ShardSet
from imnet_data.shards.manifest import MANIFEST
from imnet_data.stage.transfer import FileJob
from imnet_data.stores import ReadableStore, StoreError
from imnet_data.stores.errors import retrying
from imnet_data.tario import atomic_file
from imnet_data.units import parse_size

LOCK = ".imnet-cache.lock"
WAIT = 0.2          # seconds a fetch thread waits for room before it looks again
NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EFBIG: "the file size limit was reached (ulimit -f)"}      # a write the disk refused


class ShardCache:
    """The shards of ``shards`` (a manifest read from ``store``) fetched into ``folder`` (see the module doc).
    Called with a shard number, it returns a descriptor of the complete file, pinned (a shared flock) until
    closed; it waits for the fetch when the shard is not there yet. In another process (a DataLoader worker) it
    only opens and pins files the loader's own process made present."""

    def __init__(self, store: ReadableStore, shards: ShardSet, folder: Path, options) -> None:
        if shards.files is None or shards.raw is None:
            raise ShardError(f"{store}: a streamed shard set needs its manifest")
        self.store, self.shards, self.folder = store, shards, folder
        self.files: list[tuple] = shards.files
        self.owner, self.counts = os.getpid(), Stats()
        self.cond = threading.Condition()
        self.need = np.zeros(0, np.int64)     # the shards in order of first need (arrays: 16 bytes a shard)
        self.at = np.full(len(self.files), -1, np.int64)     # shard -> its place in ``need`` (-1: not in it)
        self.cursor = 0                        # the place of the last shard the loader asked for
        self.urgent: list[int] = []
        self.ready: set[int] = set()
        self.busy: set[int] = set()
        self.failed: dict[int, str] = {}
        self.closed = False
        self.stack: contextlib.ExitStack | None = None
        self.names = {n: s for s, f in enumerate(shards.files) for n in (f[0], f[3])}
        self.limit, self.ahead_bytes = self._settle(options, shards.raw)
        shards.raw = None                     # its sha256 (``shards.digest``) is what is compared from now on
        self.read_ahead = options.read_ahead
        self.transfer = CheckedTransfer(retries=options.retries, backoff=options.backoff, hash_aside=False)
        self.transfer.check = self.check_manifest
        for _ in range(options.fetch_jobs):
            threading.Thread(target=self._work, daemon=True, name="imnet-fetch").start()

    def _settle(self, options, raw: bytes) -> tuple[int, int]:
        """Claim the folder (its manifest: ours, or written now) and the limits: ``(cache_limit,
        read_ahead_bytes)``; ShardError naming the folder for another job's data, a limit the disk cannot give,
        or one smaller than a window of shards."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mine, theirs = self.folder / MANIFEST, None
        with contextlib.suppress(FileNotFoundError):
            theirs = mine.read_bytes()
        if theirs is not None and theirs != raw:
            raise ShardError(f"{self.folder}: a cache of other data (its {MANIFEST} has sha256 "
                             f"{hashlib.sha256(theirs).hexdigest()[:12]}..., {self.store.url(MANIFEST)} has "
                             f"{self.shards.digest[:12]}...): jobs with different data cannot share a cache folder; "
                             "give this job its own cache=")
        if theirs is None:
            with atomic_file(mine) as f:
                f.write(raw)
        held, free = self.usage(), shutil.disk_usage(self.folder).free
        limit = parse_size(options.cache_limit) if isinstance(options.cache_limit, str) else options.cache_limit
        limit = int(limit if limit is not None else 0.9 * (free + held))
        biggest = int(max(self.shards.sizes)) + max(f[4] for f in self.files)
        window, what = self.least(options, biggest)
        if limit > free + held:
            raise ShardError(f"{self.folder}: cache_limit {limit / 1e9:,.2f} GB, but its disk has "
                             f"{free / 1e9:,.2f} GB free (and the cache holds {held / 1e9:,.2f} GB): lower "
                             "cache_limit or free space")
        if limit < window:
            raise ShardError(f"{self.folder}: cache_limit {limit / 1e9:,.3f} GB cannot hold {what} "
                             f"({window / 1e9:,.3f} GB): raise it")
        ahead = options.read_ahead_bytes
        ahead = parse_size(ahead) if isinstance(ahead, str) else ahead
        return limit, int(ahead if ahead is not None else max(limit // 2, biggest))

    def least(self, options, biggest: int) -> tuple[int, str]:
        """The smallest limit that works, and what it holds. Global order: the shards the batches in flight
        (DALI's queue and read-ahead, or the DataLoader's tasks) can span, whole windows of them, and one fetched
        ahead. Local order: every shard of the rank's range (each batch draws from all of them)."""
        if options.order == "global":
            in_flight = (3 * options.prefetch + 3 + (options.num_threads or 1) * options.prefetch) * options.batch_size
            windows = 2 + in_flight // (options.shuffle_window * max(1, int(min(self.shards.counts))))
            return biggest * (windows * options.shuffle_window + 1), \
                f"the {windows} windows of {options.shuffle_window} shards the batches in flight can span and one " \
                "more"
        shards = shards_for_ranks(self.shards.counts.tolist(), [options.rank], options.world_size)
        return sum(int(self.shards.sizes[s]) + self.files[s][4] for s in shards), \
            f"the {len(shards)} shards of rank {options.rank}'s range (order='local' reads them all every epoch)"

    # ---- the loader's side ---------------------------------------------------------------------------------

    def plan(self, shards: np.ndarray) -> None:
        """The shards the loader will need, in order of first need."""
        with self.cond:
            self.need = np.asarray(shards, np.int64)
            self.at[:] = -1
            self.at[self.need[::-1]] = np.arange(len(self.need) - 1, -1, -1)   # a repeated shard: its first place
            self.cursor = 0
            self.cond.notify_all()

    def __call__(self, shard: int) -> tuple[int, bool]:
        """A descriptor of shard ``shard``'s complete file with a shared flock on it (kept while mapped)."""
        if os.getpid() != self.owner:
            fd = self.pin(shard)
            if fd is None:
                raise ShardError(f"{self.path(shard)}: not in the cache (the loader's process fetches it first)")
            return fd, True
        start = time.monotonic()
        while True:
            with self.cond:
                self.cursor = max(self.cursor, int(self.at[shard]))
                if shard not in self.urgent and shard not in self.ready:
                    self.urgent.append(shard)         # waited for: fetched before anything read ahead
                self.cond.notify_all()
                while shard not in self.ready and shard not in self.failed and not self.closed:
                    if shard not in self.busy and self.present(shard):    # else its fetch says what it was
                        self.ready.add(shard)
                        self.counts.hits += 1
                        break
                    self.cond.wait(WAIT)
                if shard in self.failed:
                    raise ShardError(self.failed[shard])
            fd = self.pin(shard)
            if fd is not None:
                self.counts.waited_s += time.monotonic() - start
                return fd, True
            with self.cond:                      # evicted by another job between the fetch and the pin
                self.ready.discard(shard)

    def path(self, shard: int) -> Path:
        """Where shard ``shard`` lies in the cache."""
        return self.folder / self.files[shard][0]

    def present(self, shard: int) -> bool:
        """The shard and its index are complete in the folder (a final name is only ever a verified file)."""
        name, size, _, index, index_size, _ = self.files[shard]
        return all(sized(self.folder / n, b) for n, b in ((name, size), (index, index_size)))

    def pin(self, shard: int) -> int | None:
        """A descriptor of the shard with a shared flock, its mtime stamped (needed now); None when the file
        is gone or was replaced meanwhile."""
        path = self.path(shard)
        try:
            fd = open_locked(path)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)
            os.utime(path)
        except FileNotFoundError:
            close_locked(fd)
            return None
        return fd

    def check_manifest(self) -> None:
        """StoreError naming the store's manifest when it is no longer the one this job started from."""
        now = retrying(self.store.url(MANIFEST), lambda: self.store.read(MANIFEST), 2, 0.2)
        if now is None or hashlib.sha256(now).hexdigest() != self.shards.digest:
            said = "is gone" if now is None else f"sha256 {self.shards.digest[:12]}... -> " \
                                                  f"{hashlib.sha256(now).hexdigest()[:12]}..."
            raise StoreError(f"{self.store.url(MANIFEST)}: the manifest changed under this job ({said}): its shards "
                             "are being replaced; refused (restart the job on the new data, with another cache)")

    def stats(self) -> dict:
        """What the cache did for this job (:class:`Stats`), and its limit."""
        with self.cond:
            return {**dataclasses.asdict(self.counts), "limit_bytes": self.limit, "folder": str(self.folder)}

    def close(self) -> None:
        """Stop the fetch threads and close the store's connections (the files stay)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.stack is not None:
            self.stack.close()

    def __getstate__(self) -> dict:
        keep = ("shards", "files", "folder", "owner", "names")
        return {k: v for k, v in vars(self).items() if k in keep}

    # ---- the fetch threads ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self.cond:
                shard = self._next()
                while shard is None and not self.closed:
                    self.cond.wait(WAIT)
                    shard = self._next()
                if self.closed or shard is None:
                    return
                self.busy.add(shard)
            cpu = time.thread_time()
            try:
                self._fetch(shard)
            except ShardError as e:
                with self.cond:
                    self.failed[shard] = str(e)
            except (StoreError, OSError) as e:
                with self.cond:
                    self.failed[shard] = self._reason(shard, e)
            finally:
                with self.cond:
                    self.busy.discard(shard)
                    self.counts.fetch_cpu_s += time.thread_time() - cpu
                    self.cond.notify_all()

    def _next(self) -> int | None:
        """The shard to fetch next: one the loader asked for out of plan, else the next of the read-ahead
        window that is neither there nor being fetched."""
        todo = lambda s: s not in self.ready and s not in self.busy and s not in self.failed  # noqa: E731
        for s in self.urgent:
            if todo(s):
                return s
        self.urgent = [s for s in self.urgent if s not in self.ready and s not in self.failed]
        ahead = 0
        for s in self.need[self.cursor:self.cursor + self.read_ahead + 1].tolist():
            ahead += int(self.shards.sizes[s])
            if ahead > self.ahead_bytes and s != self.need[self.cursor]:
                return None
            if todo(s):
                return s
        return None

    def _fetch(self, shard: int) -> None:
        name, size, sha, index, index_size, index_sha = self.files[shard]
        jobs = [FileJob(index, index_size, index_sha, self.folder / index),
                FileJob(name, size, sha, self.folder / name)]
        claim = open_locked(self.folder / f"{name}.partial", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            fcntl.flock(claim, fcntl.LOCK_EX)        # one fetch of a shard at a time, across the node's jobs
            found = self.present(shard)              # fetched by another job meanwhile, or staged
            if not found:
                while not self._room(shard, size + index_size):
                    time.sleep(WAIT)
                    if self.closed:
                        return
                for job in jobs:
                    if not self.transfer.present(job):
                        self._download(job)
                with self.cond:
                    self.counts.fetched += 1
                    self.counts.fetched_bytes = self.transfer.moved      # all threads' (a resumed file: its rest)
                    self.counts.retries = self.transfer.retried
                    self.counts.peak_bytes = max(self.counts.peak_bytes, self.usage())
            with self.cond:
                self.counts.hits += found and shard not in self.ready
                self.ready.add(shard)
            if os.fstat(claim).st_size == 0:         # the claim made an empty partial file: not a download's
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / f"{name}.partial")
        finally:
            close_locked(claim)

    def _download(self, job: FileJob) -> None:
        try:
            self.transfer.fetch(self.store, job)
        except StoreError:
            self.check_manifest()
            raise

    def _room(self, shard: int, wanted: int) -> bool:
        """Evict least-recently-needed shards until ``wanted`` more bytes fit the limit; False when they do not
        and the shard is not one the loader waits for (the fetch waits for room). Under the folder's lock."""
        lock = open_locked(self.folder / LOCK, os.O_WRONLY | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._make_room(shard, wanted)
        finally:
            close_locked(lock)

    def _make_room(self, shard: int, wanted: int) -> bool:
        used = self.usage(skip=shard)
        if used + wanted <= self.limit:
            return True
        with self.cond:
            ahead = self.need[self.cursor:self.cursor + self.read_ahead + 1].tolist()
            keep = set(self.urgent) | self.busy
            waited_for = shard in self.urgent
        for s in self.evictable(keep, ahead if waited_for else []):
            if not evict(self.path(s), self.folder / self.files[s][3]):
                continue                         # mapped by a loader (its shared flock): in use
            with self.cond:
                self.ready.discard(s)
                self.counts.evicted += 1
            used = self.usage(skip=shard)
            if used + wanted <= self.limit:
                return True
        return waited_for

    def evictable(self, keep: set[int], ahead: list[int]) -> list[int]:
        """Cached shards to evict, in order: least recently needed first (mtime) of those outside the
        read-ahead window, then those of ``ahead`` (fetched for later: only to make room for a shard the loader
        waits for), the one needed last first; never those in ``keep``."""
        cached = [(mtime(p), s) for p in self.folder.glob("*.tar") if (s := self.names.get(p.name)) is not None
                  and s not in keep]
        later = set(ahead)
        return [s for _, s in sorted(cached) if s not in later] + [s for s in reversed(ahead)
                                                                   if s in {c for _, c in cached}]

    def usage(self, skip: int | None = None) -> int:
        """Bytes the folder holds for the cache: complete shards and indexes, and partial ones at the size they
        will have (but those of shard ``skip``, the one being made room for)."""
        total = 0
        for entry in os.scandir(self.folder):
            name, partial = entry.name.removesuffix(".partial"), entry.name.endswith(".partial")
            s = self.names.get(name)
            if s is None or (partial and s == skip):
                continue
            files = self.files[s]
            full = files[1] if name == files[0] else files[4]
            with contextlib.suppress(FileNotFoundError):
                total += full if partial else entry.stat().st_size
        return total

    def _reason(self, shard: int, error: Exception) -> str:
        """A failed fetch as one line naming the shard; a write the disk refused (full, over quota, over the
        file size limit) also names the cache folder and what to do."""
        url = self.store.url(self.files[shard][0])
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            return (f"{url}: cannot be written into the cache {self.folder}: {NO_ROOM[error.errno]} "
                    f"({shutil.disk_usage(self.folder).free / 1e9:,.2f} GB free there): free space on that disk, "
                    "lower cache_limit, or give cache= a folder on a larger disk (the partial file is resumed)")
        said = str(error)            # a store's error names its object (the shard or its index) already
        return said if said.startswith(url.rsplit("/", 1)[0] + "/") else f"{url}: {said}"
