"""Reading untrusted archives safely: member names, types and sizes are checked before any byte is used.

Refused: absolute paths, ``..`` components, links, devices, FIFOs, members over the size cap, archives larger
than what they really are (a devkit of gigabytes), more decompressed bytes than the total cap (gzip/zip bombs,
counted on the decompressed stream itself, headers included), and zip entries that overlap or share their
compressed data (the "overlapping kernel" zip bomb). Each kind of archive has caps that fit the real file
(:data:`DEVKIT_LIMITS`, :data:`BBOX_LIMITS`, :data:`TINY_LIMITS`,
:data:`SKETCH_LIMITS`). Every refusal names the archive and the member.
"""
from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from imnet_data.sources.base import SourceError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MiB = 1 << 20
GiB = 1 << 30


class UnsafeArchiveError(SourceError):
    """An archive member that must not be read or written (traversal, link, device, bomb)."""


@dataclass(frozen=True)
class Limits:
    """Caps against hostile archives. The real set's largest image is ~15 MB and largest class tar ~250 MB;
    ``max_image_bytes`` caps any one member, ``max_total_bytes`` what a compressed archive may expand to,
    ``max_archive_bytes`` the archive file itself (None: no cap)."""

    max_image_bytes: int = 256 * MiB
    max_inner_tar_bytes: int = 64 * GiB
    max_total_bytes: int = 4096 * GiB
    max_zip_ratio: int = 200
    max_archive_bytes: int | None = None


DEFAULT_LIMITS = Limits()
# the real devkit is 2.5 MB (meta.mat, the ground truth, MATLAB code); its members are a few MB at most
DEVKIT_LIMITS = Limits(max_image_bytes=32 * MiB, max_total_bytes=64 * MiB, max_archive_bytes=64 * MiB)
# the real bbox archives: 544,546 (train) and 50,000 (val) XML files of ~1 KB, 20 MB and 2 MB gzipped
BBOX_LIMITS = Limits(max_image_bytes=1 * MiB, max_total_bytes=2 * GiB, max_archive_bytes=256 * MiB)
# the real tiny-imagenet-200.zip: 237 MB, 120,000 JPEGs of 64x64 pixels and the annotation files
TINY_LIMITS = Limits(max_image_bytes=16 * MiB, max_total_bytes=2 * GiB, max_archive_bytes=1 * GiB)
# the real ImageNet-Sketch.zip: 7.8 GB, 50,889 sketches (8.4 GB extracted), the largest a few tens of MB
SKETCH_LIMITS = Limits(max_image_bytes=64 * MiB, max_total_bytes=16 * GiB, max_archive_bytes=16 * GiB)
ZIP_LIMITS = {"ImageNet-Sketch.zip": SKETCH_LIMITS}   # a zip by its name; any other: TINY_LIMITS


def safe_name(name: str, origin: str) -> str:
    """A member name as a clean relative POSIX path (empty and ``.`` parts dropped, as ``PurePosixPath`` does),
    or :class:`UnsafeArchiveError`."""
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"{origin}: member name {name!r} is empty or has NUL/backslash characters")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"{origin}: member {name!r} has an absolute path")
    if "/" not in name and name not in (".", ".."):   # the common case: a plain file name
        return name
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"{origin}: member {name!r} climbs out with '..'")
    return "/".join(p for p in parts if p not in ("", ".")) or "."


def kind_of(ti: tarfile.TarInfo) -> str:
    """What a tar member that is no regular file or folder is, for messages: ``symlink``, ``hard link``..."""
    return ("symlink" if ti.issym() else "hard link" if ti.islnk() else "device" if ti.isdev()
            else "FIFO" if ti.isfifo() else "special file")


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``offset`` of an open file (an inner tar inside the outer tar)."""

    def __init__(self, f: io.BufferedReader, offset: int, size: int) -> None:
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

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b)
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(view[:n])
        self._pos += got
        return got


def window(f: io.BufferedReader, offset: int, size: int) -> io.BufferedReader:
    """A buffered read-only view of part of ``f``."""
    return io.BufferedReader(_Window(f, offset, size), buffer_size=4 * MiB)


class _Capped(io.RawIOBase):
    """A read-only stream of at most ``limit`` bytes: reading past it raises UnsafeArchiveError (a compressed
    archive's expansion cap, counted on what decompression really produces)."""

    def __init__(self, f: io.BufferedIOBase, limit: int, origin: str) -> None:
        self._f, self._left, self._limit, self._origin = f, limit, limit, origin

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        n = self._f.readinto(b)
        self._left -= n
        if self._left < 0:
            raise UnsafeArchiveError(f"{self._origin}: expands past {self._limit:,} bytes; refused (a bomb?)")
        return n


DECOMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError)


def decompressed(fileobj: IO[bytes], origin: str, limits: Limits) -> io.BufferedReader:
    """``fileobj`` decompressed when it is gzip, bzip2 or xz (told by its first bytes), capped at
    ``limits.max_total_bytes`` of output."""
    if isinstance(fileobj, io.BufferedReader):   # an open file, a window, a tar member's reader
        buffered = fileobj
    else:
        buffered = io.BufferedReader(fileobj)
    magic = buffered.peek(6)[:6]
    stream: io.BufferedIOBase = buffered
    if magic[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=buffered)
    elif magic[:3] == b"BZh":
        stream = bz2.BZ2File(buffered)
    elif magic == b"\xfd7zXZ\x00":
        stream = lzma.LZMAFile(buffered)
    return io.BufferedReader(_Capped(stream, limits.max_total_bytes, origin), buffer_size=1 * MiB)


def check_archive_size(path: Path, limits: Limits) -> None:
    """UnsafeArchiveError naming ``path`` when the archive file is larger than its kind ever is."""
    size = path.stat().st_size
    if limits.max_archive_bytes is not None and size > limits.max_archive_bytes:
        raise UnsafeArchiveError(f"{path}: {size:,} bytes, over the {limits.max_archive_bytes:,}-byte cap for "
                                 "this kind of archive (the real one is far smaller); refused")


def tar_members(path: Path, limits: Limits) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    """:func:`iter_tar` of the archive file at ``path``, refused unread when the file is over
    ``limits.max_archive_bytes`` (:func:`check_archive_size`)."""
    check_archive_size(path, limits)
    with open(path, "rb") as f:
        yield from iter_tar(f, str(path), limits)


def iter_tar(fileobj: IO[bytes], origin: str, limits: Limits = DEFAULT_LIMITS,
             max_member: int | None = None) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    """Stream a tar's regular files as ``(info, reader)`` after checking each member; directories are skipped.

    ``fileobj`` may be compressed (gzip/bz2/xz are detected); the decompressed stream is capped at
    ``limits.max_total_bytes`` (headers, padding and extended headers included), so that a small compressed
    archive cannot expand without bound.
    """
    cap = limits.max_image_bytes if max_member is None else max_member
    try:
        with tarfile.open(fileobj=decompressed(fileobj, origin, limits), mode="r|") as tf:
            for ti in tf:
                name = safe_name(ti.name, origin)
                if ti.isdir():
                    continue
                if not ti.isreg():
                    raise UnsafeArchiveError(f"{origin}: member {name!r} is a {kind_of(ti)}; links and devices "
                                             "are refused")
                if ti.size > cap:
                    raise UnsafeArchiveError(f"{origin}: member {name!r} is {ti.size:,} bytes, over the "
                                             f"{cap:,}-byte cap")
                reader = tf.extractfile(ti)
                assert reader is not None  # a regular file always has a reader
                yield ti, reader
    except tarfile.TarError as e:
        raise SourceError(f"{origin}: not a readable tar archive ({e})") from e
    except DECOMPRESSION_ERRORS as e:
        raise SourceError(f"{origin}: truncated or corrupt archive ({e})") from e


def read_member(reader: IO[bytes], info: tarfile.TarInfo, origin: str) -> bytes:
    """All bytes of a tar member, or SourceError naming it if the archive ends early or its stream is corrupt."""
    try:
        data = reader.read()
    except (tarfile.TarError, *DECOMPRESSION_ERRORS) as e:
        raise SourceError(f"{origin}: cannot read member {info.name!r} ({e})") from e
    if len(data) != info.size:
        raise SourceError(f"{origin}: member {info.name!r} is truncated ({len(data):,} of {info.size:,} bytes)")
    return data


def check_zip(zf: zipfile.ZipFile, origin: str, limits: Limits = TINY_LIMITS) -> None:
    """The whole zip before any member is read: each member checked, their total size under the cap, and no two
    entries overlapping or sharing compressed data (each local header plus its data must end before the next
    entry starts: the central directory of an "overlapping kernel" bomb lies about this)."""
    members = zf.infolist()
    total = 0
    for zi in members:
        check_zip_member(zi, origin, limits)
        total += zi.file_size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(f"{origin}: members add up to more than {limits.max_total_bytes:,} bytes; refused")
    ordered = sorted(members, key=lambda zi: zi.header_offset)
    for a, b in itertools.pairwise(ordered):
        if a.header_offset + 30 + len(raw_zip_name(a)) + a.compress_size > b.header_offset:
            raise UnsafeArchiveError(f"{origin}: members {a.filename!r} and {b.filename!r} overlap in the archive "
                                     "(a zip bomb); refused")


def raw_zip_name(zi: zipfile.ZipInfo) -> bytes:
    """A member's name as the archive stores it (UTF-8 when its flag says so, else code page 437)."""
    return zi.orig_filename.encode("utf-8" if zi.flag_bits & 0x800 else "cp437", "replace")


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
