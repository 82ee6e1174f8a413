"""``imnet-data preview``: a PNG contact sheet of shard samples, to see at a glance that images and labels match.

Each cell is a :data:`CELL`-pixel square: the image fitted above a caption strip with the class index and name
(the name from the sample's ``.json`` ``class`` field). Samples are read in order from one shard, or from a split
folder's shards in manifest order. ``per_class``: the first sample met of each class, in reading order, until
``n`` classes are found (fewer when the input holds fewer; reading stops there), cells sorted by class index.
The same input and arguments give the same PNG bytes.
"""
from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from imnet_data.errors import UsageError
from imnet_data.paths import check_apart
from imnet_data.shards.manifest import MANIFEST, read_manifest
from imnet_data.shards.members import ShardTarError, open_shard, read, samples
from imnet_data.tario import atomic_file

CELL = 160                    # pixels per cell side
CAPTION = 18                  # pixels of the caption strip at the bottom of a cell
MARGIN = 2                    # pixels around the image
BACKGROUND = (32, 32, 32)
CAPTION_BG = (0, 0, 0)
CAPTION_FG = (255, 255, 255)


@dataclass(frozen=True)
class Sample:
    """One sample for the sheet: key, label, class name and the image bytes."""

    key: str
    label: int
    name: str
    image: bytes


def shard_paths(source: Path) -> list[Path]:
    """The shard files to read: ``source`` itself, or a split folder's shards in manifest order."""
    source = Path(source)
    if source.is_file():
        return [source]
    if (source / MANIFEST).is_file():
        return [source / s["name"] for s in read_manifest(source)["shards"]]
    raise UsageError(f"{source}: neither a shard .tar nor a split folder with {MANIFEST}")


def shard_samples(paths: list[Path]) -> Iterator[tuple[str, dict[str, tarfile.TarInfo], tarfile.TarFile]]:
    """``(key, {ext: member}, tar)`` for every sample of the shards, in order; a shard that is not a safe tar
    raises ValueError naming it and the member (see :mod:`imnet_data.shards.members`)."""
    for path in paths:
        with open_shard(path) as tar:
            try:
                for key, group in samples(path, tar):
                    yield key, group, tar
            except tarfile.TarError as e:
                raise ShardTarError(f"{path}: corrupt tar ({e})") from e


def label_of(tar: tarfile.TarFile, group: dict[str, tarfile.TarInfo]) -> int | None:
    """The sample's ``.cls`` as an int (-1 when it has none: a split published without labels); None when it is
    not a number."""
    if "cls" not in group:
        return -1
    try:
        return int(read(tar, group, "cls"))
    except ValueError:
        return None


def load(key: str, group: dict[str, tarfile.TarInfo], tar: tarfile.TarFile) -> Sample | None:
    """The sample's label, class name and image; None when its ``.cls`` is not a number or it has no image."""
    label = label_of(tar, group)
    image_ext = next((e for e in ("jpg", "jpeg", "png", "webp") if e in group), None)
    if label is None or image_ext is None:
        return None
    try:
        meta = json.loads(read(tar, group, "json") or b"{}")
    except (ValueError, RecursionError):
        meta = {}
    name = meta.get("class", "") if isinstance(meta, dict) else ""
    return Sample(key, label, str(name), read(tar, group, image_ext))


def pick(paths: list[Path], n: int, per_class: bool) -> list[Sample]:
    """The first ``n`` samples, or with ``per_class`` the first sample of each of the first ``n`` classes met
    (sorted by class index)."""
    chosen: dict[int, Sample] | list[Sample] = {} if per_class else []
    for key, group, tar in shard_samples(paths):
        if per_class and label_of(tar, group) in chosen:
            continue
        sample = load(key, group, tar)
        if sample is None:
            continue
        if isinstance(chosen, dict):
            chosen[sample.label] = sample
        else:
            chosen.append(sample)
        if len(chosen) >= n:
            break
    return [chosen[k] for k in sorted(chosen)] if isinstance(chosen, dict) else chosen


def cell(sample: Sample, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> Image.Image:
    """One cell: the image scaled to fit (up or down) and centred above a caption ``<index> <name>``
    (shortened to fit); an undecodable image gets a caption saying so."""
    out = Image.new("RGB", (CELL, CELL), BACKGROUND)
    box = (CELL - 2 * MARGIN, CELL - CAPTION - 2 * MARGIN)
    try:
        with Image.open(io.BytesIO(sample.image)) as img:
            img.draft("RGB", box)
            rgb = img.convert("RGB")
        scale = min(box[0] / rgb.width, box[1] / rgb.height)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        thumb = rgb.resize(size, Image.Resampling.BICUBIC)
        out.paste(thumb, (MARGIN + (box[0] - size[0]) // 2, MARGIN + (box[1] - size[1]) // 2))
        caption = f"{sample.label} {sample.name}".strip() if sample.label >= 0 else f"{sample.key} (unlabelled)"
    except Exception:  # noqa: BLE001 -- a damaged image gets a marked cell, not a crash
        caption = f"{sample.label} UNDECODABLE"
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, CELL - CAPTION, CELL, CELL), fill=CAPTION_BG)
    if draw.textlength(caption, font=font) > CELL - 6:
        while len(caption) > 1 and draw.textlength(caption + "...", font=font) > CELL - 6:
            caption = caption[:-1]
        caption = caption.rstrip() + "..."
    draw.text((3, CELL - CAPTION + 3), caption, fill=CAPTION_FG, font=font)
    return out


def contact_sheet(paths: list[Path], n: int, per_class: bool = False,
                  columns: int | None = None) -> Image.Image | None:
    """The contact sheet of up to ``n`` samples of ``paths`` (shards, read in order; see :func:`pick`);
    ``columns`` defaults to a near-square grid. None when they hold no sample with a label and an image."""
    chosen = pick(paths, n, per_class)
    if not chosen:
        return None
    cols = min(columns or math.ceil(math.sqrt(len(chosen))), len(chosen))
    rows = math.ceil(len(chosen) / cols)
    sheet = Image.new("RGB", (cols * CELL, rows * CELL), BACKGROUND)
    font = ImageFont.load_default()
    for i, sample in enumerate(chosen):
        sheet.paste(cell(sample, font), ((i % cols) * CELL, (i // cols) * CELL))
    return sheet


def preview(shard_or_folder: Path, out_png: Path, n: int = 16, per_class: bool = False,
            columns: int | None = None) -> Path:
    """Write a contact sheet of up to ``n`` samples of a shard (or a split folder's shards) to ``out_png``
    (atomically); ``columns`` defaults to a near-square grid. Returns ``out_png``."""
    if n < 1:
        raise UsageError(f"n must be at least 1, got {n}")
    paths = shard_paths(Path(shard_or_folder))
    check_apart(paths[0].parent, out_png, "--out")   # never into the shards' folder
    sheet = contact_sheet(paths, n, per_class, columns)
    if sheet is None:
        raise ValueError(f"{shard_or_folder}: no samples with an image (and a valid .cls, where one is) found")
    out_png = Path(out_png)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    with atomic_file(out_png) as f:
        f.write(buf.getvalue())
    return out_png
