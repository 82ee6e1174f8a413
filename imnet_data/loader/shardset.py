"""The shards a loader reads, opened for random access through their index files.

A source is a split folder (with ``manifest.json``), a manifest file, or a shard pattern (``dir/x-{000..009}.tar``;
without a manifest, counts and offsets come from the index files alone). Every shard is checked against the
manifest (present, same size) before training starts. Each sample is located by its DALI index line: the
``.cls`` member and the ``.jpg`` member right after it are read with one ``pread``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls

from imnet_data.assign import rank_pieces
from imnet_data.shards.manifest import MANIFEST, read_capped, read_manifest
from imnet_data.shards.members import index_rows as scan
from imnet_data.shards.schema import parse_index


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
    """A split's shard files, their sample counts, and (when present) the manifest they must match."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.manifest, self.paths = resolve(source)
        self.entries = manifest_entries(self.manifest, self.paths) if self.manifest else None
        self.counts = ([e["samples"] for e in self.entries] if self.entries
                       else [index_count(p) for p in self.paths])

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def num_classes(self) -> int | None:
        return len(self.manifest["classes"]) if self.manifest else None

    def locate(self, rank: int, world_size: int) -> Located:
        """The samples ``rank`` of ``world_size`` reads (see :mod:`imnet_data.assign`), in shard order."""
        rows: list[tuple[int, int, int, int, int, str]] = []
        for piece in rank_pieces(self.counts, rank, world_size):
            if self.entries:
                check_shard(self.paths[piece.shard], self.entries[piece.shard])
            rows += [(piece.shard, *row) for row in index_rows(str(self.paths[piece.shard]))[piece.start:piece.stop]]
        columns = list(zip(*rows)) if rows else [()] * 6
        return Located(np.array(columns[0], np.int32), np.array(columns[1], np.int64), np.array(columns[2], np.int32),
                       np.array(columns[3], np.int64), np.array(columns[4], np.int32), tuple(columns[5]))


def resolve(source: str | os.PathLike) -> tuple[dict | None, list[Path]]:
    """``(manifest or None, shard paths)`` of a split folder, a manifest file or a brace pattern (checked against
    the ``manifest.json`` beside the shards when there is one)."""
    path = Path(os.fspath(source))
    if path.is_dir() or path.suffix == ".json":
        manifest = read_manifest(path)
        folder = path if path.is_dir() else path.parent
        return manifest, [folder / s["name"] for s in manifest["shards"]]
    paths = [Path(p) for p in expand_urls(os.fspath(source))]
    if not paths:
        raise ShardError(f"{source}: no shard matches the pattern")
    beside = paths[0].parent / MANIFEST
    return (read_manifest(beside) if beside.is_file() else None), paths


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
    return shard.with_suffix(".idx")


def index_count(shard: Path) -> int:
    """The sample count of a shard, from its index (or, without one, its tar headers)."""
    if not shard.is_file():
        raise ShardError(f"{shard}: shard missing")
    return len(index_rows(str(shard)))


def index_rows(shard: str) -> tuple[tuple[int, int, int, int, str], ...]:
    """``(cls offset, cls size, jpg offset, jpg size, key)`` of every sample of a shard, from its DALI index
    (or, without one, from the tar headers, walked as :mod:`imnet_data.shards.members` does); ShardError naming
    the file for a malformed index or tar."""
    path = Path(shard)
    idx = index_path(path)
    try:
        if idx.is_file():
            rows = [(key, parts) for key, parts in parse_index(read_capped(idx, "DALI index").decode("ascii"),
                                                                 str(idx))]
        else:
            rows = [(key, {ext: (offset, size) for ext, offset, size in parts}) for key, parts in scan(path)]
    except (ValueError, UnicodeDecodeError) as e:
        raise ShardError(str(e)) from e
    out = []
    for key, parts in rows:
        if "cls" not in parts or "jpg" not in parts:
            raise ShardError(f"{idx if idx.is_file() else path}: sample {key} has no .cls or no .jpg")
        out.append((*parts["cls"], *parts["jpg"], key))
    return tuple(out)
