"""The ``imagenet`` profile: benchmark images with the size and JPEG statistics of the real set, cut from the
real photographs that scikit-image ships (read as files from its package data, never downloaded).

Each image is a random crop of one photo (usually its class's own photo, so classes differ), scaled to the
planned size, maybe mirrored, colour-jittered, with sensor-like grain so JPEG sizes match real photos.
"""
from __future__ import annotations

import importlib.resources
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from imnet_data.catalog import ilsvrc2012
from imnet_data.fake.plan import ImageSpec

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

_SUBSAMPLING = ((2, 0.7), (1, 0.2), (0, 0.1))  # PIL codes 4:2:0, 4:2:2, 4:4:4 and their shares
_GRAIN_TILE = 1024  # side of the per-process grain tile; images take random windows of it
_COLOUR = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "color.png")
_TEXTURES = {"grass.png": (0.75, 1.0, 0.55), "gravel.png": (1.0, 0.9, 0.75), "brick.png": (1.0, 0.6, 0.45)}
_OWN_PHOTO = 0.7  # how often an image comes from its class's own photo


@lru_cache(maxsize=1)
def photos() -> tuple[Image.Image, ...]:
    """The source photographs as RGB images (grayscale textures tinted); loaded once per process."""
    try:
        data = importlib.resources.files("skimage") / "data"
    except ModuleNotFoundError:
        raise ImportError("the 'imagenet' fake profile cuts scikit-image's sample photographs: "
                          "pip install 'imnet-data[photos]'") from None
    out = [_load(data / name) for name in _COLOUR]
    for name, tint in _TEXTURES.items():
        gray = np.asarray(_load(data / name), dtype=np.float32)
        out.append(Image.fromarray((gray * np.array(tint, dtype=np.float32)).astype(np.uint8), "RGB"))
    return tuple(out)


def draw(spec: ImageSpec, rng: np.random.Generator) -> Image.Image:
    """The RGB pixels of ``spec``: a jittered, grainy crop of a real photograph at the planned size."""
    pool = photos()
    own = ilsvrc2012().by_wnid(spec.wnid).index % len(pool)
    photo = pool[own if rng.random() < _OWN_PHOTO else int(rng.integers(len(pool)))]
    image = photo.resize(spec.size, Image.Resampling.BICUBIC, box=_crop(rng, photo.size, spec.size))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _jitter(rng, np.asarray(image, dtype=np.float32))


def _load(path: Traversable) -> Image.Image:
    with path.open("rb") as f, Image.open(f) as image:
        return image.convert("RGB")


def _crop(rng: np.random.Generator, source: tuple[int, int],
          size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box of the target aspect ratio covering 30..100 % of the largest such box in the photo."""
    aspect = size[0] / size[1]
    width = min(source[0], source[1] * aspect) * np.sqrt(rng.uniform(0.3, 1.0))
    height = width / aspect
    x, y = rng.uniform(0, source[0] - width), rng.uniform(0, source[1] - height)
    return (x, y, x + width, y + height)


def jpeg_params(rng: np.random.Generator) -> dict[str, int]:
    """Quality 92..98 and a mix of chroma subsamplings: calibrated to a mean near 110 KB at 500x375."""
    codes, shares = zip(*_SUBSAMPLING, strict=True)
    return {"quality": int(rng.integers(92, 99)), "subsampling": int(rng.choice(codes, p=shares))}


@lru_cache(maxsize=1)
def _grain() -> np.ndarray:
    """Unit gaussian grain, drawn once per process (fixed seed): windows of it are cheaper than fresh noise."""
    return np.random.default_rng(0).standard_normal((_GRAIN_TILE, _GRAIN_TILE, 3), dtype=np.float32)


def _jitter(rng: np.random.Generator, pixels: np.ndarray) -> Image.Image:
    """Brightness, contrast and saturation jitter, then grain."""
    height, width = pixels.shape[:2]
    gray = pixels @ np.full((3, 1), 1 / 3, dtype=np.float32)
    pixels = gray + (pixels - gray) * np.float32(rng.uniform(0.6, 1.4))
    mean = pixels.mean()
    pixels = (pixels - mean) * np.float32(rng.uniform(0.8, 1.2)) + mean * np.float32(rng.uniform(0.8, 1.2))
    y, x = (int(rng.integers(_GRAIN_TILE - side + 1)) for side in (height, width))
    pixels += _grain()[y:y + height, x:x + width] * np.float32(rng.uniform(3.0, 9.0))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
