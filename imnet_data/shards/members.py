"""Reading a shard tar's members safely: what ``verify``, ``preview`` and the loader (a shard without ``.idx``)
walk. A shard is untrusted input like any archive: before tarfile parses it, its header blocks are walked (no
data read) and links, special files, extended headers over :data:`EXTENDED_CAP` and members claiming more bytes
than the file holds are refused; each member's name must be ``<key>.<ext>`` and its size under its cap. Every
refusal is a :class:`ShardTarError` naming the shard and the member.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

from imnet_data.sources.safety import DEFAULT_LIMITS
from imnet_data.tario import BLOCK, header_size

EXTENDED_CAP = 64 << 10           # bytes of a pax / GNU long-name header: tarfile reads them into memory
CAPS = {"cls": 64, "json": 1 << 20}   # bytes per member by extension; anything else: the image cap
REGULAR, FOLDER, EXTENDED = (b"0", b"\0", b"7"), b"5", (b"x", b"g", b"L", b"K")
Group = dict[str, tarfile.TarInfo]


class ShardTarError(ValueError):
    """A shard tar that must not be read further; the message names the shard and the member."""


def check_headers(path: Path) -> None:
    """Walk the header blocks of ``path`` and refuse what must not reach tarfile (see the module doc)."""
    headers(path)


def headers(path: Path) -> tuple[list[tuple[str, bytes, int, int]], int]:
    """The members of ``path`` as ``(name, type, data offset, size)`` from its header blocks (no data read),
    and where the first zero block is; refuses what :func:`check_headers` refuses. An extended header's member
    is listed under the plain header's name (readers that need the long name use tarfile)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise ShardTarError(f"{path}: cannot open ({e.strerror})") from e
    found: list[tuple[str, bytes, int, int]] = []
    try:
        end, pos = os.fstat(fd).st_size, 0
        while pos + BLOCK <= end:
            head = os.pread(fd, BLOCK, pos)
            if not head.strip(b"\0"):
                return found, pos
            name = head[:100].split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            try:
                size = header_size(head[124:136])
            except ValueError:
                raise ShardTarError(f"{path}: not a tar (no valid header at byte {pos:,})") from None
            kind = head[156:157]
            if kind in EXTENDED and size > EXTENDED_CAP:
                raise ShardTarError(f"{path}: member {name!r}: an extended header of {size:,} bytes; refused")
            if kind not in (*REGULAR, FOLDER, *EXTENDED):
                raise ShardTarError(f"{path}: member {name!r} is a link or special file (type {kind!r}); refused")
            if pos + BLOCK + size > end:
                raise ShardTarError(f"{path}: member {name!r} claims {size:,} bytes, past the end of the file "
                                    "(cut off, or not a shard)")
            found.append((name, kind, pos + BLOCK, size))
            pos += BLOCK + -(-size // BLOCK) * BLOCK
        return found, pos
    finally:
        os.close(fd)


def member_key(path: Path, info: tarfile.TarInfo) -> tuple[str, str]:
    """``(key, ext)`` of a regular member named ``<key>.<ext>``, under its size cap; else ShardTarError."""
    name = info.name
    key, _, ext = name.partition(".")
    if not (key and ext and name.isprintable() and not any(c.isspace() for c in name)
            and not name.startswith("/") and ".." not in name.split("/")):
        raise ShardTarError(f"{path}: member {name!r} is not named <key>.<ext>; refused")
    cap = CAPS.get(ext, DEFAULT_LIMITS.max_image_bytes)
    if info.size > cap:
        raise ShardTarError(f"{path}: member {name!r} is {info.size:,} bytes, over the {cap:,}-byte cap")
    return key, ext


def samples(path: Path, tar: tarfile.TarFile) -> Iterator[tuple[str, Group]]:
    """``(key, {ext: member})`` of every sample of the open shard ``tar``, in order (consecutive members with
    one key); a member repeating an extension of its sample raises."""
    key = ""   # no sample yet (every member's key is non-empty)
    group: Group = {}
    for info in tar:
        if info.isdir():
            continue
        k, ext = member_key(path, info)
        if k != key and group:
            yield key, group
            group = {}
        if ext in group:
            raise ShardTarError(f"{path}: member {info.name!r} repeats .{ext} of sample {k}")
        key, group[ext] = k, info
    if group:
        yield key, group


def open_shard(path: Path) -> tarfile.TarFile:
    """The shard opened for reading after :func:`check_headers`; ShardTarError when it is not a tar."""
    check_headers(path)
    try:
        return tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as e:
        raise ShardTarError(f"{path}: not a readable tar ({e})") from e


def read(tar: tarfile.TarFile, group: Group, ext: str) -> bytes:
    """The bytes of member ``<key>.<ext>`` (empty when absent)."""
    f = tar.extractfile(group[ext]) if ext in group else None
    return f.read() if f is not None else b""


def index_row(key: str, group: Group) -> tuple[str, list[tuple[str, int, int]]]:
    """A sample's DALI index row: ``(key, [(ext, data offset, size), ...])``."""
    return key, [(ext, i.offset_data, i.size) for ext, i in group.items()]


def index_rows(path: Path) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """The DALI index rows of a shard (:func:`index_row` of every sample) from its tar headers, for a shard that
    came without ``.idx`` and for ``verify`` to check the one it came with."""
    with open_shard(path) as tar:
        try:
            return [index_row(key, group) for key, group in samples(path, tar)]
        except tarfile.TarError as e:
            raise ShardTarError(f"{path}: corrupt tar ({e})") from e
