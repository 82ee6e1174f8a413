"""Reading untrusted archives safely: member names, types and sizes are checked before any byte is used.

Refused: absolute paths, ``..`` components, links, devices, FIFOs, members over the size cap, and more
decompressed bytes than the total cap (gzip/zip bombs). Every refusal names the archive and the member.
"""
from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Iterator

from imnet_data.sources.base import SourceError

MiB = 1 << 20
GiB = 1 << 30


class UnsafeArchiveError(SourceError):
    """An archive member that must not be read or written (traversal, link, device, bomb)."""


@dataclass(frozen=True)
class Limits:
    """Caps against hostile archives. The real set's largest image is ~15 MB and largest class tar ~250 MB."""

    max_image_bytes: int = 256 * MiB
    max_inner_tar_bytes: int = 64 * GiB
    max_total_bytes: int = 4096 * GiB
    max_zip_ratio: int = 200


DEFAULT_LIMITS = Limits()


def safe_name(name: str, origin: str) -> str:
    """A member name as a clean relative POSIX path, or :class:`UnsafeArchiveError`."""
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"{origin}: member name {name!r} is empty or has NUL/backslash characters")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise UnsafeArchiveError(f"{origin}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{origin}: member {name!r} climbs out with '..'")
    return str(path)


def _kind(ti: tarfile.TarInfo) -> str:
    return ("symlink" if ti.issym() else "hard link" if ti.islnk() else "device" if ti.isdev()
            else "FIFO" if ti.isfifo() else "special file")


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``offset`` of an open file (an inner tar inside the outer tar)."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._start, self._size, self._pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def readinto(self, b: bytearray) -> int:
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(memoryview(b)[:n])
        self._pos += got
        return got


def window(f: BinaryIO, offset: int, size: int) -> BinaryIO:
    """A buffered read-only view of part of ``f``."""
    return io.BufferedReader(_Window(f, offset, size), buffer_size=4 * MiB)


def iter_tar(fileobj: BinaryIO, origin: str, limits: Limits = DEFAULT_LIMITS,
             max_member: int | None = None) -> Iterator[tuple[tarfile.TarInfo, BinaryIO]]:
    """Stream a tar's regular files as ``(info, reader)`` after checking each member; directories are skipped.

    ``fileobj`` may be compressed (gzip/bz2/xz are detected); the total of member sizes is capped so that a
    small compressed archive cannot expand without bound.
    """
    cap = limits.max_image_bytes if max_member is None else max_member
    total = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
            for ti in tf:
                name = safe_name(ti.name, origin)
                if ti.isdir():
                    continue
                if not ti.isreg():
                    raise UnsafeArchiveError(f"{origin}: member {name!r} is a {_kind(ti)}; links and devices "
                                             "are refused")
                if ti.size > cap:
                    raise UnsafeArchiveError(f"{origin}: member {name!r} is {ti.size:,} bytes, over the "
                                             f"{cap:,}-byte cap")
                total += ti.size
                if total > limits.max_total_bytes:
                    raise UnsafeArchiveError(f"{origin}: expands past {limits.max_total_bytes:,} bytes")
                reader = tf.extractfile(ti)
                assert reader is not None  # a regular file always has a reader
                yield ti, reader
    except tarfile.TarError as e:
        raise SourceError(f"{origin}: not a readable tar archive ({e})") from e
    except EOFError as e:
        raise SourceError(f"{origin}: truncated archive ({e})") from e


def read_member(reader: BinaryIO, info: tarfile.TarInfo, origin: str) -> bytes:
    """All bytes of a tar member, or SourceError naming it if the archive ends early or its stream is corrupt."""
    try:
        data = reader.read()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise SourceError(f"{origin}: cannot read member {info.name!r} ({e})") from e
    if len(data) != info.size:
        raise SourceError(f"{origin}: member {info.name!r} is truncated ({len(data):,} of {info.size:,} bytes)")
    return data


def check_zip_member(zi: zipfile.ZipInfo, origin: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Check one zip member (name, no symlink, size and compression-ratio caps); return its clean name."""
    name = safe_name(zi.filename, origin)
    file_type = stat.S_IFMT(zi.external_attr >> 16)  # 0 when the zip records no type (Python's writestr)
    if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"{origin}: member {name!r} is a link or special file")
    if zi.file_size > limits.max_image_bytes:
        raise UnsafeArchiveError(f"{origin}: member {name!r} is {zi.file_size:,} bytes, over the cap")
    if zi.compress_size and zi.file_size / zi.compress_size > limits.max_zip_ratio:
        raise UnsafeArchiveError(f"{origin}: member {name!r} expands {zi.file_size / zi.compress_size:.0f}x "
                                 "(zip bomb?)")
    return name
