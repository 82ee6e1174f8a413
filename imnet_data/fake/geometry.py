"""Image sizes and object boxes per profile, drawn from a per-image random stream.

Decided at planning time (before any pixel exists) so the bbox XML, the Kaggle CSVs and the drawn image agree.
The ``imagenet`` size mix follows the real set: mostly 500x375 landscapes, then 375x500, 500x333, 500x500 and
a tail of other sizes with the long side 500.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_IMAGENET_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500))
_IMAGENET_WEIGHTS = (0.46, 0.14, 0.14, 0.04, 0.08)  # the rest (0.14): other sizes


@dataclass(frozen=True)
class Box:
    """A PASCAL VOC box in pixel coordinates, ``0 <= xmin < xmax < width`` (likewise y)."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int


def image_size(profile: str, rng: np.random.Generator) -> tuple[int, int]:
    """``(width, height)`` of one image: 40..96 px sides for ``tiny``, the real mix for ``imagenet``."""
    if profile == "tiny":
        return int(rng.integers(40, 97)), int(rng.integers(40, 97))
    pick = rng.random()
    for size, weight in zip(_IMAGENET_SIZES, _IMAGENET_WEIGHTS, strict=True):
        if pick < weight:
            return size
        pick -= weight
    short = int(rng.integers(200, 500))
    return (500, short) if rng.random() < 0.7 else (short, 500)


def object_boxes(rng: np.random.Generator, width: int, height: int) -> tuple[Box, ...]:
    """One to three object boxes, each 30..90 % of the image side, inside the image."""
    count = 1 + int(rng.random() < 0.2) + int(rng.random() < 0.05)
    return tuple(_box(rng, width, height) for _ in range(count))


def _box(rng: np.random.Generator, width: int, height: int) -> Box:
    w = int(rng.integers(int(width * 0.3), int(width * 0.9)))
    h = int(rng.integers(int(height * 0.3), int(height * 0.9)))
    x = int(rng.integers(0, width - w))
    y = int(rng.integers(0, height - h))
    return Box(x, y, x + w - 1, y + h - 1)
