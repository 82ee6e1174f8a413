"""The manifest of a sharded split, written last, from the plan and the per-shard records.

``DEST/<split>/manifest.json`` is the authority for verify, stage and the loader: format and tool version,
source identity, options, class list, and per shard its file, samples, bytes, sha256, class histogram and DALI
index. Beside it, ``wids.json`` (a ``wids`` shard index) and ``DEST/_info.json`` (the split table timm's and
Hugging Face's WebDataset readers look for) let other tools read the set natively.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from imnet_data import __version__, catalog
from imnet_data.shards.plan import read_plan
from imnet_data.shards.schema import (FORMAT_VERSION, MANIFEST_FORMAT, MAX_METADATA, SchemaError, check_info,
                                      load_json, parse_manifest)
from imnet_data.shards.writer import read_record
from imnet_data.tario import atomic_file

MANIFEST = "manifest.json"
WIDS = "wids.json"
INFO = "_info.json"


class IncompleteError(ValueError):
    """Shards of the plan are missing or do not match their records (the message names them)."""


def write_json(path: Path, data: object) -> None:
    """Deterministic JSON (sorted keys), written atomically."""
    with atomic_file(path) as f:
        f.write((json.dumps(data, sort_keys=True, indent=1) + "\n").encode())


def hash_into(h: "hashlib._Hash", path: Path, chunk: int = 1 << 22) -> "hashlib._Hash":
    """``h`` updated with the bytes of a file (read in 4 MiB chunks), e.g. a partial download being resumed."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h


def file_sha256(path: Path) -> str:
    """The sha256 of a file."""
    return hash_into(hashlib.sha256(), path).hexdigest()


def complete(folder: Path, name: str, digest: str, check_sha256: bool = False) -> dict | None:
    """The record of shard ``name`` if the shard and its index are present and match it (size; sha256 too
    with ``check_sha256``), else None."""
    record = read_record(folder, name)
    if record is None or record.get("digest") != digest:
        return None
    tar, idx = folder / name, folder / record["index"]["name"]
    if not (tar.is_file() and idx.is_file() and tar.stat().st_size == record["bytes"]
            and idx.stat().st_size == record["index"]["bytes"]):
        return None
    if check_sha256 and file_sha256(tar) != record["sha256"]:
        return None
    return record


def class_names(space: str, wnids: list[str]) -> list[str]:
    """Display names of the label space's classes (ImageNet-1k's first names, else the synset words)."""
    if space == "imagenet-1k":
        return [c.name for c in catalog.ilsvrc2012()]
    return [catalog.synset_words(w).split(",")[0] for w in wnids]


def finalize(folder: Path, check_sha256: bool = False) -> dict:
    """Check every planned shard of ``folder`` against its record and write the manifest, wids index and
    ``_info.json``. Raises :class:`IncompleteError` naming the missing or mismatched shards."""
    plan = read_plan(folder)
    if plan is None:
        raise IncompleteError(f"{folder}: no plan.json.gz; run 'imnet-data shard SRC DEST' first")
    records, missing = [], []
    for shard in plan["shards"]:
        record = complete(folder, shard["name"], shard["digest"], check_sha256)
        (records.append(record) if record else missing.append(shard["name"]))
    if missing:
        raise IncompleteError(f"{folder}: {len(missing)} of {len(plan['shards'])} shards missing or incomplete "
                              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); run the "
                              "shard command for them (all nodes) again")
    manifest = build_manifest(plan, records)
    write_json(folder / MANIFEST, manifest)
    write_json(folder / WIDS, {"__kind__": "wids-shard-index-v1", "wids_version": 1,
                               "name": f"{plan['name']}-{plan['split']}",
                               "shardlist": [{"url": r["name"], "nsamples": r["samples"], "filesize": r["bytes"]}
                                             for r in records]})
    update_info(folder.parent, manifest)
    return manifest


def build_manifest(plan: dict, records: list[dict]) -> dict:
    """The manifest's content (plain data; deterministic for the same plan and shards)."""
    counts = [0] * len(plan["classes"])
    for record in records:
        for label, n in record["histogram"]:
            counts[label] += n
    names = class_names(plan["label_space"], plan["classes"])
    return {"format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION, "tool_version": __version__,
            "split": plan["split"], "name": plan["name"], "pattern": plan["pattern"], "options": plan["options"],
            "source": plan["source"], "label_space": plan["label_space"],
            "classes": [{"index": i, "wnid": w, "name": n} for i, (w, n) in enumerate(zip(plan["classes"], names))],
            "num_samples": sum(r["samples"] for r in records), "num_bytes": sum(r["bytes"] for r in records),
            "class_counts": counts, "fixed": [f for r in records for f in r["fixed"]],
            "shards": [{k: r[k] for k in ("name", "samples", "bytes", "sha256", "histogram", "index")}
                       for r in records]}


def update_info(root: Path, manifest: dict) -> None:
    """Add or replace the split's entry of ``root/_info.json`` (timm / Hugging Face WebDataset split info)."""
    path = root / INFO
    try:
        info = check_info(load_json(read_capped(path, "split table"), str(path)), str(path))
    except ValueError:   # absent or unusable: start it anew
        info = {}
    split = manifest["split"]
    info["name"] = manifest["name"]
    info.setdefault("splits", {})[split] = {
        "name": split, "num_samples": manifest["num_samples"],
        "filenames": [f"{split}/{s['name']}" for s in manifest["shards"]],
        "shard_lengths": [s["samples"] for s in manifest["shards"]]}
    write_json(path, info)


def read_manifest(path: Path) -> dict:
    """A manifest from its file or its split folder, checked against the schema (:mod:`imnet_data.shards.schema`);
    ValueError naming the file (and field) when absent, too large or malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    return parse_manifest(read_capped(path, "manifest"), str(path))


def read_capped(path: Path, what: str) -> bytes:
    """A metadata file's bytes, at most the schema's cap (a huge or endless file is refused unread)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_METADATA + 1)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what} ({e.strerror})") from e
    if len(raw) > MAX_METADATA:
        raise SchemaError(f"{path}: over the {MAX_METADATA:,}-byte cap for metadata; not a {what}")
    return raw
