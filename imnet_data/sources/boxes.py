"""Bounding boxes: PASCAL VOC XML (the ILSVRC2012 bbox archives) and the Kaggle LOC CSV strings."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from imnet_data.sources.base import Box, SourceError, stem
from imnet_data.sources.safety import BBOX_LIMITS, read_member, tar_members


def parse_voc(xml: bytes, origin: str) -> tuple[Box, ...]:
    """Boxes of one PASCAL VOC annotation file."""
    try:
        root = ET.fromstring(xml)
        return tuple(Box(o.findtext("name", "").strip(), *(int(float(o.findtext(f"bndbox/{k}", "")))
                                                          for k in ("xmin", "ymin", "xmax", "ymax")))
                     for o in root.iter("object"))
    except (ET.ParseError, ValueError) as e:
        raise SourceError(f"{origin}: not a PASCAL VOC annotation ({e})") from e


def parse_loc(prediction: str, origin: str) -> tuple[Box, ...]:
    """Boxes of a Kaggle ``PredictionString``: ``wnid x0 y0 x1 y1`` repeated."""
    parts = prediction.split()
    if len(parts) % 5:
        raise SourceError(f"{origin}: PredictionString {prediction!r} is not groups of 'wnid x0 y0 x1 y1'")
    try:
        return tuple(Box(parts[i], *map(int, parts[i + 1:i + 5])) for i in range(0, len(parts), 5))
    except ValueError as e:
        raise SourceError(f"{origin}: PredictionString {prediction!r} has a non-integer coordinate") from e


def load_voc_archive(path: Path) -> dict[str, tuple[Box, ...]]:
    """Every annotation of a bbox archive (``.tar.gz`` of ``*.xml``), keyed by image key (file stem)."""
    out = {}
    for info, reader in tar_members(path, BBOX_LIMITS):
        if info.name.endswith(".xml"):
            out[stem(info.name)] = parse_voc(read_member(reader, info, str(path)), f"{path}:{info.name}")
    return out
