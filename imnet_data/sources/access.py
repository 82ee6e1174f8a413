"""Random access to single samples by their locator (:class:`~imnet_data.sources.base.Entry` ``loc``).

The shard writer reads a globally shuffled plan, so consecutive samples come from anywhere in the download:
one ``pread`` per sample from an uncompressed tar or a file, or one zip member. Open files are cached per
process (a worker reads thousands of samples from the same train tar).
"""
from __future__ import annotations

import os
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

from imnet_data.sources.base import SourceError
from imnet_data.sources.safety import DEFAULT_LIMITS, check_zip_member


@lru_cache(maxsize=64)
def _fd(path: str, pid: int) -> int:
    """A read-only descriptor of ``path`` for this process (``pid``: forked workers open their own)."""
    return os.open(path, os.O_RDONLY)


@lru_cache(maxsize=4)
def _open_zip(path: str, pid: int, mtime_ns: int) -> zipfile.ZipFile:
    """The open zip, once per process (``pid``: a forked worker must not share its parent's file offset).
    A large zip's central directory (Tiny ImageNet: 120k entries) takes about a second to parse."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SourceError(f"{path}: not a readable zip archive ({e})") from e


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
            data = os.pread(_fd(path, os.getpid()), size, offset) if size else b""
        except OSError as e:
            raise SourceError(f"{origin}: cannot read ({e.strerror})") from e
        if len(data) != size:
            raise SourceError(f"{origin}: truncated ({len(data):,} of {size:,} bytes); changed since listing?")
        return data
    if kind == "zip":
        try:
            zf = open_zip(Path(path))
            return zf.read(check_zip_member(zf.getinfo(rest[0]), path))
        except (KeyError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise SourceError(f"{origin}: cannot read the member ({e})") from e
    raise SourceError(f"{origin}: unknown locator kind {kind!r}")
