"""Turn planned files into bytes: draw the pixels with the profile, then encode them as the file's kind claims
(plain, CMYK or grayscale JPEG, PNG named .JPEG) or damage them (truncated, empty, not an image).

A file's bytes depend on its spec alone (its own seed), so rendering in worker processes, in any order,
gives the same bytes as rendering in one.
"""
from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from functools import partial

import numpy as np
from PIL import Image

from imnet_data.fake.photos import draw as draw_photo, jpeg_params as photo_jpeg_params
from imnet_data.fake.plan import ImageSpec
from imnet_data.fake.tiny import draw as draw_tiny, jpeg_params as tiny_jpeg_params
from imnet_data.parallel import map_units

# a profile: how it draws an image and picks its JPEG settings
PROFILES = {"tiny": (draw_tiny, tiny_jpeg_params), "imagenet": (draw_photo, photo_jpeg_params)}
NOT_IMAGE = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
             b"<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n")
_PARALLEL_FROM = 400  # fewer images are faster in one process


def render(spec: ImageSpec, profile: str) -> bytes:
    """The bytes of one planned file."""
    if spec.source is not None:
        return render(spec.source, profile)
    if spec.kind == "empty":
        return b""
    if spec.kind == "not_image":
        return NOT_IMAGE
    draw, jpeg_params = PROFILES[profile]
    rng = np.random.default_rng(spec.seed)
    image = draw(spec, rng)
    params = jpeg_params(rng)
    if spec.kind == "png":
        return _encode(image, "PNG")
    data = _encode(image.convert({"cmyk": "CMYK", "gray": "L"}.get(spec.kind, "RGB")), "JPEG", **params)
    return data[: len(data) * 2 // 3] if spec.kind == "truncated" else data


def render_all(specs: Sequence[ImageSpec], profile: str, *, desc: str, quiet: bool) -> Iterator[bytes]:
    """Bytes of ``specs`` in order, drawn on all cores when there are many; with a progress bar."""
    jobs = None if len(specs) >= _PARALLEL_FROM else 1
    return map_units(partial(render, profile=profile), specs, jobs=jobs, desc=desc, unit="img", quiet=quiet)


def _encode(image: Image.Image, fmt: str, **params: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()
