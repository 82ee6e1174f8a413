"""Images of the fake evaluation sets: a ``tiny`` (or ``imagenet``) profile picture of the labelled class with two
class indices drawn over its centre as a code, so a stand-in model can read back what the fake drew
(:class:`imnet_data.fake.code_model.CodeReader`) and score an exactly known accuracy.

The code: a 5 x 5 grid of black or white cells centred on the image, spanning 0.7 of its shorter side, so it
survives the val transforms (shorter side resized, centre crop of 0.875 or more of it) and JPEG: cells 0..9 hold the
first class index (most significant bit first), 10..19 the second, 20..24 a fixed 1 0 1 0 1.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from imnet_data.fake.geometry import object_boxes
from imnet_data.fake.plan import ImageSpec
from imnet_data.fake.render import PROFILES

GRID = 5
SPAN = 0.7           # of the shorter side
BITS = 10            # per class index (0..999 < 1024)
MARKER = (1, 0, 1, 0, 1)


@dataclass(frozen=True)
class CodedSpec:
    """One image to draw: ``style`` (an ImageNet-1k WNID) picks the picture, ``drawn`` the two class indices of
    the code; ``corruption``/``severity`` an ImageNet-C-like damage applied after the code (its family's kind)."""

    name: str
    style: str
    size: tuple[int, int]
    seed: int
    drawn: tuple[int, int]
    profile: str = "tiny"
    corruption: str = ""
    severity: int = 0


def cells(primary: int, secondary: int) -> list[int]:
    """The 25 cells (1 white, 0 black) of the code of two class indices, row by row."""
    bits = [(value >> (BITS - 1 - i)) & 1 for value in (primary, secondary) for i in range(BITS)]
    return bits + list(MARKER)


def paint(image: Image.Image, primary: int, secondary: int) -> Image.Image:
    """``image`` with the code of ``primary`` and ``secondary`` drawn over its centre."""
    width, height = image.size
    side = SPAN * min(width, height)
    x0, y0, pitch = (width - side) / 2, (height - side) / 2, side / GRID
    draw = ImageDraw.Draw(image)
    for k, bit in enumerate(cells(primary, secondary)):
        row, col = divmod(k, GRID)
        box = [round(x0 + col * pitch), round(y0 + row * pitch),
               round(x0 + (col + 1) * pitch) - 1, round(y0 + (row + 1) * pitch) - 1]
        draw.rectangle(box, fill=(255, 255, 255) if bit else (0, 0, 0))
    return image


def corrupt(image: Image.Image, corruption: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """A mild stand-in for an ImageNet-C corruption (noise, blur, or a contrast loss), stronger with ``severity``,
    never enough to hide the code."""
    if "noise" in corruption:
        pixels = np.asarray(image, np.float32) + rng.normal(0, 6 * severity, (image.height, image.width, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if "blur" in corruption:
        return image.filter(ImageFilter.GaussianBlur(0.4 * severity))
    return ImageEnhance.Contrast(image).enhance(1 - 0.08 * severity)


def draw(spec: CodedSpec) -> bytes:
    """The JPEG of ``spec`` (its bytes depend on the spec alone)."""
    draw_picture, jpeg_params = PROFILES[spec.profile]
    rng = np.random.default_rng(spec.seed)
    boxes = object_boxes(rng, *spec.size)
    picture = draw_picture(ImageSpec("val", spec.name, spec.style, "jpeg", spec.size, boxes, False, spec.seed), rng)
    image = paint(picture.convert("RGB"), *spec.drawn)
    if spec.corruption:
        image = corrupt(image, spec.corruption, spec.severity, rng)
    buf = io.BytesIO()
    image.save(buf, "JPEG", **jpeg_params(rng))
    return buf.getvalue()
