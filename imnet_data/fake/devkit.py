"""The fake devkit: ``ILSVRC2012_devkit_t12.tar.gz`` with ``data/meta.mat`` and the val ground truth.

``meta.mat`` has the real MATLAB layout: a 1860x1 struct array ``synsets`` with the real field order and all
1860 real entries (1000 leaf classes, then the WordNet ancestors), integers stored in the smallest unsigned
type that holds them as in the real file. Only ``num_train_images`` differs: for a leaf it is the fake's train
count, 0 for leaf classes not in the fake (ancestors are 0, as in the real file).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.io

from imnet_data import tario
from imnet_data.catalog import devkit_synsets, facts, ilsvrc2012
from imnet_data.fake.plan import Plan

FIELDS = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
          "num_train_images")
# savemat puts a creation time in the 116-byte text header; a fixed text keeps the file byte-identical.
HEADER = b"MATLAB 5.0 MAT-file, Platform: imnet-data fake, Created on: Thu Jun 14 00:00:00 2012".ljust(116)


def write_devkit(path: Path, plan: Plan) -> None:
    """Write the devkit archive for ``plan`` atomically."""
    write_devkit_of(path, _train_counts(plan), [s.wnid for s in plan.val])


def write_devkit_of(path: Path, train_counts: dict[str, int], val_wnids: list[str]) -> None:
    """Write a devkit archive atomically: ``meta.mat`` with ``train_counts`` (WNID -> train images) and the val
    ground truth of ``val_wnids`` (the class of each val image, in file order)."""
    meta, truth = facts()["archives"]["devkit"]["meta"], facts()["archives"]["devkit"]["val_ground_truth"]
    with tario.atomic_tar(path, compress=True) as tar:
        tario.add_bytes(tar, meta, meta_mat(train_counts))
        tario.add_bytes(tar, truth, ground_truth(val_wnids))


def meta_mat(train_counts: dict[str, int]) -> bytes:
    """``meta.mat`` bytes with ``num_train_images`` taken from ``train_counts`` (WNID -> count) for leaves."""
    synsets = np.empty((len(devkit_synsets()), 1), dtype=[(f, object) for f in FIELDS])
    for i, entry in enumerate(devkit_synsets()):
        leaf = entry["num_children"] == 0
        values = dict(entry, num_train_images=train_counts.get(entry["WNID"], 0) if leaf else 0)
        synsets[i, 0] = tuple(values[f] if f in ("WNID", "words", "gloss") else _uint(values[f]) for f in FIELDS)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": synsets}, do_compression=True)
    return HEADER + buf.getvalue()[len(HEADER):]


def ground_truth(val_wnids: list[str]) -> bytes:
    """Line i: the devkit ILSVRC2012_ID (not the sorted index) of val image i, of class ``val_wnids[i - 1]``."""
    catalog = ilsvrc2012()
    return "".join(f"{catalog.by_wnid(wnid).ilsvrc2012_id}\n" for wnid in val_wnids).encode()


def _train_counts(plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec in plan.train:
        counts[spec.wnid] = counts.get(spec.wnid, 0) + 1
    return counts


def _uint(value: int | list[int]) -> np.ndarray:
    """A 1xN row in the smallest unsigned integer type holding every value, as MATLAB stored the real file."""
    row = np.atleast_2d(np.asarray(value, dtype=np.int64)).reshape(1, -1)
    top = int(row.max(initial=0))
    return row.astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32)
