"""Fakes of the Hugging Face hub copy of ILSVRC2012, made from the same images as the official-archive fake
(same options, same bytes), so a test can prove that both give the same shards.


* ``hf``: ``data/train_images_{0..4}.tar.gz`` (train in name order, cut into five), ``data/val_images.tar.gz``,
  ``data/test_images.tar.gz``, flat JPEGs named as the hub names them (``<stem>_<wnid>.JPEG``, test unlabelled);
* ``hf-parquet``: the same rows as a full re-upload names them (``data/train-00000-of-00002.parquet``, ...,
  ``validation-``, ``test-``), ``image`` = {bytes, path}, ``label`` the sorted-WNID index (-1 for test), the
  hub's ``huggingface`` schema metadata (Image, ClassLabel with the 1000 names), :data:`ROWS_PER_GROUP` rows a
  row group at least, :data:`ROW_GROUPS` row groups a file at most.

The test set: as many images as val (``--val-images``), drawn like the others, named ``ILSVRC2012_test_%08d``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from imnet_data import tario
from imnet_data.catalog import ilsvrc2012
from imnet_data.fake.options import FakeOptions, FakeResult
from imnet_data.fake.plan import ImageSpec, Plan, _spec, make_plan
from imnet_data.fake.render import render_all
from imnet_data.fake.truth import build_truth

TRAIN_ARCHIVES = 5
ROWS_PER_GROUP = 8   # rows a row group holds at least ...
ROW_GROUPS = 8       # ... and row groups a file holds at most (the hub's hold ~100 MB each)
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


def hub_name(spec: ImageSpec) -> str:
    """The hub's name of a fake file: the official stem, then ``_<wnid>`` (not for test)."""
    return spec.name if spec.split == "test" else f"{spec.stem}_{spec.wnid}.JPEG"


def test_specs(plan: Plan) -> tuple[ImageSpec, ...]:
    """The fake test set: as many images as val, unlabelled (each drawn as one of the classes, in turn: the
    drawing needs one; no name or truth says which)."""
    wnids = [c.wnid for c in plan.classes]
    return tuple(_spec(plan.options, ("test", f"ILSVRC2012_test_{i:08d}.JPEG"), wnids[i % len(wnids)], "jpeg")
                 for i in range(1, plan.options.val_images + 1))


def images(plan: Plan, tests: tuple[ImageSpec, ...], quiet: bool) -> Iterator[tuple[str, list]]:
    """Each split's ``(spec, bytes)`` in the hub's order (train by name, val and test by number)."""
    for split, specs in (("train", plan.train), ("val", plan.val), ("test", tests)):
        if specs:
            yield split, list(zip(specs, render_all(specs, plan.options.profile, desc=split, quiet=quiet),
                                  strict=True))


def make_hf(out: Path, options: FakeOptions = FakeOptions(), *, quiet: bool = False) -> FakeResult:
    """Write the ``hf`` fake (the hub's tar.gz archives) into ``out/data``; the truth of the official fake
    plus ``test`` and each file's hub name."""
    plan = make_plan(options)
    tests = test_specs(plan)
    data = Path(out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths, sha256 = {}, {}
    for split, pairs in images(plan, tests, quiet):
        parts = [pairs[len(pairs) * i // TRAIN_ARCHIVES: len(pairs) * (i + 1) // TRAIN_ARCHIVES]
                 for i in range(TRAIN_ARCHIVES)] if split == "train" else [pairs]
        for i, part in enumerate(parts):
            role = f"train_{i}" if split == "train" else split
            paths[role] = data / (f"train_images_{i}.tar.gz" if split == "train" else f"{split}_images.tar.gz")
            with tario.atomic_tar(paths[role], compress=True) as tar:
                for spec, raw in part:
                    sha256[split, spec.name] = hashlib.sha256(raw).hexdigest()
                    tario.add_bytes(tar, hub_name(spec), raw)
    return FakeResult(Path(out), paths, truth(plan, tests, sha256, paths))


def make_hf_parquet(out: Path, options: FakeOptions = FakeOptions(), *, quiet: bool = False) -> FakeResult:
    """Write the ``hf-parquet`` fake (a full re-upload's parquet files) into ``out/data``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    plan = make_plan(options)
    tests = test_specs(plan)
    data = Path(out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    index = {w: i for i, w in enumerate(ilsvrc2012().wnids)}
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("label", pa.int64())], metadata={"huggingface": hf_features()})
    paths, sha256 = {}, {}
    for split, pairs in images(plan, tests, quiet):
        files = 2 if split == "train" and len(pairs) > ROWS_PER_GROUP else 1
        for i in range(files):
            part = pairs[len(pairs) * i // files: len(pairs) * (i + 1) // files]
            rows = [{"image": {"bytes": raw, "path": hub_name(spec)},
                     "label": index[spec.wnid] if spec.split != "test" else -1} for spec, raw in part]
            sha256.update({(split, spec.name): hashlib.sha256(raw).hexdigest() for spec, raw in part})
            role = f"{split}_{i}"
            paths[role] = data / f"{SPLIT_NAMES[split]}-{i:05d}-of-{files:05d}.parquet"
            with tario.atomic_file(paths[role]) as f:
                pq.write_table(pa.Table.from_pylist(rows, schema=schema), f,
                               row_group_size=max(ROWS_PER_GROUP, len(rows) // ROW_GROUPS))
    return FakeResult(Path(out), paths, truth(plan, tests, sha256, paths))


def hf_features() -> bytes:
    """The ``huggingface`` schema metadata the hub writes: Image, and ClassLabel with its 1000 names (the
    catalog's names joined by ``, ``, as the hub's ``classes.py`` has them; its second crane is ``crane2``)."""
    names = [", ".join(c.names) + ("2" if c.wnid == "n03126707" else "") for c in ilsvrc2012()]
    return json.dumps({"info": {"features": {"image": {"_type": "Image"},
                                             "label": {"names": names, "_type": "ClassLabel"}}}}).encode()


def truth(plan: Plan, tests: tuple[ImageSpec, ...], sha256: dict, paths: dict[str, Path]) -> dict:
    """The official fake's truth (train, val, quirks, faults) with the hub's files: ``test`` (name ->
    sha256), ``hub_names`` (split -> official name -> hub name) and ``archives``."""
    out = build_truth(plan, sha256, paths)
    out["test"] = {s.name: {"sha256": sha256["test", s.name], "kind": s.kind} for s in tests}
    out["hub_names"] = {split: {s.name: hub_name(s) for s in specs}
                        for split, specs in (("train", plan.train), ("val", plan.val), ("test", tests))}
    return out
