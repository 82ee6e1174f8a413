"""The expected-truth document of a fake download: what every later command should find in it.

Keys: ``format_version``, ``options``, ``classes`` (wnid, index, ilsvrc2012_id), ``train`` and ``val``
(file name -> wnid, sha256, kind), ``quirks`` and ``faults`` (split, name, kind, and ``duplicate_of`` for
duplicates) and ``archives`` (role -> name, md5, size).
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from imnet_data import tario
from imnet_data.fake.defects import FAULT_KINDS, QUIRK_KINDS
from imnet_data.fake.options import FakeResult
from imnet_data.fake.plan import ImageSpec, Plan

FORMAT_VERSION = 1


def build_truth(plan: Plan, sha256: dict[tuple[str, str], str], archives: dict[str, Path]) -> dict:
    """The truth for ``plan`` given each written file's sha256 (by split and name) and the archive files."""
    options = dataclasses.asdict(plan.options)
    if not isinstance(plan.options.classes, int):
        options["classes"] = list(plan.options.classes)
    specs = plan.train + plan.val
    return {
        "format_version": FORMAT_VERSION,
        "options": options,
        "classes": [{"wnid": c.wnid, "index": c.index, "ilsvrc2012_id": c.ilsvrc2012_id} for c in plan.classes],
        **{split: {s.name: {"wnid": s.wnid, "sha256": sha256[split, s.name], "kind": s.kind}
                   for s in specs if s.split == split} for split in ("train", "val")},
        "quirks": [_defect(s) for s in specs if s.kind in QUIRK_KINDS],
        "faults": [_defect(s) for s in specs if s.kind in FAULT_KINDS],
        "archives": {role: {"name": p.name, "md5": _md5(p), "size": p.stat().st_size}
                     for role, p in sorted(archives.items())},
    }


def write_truth(result: FakeResult, path: Path) -> None:
    """Write ``result.truth`` as JSON (sorted keys, so the same fake gives the same bytes), atomically."""
    tario.write_json(Path(path), result.truth)


def _defect(spec: ImageSpec) -> dict:
    entry: dict[str, object] = {"split": spec.split, "name": spec.name, "kind": spec.kind}
    if spec.source is not None:
        entry["duplicate_of"] = {"split": spec.source.split, "name": spec.source.name}
    return entry


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
