"""The ``tiny`` profile: small procedural images, fast enough for tests.

Each class has its own style (background hue, object hue, pattern: stripes at an angle, checks or rings, and
its period), drawn from the class index, so a contact sheet shows at a glance that classes differ.
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image

from imnet_data.catalog import ilsvrc2012
from imnet_data.fake.plan import ImageSpec


def draw(spec: ImageSpec, rng: np.random.Generator) -> Image.Image:
    """The RGB pixels of ``spec``: a noisy gradient in the class hue with patterned objects in the boxes."""
    style = np.random.default_rng(ilsvrc2012().by_wnid(spec.wnid).index)
    background, accent = _rgb(style.random(), 0.5, 0.9), _rgb(style.random(), 0.9, 1.0)
    width, height = spec.size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = background * (0.6 + 0.4 * yy / height)[..., None] + rng.normal(0, 6, (height, width, 3))
    pattern = _pattern(int(style.integers(3)), style.uniform(0, math.pi), 3 + int(style.integers(6)), xx, yy)
    for box in spec.boxes:
        inside = (slice(box.ymin, box.ymax + 1), slice(box.xmin, box.xmax + 1))
        pixels[inside] = np.where(pattern[inside][..., None], accent, accent * 0.3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def jpeg_params(rng: np.random.Generator) -> dict[str, int]:
    """JPEG quality 75..95 (PIL's default 4:2:0 chroma subsampling)."""
    return {"quality": int(rng.integers(75, 96))}


def _pattern(kind: int, angle: float, period: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A boolean pattern: 0 stripes at ``angle``, 1 checks, 2 rings."""
    if kind == 0:
        return np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0
    if kind == 1:
        return (xx // period + yy // period) % 2 == 0
    return np.hypot(xx - xx.mean(), yy - yy.mean()) // period % 2 == 0


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255
