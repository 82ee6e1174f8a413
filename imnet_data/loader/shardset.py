"""The shards a loader reads, opened for random access through their index files.

A source is a split folder (with ``manifest.json``), a manifest file, or a shard pattern (``dir/x-{000..009}.tar``;
without a manifest, counts and offsets come from the index files alone). Every shard is checked against the
manifest (present, same size) before training starts. Each sample is located by its DALI index line: the
``.cls`` member and the ``.jpg`` member right after it are read with one ``pread``.
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls

from imnet_data.assign import rank_pieces
from imnet_data.shards.manifest import MANIFEST, read_manifest


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
    """The sample count of a shard, from the first line of its index (``v1.2 N``), else its rows."""
    if not shard.is_file():
        raise ShardError(f"{shard}: shard missing")
    try:
        with open(index_path(shard)) as f:
            return int(f.readline().split()[1])
    except (OSError, IndexError, ValueError):
        return len(index_rows(str(shard)))


def index_rows(shard: str) -> tuple[tuple[int, int, int, int, str], ...]:
    """``(cls offset, cls size, jpg offset, jpg size, key)`` of every sample of a shard, from its DALI index
    (or, without one, from the tar headers)."""
    path = Path(shard)
    idx = index_path(path)
    lines = idx.read_text().splitlines() if idx.is_file() else scan_tar(path)
    rows = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        parts = {fields[i]: (int(fields[i + 1]), int(fields[i + 2]), fields[i + 3]) for i in range(0, len(fields), 4)}
        if "cls" not in parts or "jpg" not in parts:
            raise ShardError(f"{idx}:{number}: sample without .cls or .jpg ({line[:80]!r})")
        (co, cs, name), (jo, js, _) = parts["cls"], parts["jpg"]
        rows.append((co, cs, jo, js, name.rsplit(".", 1)[0]))
    return tuple(rows)


def scan_tar(path: Path) -> list[str]:
    """Index lines (DALI v1.2 format) built by reading the tar headers, for shards that came without .idx."""
    samples: dict[str, list[str]] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for ti in tf:
                if ti.isreg():
                    key, ext = ti.name.split(".", 1)
                    samples.setdefault(key, []).append(f"{ext} {ti.offset_data} {ti.size} {ti.name}")
    except tarfile.TarError as e:
        raise ShardError(f"{path}: not a readable tar ({e})") from e
    return [f"v1.2 {len(samples)}"] + [" ".join(parts) for parts in samples.values()]
