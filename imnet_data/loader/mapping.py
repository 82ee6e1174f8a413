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

import ctypes
import mmap
import os
import sys
import threading
import weakref

import numpy as np

from imnet_data.loader.shardset import Located, ShardError

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FIXED = 0x10
_MAP_ANONYMOUS, _MAP_NORESERVE = (0x1000, 0x40) if sys.platform == "darwin" else (0x20, 0x4000)
_FAILED = ctypes.c_void_p(-1).value

LABEL_BYTES = 8          # a .cls holds at most 7 digits; the window past it lies in the tar padding
ANY_LABEL = 10 ** (LABEL_BYTES - 1)   # the label bound without a manifest: any number a .cls can hold
_WINDOW = np.concatenate([np.arange(LABEL_BYTES), [0, 1], np.arange(-16, 0)])   # label, JPEG head, JPEG tail
_DIGIT_WEIGHT = 10 ** np.arange(LABEL_BYTES - 1, -1, -1, dtype=np.int64)


class MappedShards:
    """The shards ``located`` reads, laid out page-aligned in one range mapped lazily once per process (a
    forked or unpickled copy maps its own). ``start``/``end`` give each sample's JPEG bytes as offsets into
    :meth:`region`, ``label_at`` its ``.cls``; a label must lie in ``0 <= label < classes`` (the manifest's
    class count; None without a manifest: any label >= 0). Rows that do not fit their shard raise ShardError
    at once."""

    def __init__(self, paths: list[str], located: Located, classes: int | None) -> None:
        self.paths, self.keys, self.shard = paths, located.keys, located.shard
        self.classes, self.limit = classes, ANY_LABEL if classes is None else classes
        used = np.unique(located.shard)
        sizes = {int(s): os.stat(paths[s]).st_size for s in used}
        self.sizes, self.slots = sizes, {s: 0 for s in sizes}
        offset = 0
        for s, size in sizes.items():
            self.slots[s], offset = offset, offset + -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        self.total = offset
        base = np.zeros(len(paths), np.int64)
        base[list(self.slots)] = list(self.slots.values())
        self.label_at = base[located.shard] + located.cls_offset
        self.start = base[located.shard] + located.jpg_offset
        self.end = self.start + located.jpg_size
        self.cls_size = located.cls_size
        self._check(located, sizes)
        self._reset()

    def _check(self, located: Located, sizes: dict[int, int]) -> None:
        """Every sample's ``.cls`` (and the label window past it) and ``.jpg`` inside its shard."""
        size = np.array([sizes.get(int(s), 0) for s in range(len(self.paths))], np.int64)[located.shard]
        bad = ((located.cls_size < 1) | (located.cls_size >= LABEL_BYTES) | (located.jpg_size < 4)
               | (located.cls_offset < 0) | (located.cls_offset + LABEL_BYTES > size) | (located.jpg_offset < 0)
               | (located.jpg_offset + located.jpg_size > size))
        if bad.any():
            i = int(np.argmax(bad))
            raise ShardError(f"{self.paths[located.shard[i]]}: sample {located.keys[i]}: the index does not fit "
                             f"the shard (.cls {int(located.cls_size[i])} bytes at {int(located.cls_offset[i]):,}, "
                             f".jpg {int(located.jpg_size[i]):,} bytes at {int(located.jpg_offset[i]):,}, shard "
                             f"{int(size[i]):,} bytes); re-stage it or run 'imnet-data verify'")

    def _reset(self) -> None:
        self.pid, self.lock = os.getpid(), threading.Lock()
        self._region: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k not in ("pid", "lock", "_region")}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._reset()

    def region(self) -> np.ndarray:
        """This process's read-only uint8 array over every mapped shard (mapped on first use)."""
        if self.pid != os.getpid():
            self._reset()        # a forked child: its own lock (the parent's may be held) and mapping
        if self._region is None:
            with self.lock:
                if self._region is None:
                    self._region = map_region(self.paths, self.slots, self.sizes, self.total)
        return self._region

    def path_of(self, i: int) -> str:
        """The path of the shard that holds sample ``i``."""
        return self.paths[self.shard[i]]


def map_region(paths: list[str], slots: dict[int, int], sizes: dict[int, int], total: int) -> np.ndarray:
    """Reserve ``total`` bytes of address space, map each shard at its slot, close the descriptors; the range is
    unmapped when the array and its views are collected. A shard shorter than when it was checked is refused
    (reading past its end would kill the process)."""
    address = _LIBC.mmap(None, max(total, 1), 0, mmap.MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    if address in (None, _FAILED):
        raise ShardError(f"cannot reserve {total:,} bytes of address space for the shards "
                         f"({os.strerror(ctypes.get_errno())})")
    memory = (ctypes.c_ubyte * max(total, 1)).from_address(address)
    # unmapped when the last view of it is gone; not at exit, where a DALI thread may still be reading
    weakref.finalize(memory, _LIBC.munmap, address, max(total, 1)).atexit = False
    array = np.ctypeslib.as_array(memory)
    for shard, slot in slots.items():
        path = paths[shard]
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ShardError(f"{path}: cannot open ({e.strerror})") from e
        try:
            size = os.fstat(fd).st_size
            if size < sizes[shard]:
                raise ShardError(f"{path}: shrank from {sizes[shard]:,} to {size:,} bytes while opening the loader")
            flags = mmap.MAP_SHARED | _MAP_FIXED     # into its slot of the reservation
            want = address + slot
            if sizes[shard] and _LIBC.mmap(want, sizes[shard], mmap.PROT_READ, flags, fd, 0) != want:
                raise ShardError(f"{path}: cannot map ({os.strerror(ctypes.get_errno())})")
        finally:
            os.close(fd)
    array.flags.writeable = False
    return array


def gather(files: MappedShards, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The JPEG views, labels (-1 where the ``.cls`` is not plain digits: parse those with :func:`label_of`)
    and a per-row problem code of samples ``rows`` (0 fine, 1 no start-of-image marker, 2 no end-of-image
    marker). One gather reads every label and marker byte."""
    region = files.region()
    start, end = files.start[rows], files.end[rows]
    places = np.concatenate([files.label_at[rows, None] + _WINDOW[:LABEL_BYTES], start[:, None] + _WINDOW[8:10],
                             end[:, None] + _WINDOW[10:]], axis=1)
    window = region[places]          # GIL released while the pages are touched
    digits = window[:, :LABEL_BYTES].astype(np.int64) - 48
    size = files.cls_size[rows].astype(np.int64)
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
    at, size = int(files.label_at[i]), int(files.cls_size[i])
    text = bytes(files.region()[at:at + size])
    where = f"{files.path_of(i)}: sample {files.keys[i]}: .cls"
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
