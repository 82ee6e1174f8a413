"""The Hugging Face hub copy of ILSVRC2012 in the form its main branch holds (``--layout hf``):
``data/train_images_{0..4}.tar.gz``, ``data/val_images.tar.gz``, ``data/test_images.tar.gz``, each a gzipped tar
of flat JPEGs named ``<official stem>_<wnid>.JPEG`` (see :mod:`imnet_data.sources.hub`), also as the hub cache's
snapshot of symlinks into ``blobs/``.

Read in place, never extracted: each archive is one unit, its gzip stream read through once per pass (gzip has no
random access), so ``shard`` writes these shards by streaming (:mod:`imnet_data.shards.stream`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from imnet_data.sources.base import Entry, Sample, Source, SourceError, Unit, stem
from imnet_data.sources.hub import ORDER, official_name, snapshot
from imnet_data.sources.safety import iter_tar, read_member

ARCHIVE = re.compile(r"^(?:(train)_images_(\d+)|(val)_images|(test)_images)\.tar\.gz$")


def archives(folder: Path) -> dict[str, list[Path]]:
    """The hub archives in ``folder`` or its ``data/``, by split (train's in archive-number order)."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for where in (folder, folder / "data"):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            match = ARCHIVE.match(path.name)
            if match and path.is_file():   # a snapshot's symlink into blobs/ is followed
                split = match[1] or match[3] or match[4]
                found.setdefault(split, []).append((int(match[2] or 0), path))
    return {split: [p for _, p in sorted(paths)] for split, paths in found.items()}


class HubArchives(Source):
    """A folder (or hub cache repository) holding the hub's ``*_images*.tar.gz`` archives."""

    layout = "hf"
    about = "the Hugging Face hub copy's archives (data/train_images_0.tar.gz ..., val_images.tar.gz)"
    expected = ("train", "val")
    streams = True   # no random access: shard streams each archive (shards.stream)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder with at least one of the hub's image archives (itself, in ``data/``, or in the snapshot
        of ``refs/main``)."""
        return path.is_dir() and bool(archives(snapshot(path, "main")))

    @cached_property
    def found(self) -> dict[str, list[Path]]:
        """The archives by split."""
        return archives(snapshot(self.root, "main"))

    def splits(self) -> list[str]:
        """The splits with an archive, in train, val, test order."""
        return [s for s in ORDER if s in self.found]

    def home(self, split: str) -> str:
        """The split's (first) archive."""
        paths = self.found.get(split)
        return str(paths[0]) if paths else str(self.root / "data" / f"{split}_images.tar.gz")

    def labelled(self, split: str) -> bool:
        """Train and val carry labels in their names; test carries none."""
        return split != "test"

    def units(self, split: str) -> list[Unit]:
        """One unit per archive (a gzip stream is read through, never in pieces)."""
        if split not in self.found:
            raise SourceError(f"{self.root}: no {split} archive of the hub copy (have {self.splits()})")
        return [Unit(split, p.name, ("targz", str(p)), p.stat().st_size) for p in self.found[split]]

    def _members(self, unit: Unit, with_data: bool) -> Iterator[tuple[str, str | None, str, bytes | None, int]]:
        """``(official name, wnid, member, data or None, size)`` of every image of an archive, in order."""
        path = unit.ref[1]
        with open(path, "rb") as f:
            for info, reader in iter_tar(f, path):
                name, wnid = official_name(info.name, unit.split, f"{path}:{info.name}")
                data = read_member(reader, info, path) if with_data else None
                yield name, wnid, info.name, data, info.size

    def read(self, unit: Unit) -> Iterator[Sample]:
        """Every image of the archive, with its official name and the class its hub name carries."""
        for name, wnid, member, data, _ in self._members(unit, True):
            assert data is not None
            yield Sample(unit.split, stem(name), wnid, name, data, f"{unit.ref[1]}:{member}")

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """Every image's entry, the archive read through (no random access: ``("stream", archive, member,
        0, ordinal)``, what :mod:`imnet_data.shards.stream` matches when it streams the archive again)."""
        for i, (name, wnid, member, _, size) in enumerate(self._members(unit, False)):
            yield Entry(name, wnid, size, ("stream", unit.ref[1], member, 0, i))

    def stream(self, unit: Unit) -> Iterator[tuple[Entry, bytes]]:
        """Every image's entry (as :meth:`locate`) with its bytes, in one pass."""
        for i, (name, wnid, member, data, size) in enumerate(self._members(unit, True)):
            assert data is not None
            yield Entry(name, wnid, size, ("stream", unit.ref[1], member, 0, i)), data

    def unlabelled(self, split: str) -> str:
        """Only the test set is unlabelled."""
        return f"the hub copy's {split} images carry no class in their names"
