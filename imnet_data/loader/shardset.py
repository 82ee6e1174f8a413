"""The shards a loader reads, opened for random access through their index files.

A source is a split folder (with ``manifest.json``), a manifest file, or a shard pattern (``dir/x-{000..009}.tar``;
without a manifest, counts and offsets come from the index files alone). Every shard is checked against the
manifest (present, same size) before training starts. Each sample is located by its DALI index line: the
``.cls`` member and the ``.jpg`` member right after it are read with one ``pread``.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls

from imnet_data.assign import rank_pieces
from imnet_data.shards.manifest import MANIFEST, read_manifest
from imnet_data.shards.members import index_rows
from imnet_data.shards.schema import INDEX_VERSION, index_parts, parse_index, read_capped, render_index


class ShardError(ValueError):
    """Shards missing, not matching the manifest, or a sample that cannot be read (names shard and key)."""


@dataclass(frozen=True)
class Located:
    """Where a rank's samples are: parallel arrays, one row per sample."""

    shard: np.ndarray      # int32 index into ShardSet.paths
    cls_offset: np.ndarray  # int64 data offset of <key>.cls
    cls_size: np.ndarray    # int32
    jpg_offset: np.ndarray  # int64 data offset of <key>.jpg
    jpg_size: np.ndarray    # int32
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.keys)


class ShardSet:
    """A split's shard files, their sample counts, and (when present) the manifest they must match. ``split``
    picks a split of a shard root and must agree with a split folder's (or manifest's) own."""

    def __init__(self, source: str | os.PathLike, split: str | None = None) -> None:
        self.manifest, self.paths = resolve(source, split)
        self.entries = manifest_entries(self.manifest, self.paths) if self.manifest else None
        self.counts = ([e["samples"] for e in self.entries] if self.entries
                       else [index_count(p) for p in self.paths])

    @property
    def total(self) -> int:
        """The samples of every shard together."""
        return sum(self.counts)

    @property
    def num_classes(self) -> int | None:
        """The label space's class count from the manifest (None without one)."""
        return len(self.manifest["classes"]) if self.manifest else None

    def locate(self, rank: int, world_size: int) -> Located:
        """The samples ``rank`` of ``world_size`` reads (see :mod:`imnet_data.assign`), in shard order."""
        shard, offsets, keys = [], [], []
        for piece in rank_pieces(self.counts, rank, world_size):
            if self.entries:
                check_shard(self.paths[piece.shard], self.entries[piece.shard])
            table, names = sample_table(str(self.paths[piece.shard]))
            offsets.append(table[piece.start:piece.stop])
            keys += names[piece.start:piece.stop]
            shard.append(np.full(piece.stop - piece.start, piece.shard, np.int32))
        table = np.concatenate(offsets) if offsets else np.zeros((0, 4), np.int64)
        return Located(np.concatenate(shard) if shard else np.zeros(0, np.int32), table[:, 0],
                       table[:, 1].astype(np.int32), table[:, 2], table[:, 3].astype(np.int32), tuple(keys))


def resolve(source: str | os.PathLike, split: str | None = None) -> tuple[dict | None, list[Path]]:
    """``(manifest or None, shard paths)`` of what users pass: a shard root with ``split`` (``DEST`` holding
    ``DEST/<split>/manifest.json``), a split folder, a manifest file, or a brace pattern (checked against the
    ``manifest.json`` beside the shards when there is one). A split that differs from the manifest's is an error
    naming both."""
    path = Path(os.fspath(source))
    if path.is_dir() and not (path / MANIFEST).is_file():
        splits = sorted(p.parent.name for p in path.glob(f"*/{MANIFEST}"))
        if not splits:
            raise ShardError(f"{path}: neither a split folder (with {MANIFEST}) nor a shard root (with "
                             f"<split>/{MANIFEST})")
        if split not in splits:
            raise ShardError(f"{path}: a shard root; name one of its splits: split={' or '.join(map(repr, splits))}"
                             + (f" (not {split!r})" if split else ""))
        path = path / split
    manifest: dict | None
    if path.is_dir() or path.suffix == ".json":
        manifest = read_manifest(path)
        folder = path if path.is_dir() else path.parent
        paths = [folder / s["name"] for s in manifest["shards"]]
    else:
        paths = [Path(p) for p in expand_urls(os.fspath(source))]
        if not paths:
            raise ShardError(f"{source}: no shard matches the pattern")
        beside = paths[0].parent / MANIFEST
        manifest = read_manifest(beside) if beside.is_file() else None
    if manifest is not None and split is not None and manifest["split"] != split:
        raise ShardError(f"{source}: holds the {manifest['split']!r} split, not the {split!r} asked for")
    return manifest, paths


def manifest_entries(manifest: dict, paths: list[Path]) -> list[dict]:
    """The manifest entry of each shard path (ShardError for a shard the manifest does not list)."""
    entries = {s["name"]: s for s in manifest["shards"]}
    missing = [p for p in paths if p.name not in entries]
    if missing:
        raise ShardError(f"{missing[0]}: not listed in the manifest beside it")
    return [entries[p.name] for p in paths]


def check_shard(path: Path, entry: dict) -> None:
    """A shard a rank reads is present with the manifest's size (a full sha256 check is ``imnet-data verify``'s
    and ``stage``'s job); else ShardError naming it. Shards other ranks read need not be here (staged subsets)."""
    if not path.is_file():
        raise ShardError(f"{path}: shard missing (listed in the manifest); stage or re-shard it")
    if path.stat().st_size != entry["bytes"]:
        raise ShardError(f"{path}: {path.stat().st_size:,} bytes, the manifest says {entry['bytes']:,}; "
                         "re-stage it or run 'imnet-data verify'")


def index_path(shard: Path) -> Path:
    """The DALI index file beside a shard (``.idx``)."""
    return shard.with_suffix(".idx")


def index_count(shard: Path) -> int:
    """The sample count of a shard, from its index's first line (``v1.2 N``: every rank counts every shard, so
    the rest is parsed only by the rank that reads it, :meth:`ShardSet.locate`, which checks N against the
    lines), else from all of the index or, without one, the tar headers."""
    if not shard.is_file():
        raise ShardError(f"{shard}: shard missing")
    try:
        with open(index_path(shard), "rb") as f:
            head = f.readline(64).split()
        if len(head) == 2 and head[0] == INDEX_VERSION.encode() and head[1].isdigit():
            return int(head[1])
    except OSError:
        pass
    return len(sample_table(str(shard))[1])


def sample_table(shard: str) -> tuple[np.ndarray, list[str]]:
    """Where every sample of a shard is: an int64 table of rows ``(cls offset, cls size, jpg offset, jpg size)``
    and the keys, from its DALI index (or, without one, from the tar headers, walked as
    :mod:`imnet_data.shards.members` does); ShardError naming the file for a malformed index or tar. Built
    without a Python object per number: a million samples would otherwise keep the garbage collector busy."""
    path = Path(shard)
    idx = index_path(path)
    where = str(idx) if idx.is_file() else str(path)
    try:
        raw = read_capped(idx, "DALI index") if idx.is_file() else render_index(index_rows(path)).encode()
        table, keys = array('q'), []
        for key, f in parse_index(raw, where):
            if f[0] == "cls" and len(f) > 6 and f[4] == "jpg":    # the writer's order: one look, no dict
                table.extend((int(f[1]), int(f[2]), int(f[5]), int(f[6])))
            else:
                parts = index_parts(f)
                if "cls" not in parts or "jpg" not in parts:
                    raise ShardError(f"{where}: sample {key} has no .cls or no .jpg")
                table.extend((*parts["cls"], *parts["jpg"]))
            keys.append(key)
    except ValueError as e:
        raise ShardError(str(e)) from e
    return np.frombuffer(table, np.int64).reshape(-1, 4), keys
