"""The Kaggle "imagenet-object-localization-challenge" layout of the same images, under ``OUT/kaggle/``:
``ILSVRC/Data/CLS-LOC/{train/<wnid>,val}/``, ``ILSVRC/Annotations/CLS-LOC/{train/<wnid>,val}/*.xml``,
``ILSVRC/ImageSets/CLS-LOC/{train_cls,train_loc,val}.txt`` and the ``LOC_*`` CSV/text files at the top.

The fake has no test split, so ``LOC_sample_submission.csv`` lists the val images (each guessing the first
faked class over the whole image) to show the submission format.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from imnet_data.catalog import ilsvrc2012
from imnet_data.fake.bbox import voc_xml, xml_path
from imnet_data.fake.plan import ImageSpec, Plan

CLS_LOC = ("ILSVRC", "Data", "CLS-LOC")


@contextlib.contextmanager
def kaggle_layout(root: Path, plan: Plan) -> Iterator[Callable[[ImageSpec, bytes], None]]:
    """Yield a function that stores one image; on success add annotations and lists and move the finished
    folder (built as ``<root>.partial``) to ``root``, replacing an older one."""
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield lambda spec, data: _write(tmp.joinpath(*CLS_LOC, spec.split, _relative(spec)), data)
        _write_annotations(tmp, plan)
        _write_lists(tmp, plan)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _relative(spec: ImageSpec) -> str:
    return spec.name if spec.split == "val" else f"{spec.wnid}/{spec.name}"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_annotations(root: Path, plan: Plan) -> None:
    base = root / "ILSVRC" / "Annotations" / "CLS-LOC"
    for spec in plan.train + plan.val:
        if spec.annotated:
            relative = f"train/{xml_path(spec)}" if spec.split == "train" else xml_path(spec)
            _write(base / relative, voc_xml(spec))


def _write_lists(root: Path, plan: Plan) -> None:
    sets = root / "ILSVRC" / "ImageSets" / "CLS-LOC"
    boxed = [s for s in plan.train if s.annotated]
    _lines(sets / "train_cls.txt", [f"{s.wnid}/{s.stem} {i}" for i, s in enumerate(plan.train, 1)])
    _lines(sets / "train_loc.txt", [f"{s.wnid}/{s.stem} {i}" for i, s in enumerate(boxed, 1)])
    _lines(sets / "val.txt", [f"{s.stem} {i}" for i, s in enumerate(plan.val, 1)])
    _lines(root / "LOC_synset_mapping.txt", [f"{c.wnid} {', '.join(c.names)}" for c in ilsvrc2012()])
    _lines(root / "LOC_train_solution.csv", _solution(boxed))
    _lines(root / "LOC_val_solution.csv", _solution(plan.val))
    guess = plan.classes[0].wnid
    _lines(root / "LOC_sample_submission.csv", ["ImageId,PredictionString"] + [
        f"{s.stem},{guess} 0 0 {s.size[0] - 1} {s.size[1] - 1}" for s in plan.val])


def _solution(specs: list[ImageSpec] | tuple[ImageSpec, ...]) -> list[str]:
    """``ImageId,PredictionString`` rows: ``wnid xmin ymin xmax ymax `` per box, trailing space as in the real."""
    return ["ImageId,PredictionString"] + [
        s.stem + "," + "".join(f"{s.wnid} {b.xmin} {b.ymin} {b.xmax} {b.ymax} " for b in s.boxes) for s in specs]


def _lines(path: Path, lines: list[str]) -> None:
    _write(path, "".join(line + "\n" for line in lines).encode())
