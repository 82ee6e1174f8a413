"""What image bytes really are, whatever the file name says, and how to turn them into a plain RGB JPEG.

Every ImageNet file is named ``.JPEG``, but not every one is an RGB JPEG: the real train set holds 22 CMYK JPEGs,
a PNG and grayscale JPEGs, and a damaged download adds empty, truncated and non-image files. PIL copes with most
of them, but GPU decoders (nvJPEG/DALI) and strict pipelines do not; ``organize --fix`` and ``validate`` use these
helpers to find such files and re-encode them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

KINDS = ("jpeg", "cmyk", "gray", "png", "other", "undecodable")
# Decodable, but not an RGB JPEG: what ``to_rgb_jpeg`` is for.
FIXABLE = frozenset({"cmyk", "gray", "png", "other"})
JPEG_FORMATS = ("JPEG", "MPO")   # PIL calls a JPEG with a multi-picture (camera) segment MPO
JPEG_KINDS = {"RGB": "jpeg", "CMYK": "cmyk", "L": "gray"}


@dataclass(frozen=True)
class Probe:
    """What decoding found: ``kind`` (one of KINDS), the ``format``/``mode``/``size`` (as PIL names them), and
    for an undecodable file the ``error`` (a stable message, fit for deterministic reports); ``oversized``: not
    decoded at all, its header claims more pixels than PIL's decompression-bomb limit."""

    kind: str
    format: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None
    error: str | None = None
    oversized: bool = False


def decode_error(error: Exception) -> str:
    """What PIL's exception says about image bytes, without the in-memory file PIL names in it (``cannot identify
    image file <_io.BytesIO object at 0x7f...>``): the caller names the real file."""
    if isinstance(error, UnidentifiedImageError):
        return "no known image format"
    return str(error) or type(error).__name__


def probe(data: bytes) -> Probe:
    """Decode ``data`` completely and say what it is.

    JPEGs are decoded by libjpeg-turbo (``simplejpeg``) at 1/8 scale in strict mode: every byte of the entropy-
    coded data is still decoded, so a truncated file is caught, and so is damage PIL decodes to garbage without a
    word (libjpeg's warnings: "Corrupt JPEG data: bad Huffman code", "premature end of data segment", ...).
    What no decoder can see: damage that still forms valid codes (a flipped bit inside a coefficient gives wrong
    pixels silently: JPEG carries no checksum; only the archive's md5 catches that). Other formats go to PIL.
    """
    if not data:
        return Probe("undecodable", error="empty file")
    header = jpeg_header(data)
    if header is not None:
        return _probe_jpeg(data, *header)
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, size = img.format, img.mode, img.size
            img.draft(None, (1, 1))   # JPEG only: smallest scale; other formats ignore it
            img.load()
    except UnidentifiedImageError:
        return Probe("undecodable", error="not an image (no known image format)")
    except Image.DecompressionBombError as e:
        return Probe("undecodable", error=f"not decoded: {e}", oversized=True)
    except Exception as e:  # noqa: BLE001 -- hostile bytes make PIL raise many types (OSError, SyntaxError, ...)
        return Probe("undecodable", error=f"cannot decode: {e}")
    damage = jpeg_damage(data, mode) if fmt in JPEG_FORMATS else None
    if damage:
        return Probe("undecodable", fmt, mode, size, error=damage)
    return Probe(kind_of(fmt, mode), fmt, mode, size)


def _probe_jpeg(data: bytes, mode: str, size: tuple[int, int]) -> Probe:
    """A JPEG whose frame header :func:`jpeg_header` read: decoded by :func:`jpeg_damage`."""
    limit = Image.MAX_IMAGE_PIXELS   # None: the user turned PIL's decompression-bomb check off
    if limit is not None and size[0] * size[1] > 2 * limit:
        return Probe("undecodable", "JPEG", mode, size, f"not decoded: {size[0]}x{size[1]} pixels exceeds the "
                     f"decompression-bomb limit of {2 * limit:,}", oversized=True)
    damage = jpeg_damage(data, mode)
    if damage:
        return Probe("undecodable", "JPEG", mode, size, error=damage)
    return Probe(kind_of("JPEG", mode), "JPEG", mode, size)


def jpeg_damage(data: bytes, mode: str) -> str | None:
    """What libjpeg-turbo reports decoding ``data`` (a JPEG of PIL ``mode``) at 1/8 scale, its warnings
    included, or None when it decodes cleanly."""
    import simplejpeg  # here: only probing needs it

    try:
        simplejpeg.decode_jpeg(data, colorspace={"L": "GRAY", "CMYK": "CMYK"}.get(mode, "RGB"), strict=True,
                               min_factor=8)
    except ValueError as e:
        return f"cannot decode: {e}"
    return None


SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
COMPONENT_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def jpeg_header(data: bytes) -> tuple[str, tuple[int, int]] | None:
    """``(mode, (width, height))`` of a JPEG from its frame header, as PIL reports them, by walking the marker
    segments (a few microseconds; ``PIL.Image.open`` costs ~20). None when ``data`` is not a plain JPEG this walk
    understands: the caller then asks PIL."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:              # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in SOF_MARKERS:
            if pos + 10 > end:
                return None
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            mode = COMPONENT_MODES.get(data[pos + 9])
            return (mode, (width, height)) if mode and width and height else None
        if marker == 0xDA or length < 2:   # scan data before a frame header: not a JPEG we can read this way
            return None
        pos += 2 + length
    return None


def kind_of(fmt: str | None, mode: str) -> str:
    """The KINDS name of a decodable image from PIL's format and mode."""
    if fmt in JPEG_FORMATS:
        return JPEG_KINDS.get(mode, "other")
    return "png" if fmt == "PNG" else "other"


def classify(data: bytes) -> str:
    """The kind of ``data``: jpeg (RGB), cmyk, gray (JPEGs), png, other (another decodable format) or
    undecodable (empty, truncated, not an image)."""
    return probe(data).kind


def to_rgb_jpeg(data: bytes, quality: int = 95) -> bytes:
    """Re-encode any decodable image as a baseline RGB JPEG at ``quality``.

    CMYK is converted by PIL (Adobe-inverted CMYK included), grayscale is replicated to three channels, alpha is
    dropped. Metadata (EXIF, ICC profiles of the old colour space) is not carried over: the pixels are what
    training reads. Raises ValueError when ``data`` cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB")
    except Exception as e:  # noqa: BLE001 -- see probe
        raise ValueError(f"cannot decode image for re-encoding: {decode_error(e)}") from e
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return out.getvalue()
