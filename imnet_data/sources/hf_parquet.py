"""Parquet copies of the hub's ILSVRC2012 (``--layout hf-parquet``): rows of ``image`` = {bytes, path} and
``label`` (the sorted-WNID index, -1 for test), as the hub's ``refs/convert/parquet`` branch holds them
(``default/train/0000.parquet``; a dataset this size is converted only in part, ``default/partial-train/...``:
such a copy is never the complete set, and ``validate`` says so) and as full re-uploads name them
(``data/train-00000-of-00257.parquet``, ``validation-...``, ``test-...``).

Read in place, one row group at a time (a unit), never the whole file: peak memory is one row group per worker,
and a row group declaring more than :data:`MAX_ROW_GROUP` bytes is refused unread. ``pyarrow`` comes with the
``[hf]`` extra. Every refusal names the file, the row group and the row.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from imnet_data import catalog
from imnet_data.sources.base import Entry, Sample, Source, SourceError, Unit, stem
from imnet_data.sources.hub import ORDER, SPLITS, label_wnid, official_name, snapshot

MAX_ROW_GROUP = 2 << 30   # bytes a row group may declare (the hub's hold ~100 MB)
FILE = re.compile(r"^(?P<split>train|validation|val|test)-\d{5}-of-\d{5}\.parquet$")   # a re-upload's
PART = re.compile(r"^\d{4}\.parquet$")                                          # refs/convert/parquet's


def pyarrow_parquet() -> Any:
    """``pyarrow.parquet``, or SourceError saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise SourceError("reading parquet needs pyarrow: pip install 'imnet-data[hf]'") from e
    return pq


def parquet_files(folder: Path) -> tuple[dict[str, list[Path]], bool]:
    """The parquet files of ``folder`` by split, and whether they are a partial conversion: re-upload names in
    ``folder`` or ``data/``; ``<split>/NNNN.parquet`` or ``partial-<split>/...`` in ``folder`` or ``default/``."""
    found: dict[str, list[Path]] = {}
    partial = False
    for where in (folder, folder / "data"):
        for path in sorted(where.glob("*.parquet")) if where.is_dir() else []:
            if (match := FILE.match(path.name)) and path.is_file():
                found.setdefault(SPLITS[match["split"]], []).append(path)
    for where in (folder, folder / "default"):
        for name, split in SPLITS.items():
            for prefix in ("", "partial-"):
                sub = where / f"{prefix}{name}"
                files = [p for p in sorted(sub.glob("*.parquet")) if PART.match(p.name) and p.is_file()]
                if files and sub.is_dir():
                    found.setdefault(split, []).extend(files)
                    partial = partial or bool(prefix)
    return found, partial


class HubParquet(Source):
    """A folder (or hub cache repository) of parquet files of the hub's ILSVRC2012."""

    layout = "hf-parquet"
    about = "parquet copies of the hub's ILSVRC2012 (default/train/0000.parquet, data/train-00000-of-N.parquet)"
    expected = ("train", "val")
    streams = True   # a row is read with its row group: shard streams row groups (shards.stream)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder with parquet files named as the hub's conversion or a re-upload names them (itself, or the
        snapshot of ``refs/convert/parquet``, else of ``refs/main``)."""
        return path.is_dir() and bool(parquet_files(cls.folder(path))[0])

    @staticmethod
    def folder(path: Path) -> Path:
        """Where the files are: the snapshot of the parquet branch, of main, or ``path``."""
        converted = snapshot(path, "convert/parquet")
        return converted if converted != path else snapshot(path, "main")

    @cached_property
    def files(self) -> tuple[dict[str, list[Path]], bool]:
        """The files by split, and whether the copy is a partial conversion."""
        return parquet_files(self.folder(self.root))

    def splits(self) -> list[str]:
        """The splits with parquet files, in train, val, test order."""
        return [s for s in ORDER if s in self.files[0]]

    def home(self, split: str) -> str:
        """The split's first file."""
        paths = self.files[0].get(split)
        return str(paths[0]) if paths else str(self.root / f"{split}-*.parquet")

    def labelled(self, split: str) -> bool:
        """Train and val rows carry labels; test rows carry -1."""
        return split != "test"

    def remarks(self) -> list[str]:
        """A partial conversion is never the whole set."""
        if not self.files[1]:
            return []
        return [f"{self.folder(self.root)}: a partial conversion (the hub's refs/convert/parquet holds only the "
                "first part of each split of a dataset this size, in partial-<split>/): never the complete set"]

    def units(self, split: str) -> list[Unit]:
        """One unit per row group of every file of the split, each checked from the file's footer: the
        columns, the label names the file declares, and the row group's declared size."""
        if split not in self.files[0]:
            raise SourceError(f"{self.root}: no {split} parquet files (have {self.splits()})")
        units = []
        for path in self.files[0][split]:
            meta = open_parquet(path).metadata
            check_schema(meta, str(path), split)
            for group in range(meta.num_row_groups):
                declared = meta.row_group(group).total_byte_size
                if declared > MAX_ROW_GROUP or declared > 64 * path.stat().st_size + (1 << 20):
                    raise SourceError(f"{path}: row group {group} declares {declared:,} bytes (the file holds "
                                      f"{path.stat().st_size:,}; the cap is {MAX_ROW_GROUP:,}); refused unread")
                units.append(Unit(split, f"{path.name}[{group}]", ("parquet", str(path), group), declared))
        return units

    def _rows(self, unit: Unit, with_data: bool) -> Iterator[tuple[int, str, str | None, bytes | None, int]]:
        """``(row, official name, wnid, data or None, size)`` of every row of a row group, in order."""
        _, path, group = unit.ref
        wnids = catalog.ilsvrc2012().wnids
        try:
            table = open_parquet(Path(path)).read_row_group(group, columns=columns(Path(path)))
        except Exception as e:  # noqa: BLE001 -- pyarrow raises OSError, ArrowInvalid, ... for damaged files
            raise SourceError(f"{path}: row group {group}: cannot be read ({e})") from e
        import pyarrow.compute as pc

        images = table.column("image").combine_chunks()
        data_col, path_col = images.field("bytes"), images.field("path")
        sizes = pc.binary_length(data_col).to_pylist()
        labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * len(table)
        for row in range(len(table)):
            origin = f"{path}: row group {group}, row {row}"
            given, data = path_col[row].as_py(), data_col[row]
            if not given:
                raise SourceError(f"{origin}: no image.path (the file name that gives the sample its key)")
            if not data.is_valid:
                raise SourceError(f"{origin}: no image.bytes")
            name, named = official_name(given, unit.split, origin)
            wnid = label_wnid(labels[row], named, wnids, unit.split, f"{origin} ({given})")
            raw = data.as_py() if with_data else None
            yield row, name, wnid, raw, sizes[row]

    def read(self, unit: Unit) -> Iterator[Sample]:
        """Every row of the row group as a sample named as the official file."""
        for row, name, wnid, data, _ in self._rows(unit, True):
            assert data is not None
            yield Sample(unit.split, stem(name), wnid, name, data, f"{unit.ref[1]}: row group {unit.ref[2]}, "
                         f"row {row} ({name})")

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """Every row's entry: ``("stream", file, "row group G, row R (name)", G, R)``."""
        _, path, group = unit.ref
        for row, name, wnid, _, size in self._rows(unit, False):
            yield Entry(name, wnid, size, ("stream", path, f"row group {group}, row {row} ({name})", group, row))

    def stream(self, unit: Unit) -> Iterator[tuple[Entry, bytes]]:
        """Every row's entry (as :meth:`locate`) with its bytes, in one pass."""
        _, path, group = unit.ref
        for row, name, wnid, data, size in self._rows(unit, True):
            assert data is not None
            yield Entry(name, wnid, size, ("stream", path, f"row group {group}, row {row} ({name})", group,
                                           row)), data

    def unlabelled(self, split: str) -> str:
        """Only the test rows are unlabelled."""
        return f"the {split} rows of the parquet copy carry no label"


def open_parquet(path: Path) -> Any:
    """The parquet file at ``path``, opened once per process (its footer parsed once: a worker reads its row
    groups one unit at a time); SourceError naming it when it is not one (or is cut short)."""
    try:
        return _open(str(path), os.getpid(), path.stat().st_mtime_ns)
    except OSError as e:
        raise SourceError(f"{path}: cannot read ({e.strerror})") from e


@lru_cache(maxsize=8)
def _open(path: str, pid: int, mtime_ns: int) -> Any:
    """The open parquet file (``pid``: a forked worker opens its own; ``mtime_ns``: a changed file anew)."""
    pq = pyarrow_parquet()
    try:
        return pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 -- pyarrow raises ArrowInvalid, OSError, ... for a damaged footer
        raise SourceError(f"{path}: not a readable parquet file ({e})") from e


def columns(path: Path) -> list[str]:
    """The columns to read: ``image``, and ``label`` where the file has one."""
    names = open_parquet(path).schema_arrow.names
    return ["image", "label"] if "label" in names else ["image"]


def check_schema(meta: Any, where: str, split: str) -> None:
    """The columns of a hub parquet file (``image`` a struct of binary ``bytes`` and string ``path``; ``label``
    an integer, required but in test) and the class names its ``huggingface`` metadata declares (ImageNet-1k's
    1000, in sorted-WNID order); SourceError naming the file and the column otherwise."""
    import pyarrow as pa

    schema = meta.schema.to_arrow_schema()
    image = schema.field("image").type if "image" in schema.names else None
    if image is None or not pa.types.is_struct(image) or \
            {image.field(i).name: image.field(i).type for i in range(image.num_fields)}.keys() < {"bytes", "path"}:
        raise SourceError(f"{where}: column image: expected a struct of bytes and path (the hub's Image), got "
                          f"{image}")
    kinds = {image.field(i).name: image.field(i).type for i in range(image.num_fields)}
    if not (pa.types.is_binary(kinds["bytes"]) or pa.types.is_large_binary(kinds["bytes"])) or not (
            pa.types.is_string(kinds["path"]) or pa.types.is_large_string(kinds["path"])):
        raise SourceError(f"{where}: column image: expected bytes: binary and path: string, got {image}")
    if "label" not in schema.names:
        if split != "test":
            raise SourceError(f"{where}: no label column (the {split} split needs its labels)")
    elif not pa.types.is_integer(schema.field("label").type):
        raise SourceError(f"{where}: column label: expected an integer class index, got {schema.field('label').type}")
    check_names(meta, where)


def check_names(meta: Any, where: str) -> None:
    """The ``label`` class names of the file's ``huggingface`` metadata, where present: ImageNet-1k's 1000 in
    sorted-WNID order (each the catalog's names, as the hub's ``classes.py`` writes them; ``crane2`` is its
    second crane), so a copy indexed otherwise is refused, naming the first class out of place."""
    raw = (meta.metadata or {}).get(b"huggingface")
    try:
        label = json.loads(raw)["info"]["features"]["label"] if raw else None
        names = label.get("names") if isinstance(label, dict) else None
    except (ValueError, KeyError, TypeError):
        return
    if not isinstance(names, list):
        return
    classes = catalog.ilsvrc2012()
    if len(names) != len(classes):
        raise SourceError(f"{where}: its label declares {len(names)} classes, not ImageNet-1k's {len(classes)}")
    for i, name in enumerate(names):
        first = str(name).split(",")[0].strip().lower().rstrip("0123456789")
        if first not in {n.lower() for n in classes[i].names}:
            raise SourceError(f"{where}: label {i} is named {name!r}, but class {i} is {classes[i].wnid} "
                              f"({classes[i].name}): not the sorted-WNID order")
