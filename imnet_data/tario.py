"""Deterministic, atomic file writing: tars with fixed headers (mtime, owner, mode) and JSON with sorted keys, so
the same content gives the same bytes, and a file appears under its final name only once complete (temp name +
rename).

Shared by the fake download (``imnet_data.fake``), the shard writer and its manifests: all promise
byte-identical output.
"""
from __future__ import annotations

import contextlib
import ctypes
import gzip
import io
import json
import os
import re
import secrets
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

# 2012-06-14 00:00:00 UTC, the devkit's date: any fixed value would do.
FIXED_MTIME = 1339632000
BLOCK = 512   # tar's unit: a header, and the padding of every member's data


def header_size(field: bytes) -> int:
    """A tar header's 12-byte size field: octal digits, or base-256 (high bit of the first byte set) for
    8 GiB and more; ValueError for anything else."""
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.strip(b"\0 ")
    return int(text, 8) if text else 0


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file's dirty pages to the disk, without waiting for them (Linux's
    ``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``): a big file written in one go is then on the disk when it
    is closed, not queued for its fsync, and the writer never blocks as ``fdatasync`` would. Nothing where the
    call is missing (the fsync before the rename still makes the file durable)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``sync_file_range`` (glibc), or None."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE = _sync_file_range()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int = FIXED_MTIME) -> None:
    """Append a regular file ``name`` holding ``data`` with fixed header fields."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """An in-memory tar of ``(name, data)`` members, in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            add_bytes(tar, name, data)
    return buf.getvalue()


TEMP_NAME = re.compile(r"(?P<final>.+)\.\d+-[0-9a-f]{8}\.partial")   # atomic_file's temp: <name>.<pid>-<hex>.partial


def temp_for(name: str) -> str | None:
    """The final name an :func:`atomic_file` temp file called ``name`` was written for; None if not one."""
    found = TEMP_NAME.fullmatch(name)
    return found["final"] if found else None


@contextlib.contextmanager
def atomic_file(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for writing; rename it to ``path`` on success, delete it on error.

    The temp name is ``<name>.<unique>.partial``: two writers of one file (a unit retried by a cluster while its
    first run still finishes, say) each write their own, and the last rename wins, never a mix of both.
    ``durable``: fsync the file before the rename (``False`` for a file whose reader checks it anyway: an fsync
    waits for the disk, tens of milliseconds on a busy one)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_tar(path: Path, compress: bool = False, level: int = 9) -> Iterator[tarfile.TarFile]:
    """A deterministic tar (``compress=True``: .tar.gz, gzip mtime 0, compression ``level``) written atomically to
    ``path``."""
    with atomic_file(path) as f:
        with contextlib.ExitStack() as stack:
            target: BinaryIO | gzip.GzipFile = f
            if compress:
                target = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0,
                                                               compresslevel=level))
            with tarfile.open(fileobj=target, mode="w", format=tarfile.GNU_FORMAT) as tar:
                yield tar


def json_bytes(data: object) -> bytes:
    """Deterministic JSON (sorted keys, one space of indent) and a newline, as bytes: what ``json.dumps(data,
    sort_keys=True, indent=1)`` gives, encoded a megabyte at a time, since ``dumps`` with an indent joins one string
    per token (a manifest of thousands of shards' histograms: millions of them, ten times its size)."""
    out, chunks, size = io.BytesIO(), [], 0
    for chunk in json.JSONEncoder(sort_keys=True, indent=1).iterencode(data):
        chunks.append(chunk)
        size += len(chunk)
        if size >= 1 << 20:
            out.write("".join(chunks).encode())
            chunks, size = [], 0
    out.write(("".join(chunks) + "\n").encode())
    return out.getvalue()


def write_json(path: Path, data: object) -> None:
    """:func:`json_bytes` of ``data``, written atomically."""
    with atomic_file(path) as f:
        f.write(json_bytes(data))
