"""Tiny ImageNet: ``tiny-imagenet-200.zip`` (a file, or a folder holding it) or the extracted
``tiny-imagenet-200/`` folder: ``train/<wnid>/images/*.JPEG`` with ``train/<wnid>/<wnid>_boxes.txt``,
``val/images/*.JPEG`` with ``val/val_annotations.txt`` (label and box), ``wnids.txt``, ``words.txt``.
``test/`` carries no labels and is not read.

Zip members are read in place; every member is checked (name, type, size, compression ratio) before use.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from imnet_data.sources.access import open_zip
from imnet_data.sources.base import Box, Entry, Sample, Source, SourceError, Unit, check_wnid, stem
from imnet_data.sources.folders import entries, read_files
from imnet_data.sources.ilsvrc import VAL_UNIT
from imnet_data.sources.safety import safe_name

ZIP = "tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
TRAIN_IMAGE = re.compile(r"^train/(n\d{8})/images/[^/]+$")
VAL_IMAGE = re.compile(r"^val/images/[^/]+$")
VAL_ANNOTATIONS = "val/val_annotations.txt"


def find(path: Path) -> Path | None:
    """The zip or extracted folder that ``path`` is or holds, or None."""
    for candidate in (path, path / ZIP, path / FOLDER):
        if candidate.name == ZIP and candidate.is_file():
            return candidate
        if (candidate / "wnids.txt").is_file() and any((candidate / s).is_dir() for s in ("train", "val")):
            return candidate
    return None


def parse_annotations(data: bytes, origin: str, wnid: str | None = None) -> dict[str, Box]:
    """File name -> box of ``<wnid>_boxes.txt`` (rows ``file x0 y0 x1 y1``, ``wnid`` given) or of
    ``val_annotations.txt`` (rows ``file wnid x0 y0 x1 y1``), tab-separated."""
    width = 5 if wnid else 6
    out = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        fields, where = line.split("\t"), f"{origin}:{number}"
        if not line.strip():
            continue
        if len(fields) != width:
            raise SourceError(f"{where}: expected {width} tab-separated fields (file, {'' if wnid else 'wnid, '}"
                              f"x0, y0, x1, y1), got {line!r}")
        label = wnid or check_wnid(fields[1], where)
        try:
            out[fields[0]] = Box(label, *map(int, fields[-4:]))
        except ValueError as e:
            raise SourceError(f"{where}: a coordinate is not an integer in {line!r}") from e
    return out


class TinyImageNet(Source):
    """Tiny ImageNet's 200 classes: train (500 per class) and val (10,000, labelled by val_annotations.txt)."""

    layout = "tiny"
    about = "Tiny ImageNet (tiny-imagenet-200.zip or its folder)"
    expected = ("train", "val")

    def home(self, split: str) -> str:
        """The split's folder in the zip (``ZIP:tiny-imagenet-200/<split>``) or on disk."""
        return f"{self.base}:{FOLDER}/{split}" if self.base.is_file() else str(self.base / split)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """``tiny-imagenet-200.zip`` or a folder with ``wnids.txt`` and ``train/`` or ``val/`` (the path, or
        inside it)."""
        return find(path) is not None

    @cached_property
    def base(self) -> Path:
        """The zip or the extracted folder."""
        found = find(self.root)
        if found is None:
            raise SourceError(f"{self.root}: no {ZIP}, nor a {FOLDER}/ folder with wnids.txt and train/ or val/")
        return found

    def __getstate__(self) -> dict:
        """What a worker receives: not the file index, which is large and only :meth:`units` uses."""
        return {k: v for k, v in self.__dict__.items() if k != "files"}

    @cached_property
    def files(self) -> dict[str, int]:
        """Relative name (``train/<wnid>/images/...``) -> size of every file (``test/`` left out of folders)."""
        return self._zip_index() if self.base.is_file() else dict(self._walk(""))

    def _zip_index(self) -> dict[str, int]:
        """Zip members under ``tiny-imagenet-200/`` (:func:`open_zip` has checked every one), by clean name."""
        out = {}
        for zi in open_zip(self.base).infolist():
            name = safe_name(zi.filename, str(self.base))
            if not zi.is_dir() and name.startswith(FOLDER + "/"):
                out[name[len(FOLDER) + 1:]] = zi.file_size
        return out

    def _walk(self, rel: str) -> Iterator[tuple[str, int]]:
        for e in entries(self.base / rel):
            name = rel + e.name
            if not e.is_dir(follow_symlinks=False):
                yield name, e.stat(follow_symlinks=False).st_size
            elif name != "test":
                yield from self._walk(name + "/")

    def splits(self) -> list[str]:
        """The splits with files in the download."""
        return [s for s in ("train", "val") if any(n.startswith(s + "/") for n in self.files)]

    def units(self, split: str) -> list[Unit]:
        """train: one unit per class (each class ``wnids.txt`` lists must hold images); val: slices of the
        images, labelled by ``val_annotations.txt``."""
        if split == "train":
            classes: dict[str, list[str]] = {}
            for name in sorted(self.files):
                match = TRAIN_IMAGE.match(name)
                if match:
                    classes.setdefault(match.group(1), []).append(name)
            empty = sorted(set(self._listed()) - set(classes))
            if empty:
                raise SourceError(f"{self._origin(f'train/{empty[0]}/images')}: holds no images, though wnids.txt "
                                  f"lists the class ({len(empty)} such classes)")
            return [self._unit(split, wnid, f"train/{wnid}/{wnid}_boxes.txt", names)
                    for wnid, names in sorted(classes.items())]
        if split == "val":
            names = sorted(n for n in self.files if VAL_IMAGE.match(n))
            if names and VAL_ANNOTATIONS not in self.files:
                raise SourceError(f"{self._origin(VAL_ANNOTATIONS)}: missing, so val has no labels")
            return [self._unit(split, f"val[{i}:{i + len(chunk)}]", VAL_ANNOTATIONS, chunk)
                    for i in range(0, len(names), VAL_UNIT) for chunk in [names[i:i + VAL_UNIT]]]
        raise SourceError(f"{self.base}: no split {split!r} in Tiny ImageNet (have {self.splits()})")

    def _listed(self) -> list[str]:
        """The classes ``wnids.txt`` lists (each checked to be a WNID); SourceError when it is missing."""
        if "wnids.txt" not in self.files:
            raise SourceError(f"{self._origin('wnids.txt')}: missing, so the classes the download should hold "
                              "are unknown")
        [(_, data, origin)] = self._read_files((("wnids.txt", self.files["wnids.txt"]),))
        return [check_wnid(w, origin) for w in data.decode("ascii", "replace").split()]

    def _unit(self, split: str, name: str, annotations: str, images: list[str]) -> Unit:
        """A unit reading ``images`` with boxes (and val labels) from ``annotations`` where present; its ``ref``
        holds ``(name, size)`` tuples of both."""
        known = ((annotations, self.files[annotations]),) if annotations in self.files else ()
        files = tuple((n, self.files[n]) for n in images)
        return Unit(split, name, (known, files), sum(size for _, size in files))

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The unit's images with their box (val: label and box from ``val_annotations.txt``)."""
        labels = self._annotations(unit)
        for name, data, origin in self._read_files(unit.ref[1]):
            file, box = self._label(unit, labels, name)
            yield Sample(unit.split, stem(file), box.wnid if box else unit.name, file, data, origin,
                         (box,) if box else ())

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """The unit's files from the index, labelled: no image is read."""
        labels = self._annotations(unit)
        for name, size in unit.ref[1]:
            file, box = self._label(unit, labels, name)
            loc = (("zip", str(self.base), f"{FOLDER}/{name}") if self.base.is_file()
                   else ("range", str(self.base / name), 0, size))
            yield Entry(file, box.wnid if box else unit.name, size, loc, (box,) if box else ())

    def _label(self, unit: Unit, labels: dict[str, Box], name: str) -> tuple[str, Box | None]:
        """The file name of member ``name`` and its box; a val image without one raises (it has no label)."""
        file = name.rsplit("/", 1)[-1]
        box = labels.get(file)
        if unit.split == "val" and box is None:
            raise SourceError(f"{self._origin(name)}: not listed in {self._origin(VAL_ANNOTATIONS)}, so no label")
        return file, box

    def _annotations(self, unit: Unit) -> dict[str, Box]:
        """The boxes (and val labels) of the unit's annotation file, by image file name."""
        if not unit.ref[0]:
            return {}
        [(_, data, origin)] = self._read_files(unit.ref[0])
        return parse_annotations(data, origin, unit.name if unit.split == "train" else None)

    def _read_files(self, files: tuple[tuple[str, int], ...]) -> Iterator[tuple[str, bytes, str]]:
        """``(name, bytes, origin)`` of ``(relative name, size)`` files, from the zip or the folder."""
        if not self.base.is_file():
            yield from read_files(str(self.base), files)
            return
        zf = open_zip(self.base)
        for name, _ in files:
            origin = self._origin(name)
            try:
                yield name, zf.read(f"{FOLDER}/{name}"), origin
            except (KeyError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise SourceError(f"{origin}: cannot read the member ({e})") from e

    def _origin(self, name: str) -> str:
        return f"{self.base}:{FOLDER}/{name}" if self.base.is_file() else str(self.base / name)
