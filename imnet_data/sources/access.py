"""Random access to single samples by their locator (:class:`~imnet_data.sources.base.Entry` ``loc``).

The shard writer reads a globally shuffled plan, so consecutive samples come from anywhere in the download:
one ``pread`` per sample from an uncompressed tar or a file, or one zip member. Open files are kept per process,
a bounded number (a worker reads thousands of samples from the same train tar; the loader reads its shards).
"""
from __future__ import annotations

import os
import threading
import zipfile
import zlib
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from imnet_data.sources.base import SourceError
from imnet_data.sources.safety import DEFAULT_LIMITS, TINY_LIMITS, ZIP_LIMITS, check_archive_size, check_zip


class Descriptors:
    """Read-only descriptors kept open for repeated reads, at most ``limit``: the least recently used is closed
    when another is needed (a folder layout reads a million files once each). A forked worker starts its own set
    (the inherited descriptors are closed in the child, at the fork: :meth:`forget`). Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit, self.lock = limit, threading.Lock()
        self.open: OrderedDict[str, int] = OrderedDict()

    def read(self, path: str, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` of ``path`` (fewer at its end); OSError as ``os.pread`` raises it."""
        with self.lock:
            fd = self.open.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                while len(self.open) >= self.limit:
                    os.close(self.open.popitem(last=False)[1])
                self.open[path] = fd
            elif len(self.open) > 1:
                self.open.move_to_end(path)
            return os.pread(fd, size, offset)

    def forget(self) -> None:
        """Close every descriptor, in a child after a fork (they are the parent's), with a fresh lock (the parent's
        may have been held by another thread at the fork)."""
        self.lock = threading.Lock()
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()


DESCRIPTORS = Descriptors(64)
os.register_at_fork(after_in_child=DESCRIPTORS.forget)


def read_range(path: str, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of the file ``path`` through this process's descriptor cache."""
    return DESCRIPTORS.read(path, size, offset) if size else b""


@lru_cache(maxsize=4)
def _open_zip(path: str, pid: int, mtime_ns: int) -> zipfile.ZipFile:
    """The open zip, once per process (``pid``: a forked worker must not share its parent's file offset).
    A large zip's central directory (Tiny ImageNet: 120k entries) takes about a second to parse; the whole
    directory is checked once here (sizes, overlapping entries: :func:`check_zip`), with the caps of its kind
    (:data:`~imnet_data.sources.safety.ZIP_LIMITS` by name, else Tiny ImageNet's)."""
    limits = ZIP_LIMITS.get(Path(path).name, TINY_LIMITS)
    check_archive_size(Path(path), limits)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise SourceError(f"{path}: not a readable zip archive ({e})") from e
    check_zip(zf, path, limits)
    return zf


def open_zip(path: Path) -> zipfile.ZipFile:
    """This process's open handle of the zip at ``path``."""
    return _open_zip(str(path), os.getpid(), Path(path).stat().st_mtime_ns)


def fetch(loc: tuple, origin: str = "") -> bytes:
    """The bytes of the sample at ``loc``; SourceError naming ``origin`` when it is missing or cut short."""
    kind, path, *rest = loc
    origin = origin or path
    if kind == "range":
        offset, size = rest
        if size > DEFAULT_LIMITS.max_image_bytes:
            raise SourceError(f"{origin}: {size:,} bytes, over the image size cap")
        try:
            data = read_range(path, offset, size)
        except OSError as e:
            raise SourceError(f"{origin}: cannot read ({e.strerror})") from e
        if len(data) != size:
            raise SourceError(f"{origin}: truncated ({len(data):,} of {size:,} bytes); changed since listing?")
        return data
    if kind == "zip":
        try:
            return open_zip(Path(path)).read(rest[0])   # every member checked when the zip was opened
        except (KeyError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise SourceError(f"{origin}: cannot read the member ({e})") from e
    raise SourceError(f"{origin}: unknown locator kind {kind!r}")
