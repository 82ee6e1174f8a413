"""``make_fake``: write a fake ILSVRC2012 download (archives with the real names and byte formats, optional
bbox archives and Kaggle layout) and return its expected truth. Writes nothing else into ``out``."""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from imnet_data.catalog import facts
from imnet_data.fake.archives import write_train, write_val
from imnet_data.fake.bbox import write_bbox
from imnet_data.fake.devkit import write_devkit
from imnet_data.fake.kaggle import kaggle_layout
from imnet_data.fake.options import FakeOptions, FakeResult
from imnet_data.fake.photos import photos
from imnet_data.fake.plan import ImageSpec, make_plan
from imnet_data.fake.truth import build_truth


def make_fake(out: Path, options: FakeOptions = FakeOptions(), *, quiet: bool = False) -> FakeResult:
    """Write the fake download described by ``options`` into ``out`` (created if missing). Same options (and
    the same Pillow, NumPy and SciPy), same bytes. Returns the archive paths by role and the expected truth."""
    if options.profile == "imagenet":
        photos()  # fail before writing anything when scikit-image is missing
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(options)
    # no val images: no val archive (a download without one), not an empty archive (which no download has)
    roles = (["train"] + (["val"] if plan.val else []) + ["devkit"]
             + (["bbox_train", "bbox_val"] if options.bbox else []))
    paths = {role: out / facts()["archives"][role]["name"] for role in roles}
    sha256: dict[tuple[str, str], str] = {}
    with contextlib.ExitStack() as stack:
        kaggle = stack.enter_context(kaggle_layout(out / "kaggle", plan)) if options.kaggle else None

        def sink(spec: ImageSpec, data: bytes) -> None:
            sha256[spec.split, spec.name] = hashlib.sha256(data).hexdigest()
            if kaggle:
                kaggle(spec, data)

        write_train(paths["train"], plan, sink, quiet=quiet)
        if plan.val:
            write_val(paths["val"], plan, sink, quiet=quiet)
    write_devkit(paths["devkit"], plan)
    if options.bbox:
        write_bbox(paths["bbox_train"], paths["bbox_val"], plan)
    truth = build_truth(plan, sha256, paths)
    return FakeResult(out, {**paths, **({"kaggle": out / "kaggle"} if options.kaggle else {})}, truth)
