"""The manifest of a sharded split, written last, from the plan and the per-shard records.

``DEST/<split>/manifest.json`` is the authority for verify, stage and the loader: format and tool version,
source identity, options, class list, and per shard its file, samples, bytes, sha256, class histogram and DALI
index. What other tools read beside it (``wids.json``, ``_info.json``, the dataset card) is written by
:mod:`imnet_data.shards.peers` from the manifest.
"""
from __future__ import annotations

from pathlib import Path

from imnet_data import __version__, catalog
from imnet_data.shards.peers import update_info, write_wids
from imnet_data.shards.planfile import read_plan
from imnet_data.shards.schema import FORMAT_VERSION, MANIFEST_FORMAT, parse_manifest, read_capped
from imnet_data.shards.writer import read_record
from imnet_data.stores import WritableStore
from imnet_data.tario import json_bytes

MANIFEST = "manifest.json"


class IncompleteError(ValueError):
    """Shards of the plan are missing or do not match their records (the message names them)."""


def complete(store: WritableStore, name: str, digest: str, check_sha256: bool = False) -> dict | None:
    """The record of shard ``name`` if the shard and its index are present in the split folder or prefix and
    match it: size, and the sha256 an object store keeps (read through, with ``check_sha256``); else None."""
    record = read_record(store, name)
    try:
        if record is None or record["digest"] != digest:
            return None
        for file in (record, record["index"]):
            found = store.stat(file["name"])
            if found is None or found.size != file["bytes"] or found.sha256 not in (None, file["sha256"]):
                return None
        if check_sha256 and store.sha256(name) != record["sha256"]:
            return None
    except (KeyError, TypeError):   # a record that is not one of ours: not complete
        return None
    return record


def class_names(space: str, wnids: list[str]) -> list[str]:
    """Display names of the label space's classes (ImageNet-1k's first names, else the synset words)."""
    if space == "imagenet-1k":
        return [c.name for c in catalog.ilsvrc2012()]
    return [catalog.synset_words(w).split(",")[0] for w in wnids]


def finalize(split: WritableStore, root: WritableStore, check_sha256: bool = False) -> dict:
    """Check every planned shard of a split folder or prefix (written by any node: ``--merge``) against its
    record, then :func:`write_manifest` from the stored plan and records. Raises :class:`IncompleteError` naming
    the missing or mismatched shards."""
    plan = read_plan(split)
    if plan is None:
        raise IncompleteError(f"{split}: no plan.json.gz; run 'imnet-data shard SRC DEST' first")
    records, missing = [], []
    for shard in plan["shards"]:
        record = complete(split, shard["name"], shard["digest"], check_sha256)
        (records.append(record) if record else missing.append(shard["name"]))
    if missing:
        raise IncompleteError(f"{split}: {len(missing)} of {len(plan['shards'])} shards missing or incomplete "
                              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); run the "
                              "shard command for them (all nodes) again")
    return write_manifest(split, root, plan, records)


def write_manifest(split: WritableStore, root: WritableStore, plan: dict, records: list[dict]) -> dict:
    """Write the manifest of ``plan`` (its header; the sample lists are not needed) and the records of all its
    shards, in plan order, then the wids index, ``_info.json`` and dataset card (in ``root``); the manifest.
    One node hands what it has in memory; ``--merge`` what :func:`finalize` read back."""
    manifest = build_manifest(plan, records)
    write_wids(split, manifest)
    split.write(MANIFEST, json_bytes(manifest))   # last but the root's tables: a reader never meets it early
    update_info(root, manifest)
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
            "classes": [{"index": i, "wnid": w, "name": n}
                        for i, (w, n) in enumerate(zip(plan["classes"], names, strict=True))],
            "num_samples": sum(r["samples"] for r in records), "num_bytes": sum(r["bytes"] for r in records),
            "class_counts": counts, "fixed": [f for r in records for f in r["fixed"]],
            "shards": [{k: r[k] for k in ("name", "samples", "bytes", "sha256", "histogram", "index")}
                       for r in records], **({"labelled": False} if plan.get("labelled") is False else {}),
            **({"evaluation": plan["evaluation"]} if plan.get("evaluation") else {})}


def read_manifest(path: Path) -> dict:
    """A manifest from its file or its split folder, checked against the schema (:mod:`imnet_data.shards.schema`);
    ValueError naming the file (and field) when absent, too large or malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    return parse_manifest(read_capped(path, "manifest"), str(path))
