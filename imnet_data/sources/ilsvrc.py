"""The official ILSVRC2012 archives, read in place: the train tar of 1000 ``<wnid>.tar`` inner tars, the flat
val tar, the devkit, and the optional bbox archives. Nothing is extracted: each inner tar is a unit that a
worker streams from its offset inside the outer tar.
"""
from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from functools import cached_property, partial
from pathlib import Path
from typing import IO

import numpy as np

from imnet_data.sources.base import Box, Entry, Sample, Source, SourceError, Unit, check_wnid, stem
from imnet_data.sources.boxes import load_voc_archive
from imnet_data.sources.devkit import ARCHIVE as DEVKIT_ARCHIVE, FOLDER as DEVKIT_FOLDER, Devkit, load as load_devkit
from imnet_data.sources.safety import (
    DEFAULT_LIMITS,
    UnsafeArchiveError,
    iter_tar,
    kind_of,
    read_member,
    safe_name,
    window,
)
from imnet_data.tario import BLOCK, header_size

TRAIN = "ILSVRC2012_img_train.tar"
VAL = "ILSVRC2012_img_val.tar"
BBOX = {"train": "ILSVRC2012_bbox_train_v2.tar.gz", "val": "ILSVRC2012_bbox_val_v3.tgz"}
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")
VAL_UNIT = 2000  # val members per unit: small enough to spread over workers, large enough to amortise


def index_tar(path: Path, offset: int = 0, size: int | None = None, origin: str = "",
              max_member: int | None = None) -> list[tarfile.TarInfo]:
    """The regular-file headers of an uncompressed tar, names checked and normalised (``safe_name``); reads
    headers only, seeking past the data (unbuffered, so no data is read ahead).

    ``offset``/``size`` select an inner tar stored in ``path`` (offsets in the result stay absolute). A member
    reaching past the tar's end raises: a cut-off download is found without reading it. A member over
    ``max_member`` bytes (when given) raises :class:`UnsafeArchiveError` before anything is read. Plain headers
    (what ImageNet's tars hold) are parsed directly; anything else (long names, pax, sparse) goes to tarfile.
    """
    with open(path, "rb", buffering=0) as f:
        end = offset + size if size is not None else os.fstat(f.fileno()).st_size
        return _indexed(partial(os.pread, f.fileno()), f, offset, end, origin or str(path), max_member)


def index_tar_bytes(data: bytes, origin: str, max_member: int | None = None) -> list[tarfile.TarInfo]:
    """:func:`index_tar` of a tar held in memory (a class tar read out of a gzip): offsets into ``data``."""
    return _indexed(lambda n, pos: data[pos:pos + n], io.BytesIO(data), 0, len(data), origin, max_member)


def _indexed(pread: Callable[[int, int], bytes], f: IO[bytes], offset: int, end: int, origin: str,
             max_member: int | None) -> list[tarfile.TarInfo]:
    """The checked regular-file headers of the tar in ``[offset, end)`` of ``f`` (``pread(n, at)``: ``n`` bytes
    of it at ``at``), as :func:`index_tar` says."""
    try:
        plain = _plain_headers(pread, offset, end)
        if plain is None:
            f.seek(offset)
            with tarfile.open(fileobj=f, mode="r:") as tf:
                plain = list(tf), tf.offset
        found, stop = plain
        _check_stop(pread, stop, offset, end)
    except tarfile.TarError as e:
        raise SourceError(f"{origin}: not a readable tar archive ({e})") from e
    files = [ti for ti in found if _checked(ti, origin, end, max_member)]
    if not files:   # tarfile reads a non-tar inside another tar as an empty one: never accept that silently
        raise SourceError(f"{origin}: holds no files ({_what_it_is(pread(BLOCK, offset))})")
    return files


def _check_stop(pread: Callable[[int, int], bytes], stop: int, offset: int, end: int) -> None:
    """ReadError when a listing stopped at ``stop`` (absolute) after its first header and before the tar in
    ``[offset, end)`` ended: a damaged or cut-off header there, after which tarfile lists nothing more and says
    nothing (an end-of-archive block of zeros, or the end, is a whole tar; a tar that lists nothing is named by
    the caller, with what it seems to be)."""
    rest = pread(min(BLOCK, end - stop), stop) if offset < stop < end else b""
    if rest.strip(b"\0"):
        raise tarfile.ReadError(f"the header at byte {stop - offset:,} is damaged or cut off, so the members from "
                                "there on cannot be listed")


def _what_it_is(head: bytes) -> str:
    """A hint at what a tar holding no files really is, from its first bytes ``head``."""
    if head[:2] == b"\x1f\x8b":
        return "it is gzip-compressed: a .tar.gz named .tar?"
    if head[:3] == b"\xff\xd8\xff":
        return "it is a JPEG image, not a tar"
    if not head.strip(b"\0"):
        return "an empty tar"
    return f"not a tar; it starts with {head[:16]!r}"


def _checked(ti: tarfile.TarInfo, origin: str, end: int, max_member: int | None) -> bool:
    """Whether ``ti`` is a file to keep (False for a folder); raises for links, special files, oversized or
    cut-off members. Normalises ``ti.name``."""
    ti.name = safe_name(ti.name, origin)
    if ti.isdir():
        return False
    if not ti.isreg():
        raise UnsafeArchiveError(f"{origin}: member {ti.name!r} is a {kind_of(ti)}; a member that is a link or "
                                 "special file is refused")
    if max_member is not None and ti.size > max_member:
        raise UnsafeArchiveError(f"{origin}: member {ti.name!r} is {ti.size:,} bytes, over the "
                                 f"{max_member:,}-byte cap")
    if ti.offset_data + ti.size > end:
        raise SourceError(f"{origin}: member {ti.name!r} is cut off (needs {ti.size:,} bytes, "
                          f"{max(0, end - ti.offset_data):,} left): truncated download?")
    return True


PLAIN_TYPES = {b"0"[0]: tarfile.REGTYPE, 0: tarfile.REGTYPE, b"5"[0]: tarfile.DIRTYPE}
ZERO_BLOCK = bytes(BLOCK)   # the end-of-archive marker's block
CHECK_ROWS = 4096           # headers whose checksums are checked at once (2 MiB of them)


def _plain_headers(pread: Callable[[int, int], bytes], offset: int,
                   end: int) -> tuple[list[tarfile.TarInfo], int] | None:
    """The members of a tar made only of plain headers (regular files and folders, names under 100 bytes, no
    ustar prefix), parsed with one ``pread(BLOCK, at)`` each, and where the listing stopped; None where a header
    is of another kind (or has a bad checksum), so the caller lets tarfile read the whole tar. The checksums are
    checked all at once at the end, or every :data:`CHECK_ROWS` (:func:`_checksums_hold`): summed one header at a
    time they were a fifth of a listing's time."""
    out, heads, pos = [], [], offset
    while pos + BLOCK <= end:
        buf = pread(BLOCK, pos)
        if len(buf) < BLOCK or buf == ZERO_BLOCK:
            break
        kind = PLAIN_TYPES.get(buf[156])
        try:
            size = header_size(buf[124:136])   # base-256 too: a huge member is named below, not by tarfile
        except ValueError:
            return None
        if kind is None or buf[345]:
            return None
        ti = tarfile.TarInfo(buf[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
        ti.type, ti.size, ti.offset, ti.offset_data = kind, size, pos, pos + BLOCK
        out.append(ti)
        heads.append(buf)
        if len(heads) == CHECK_ROWS:
            if not _checksums_hold(heads):
                return None
            heads.clear()
        pos += BLOCK + -(-size // BLOCK) * BLOCK
    return (out, pos) if _checksums_hold(heads) else None


def _checksums_hold(heads: list[bytes]) -> bool:
    """Whether every header in ``heads`` holds its checksum (the sum of its bytes, its checksum field counted as
    8 spaces) as octal in that field; False also for a field that is not octal."""
    if not heads:
        return True
    try:
        stored = [int(h[148:156].strip(b"\0 ") or b"0", 8) for h in heads]
    except ValueError:
        return False
    blocks = np.frombuffer(b"".join(heads), dtype=np.uint8).reshape(len(heads), BLOCK)
    sums = blocks.sum(axis=1, dtype=np.int64) - blocks[:, 148:156].sum(axis=1, dtype=np.int64) + 8 * ord(" ")
    return bool(np.array_equal(sums, np.array(stored, dtype=np.int64)))


def read_inner_tar(path: Path, offset: int, size: int, origin: str,
                   part: tuple[int, int] = (0, 1)) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of every file in the inner tar stored at ``offset`` of ``path``: its headers are indexed
    first (names, types and the per-member cap checked before any data is read), then each member is read with
    one seek and one read. ``part=(i, k)``: only the ``i``-th of ``k`` contiguous slices of the members."""
    members = index_tar(path, offset, size, origin, max_member=DEFAULT_LIMITS.max_image_bytes)
    if any(ti.issparse() for ti in members):   # never in the real set: let tarfile reassemble the holes
        with open(path, "rb") as f:
            yield from _slice(_sparse_files(window(f, offset, size), origin), part)
        return
    with open(path, "rb", buffering=0) as f:
        for ti in _slice(members, part):
            f.seek(ti.offset_data)
            data = f.read(ti.size)
            if len(data) != ti.size:
                raise SourceError(f"{origin}: member {ti.name!r} is truncated ({len(data):,} of {ti.size:,} bytes)")
            yield ti.name, data


def read_tar_bytes(data: bytes, origin: str) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of every file of the tar ``data`` (a class tar read out of a gzip), checked as
    :func:`read_inner_tar` checks them before any is yielded; each one a slice of ``data``, one at a time.
    tarfile's stream reader copied every image twice, and every image was held twice: on the bench's fake
    (``tools/bench_gzip.py``, 313 MiB of images) it parsed in 0.23-0.25 CPU s, this in 0.06 (decoding: 1.3-1.6)."""
    members = index_tar_bytes(data, origin, max_member=DEFAULT_LIMITS.max_image_bytes)
    if any(ti.issparse() for ti in members):
        yield from _sparse_files(io.BytesIO(data), origin)
        return
    for ti in members:
        yield ti.name, data[ti.offset_data:ti.offset_data + ti.size]


def _sparse_files(f: IO[bytes], origin: str) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of every file of the tar ``f``, read by tarfile (which reassembles sparse members)."""
    return [(safe_name(info.name, origin), read_member(reader, info, origin)) for info, reader in iter_tar(f, origin)]


def _slice(items: list, part: tuple[int, int]) -> list:
    """The ``i``-th of ``k`` contiguous, near-equal slices of ``items`` (``part=(i, k)``)."""
    i, k = part
    return items[len(items) * i // k:len(items) * (i + 1) // k]


class IlsvrcArchives(Source):
    """A folder holding the official archives (any of train / val; the devkit labels val)."""

    layout = "ilsvrc2012"
    about = "the official archives (ILSVRC2012_img_train.tar / _val.tar + devkit)"
    expected = ("train", "val")

    def home(self, split: str) -> str:
        """The split's official archive."""
        return str(self.root / {"train": TRAIN, "val": VAL}[split])

    def missing(self, split: str) -> str:
        """The archive looked for, and files named like it (``ILSVRC2012_img_train (1).tar``, a browser's copy)."""
        name = {"train": TRAIN, "val": VAL}[split]
        alike = sorted(p.name for p in self.root.glob(f"ILSVRC2012_img_{split}*") if p.name != name)
        return (f"{self.root}: no {name}, so no {split} split" +
                (f"; found {', '.join(repr(a) for a in alike)}: rename it to {name}?" if alike else ""))

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder with the official train or val tar."""
        return path.is_dir() and any((path / n).is_file() for n in (TRAIN, VAL))

    def splits(self) -> list[str]:
        """The splits whose official archive is present."""
        return [s for s, name in (("train", TRAIN), ("val", VAL)) if (self.root / name).is_file()]

    @cached_property
    def devkit(self) -> Devkit | None:
        """The devkit in the folder, or None."""
        return load_devkit(self.root)

    @cached_property
    def _boxes(self) -> dict[str, dict[str, tuple[Box, ...]]]:
        return {split: load_voc_archive(self.root / name) if (self.root / name).is_file() else {}
                for split, name in BBOX.items()}

    def boxes(self, split: str, key: str) -> tuple[Box, ...]:
        """The bbox-archive boxes of one image (empty where the archive is absent or has none)."""
        return self._boxes[split].get(key, ())

    def units(self, split: str) -> list[Unit]:
        """train: one unit per inner ``<wnid>.tar`` (checked, capped, by WNID); val: slices of the val tar's
        members by name."""
        if split == "train":
            path = self.root / TRAIN
            units = []
            for ti in index_tar(path):
                if not ti.name.endswith(".tar") or "/" in ti.name:
                    raise SourceError(f"{path}: unexpected member {ti.name!r} (expected <wnid>.tar)")
                wnid = check_wnid(ti.name[:-4], f"{path}:{ti.name}")
                if ti.size > DEFAULT_LIMITS.max_inner_tar_bytes:
                    raise UnsafeArchiveError(f"{path}: member {ti.name!r} is over the inner-tar size cap")
                units.append(Unit("train", wnid, (str(path), ti.offset_data, ti.size), ti.size))
            return sorted(units, key=lambda u: u.name)
        if split == "val":
            path = self.root / VAL
            members = []
            for ti in index_tar(path):
                if not VAL_NAME.match(ti.name):
                    raise SourceError(f"{path}: unexpected member {ti.name!r} (expected ILSVRC2012_val_%08d.JPEG)")
                if ti.size > DEFAULT_LIMITS.max_image_bytes:
                    raise UnsafeArchiveError(f"{path}: member {ti.name!r} is over the image size cap")
                members.append((ti.name, ti.offset_data, ti.size))
            members.sort()
            return [Unit("val", f"val[{i}:{i + len(chunk)}]", (str(path), tuple(chunk)), sum(m[2] for m in chunk))
                    for i in range(0, len(members), VAL_UNIT) for chunk in [members[i:i + VAL_UNIT]]]
        raise SourceError(f"{self.root}: no split {split!r} in the official archives (have {self.splits()})")

    def pieces(self, unit: Unit, parts: int) -> list[Unit]:
        """``unit`` cut into up to ``parts`` units that together read exactly its members, in order (a class tar:
        contiguous slices of its members, found when read; val: slices of its member list)."""
        if parts <= 1:
            return [unit]
        if unit.split == "train":
            path, offset, size, (i, k) = (*unit.ref, (0, 1))[:4]
            if k != 1:
                return [unit]
            return [Unit("train", unit.name, (path, offset, size, (j, parts)), unit.size // parts)
                    for j in range(parts)]
        path, members = unit.ref
        start = int(unit.name[4:].split(":")[0])
        out = []
        for j in range(parts):
            a, b = len(members) * j // parts, len(members) * (j + 1) // parts
            if a < b:
                chunk = members[a:b]
                out.append(Unit("val", f"val[{start + a}:{start + b}]", (path, chunk), sum(m[2] for m in chunk)))
        return out

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The images of an inner class tar (or a slice of it) or of a val slice, with their bbox-archive
        boxes; val labelled by the devkit."""
        if unit.split == "train":
            path, offset, size, part = (*unit.ref, (0, 1))[:4]
            origin = f"{path}:{unit.name}.tar"
            for name, data in read_inner_tar(Path(path), offset, size, origin, part):
                key = stem(self._train_member(unit, name, origin))
                yield Sample("train", key, unit.name, name, data, f"{origin}:{name}", self.boxes("train", key))
            return
        path, members = unit.ref
        with open(path, "rb") as f:
            for name, offset, size in members:
                origin = f"{path}:{name}"
                f.seek(offset)
                data = f.read(size)
                if len(data) != size:
                    raise SourceError(f"{origin}: truncated ({len(data):,} of {size:,} bytes)")
                key = stem(name)
                yield Sample("val", key, self._val_wnid(name, origin), name, data, origin, self.boxes("val", key))

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """A class tar's headers (seeking past the data), or the val members indexed by :meth:`units`."""
        boxes = self._boxes[unit.split]   # looked up only where a bbox archive is there
        if unit.split == "train":
            path, offset, size, part = (*unit.ref, (0, 1))[:4]
            origin = f"{path}:{unit.name}.tar"
            for ti in _slice(index_tar(Path(path), offset, size, origin,
                                                    max_member=DEFAULT_LIMITS.max_image_bytes), part):
                if ti.issparse():
                    raise SourceError(f"{origin}: member {ti.name!r} is a sparse file; extract the class tar")
                name = self._train_member(unit, ti.name, origin)
                yield Entry(name, unit.name, ti.size, ("range", path, ti.offset_data, ti.size),
                            boxes.get(stem(name), ()) if boxes else ())
            return
        path, members = unit.ref
        for name, offset, size in members:
            origin = f"{path}:{name}"
            yield Entry(name, self._val_wnid(name, origin), size, ("range", path, offset, size),
                        boxes.get(stem(name), ()) if boxes else ())

    @staticmethod
    def _train_member(unit: Unit, name: str, origin: str) -> str:
        """``name`` if the class tar of ``unit`` may hold it (``<wnid>_<n>.JPEG`` at the top), else SourceError."""
        if "/" in name or not name.startswith(unit.name + "_"):
            raise SourceError(f"{origin}: unexpected member {name!r} (expected {unit.name}_<n>.JPEG)")
        return name

    def unlabelled(self, split: str) -> str:
        """The val tar carries no labels: the devkit beside it does."""
        return (f"the val tar {VAL} needs the devkit {DEVKIT_ARCHIVE} (or its extracted {DEVKIT_FOLDER}/) beside "
                f"it in {self.root}")

    def _val_wnid(self, name: str, origin: str) -> str | None:
        """The devkit label of a val member (None without a devkit)."""
        number = int(VAL_NAME.match(name).group(1))  # type: ignore[union-attr]  # checked in units()
        return self.devkit.val_wnid(number, origin) if self.devkit else None
