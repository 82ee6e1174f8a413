"""A rank's shards mapped read-only into one contiguous range of memory, read a batch at a time.

Why one range: a batch of a shuffled epoch takes its samples from every shard. With all of them in one address
range, a batch's labels and JPEG markers are one vectorised NumPy gather (large gathers release the GIL, so the
page faults of a cold shard do not stall the training thread), and each JPEG is handed on as a zero-copy view:
the host never copies image bytes; DALI's decoder reads them where they lie (as DALI's own readers do with
``dont_use_mmap=False``). The descriptors are closed once mapped, so a rank may read thousands of shards.

Shards must not be rewritten in place while a loader reads them (sharding and staging replace files by rename,
which is safe: the mapping keeps the old file).
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imnet_data.loader.index import LABEL_BYTES, SampleIndex
from imnet_data.loader.shardset import ShardError, ShardSet

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FIXED = 0x10
_MAP_ANONYMOUS, _MAP_NORESERVE = (0x1000, 0x40) if sys.platform == "darwin" else (0x20, 0x4000)
_RESERVE = mmap.MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE
_MADV_DONTNEED = 4
DROP_BLOCK = 2 << 20     # a page fault maps the whole page-cache folio it lands in (up to 2 MiB) and its neighbours'
#                          cached pages (fault-around): what a finished sample leaves mapped lies within this block
_FAILED = ctypes.c_void_p(-1).value

ANY_LABEL = 10 ** (LABEL_BYTES - 1)   # the label bound without a manifest: any number a .cls can hold
_WINDOW = np.concatenate([np.arange(LABEL_BYTES), [0, 1], np.arange(-16, 0)])   # label, JPEG head, JPEG tail
_DIGIT_WEIGHT = 10 ** np.arange(LABEL_BYTES - 1, -1, -1, dtype=np.int64)


_PARENTS: set[int] = set()    # descriptors holding a flock on a shard (a pin, a fetch's claim) in this process
_FORK_GUARD = threading.Lock()  # no fork between opening such a descriptor and registering it


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the parent's locked descriptors: a flock belongs
    to the open file, shared with the child, and would outlive the parent's unlock for as long as the child runs."""
    _FORK_GUARD.release()
    for fd in _PARENTS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _PARENTS.clear()


os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                    after_in_child=_forget_in_child)


def open_locked(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor to take a flock with, closed in forked children (see :func:`_forget_in_child`)."""
    with _FORK_GUARD:
        fd = os.open(path, flags, 0o644)
        _PARENTS.add(fd)
    return fd


def close_locked(fd: int) -> None:
    """Close a descriptor from :func:`open_locked`."""
    _PARENTS.discard(fd)
    os.close(fd)


class MappedShards:
    """The split's shards, each with a page-aligned slot in one address range reserved (not allocated) per
    process (a forked or unpickled copy reserves its own). A shard is mapped into its slot when a batch first
    needs it (:meth:`hold`), its index loaded then; at most ``capacity`` shards stay mapped (the least recently
    used unmapped past that, never one a batch in flight holds). ``open_shard(s)`` gives the file to map: a
    descriptor, and whether to keep it open while mapped (a streamed shard's pin, see
    :mod:`imnet_data.loader.cache`). A label must lie in ``0 <= label < classes`` (None: any label >= 0).

    What the mapping costs: file pages count in the process's RSS once read, so :meth:`drop` hands the pages of
    a finished batch back to the page cache (``MADV_DONTNEED``): the mapped share of the RSS is the batches in
    flight, not the shards read so far."""

    def __init__(self, shards: ShardSet, index: SampleIndex, classes: int | None,
                 open_shard: Callable[[int], tuple[int, bool]], capacity: int | None = None) -> None:
        self.shards, self.index, self.open_shard, self.capacity = shards, index, open_shard, capacity
        self.classes, self.limit = classes, ANY_LABEL if classes is None else classes
        pages = -(-shards.sizes // mmap.PAGESIZE) * mmap.PAGESIZE
        self.slots = np.concatenate([[0], np.cumsum(pages)])[:-1].astype(np.int64)
        self.total = int(pages.sum())
        self._reset()

    def _reset(self) -> None:
        self.pid, self.lock = os.getpid(), threading.RLock()
        self._region: np.ndarray | None = None
        self.mapped: OrderedDict[int, int | None] = OrderedDict()   # shard -> the descriptor kept (or None)
        self.users: dict[int, int] = {}                               # shard -> batches in flight holding it
        self.opening: dict[int, threading.Event] = {}                 # shards being opened (maybe fetched)

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k not in ("pid", "lock", "_region", "mapped", "users",
                                                                "opening")}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._reset()

    def region(self) -> np.ndarray:
        """This process's read-only uint8 array over the reserved range (reserved on first use)."""
        if self.pid != os.getpid():
            self._reset()        # a forked child: its own lock (the parent's may be held) and mapping
        if self._region is None:
            with self.lock:
                if self._region is None:
                    self._region = reserve(self.total)
        return self._region

    def hold(self, shards: np.ndarray) -> None:
        """Count one more batch holding each of ``shards`` and map those that are not (a streamed one may wait
        for its download here, without blocking reads of shards already mapped)."""
        region, wanted = self.region(), shards.tolist()
        with self.lock:
            for s in wanted:
                self.users[s] = self.users.get(s, 0) + 1
        try:
            for s in wanted:
                self._ensure(region, s)
        except BaseException:
            self.release(shards)
            raise

    def _ensure(self, region: np.ndarray, s: int) -> None:
        while True:
            with self.lock:
                if s in self.mapped:
                    self.mapped.move_to_end(s)
                    return
                event, mine = self.opening.get(s), False
                if event is None:
                    self.opening[s] = event = threading.Event()
                    mine = True
            if not mine:
                event.wait()
                continue
            try:
                fd, keep = self.open_shard(s)
                with self.lock:
                    self._map(region, s, fd, keep)
            finally:
                with self.lock:
                    del self.opening[s]
                event.set()

    def _map(self, region: np.ndarray, s: int, fd: int, keep: bool) -> None:
        """Map ``fd`` (shard ``s``) into its slot and load its index; ``keep``: a pinned descriptor (from
        :func:`open_locked`) kept open until the shard is unmapped, else closed now."""
        try:
            path, size = self.shards.paths[s], int(self.shards.sizes[s])
            if os.fstat(fd).st_size < size:
                raise ShardError(f"{path}: shrank to {os.fstat(fd).st_size:,} bytes, the manifest says {size:,}")
            want = region.ctypes.data + int(self.slots[s])
            if size and _LIBC.mmap(want, size, mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED, fd, 0) != want:
                raise ShardError(f"{path}: cannot map ({os.strerror(ctypes.get_errno())})")
            self.mapped[s] = fd if keep else None
            self.index.load(s, path, size)
        except BaseException:
            if keep:
                self.mapped.pop(s, None)
                close_locked(fd)
            raise
        finally:
            if not keep:
                os.close(fd)
        self._shrink(region)

    def release(self, shards: np.ndarray) -> None:
        """One batch holding each of ``shards`` is done; past ``capacity``, unmap the least recently used."""
        with self.lock:
            for s in shards.tolist():
                self.users[s] -= 1
                if not self.users[s]:
                    del self.users[s]
            self._shrink(self.region())

    def _shrink(self, region: np.ndarray) -> None:
        if self.capacity is None:
            return
        for s in [s for s in self.mapped if s not in self.users][:max(0, len(self.mapped) - self.capacity)]:
            self.unmap(region, s)

    def unmap(self, region: np.ndarray, s: int) -> None:
        """Put the reservation back over shard ``s``'s slot (zero pages: a stray read finds zeros, not a fault)
        and close its kept descriptor."""
        size = int(self.shards.sizes[s])
        if size:
            _LIBC.mmap(region.ctypes.data + int(self.slots[s]), size, mmap.PROT_READ, _RESERVE | _MAP_FIXED, -1, 0)
        fd = self.mapped.pop(s)
        if fd is not None:
            close_locked(fd)

    def close(self) -> None:
        """Unmap every shard (and close the descriptors kept): what a loader does when it is done."""
        if self._region is not None and self.pid == os.getpid():
            with self.lock:
                for s in list(self.mapped):
                    self.unmap(self._region, s)

    def drop(self, rows: np.ndarray) -> None:
        """Hand the pages of samples ``rows`` back to the page cache: from the label to the JPEG's end, widened
        to :data:`DROP_BLOCK` (a fault maps the whole large folio it lands in and the cached pages around it, the
        next samples' included; without the widening a shard's pages stay mapped one neighbour at a time: 12 MB
        left after 10 batches of 64 with 64 KiB blocks, none with 2 MiB). Within the shard's slot only; a later
        read (a sample of a batch still in flight) faults its pages in again from the page cache."""
        base = self.region().ctypes.data
        shards = self.index.shard_of(rows)
        slot = base + self.slots[shards]
        end = slot + -(-self.shards.sizes[shards] // mmap.PAGESIZE) * mmap.PAGESIZE
        low = np.maximum((slot + np.minimum(self.index.cls_offset[rows], self.index.jpg_offset[rows]))
                         // DROP_BLOCK * DROP_BLOCK, slot)
        high = np.minimum(-(-(slot + self.index.jpg_offset[rows] + self.index.jpg_size[rows]) // DROP_BLOCK)
                          * DROP_BLOCK, end)
        for a, b in zip(low.tolist(), high.tolist(), strict=True):
            _LIBC.madvise(a, b - a, _MADV_DONTNEED)

    def starts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offsets into :meth:`region` of samples ``rows``: label, JPEG start, JPEG end."""
        slot = self.slots[self.index.shard_of(rows)]
        start = slot + self.index.jpg_offset[rows]
        return slot + self.index.cls_offset[rows], start, start + self.index.jpg_size[rows]

    def path_of(self, i: int) -> Path:
        """The path of the shard that holds sample ``i``."""
        return self.shards.paths[int(self.index.shard_of(np.array([i]))[0])]

    def key_of(self, i: int) -> str:
        """Sample ``i``'s key."""
        s = int(self.index.shard_of(np.array([i]))[0])
        return self.index.keys(s, self.shards.paths[s])[i - int(self.index.first[s])]


def reserve(total: int) -> np.ndarray:
    """``total`` bytes of address space as a read-only array of zero pages (no memory is committed); shards are
    mapped over their slots. Unmapped when the array and its views are collected."""
    address = _LIBC.mmap(None, max(total, 1), mmap.PROT_READ, _RESERVE, -1, 0)
    if address in (None, _FAILED):
        raise ShardError(f"cannot reserve {total:,} bytes of address space for the shards "
                         f"({os.strerror(ctypes.get_errno())})")
    memory = (ctypes.c_ubyte * max(total, 1)).from_address(address)
    # unmapped when the last view of it is gone; not at exit, where a DALI thread may still be reading
    weakref.finalize(memory, _LIBC.munmap, address, max(total, 1)).atexit = False
    array = np.ctypeslib.as_array(memory)
    array.flags.writeable = False
    return array


def gather(files: MappedShards, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The JPEG views, labels (-1 where the ``.cls`` is not plain digits: parse those with :func:`label_of`)
    and a per-row problem code of samples ``rows`` (0 fine, 1 no start-of-image marker, 2 no end-of-image
    marker). One gather reads every label and marker byte."""
    region = files.region()
    label_at, start, end = files.starts(rows)
    places = np.concatenate([label_at[:, None] + _WINDOW[:LABEL_BYTES], start[:, None] + _WINDOW[8:10],
                             end[:, None] + _WINDOW[10:]], axis=1)
    window = region[places]          # GIL released while the pages are touched
    digits = window[:, :LABEL_BYTES].astype(np.int64) - 48
    size = files.index.cls_size[rows].astype(np.int64)
    inside = np.arange(LABEL_BYTES) < size[:, None]
    numeric = ((digits >= 0) & (digits <= 9) | ~inside).all(1)
    labels = np.where(numeric, (np.where(inside, digits, 0) * _DIGIT_WEIGHT).sum(1) // 10 ** (LABEL_BYTES - size),
                      -1)
    tail = window[:, 10:]
    problems = np.where((window[:, 8] != 0xFF) | (window[:, 9] != 0xD8), 1,
                        np.where(((tail[:, :-1] == 0xFF) & (tail[:, 1:] == 0xD9)).any(1), 0, 2))
    views = [region[a:b] for a, b in zip(start.tolist(), end.tolist(), strict=True)]
    return views, labels, problems


def label_of(files: MappedShards, i: int) -> int:
    r"""Sample ``i``'s label the slow way, for a ``.cls`` that is not plain digits (e.g. ``b"7\n"`` from
    another writer) or not a class of the label space; ShardError naming shard and key when it is not a number
    or outside ``0 <= label < files.classes`` (``-1``, the pad slots' label, included: never yielded as a
    sample's label, nor masked out as padding)."""
    at, size = int(files.starts(np.array([i]))[0][0]), int(files.index.cls_size[i])
    text = bytes(files.region()[at:at + size])
    where = f"{files.path_of(i)}: sample {files.key_of(i)}: .cls"
    try:
        label = int(text)
    except ValueError:
        raise ShardError(f"{where} is not a class index ({text!r})") from None
    if not 0 <= label < files.limit:
        space = "class indices are >= 0" if files.classes is None else \
            f"the manifest's {files.classes} classes, 0..{files.classes - 1}"
        raise ShardError(f"{where} {label} is outside the label space ({space})")
    return label


PROBLEMS = {1: "not a JPEG (no start-of-image marker)", 2: "truncated JPEG (no end-of-image marker)"}
