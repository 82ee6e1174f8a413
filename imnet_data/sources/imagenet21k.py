"""ImageNet-21k: ``fall11_whole.tar`` / ``winter21_whole.tar.gz``, a tar of ``<wnid>.tar`` inner tars holding
``<wnid>_<n>.JPEG`` (train only), or a folder where it was extracted (``<wnid>.tar`` files or ``<wnid>/`` folders).

An uncompressed archive is read like the official train tar: each inner tar is a unit streamed from its offset.
A gzipped one is too, through its gzip index (:mod:`imnet_data.sources.gzindex`, built once in ``index_home``);
without the ``[21k]`` extra it is a single unit that streams the outer tar and each inner tar in turn.
"""
from __future__ import annotations

import gzip
import os
import re
import sys
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from imnet_data import catalog
from imnet_data.sources.base import WNID, Entry, Sample, Source, SourceError, Unit, stem
from imnet_data.sources.folders import entries, file_locs, files_unit, read_files, regular_files
from imnet_data.sources.gzindex import Member, library, load_index, open_indexed, read_range, run_folder, runs
from imnet_data.sources.ilsvrc import index_tar, read_inner_tar, read_tar_bytes
from imnet_data.sources.safety import DEFAULT_LIMITS, UnsafeArchiveError, iter_tar, read_member, safe_name

ARCHIVES = ("winter21_whole.tar.gz", "fall11_whole.tar")
INNER = re.compile(r"^(?:[^/]+/)?(n\d{8})\.tar$")  # an optional top folder, as some repacks have
GZIP_MAGIC = b"\x1f\x8b"


def find_archive(path: Path) -> Path | None:
    """The 21k archive ``path`` names or holds, or None."""
    if path.is_file():
        return path if path.name in ARCHIVES else None
    return next((path / n for n in ARCHIVES if (path / n).is_file()), None)


def _is_extracted(path: Path) -> bool:
    """A folder of ``<wnid>.tar`` files, or of ``<wnid>/`` folders not all of ImageNet-1k's classes (those are a
    1k split's folder, the ``folders`` layout; both fit a mix, and detection then names both)."""
    with os.scandir(path) as it:
        found = [e for e in it if INNER.match(e.name) or (e.is_dir(follow_symlinks=False) and WNID.match(e.name))]
    return any(INNER.match(e.name) for e in found) or not {e.name for e in found} <= set(catalog.ilsvrc2012().wnids)


def _gzipped(path: Path) -> bool:
    """Whether the file starts as a gzip stream does."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def inner_wnid(name: str, origin: str) -> str:
    """The WNID of an outer member ``<wnid>.tar``, or SourceError naming it."""
    match = INNER.match(name)
    if not match:
        raise SourceError(f"{origin}: unexpected member {name!r} (expected <wnid>.tar)")
    return match.group(1)


def class_member(wnid: str, name: str, origin: str) -> str:
    """``name`` if the class tar of ``wnid`` may hold it (``<wnid>_<n>.JPEG`` at its top), else SourceError."""
    if "/" in name or not name.startswith(wnid + "_"):
        raise SourceError(f"{origin}: unexpected member {name!r} (expected {wnid}_<n>.JPEG)")
    return name


def class_samples(wnid: str, files: Iterable[tuple[str, bytes]], origin: str) -> Iterator[Sample]:
    """The samples of the class tar of ``wnid``, given its ``(name, bytes)``."""
    for name, data in files:
        yield Sample("train", stem(class_member(wnid, name, origin)), wnid, name, data, f"{origin}:{name}")


class ImageNet21k(Source):
    """The 21k archive (a file, or a folder holding it), or the folder it was extracted into."""

    layout = "imagenet21k"
    noted = False   # whether the note on the missing [21k] extra was printed
    about = "ImageNet-21k (fall11_whole.tar / winter21_whole.tar.gz, or its <wnid>.tar / <wnid>/ entries)"

    def home(self, split: str) -> str:
        """The archive, or the extracted folder."""
        return str(self.archive or self.root)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """The archive, a folder holding it, or a folder of ``<wnid>.tar`` / ``<wnid>/`` entries."""
        return find_archive(path) is not None or (path.is_dir() and _is_extracted(path))

    @cached_property
    def gz_files(self) -> dict[tuple[str, int], Any]:
        """The gzipped archives opened through their index, by path and process (a forked worker opens its own)."""
        return {}

    @cached_property
    def archive(self) -> Path | None:
        """The archive read, or None for an extracted folder."""
        return find_archive(self.root)

    def splits(self) -> list[str]:
        """Only train: ImageNet-21k has no val split."""
        return ["train"]

    def units(self, split: str) -> list[Unit]:
        """One unit per inner ``<wnid>.tar`` of a plain tar or per entry of an extracted folder; a gzipped
        archive is one stream unit (it cannot be read out of order)."""
        if split != "train":
            raise SourceError(f"{self.root}: ImageNet-21k has only a train split, not {split!r}")
        path = self.archive
        if path is None:
            return [self._extracted_unit(Path(e.path)) for e in entries(self.root)]
        if not _gzipped(path):
            return self._inner_units(path, "tar", [(ti.name, ti.offset_data, ti.size) for ti in index_tar(path)])
        return self.gzip_units(path, library())

    def gzip_units(self, path: Path, lib: Any | None) -> list[Unit]:
        """The units of the gzipped archive ``path``: one per inner tar through its index with ``lib``
        (rapidgzip), or one stream unit where ``lib`` is None (the ``[21k]`` extra is not installed)."""
        if lib is None:
            if not self.noted:   # once per run, though shard asks twice
                print(f"note: {path} is read as one stream by one process; install imnet-data[21k] to read it in "
                      f"parallel", file=sys.stderr)
                self.noted = True
            return [Unit("train", path.name, ("stream", str(path)), path.stat().st_size)]
        folder = self.index_home or run_folder()   # shard's DEST or --work; else this run's own temp folder
        where, members = load_index(path, folder, lib, refuse_stale=self.index_home is not None)
        return self._inner_units(path, f"gz:{where}", members)

    @staticmethod
    def _inner_units(path: Path, kind: str, members: list[Member]) -> list[Unit]:
        """One unit per inner ``<wnid>.tar`` (``name, offset, size``) of ``path``, by class."""
        units = []
        for name, offset, size in members:
            wnid = inner_wnid(name, str(path))
            if size > DEFAULT_LIMITS.max_inner_tar_bytes:
                raise UnsafeArchiveError(f"{path}: member {name!r} is over the inner-tar size cap")
            units.append(Unit("train", wnid, (kind, str(path), offset, size, f"{path}:{name}"), size))
        return sorted(units, key=lambda u: u.name)

    def _extracted_unit(self, path: Path) -> Unit:
        """The unit of one entry of an extracted folder: a ``<wnid>.tar`` file or a ``<wnid>/`` folder."""
        if path.is_dir() and WNID.match(path.name):
            unit = files_unit("train", path.name, path, regular_files(path))
            return Unit(unit.split, unit.name, ("folder", *unit.ref), unit.size)
        if not INNER.match(path.name):
            raise SourceError(f"{path}: unexpected entry (expected <wnid>.tar files or <wnid>/ folders)")
        size = path.stat().st_size
        return Unit("train", inner_wnid(path.name, str(path)), ("tar", str(path), 0, size, str(path)), size)

    def runs(self, units: Sequence[Unit], jobs: int) -> list[int] | None:
        """Class tars of the gzip read through its index: neighbours in the tar in one run
        (:func:`~imnet_data.sources.gzindex.runs`); anything else: None."""
        if not units or not all(u.ref[0].startswith("gz:") for u in units):
            return None
        return runs([(u.ref[2], u.ref[3]) for u in units], jobs)

    @property
    def streams(self) -> bool:   # type: ignore[override]
        """A gzipped archive is read unit by unit, never sample by sample: shard streams it (shards.stream)."""
        return self.archive is not None and _gzipped(self.archive)

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The images of a class folder, an inner class tar (plain, or in the gzip through its index), or the
        whole gzipped stream."""
        kind, *ref = unit.ref
        if kind == "folder":
            for name, data, path in read_files(*ref):
                yield Sample("train", stem(name), unit.name, name, data, path)
        elif kind == "tar":
            path, offset, size, origin = ref
            yield from class_samples(unit.name, read_inner_tar(Path(path), offset, size, origin), origin)
        elif kind.startswith("gz:"):
            path, offset, size, origin = ref
            data = read_range(self._opened(path, kind[3:]), offset, size, origin)
            yield from class_samples(unit.name, read_tar_bytes(data, origin), origin)
        else:
            yield from self._stream(Path(ref[0]))

    def stream(self, unit: Unit) -> Iterator[tuple[Entry, bytes]]:
        """Every image of a gzipped archive's unit with its entry (``("stream", archive, member, part,
        ordinal)``, ``part`` the inner tar's offset: what :mod:`imnet_data.shards.stream` matches)."""
        path = unit.ref[1]
        part = unit.ref[2] if len(unit.ref) > 2 else 0
        for i, sample in enumerate(self.read(unit)):
            member = sample.origin[len(path) + 1:]
            yield Entry(sample.name, sample.wnid, len(sample.data), ("stream", path, member, part, i)), sample.data

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """Class folders and class tars, from the folder listing or the tar headers (no image is read); a class
        tar in the gzip is read through."""
        kind, *ref = unit.ref
        if kind == "folder":
            for name, size, path in file_locs(*ref):
                yield Entry(name, unit.name, size, ("range", path, 0, size))
        elif kind == "tar":
            path, offset, size, origin = ref
            for ti in index_tar(Path(path), offset, size, origin, max_member=DEFAULT_LIMITS.max_image_bytes):
                name = class_member(unit.name, ti.name, origin)
                yield Entry(name, unit.name, ti.size, ("range", path, ti.offset_data, ti.size))
        elif kind.startswith("gz:"):
            yield from (entry for entry, _ in self.stream(unit))
        else:
            yield from super().locate(unit)

    def _opened(self, path: str, where: str) -> Any:
        """The gzipped archive opened through its index, once per process (reused by every unit it reads)."""
        key = (path, os.getpid())
        if key not in self.gz_files:
            self.gz_files[key] = open_indexed(Path(path), Path(where), library())
        return self.gz_files[key]

    @staticmethod
    def _stream(path: Path) -> Iterator[Sample]:
        """Every sample of a gzipped archive, inner tar after inner tar, in archive order."""
        try:
            with open(path, "rb") as f:
                for info, reader in iter_tar(f, str(path), max_member=DEFAULT_LIMITS.max_inner_tar_bytes):
                    wnid, origin = inner_wnid(info.name, str(path)), f"{path}:{info.name}"
                    yield from class_samples(wnid, ((safe_name(i.name, origin), read_member(r, i, origin))
                                                    for i, r in iter_tar(reader, origin)), origin)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            # the stream ended or broke while an image was read (iter_tar covers only the headers)
            raise SourceError(f"{path}: truncated or corrupt archive ({e})") from e
