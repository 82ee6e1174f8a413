"""A fake Tiny ImageNet download: ``tiny-imagenet-200.zip`` (or its extracted folder) with the real layout, real
WNIDs, and the real val file names, labels and boxes of the chosen classes; 64x64 JPEGs from the ``tiny`` profile.

Same arguments, same bytes: every choice is seeded, zip entries carry a fixed date and mode, and the folder
variant is built under a temporary name and renamed when complete.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from imnet_data import catalog, tario
from imnet_data.errors import UsageError
from imnet_data.fake.geometry import Box, object_boxes
from imnet_data.fake.plan import ImageSpec, rng_for
from imnet_data.fake.render import render

FOLDER = "tiny-imagenet-200"
SIDE = 64
ZIP_DATE = (2015, 2, 10, 0, 0, 0)  # any fixed date keeps the zip byte-identical


def draw_jpeg(name: str, style_wnid: str, size: tuple[int, int], boxes: tuple[Box, ...], seed: int) -> bytes:
    """A ``tiny``-profile JPEG. ``style_wnid`` (an ILSVRC2012 class) picks the colours and pattern."""
    return render(ImageSpec("train", name, style_wnid, "jpeg", size, boxes, True, seed), "tiny")


def tiny_files(classes: int, train_per_class: int, val_images: int, seed: int) -> dict[str, bytes]:
    """Relative path (under ``tiny-imagenet-200/``) -> bytes of every file of the fake."""
    wnids = _classes(classes, seed)
    files = {"wnids.txt": _lines(wnids), "words.txt": _lines(f"{w}\t{catalog.synset_words(w)}" for w in wnids)}
    for wnid in wnids:
        files.update(_train_class(wnid, train_per_class, seed))
    files.update(_val_and_test(wnids, val_images, seed))
    return files


def _train_class(wnid: str, count: int, seed: int) -> dict[str, bytes]:
    """``<wnid>_<i>.JPEG`` for i < count, one seeded box each, and their ``<wnid>_boxes.txt``."""
    files, rows = {}, []
    for i in range(count):
        name, rng = f"{wnid}_{i}.JPEG", rng_for(seed, "tiny-imagenet", "train", wnid, i)
        box = object_boxes(rng, SIDE, SIDE)[0]
        files[f"train/{wnid}/images/{name}"] = draw_jpeg(name, wnid, (SIDE, SIDE), (box,), _seed(rng))
        rows.append(f"{name}\t{box.xmin}\t{box.ymin}\t{box.xmax}\t{box.ymax}")
    files[f"train/{wnid}/{wnid}_boxes.txt"] = _lines(rows)
    return files


def _val_and_test(wnids: list[str], count: int, seed: int) -> dict[str, bytes]:
    """The first ``count`` real val images of ``wnids`` (real names, labels and boxes) with
    ``val_annotations.txt``, and as many unlabelled test images."""
    val = [a for a in catalog.tiny_imagenet_val_annotations() if a[1] in wnids][:count]
    if len(val) < count:
        raise UsageError(f"Tiny ImageNet has {len(val)} val images of {len(wnids)} classes, fewer than {count}")
    files = {"val/val_annotations.txt": _lines(f"{n}\t{w}\t" + "\t".join(map(str, b)) for n, w, b in val)}
    for name, wnid, box in val:
        rng = rng_for(seed, "tiny-imagenet", "val", name)
        files[f"val/images/{name}"] = draw_jpeg(name, wnid, (SIDE, SIDE), (Box(*box),), _seed(rng))
        test_name, rng = name.replace("val_", "test_"), rng_for(seed, "tiny-imagenet", "test", name)
        files[f"test/images/{test_name}"] = draw_jpeg(test_name, wnid, (SIDE, SIDE), (), _seed(rng))
    return files


def make_fake_tiny_imagenet(out: Path, classes: int = 5, train_per_class: int = 4, val_images: int = 10,
                            seed: int = 0, as_zip: bool = True) -> Path:
    """Write ``OUT/tiny-imagenet-200.zip`` (or the ``OUT/tiny-imagenet-200/`` folder) and return its path."""
    if not 1 <= classes <= 200 or train_per_class < 1 or val_images < 0:
        raise UsageError("classes must be 1..200, train_per_class >= 1 and val_images >= 0")
    files = tiny_files(classes, train_per_class, val_images, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _write_zip(out / f"{FOLDER}.zip", files) if as_zip else _write_folder(out / FOLDER, files)


def _classes(count: int, seed: int) -> list[str]:
    """A seeded sample of the 200 classes, in ``wnids.txt`` order."""
    wnids = catalog.subset("tiny-imagenet")[1]
    keep = set(rng_for(seed, "tiny-imagenet", "classes").choice(len(wnids), count, replace=False).tolist())
    return [w for i, w in enumerate(wnids) if i in keep]


def _write_zip(path: Path, files: dict[str, bytes]) -> Path:
    """The zip with a folder entry before each folder's files, entries sorted, fixed dates and modes."""
    folders = {"/".join([FOLDER, *n.split("/")[:i]]) + "/" for n in files for i in range(n.count("/") + 1)}
    entries = sorted([(f, None) for f in folders] + [(f"{FOLDER}/{n}", d) for n, d in files.items()])
    with tario.atomic_file(path) as f, zipfile.ZipFile(f, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.create_system = 3  # unix, so the mode bits below are meaningful
            info.external_attr = (0o40755 << 16 | 0x10) if data is None else 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED if data is None else zipfile.ZIP_DEFLATED
            zf.writestr(info, data or b"")
    return path


def _write_folder(path: Path, files: dict[str, bytes]) -> Path:
    """The folder, built as ``<path>.partial`` and renamed over any older one when complete."""
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name, data in sorted(files.items()):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def _lines(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()
