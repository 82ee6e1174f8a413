"""Bounding-box annotations as the real ILSVRC2012 bbox archives hold them: one PASCAL VOC XML per image,
``<wnid>/<stem>.xml`` in ``ILSVRC2012_bbox_train_v2.tar.gz`` (about half the train images) and
``val/<stem>.xml`` in ``ILSVRC2012_bbox_val_v3.tgz`` (every val image). The Kaggle layout reuses the XMLs.
"""
from __future__ import annotations

from pathlib import Path

from imnet_data import tario
from imnet_data.fake.plan import ImageSpec, Plan


def voc_xml(spec: ImageSpec) -> bytes:
    """The annotation of one image, laid out (tabs, field order) like the real files."""
    folder = "val" if spec.split == "val" else spec.wnid
    width, height = spec.size
    lines = ["<annotation>", f"\t<folder>{folder}</folder>", f"\t<filename>{spec.stem}</filename>",
             "\t<source>", "\t\t<database>ILSVRC_2012</database>", "\t</source>",
             "\t<size>", f"\t\t<width>{width}</width>", f"\t\t<height>{height}</height>", "\t\t<depth>3</depth>",
             "\t</size>", "\t<segmented>0</segmented>"]
    for box in spec.boxes:
        lines += ["\t<object>", f"\t\t<name>{spec.wnid}</name>", "\t\t<pose>Unspecified</pose>",
                  "\t\t<truncated>0</truncated>", "\t\t<difficult>0</difficult>", "\t\t<bndbox>",
                  f"\t\t\t<xmin>{box.xmin}</xmin>", f"\t\t\t<ymin>{box.ymin}</ymin>",
                  f"\t\t\t<xmax>{box.xmax}</xmax>", f"\t\t\t<ymax>{box.ymax}</ymax>", "\t\t</bndbox>", "\t</object>"]
    return ("\n".join(lines + ["</annotation>"]) + "\n").encode()


def xml_path(spec: ImageSpec) -> str:
    """Where the annotation of ``spec`` sits: ``<wnid>/<stem>.xml`` (train) or ``val/<stem>.xml``."""
    return f"{'val' if spec.split == 'val' else spec.wnid}/{spec.stem}.xml"


def write_bbox(train_path: Path, val_path: Path, plan: Plan) -> None:
    """Write both bbox archives atomically."""
    for path, specs in ((train_path, plan.train), (val_path, plan.val)):
        with tario.atomic_tar(path, compress=True) as tar:
            for spec in specs:
                if spec.annotated:
                    tario.add_bytes(tar, xml_path(spec), voc_xml(spec))
