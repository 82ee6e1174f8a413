"""The two image archives, streamed as images are drawn: ``ILSVRC2012_img_train.tar`` (one ``<wnid>.tar`` per
class, sorted, each holding that class's JPEGs sorted by name) and the flat ``ILSVRC2012_img_val.tar``."""
from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from pathlib import Path

from imnet_data import tario
from imnet_data.fake.plan import ImageSpec, Plan
from imnet_data.fake.render import render_all

Sink = Callable[[ImageSpec, bytes], None]  # sees every file written (hashing, the Kaggle copy)


def write_train(path: Path, plan: Plan, sink: Sink, *, quiet: bool) -> None:
    """Write the train archive atomically, passing every image to ``sink``."""
    images = zip(plan.train, render_all(plan.train, plan.options.profile, desc="train", quiet=quiet), strict=True)
    with tario.atomic_tar(path) as tar:
        for wnid, members in groupby(images, key=lambda item: item[0].wnid):
            inner = []
            for spec, data in members:
                sink(spec, data)
                inner.append((spec.name, data))
            tario.add_bytes(tar, f"{wnid}.tar", tario.tar_bytes(inner))


def write_val(path: Path, plan: Plan, sink: Sink, *, quiet: bool) -> None:
    """Write the val archive atomically, passing every image to ``sink``."""
    images = zip(plan.val, render_all(plan.val, plan.options.profile, desc="val", quiet=quiet), strict=True)
    with tario.atomic_tar(path) as tar:
        for spec, data in images:
            sink(spec, data)
            tario.add_bytes(tar, spec.name, data)
