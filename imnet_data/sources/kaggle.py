"""The Kaggle "imagenet-object-localization-challenge" layout: ``ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG``, a flat
``ILSVRC/Data/CLS-LOC/val/``, and at the top ``LOC_val_solution.csv`` (val labels and boxes) and
``LOC_train_solution.csv`` (train boxes). A val image's label is the WNID of its first box, as Kaggle scores it.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from imnet_data.sources.base import Box, Entry, Sample, Source, SourceError, Unit, check_wnid, stem
from imnet_data.sources.boxes import parse_loc
from imnet_data.sources.folders import SPLITS, chunk_units, class_units, file_locs, read_files, regular_files

CLS_LOC = Path("ILSVRC", "Data", "CLS-LOC")
SOLUTION = {"train": "LOC_train_solution.csv", "val": "LOC_val_solution.csv"}
HEADER = ["ImageId", "PredictionString"]


def load_solution(path: Path) -> dict[str, tuple[Box, ...]]:
    """Image key -> boxes of a ``LOC_*_solution.csv`` (empty when the file is absent), parsed once per process:
    every unit needs it, and the train file (545k rows) takes seconds to parse."""
    if not path.is_file():
        return {}
    stat = path.stat()
    return _parse_solution(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _parse_solution(path: str, mtime_ns: int, size: int) -> dict[str, tuple[Box, ...]]:
    """The parsed CSV; ``mtime_ns`` and ``size`` key the cache so a rewritten file is parsed again."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        if next(rows, None) != HEADER:
            raise SourceError(f"{path}: first line is not the header {','.join(HEADER)}")
        out = {}
        for line, row in enumerate(rows, 2):
            if len(row) != 2:
                raise SourceError(f"{path}:{line}: expected 2 columns ImageId,PredictionString, got {len(row)}")
            out[row[0]] = parse_loc(row[1], f"{path}:{line}")
    return out


class Kaggle(Source):
    """``ROOT/ILSVRC/Data/CLS-LOC/{train,val}`` with the ``LOC_*`` files in ROOT."""

    layout = "kaggle"
    about = "Kaggle's ILSVRC/Data/CLS-LOC with LOC_val_solution.csv"
    expected = ("train", "val")

    def home(self, split: str) -> str:
        """The split's folder under ``ILSVRC/Data/CLS-LOC``."""
        return str(self.root / CLS_LOC / split)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder holding ``ILSVRC/Data/CLS-LOC``."""
        return (path / CLS_LOC).is_dir()

    def splits(self) -> list[str]:
        """The splits whose folder under ``ILSVRC/Data/CLS-LOC`` exists."""
        return [s for s in SPLITS if (self.root / CLS_LOC / s).is_dir()]

    def units(self, split: str) -> list[Unit]:
        """train: one unit per class folder; val: slices of the flat folder, every file's label checked in
        ``LOC_val_solution.csv`` first."""
        if split not in self.splits():
            raise SourceError(f"{self.root / CLS_LOC}: no {split}/ folder (have {self.splits()})")
        folder = self.root / CLS_LOC / split
        if split == "train":
            return class_units(split, folder)
        files, solution = regular_files(folder), self._solution("val")
        for name, _ in files:
            self._boxes(split, solution, name, str(folder / name))  # fail before any worker starts
        return chunk_units(split, folder, files)

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The unit's files with their boxes from the ``LOC_*_solution.csv``; val labelled by its first box."""
        solution = self._solution(unit.split)
        for name, data, path in read_files(*unit.ref):
            boxes = self._boxes(unit.split, solution, name, path)
            yield Sample(unit.split, stem(name), self._label(unit, boxes), name, data, path, boxes)

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """The unit's files as listed by :meth:`units`, labelled: no image is opened."""
        solution = self._solution(unit.split)
        for name, size, path in file_locs(*unit.ref):
            boxes = self._boxes(unit.split, solution, name, path)
            yield Entry(name, self._label(unit, boxes), size, ("range", path, 0, size), boxes)

    def _solution(self, split: str) -> dict[str, tuple[Box, ...]]:
        return load_solution(self.root / SOLUTION[split])

    def _boxes(self, split: str, solution: dict[str, tuple[Box, ...]], name: str, path: str) -> tuple[Box, ...]:
        """An image's boxes; a val image must have at least one (the first labels it), else SourceError."""
        boxes = solution.get(stem(name), ())
        if split == "val":
            if not boxes:
                raise SourceError(f"{path}: no row with boxes in {self.root / SOLUTION['val']}, so no label")
            check_wnid(boxes[0].wnid, f"{self.root / SOLUTION['val']}: {stem(name)}")
        return boxes

    @staticmethod
    def _label(unit: Unit, boxes: tuple[Box, ...]) -> str:
        """A train image's class folder; a val image's first box."""
        return unit.name if unit.split == "train" else boxes[0].wnid
