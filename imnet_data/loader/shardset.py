"""The shards a loader reads, opened for random access through their index files.

A source is a split folder (with ``manifest.json``), a manifest file, or a shard pattern (``dir/x-{000..009}.tar``;
without a manifest, counts and offsets come from the index files alone). Every shard is checked against the
manifest (present, same size) before training starts. Each sample is located by its DALI index line: the
``.cls`` member and the ``.jpg`` member right after it are read with one ``pread``.
"""
from __future__ import annotations

import hashlib
import os
from array import array
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls

from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.members import index_rows
from imnet_data.shards.schema import INDEX_VERSION, index_parts, parse_index, parse_manifest, read_capped, render_index


class ShardError(ValueError):
    """Shards missing, not matching the manifest, or a sample that cannot be read (names shard and key)."""


class ShardSet:
    """A split's shard files, their sample counts and sizes, and (when present) the manifest they must match.
    ``split`` picks a split of a shard root and must agree with a split folder's (or manifest's) own.

    Only arrays and the manifest's header are kept (its per-shard entries, class histograms included, are
    dropped once read), so a manifest of 10,000 shards costs a few MB. ``digest`` identifies the data: the
    manifest's sha256 (without one, a hash of the shard names, counts and sizes), recorded in a loader's state.
    """

    def __init__(self, source: str | os.PathLike, split: str | None = None,
                 fetched: tuple[bytes, Path] | None = None) -> None:
        """``fetched``: a manifest read from a store (its bytes and the local folder its shards go to)."""
        raw: bytes | None
        if fetched is not None:
            raw, folder = fetched
            manifest: dict | None = parse_manifest(raw, os.fspath(source))
            assert manifest is not None
            self.paths = [folder / s["name"] for s in manifest["shards"]]
        else:
            raw, manifest, self.paths = resolve(source, split)
        self.counts = np.array([e["samples"] for e in manifest["shards"]] if manifest
                               else [index_count(p) for p in self.paths], np.int64)
        self.sizes = np.array([e["bytes"] for e in manifest["shards"]] if manifest
                              else [p.stat().st_size for p in self.paths], np.int64)
        self.files = [(e["name"], e["bytes"], e["sha256"], e["index"]["name"], e["index"]["bytes"],
                       e["index"]["sha256"]) for e in manifest["shards"]] if manifest else None
        listing = raw or "\n".join(f"{p.name} {n} {b}" for p, n, b in zip(self.paths, self.counts, self.sizes,
                                                                          strict=True)).encode()
        self.digest = hashlib.sha256(listing).hexdigest()
        self.manifest = {k: v for k, v in manifest.items() if k != "shards"} if manifest else None
        self.raw = raw            # the manifest's bytes (a streamed set's cache writes them, then lets them go)

    @property
    def total(self) -> int:
        """The samples of every shard together."""
        return int(self.counts.sum())

    @property
    def num_classes(self) -> int | None:
        """The label space's class count from the manifest (None without one)."""
        return len(self.manifest["classes"]) if self.manifest else None

    @property
    def names(self) -> list[str]:
        """The shard file names, in manifest order."""
        return [p.name for p in self.paths]

    def check(self, shard: int) -> Path:
        """Shard ``shard``'s path, present with the manifest's size (a full sha256 check is ``imnet-data verify``'s
        and ``stage``'s job); else ShardError naming it."""
        path = self.paths[shard]
        if not path.is_file():
            raise ShardError(f"{path}: shard missing" + (" (listed in the manifest); stage or re-shard it"
                                                         if self.manifest else ""))
        size = path.stat().st_size
        if size != self.sizes[shard]:
            raise ShardError(f"{path}: {size:,} bytes, the manifest says {int(self.sizes[shard]):,}; "
                             "re-stage it or run 'imnet-data verify'")
        return path


def resolve(source: str | os.PathLike, split: str | None = None) -> tuple[bytes | None, dict | None, list[Path]]:
    """``(manifest bytes, manifest, shard paths)`` (both None without a manifest) of what users pass: a shard
    root with ``split`` (``DEST`` holding ``DEST/<split>/manifest.json``), a split folder, a manifest file, or a
    brace pattern (checked against the
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
    manifest: dict | None = None
    raw: bytes | None = None
    if path.is_dir() or path.suffix == ".json":
        file = path / MANIFEST if path.is_dir() else path
        raw = read_capped(file, "manifest")
        manifest = parse_manifest(raw, str(file))
        paths = [file.parent / s["name"] for s in manifest["shards"]]
    else:
        paths = [Path(p) for p in expand_urls(os.fspath(source))]
        if not paths:
            raise ShardError(f"{source}: no shard matches the pattern")
        beside = paths[0].parent / MANIFEST
        if beside.is_file():
            raw = read_capped(beside, "manifest")
            manifest = parse_manifest(raw, str(beside))
            listed = {s["name"] for s in manifest["shards"]}
            missing = [p for p in paths if p.name not in listed]
            if missing:
                raise ShardError(f"{missing[0]}: not listed in the manifest beside it")
            manifest = {**manifest, "shards": [s for s in manifest["shards"] if s["name"] in
                                               {p.name for p in paths}]}
            order = {s["name"]: s for s in manifest["shards"]}
            manifest["shards"] = [order[p.name] for p in paths]
    check_split(manifest, split, source)
    return raw, manifest, paths


def check_split(manifest: dict | None, split: str | None, source: object) -> None:
    """ShardError when the manifest holds another split than the one asked for."""
    if manifest is not None and split is not None and manifest["split"] != split:
        raise ShardError(f"{source}: holds the {manifest['split']!r} split, not the {split!r} asked for")


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
