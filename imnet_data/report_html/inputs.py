"""What ``imnet-data report`` reads, all of it written by the tool before and all of it untrusted: each split's
manifest and DALI ``.idx`` files (every image's size, where each sample lies), a spread of the samples' ``.json``
(image sizes), ``validate --report``'s JSON and ``organize``'s report. A file that is not what the tool writes is
a :class:`~imnet_data.shards.schema.SchemaError` naming the file and the field (exit 1), never a traceback.
"""
from __future__ import annotations

import hashlib
import os
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imnet_data.progress import progress
from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.members import CAPS
from imnet_data.shards.schema import (
    SchemaError,
    _Fields,
    check_sample_json,
    index_parts,
    load_json,
    parse_index,
    parse_manifest,
    read_capped,
)
from imnet_data.validate.report import SEVERITIES

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")    # the image member of a sample, as preview looks for it
ORGANIZE_REPORT = "organize-report.json"        # what organize writes into its DEST


@dataclass(frozen=True)
class Location:
    """Where a sample's image lies: its shard, the member's data offset and size (from the ``.idx``), and the
    sample's label (its ``.cls``; -1 when it has none that reads as a number)."""

    shard: Path
    offset: int
    size: int
    label: int = -1


@dataclass
class SplitData:
    """One split as the report shows it: the manifest (and the sha256 of its file), every image's stored size,
    the ``.json`` of every ``stride``-th sample, and the images of the keys asked for."""

    name: str
    folder: Path
    manifest: dict
    sha256: str
    sizes: array = field(default_factory=lambda: array("q"))
    samples: list[dict] = field(default_factory=list)
    stride: int = 1
    images: dict[str, Location] = field(default_factory=dict)


def read_split(folder: Path, wanted: set[str], max_samples: int, quiet: bool = False) -> SplitData:
    """The split in ``folder``: manifest, the sizes from every ``.idx``, the ``.json`` of at most
    ``max_samples`` samples spread evenly over the split (0: all), the locations of the ``wanted`` keys and of
    the images the manifest says ``shard`` re-encoded."""
    path = folder / MANIFEST
    raw = read_capped(path, "manifest")
    manifest = parse_manifest(raw, str(path))
    total = manifest["num_samples"]
    data = SplitData(manifest["split"], folder, manifest, hashlib.sha256(raw).hexdigest(),
                     stride=max(1, -(-total // max_samples)) if max_samples else 1)
    picks: dict[Path, list[tuple[str, int, int]]] = defaultdict(list)
    wanted = wanted | set(fixed_keys(manifest, str(path)))     # the images shard re-encoded: shown as fixed
    n = 0
    with progress(total=len(manifest["shards"]), desc=f"report {data.name}", unit="shards", quiet=quiet) as bar:
        for shard in manifest["shards"]:
            tar, idx = folder / shard["name"], folder / shard["index"]["name"]
            for key, parts in shard_index(tar, idx):
                offset, size = next(parts[e] for e in IMAGE_EXTS if e in parts)
                data.sizes.append(size)
                if n % data.stride == 0 and "json" in parts:
                    picks[tar].append((key, *parts["json"]))
                if key in wanted:
                    data.images[key] = Location(tar, offset, size, label_at(tar, parts.get("cls")))
                n += 1
            bar.update(1)
    data.samples = [meta for tar, rows in picks.items() for meta in sample_jsons(tar, rows)]
    return data


def shard_index(tar: Path, idx: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """``(key, {ext: (offset, size)})`` of every sample of a shard, from its ``.idx``; SchemaError naming the
    index and the sample when one has no image or a member lies past the end of the shard."""
    try:
        end = tar.stat().st_size
    except OSError as e:
        raise ValueError(f"{tar}: cannot read the shard ({e.strerror}); run 'imnet-data verify'") from e
    rows = []
    for key, fields in parse_index(read_capped(idx, "DALI index"), str(idx)):
        parts = index_parts(fields)
        if not any(e in parts for e in IMAGE_EXTS):
            raise SchemaError(f"{idx}: sample {key} has no image member ({', '.join(IMAGE_EXTS)})")
        for ext, (offset, size) in parts.items():
            if offset + size > end:
                raise SchemaError(f"{idx}: {key}.{ext}: {size:,} bytes at {offset:,}, past the end of {tar} "
                                  f"({end:,} bytes); run 'imnet-data verify'")
        rows.append((key, parts))
    return rows


def sample_jsons(tar: Path, rows: list[tuple[str, int, int]]) -> list[dict]:
    """The ``.json`` of the samples ``(key, offset, size)`` of one shard, each checked against the sample
    schema (SchemaError naming shard and key)."""
    out = []
    with open(tar, "rb") as f:
        for key, offset, size in rows:
            where = f"{tar}:{key}.json"
            if size > CAPS["json"]:
                raise SchemaError(f"{where}: {size:,} bytes, over the {CAPS['json']:,}-byte cap of a sample .json")
            out.append(check_sample_json(load_json(os.pread(f.fileno(), size, offset), where), where))
    return out


def label_at(tar: Path, part: tuple[int, int] | None) -> int:
    """The ``.cls`` at ``part`` (offset, size) of a shard as an int, -1 when absent or not a number."""
    if part is None or part[1] > CAPS["cls"]:
        return -1
    with open(tar, "rb") as f:
        text = os.pread(f.fileno(), part[1], part[0])
    return int(text) if text.strip().isdigit() else -1


def read_image(location: Location) -> bytes:
    """The bytes of an image the ``.idx`` located (its size checked against the shard by :func:`shard_index`)."""
    with open(location.shard, "rb") as f:
        return os.pread(f.fileno(), location.size, location.offset)


@dataclass
class Supplied:
    """A report the user passed (``--validate-report``, ``--organize-report``): its path, sha256 and content."""

    path: Path
    sha256: str
    data: dict


def _json_file(path: Path, what: str) -> tuple[Any, str, str]:
    """The JSON in ``path``, the sha256 of its bytes and ``where`` for messages."""
    raw = read_capped(path, what)
    return load_json(raw, str(path)), hashlib.sha256(raw).hexdigest(), str(path)


def read_validate_report(path: Path) -> Supplied:
    """``validate --report``'s JSON, with the fields the page shows checked: source, layout, expect, deep,
    per-split totals and every problem (severity, kind, where, detail)."""
    data, sha, where = _json_file(path, "validate report")
    top = _Fields(data, where)
    for name in ("source", "layout", "expect"):
        top.text(name)
    top.get("deep", "true or false", lambda v: isinstance(v, bool))
    splits = top.get("splits", "an object of splits", lambda v: isinstance(v, dict))
    for split, totals in splits.items():
        entry = top.child(f"splits.{split}", totals)
        for name in ("images", "classes", "bytes"):
            entry.count(name)
    for i, problem in enumerate(top.items("problems")):
        entry = top.child(f"problems[{i}]", problem)
        entry.get("severity", f"one of {', '.join(SEVERITIES)}", lambda v: v in SEVERITIES)
        for name in ("kind", "where", "detail"):
            entry.text(name)
    return Supplied(Path(path), sha, data)


def read_organize_report(path: Path) -> Supplied:
    """``organize``'s report (its file, or the organized folder holding it), with the fields the page shows
    checked: source, dest, layout, fix, per-split counts and bytes, every changed and skipped file."""
    path = Path(path)
    if path.is_dir():
        path = path / ORGANIZE_REPORT
    data, sha, where = _json_file(path, "organize report")
    top = _Fields(data, where)
    for name in ("source", "dest", "layout"):
        top.text(name)
    top.get("fix", "true or false", lambda v: isinstance(v, bool))
    for name in ("counts", "bytes"):
        values = top.get(name, "an object of splits", lambda v: isinstance(v, dict))
        for split in values:
            top.child(name).count(split)
    for i, changed in enumerate(top.items("changed")):
        entry = top.child(f"changed[{i}]", changed)
        for name in ("kind", "path"):
            entry.text(name)
    for i, skipped in enumerate(top.items("skipped")):
        entry = top.child(f"skipped[{i}]", skipped)
        for name in ("origin", "path", "reason"):
            entry.text(name)
    return Supplied(path, sha, data)


def fixed_keys(manifest: dict, where: str) -> dict[str, str]:
    """``key -> kind`` of the images ``shard`` re-encoded (the manifest's ``fixed``), checked."""
    top = _Fields(manifest, where)
    pairs = top.get("fixed", "[[key, kind], ...]", lambda v: isinstance(v, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in v))
    return dict(pairs)
