"""Already-extracted folders: ``train/<wnid>/*`` and ``val/`` either flat (``ILSVRC2012_val_%08d.JPEG``,
labelled through the devkit in the root) or foldered (``val/<wnid>/*``). This is also what ``organize`` writes.

Only regular files are read: a symlink or special file could point outside the download or block a reader, so
it is refused by name. The listing helpers here are shared by the other folder-based layouts (Kaggle, 21k).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.sources.base import WNID, Entry, Sample, Source, SourceError, Unit, check_wnid, stem
from imnet_data.sources.devkit import ARCHIVE as DEVKIT_ARCHIVE, FOLDER as DEVKIT_FOLDER, Devkit, load as load_devkit
from imnet_data.sources.ilsvrc import VAL_NAME, VAL_UNIT

SPLITS = ("train", "val")


def entries(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` sorted by name: regular files and folders only (never followed links)."""
    try:
        with os.scandir(folder) as it:
            found = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise SourceError(f"{folder}: cannot list the folder ({e.strerror})") from e
    for entry in found:
        if not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
            raise SourceError(f"{entry.path}: a symlink or special file; only regular files and folders are read")
    return found


def regular_files(folder: Path) -> list[tuple[str, int]]:
    """``(name, size)`` of the files of ``folder``, sorted; a subfolder, link or special file raises, and so
    does an empty folder (a class or split folder that should hold images)."""
    out = []
    for e in entries(folder):
        if e.is_dir(follow_symlinks=False):
            raise SourceError(f"{e.path}: unexpected folder (expected only image files here)")
        out.append((e.name, e.stat(follow_symlinks=False).st_size))
    if not out:
        raise SourceError(f"{folder}: holds no files (an empty class or split folder)")
    return out


def files_unit(split: str, name: str, folder: Path, files: list[tuple[str, int]]) -> Unit:
    """A unit reading ``files`` (``(name, size)``) of ``folder``; its ``ref`` is ``(folder, files)``."""
    return Unit(split, name, (str(folder), tuple(files)), sum(s for _, s in files))


def class_units(split: str, folder: Path) -> list[Unit]:
    """One unit per ``<wnid>/`` subfolder of ``folder``, named by its WNID, in WNID order."""
    units = []
    for e in entries(folder):
        if not e.is_dir(follow_symlinks=False):
            raise SourceError(f"{e.path}: unexpected file (expected only <wnid>/ class folders here)")
        units.append(files_unit(split, check_wnid(e.name, e.path), Path(e.path), regular_files(Path(e.path))))
    return units


def chunk_units(split: str, folder: Path, files: list[tuple[str, int]]) -> list[Unit]:
    """Units of up to ``VAL_UNIT`` files each, named ``val[i:j]`` like the official reader's val slices."""
    return [files_unit(split, f"{split}[{i}:{i + len(chunk)}]", folder, chunk)
            for i in range(0, len(files), VAL_UNIT) for chunk in [files[i:i + VAL_UNIT]]]


def read_files(folder: str, files: Iterable[tuple[str, int]]) -> Iterator[tuple[str, bytes, str]]:
    """``(name, bytes, path)`` of ``files`` (``(name, size)``) of ``folder``: the ``ref`` of a :func:`files_unit`."""
    for name, _ in files:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                yield name, f.read(), path
        except OSError as e:
            raise SourceError(f"{path}: cannot read ({e.strerror})") from e


def file_locs(folder: str, files: Iterable[tuple[str, int]]) -> Iterator[tuple[str, int, str]]:
    """``(name, size, path)`` of ``files`` (``(name, size)``) of ``folder``: what ``locate`` builds entries of."""
    for name, size in files:
        yield name, size, os.path.join(folder, name)


def _class_folder(entry: os.DirEntry) -> bool:
    """A ``<wnid>/`` folder holding files directly (Tiny ImageNet's class folders hold an ``images/`` folder)."""
    if not (entry.is_dir(follow_symlinks=False) and WNID.match(entry.name)):
        return False
    with os.scandir(entry.path) as it:
        inside = list(it)
    return bool(inside) and not any(e.is_dir(follow_symlinks=False) for e in inside)


def _holds_images(folder: Path) -> bool:
    """Whether ``folder`` has a ``<wnid>/`` class folder or an official val file (stops at the first)."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as it:
        return any(_class_folder(e) or VAL_NAME.match(e.name) for e in it)


def _is_split_folder(folder: Path) -> bool:
    """Whether ``folder`` holds ``<wnid>/`` folders and nothing else (the first one looked into)."""
    with os.scandir(folder) as it:
        found = list(it)
    return bool(found) and all(e.is_dir(follow_symlinks=False) and WNID.match(e.name) for e in found) and \
        _class_folder(found[0])


SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")   # a split's name goes into shard file names


class Folders(Source):
    """``ROOT/train/<wnid>/`` and ``ROOT/val/`` (flat + devkit, or ``<wnid>/`` folders), or one split's folder of
    ``<wnid>/`` folders (``DEST/train`` of organize: the split is named by the folder)."""

    layout = "folders"
    about = "extracted folders: train/<wnid>/ and val/, or one split's folder of <wnid>/ class folders"

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder whose ``train/`` or ``val/`` holds class folders or official val files, or that holds only
        class folders itself."""
        return path.is_dir() and (any(_holds_images(path / s) for s in SPLITS) or _is_split_folder(path))

    @cached_property
    def single(self) -> bool:
        """The root is one split's folder (no ``train/`` or ``val/`` in it)."""
        return not any((self.root / s).is_dir() for s in SPLITS)

    def splits(self) -> list[str]:
        """``train`` and ``val`` where their folders exist; for a single split's folder, the split its name
        names (UsageError when it cannot name one)."""
        if not self.single:
            return [s for s in SPLITS if (self.root / s).is_dir()]
        name = Path(os.path.abspath(self.root)).name
        if not SPLIT_NAME.match(name):
            raise UsageError(f"{self.root}: a folder of class folders is one split named by the folder, and "
                             f"{name!r} cannot name a split (letters, digits, - and _): rename it, e.g. train or val")
        return [name]

    def home(self, split: str) -> str:
        """The split's folder: the root itself for a single split's folder."""
        return str(self.root if self.single else self.root / split)

    @cached_property
    def devkit(self) -> Devkit | None:
        """The devkit in the root (labels a flat val), or None."""
        return load_devkit(self.root)

    def units(self, split: str) -> list[Unit]:
        """A unit per class folder, or slices of a flat val folder's files (named ILSVRC2012_val_*)."""
        if split not in self.splits():
            raise SourceError(f"{self.root}: no {split}/ folder (have {self.splits()})")
        folder = Path(self.home(split))
        if split == "train" or self.single or any(e.is_dir(follow_symlinks=False) for e in entries(folder)):
            return class_units(split, folder)
        files = regular_files(folder)
        for name, _ in files:
            if not VAL_NAME.match(name):
                raise SourceError(f"{folder / name}: unexpected file in a flat val folder "
                                  "(expected ILSVRC2012_val_%08d.JPEG)")
        return chunk_units(split, folder, files)

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The unit's files, labelled by class folder or, for a flat val folder, by the devkit."""
        for name, data, path in read_files(*unit.ref):
            yield Sample(unit.split, stem(name), self._wnid(unit, name), name, data, path)

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """The unit's files as listed by :meth:`units`: no image is opened."""
        for name, size, path in file_locs(*unit.ref):
            yield Entry(name, self._wnid(unit, name), size, ("range", path, 0, size))

    def unlabelled(self, split: str) -> str:
        """A flat val folder carries no labels: the devkit in the root does."""
        return (f"a flat {split} folder needs the devkit {DEVKIT_ARCHIVE} (or its extracted {DEVKIT_FOLDER}/) "
                f"beside it in {self.root}, or {split}/<wnid>/ class folders")

    def _wnid(self, unit: Unit, name: str) -> str | None:
        """The class folder's WNID, or for a flat val file its devkit label (None without a devkit)."""
        if WNID.match(unit.name):
            return unit.name
        number = int(VAL_NAME.match(name).group(1))  # type: ignore[union-attr]  # checked in units()
        return self.devkit.val_wnid(number, os.path.join(unit.ref[0], name)) if self.devkit else None
