"""Write one shard of the plan: a WebDataset tar, its DALI index, and a record of what it holds.

Each sample becomes ``<key>.cls`` (ASCII class index), ``<key>.jpg`` (the source bytes unchanged, or an RGB JPEG
for CMYK/PNG/other formats, or a resized re-encode when asked) and ``<key>.json`` (metadata). Tar headers are
fixed (mtime, owner, mode), so the same plan gives the same bytes. The index is written as DALI's ``wds2idx``
would write it, from the offsets known while writing. Files appear under their final names only when complete.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from imnet_data.imageio import FIXABLE, kind_of, to_rgb_jpeg
from imnet_data.shards.plan import PlannedSample, ShardOptions, ShardPlan
from imnet_data.sources.access import fetch
from imnet_data.sources.base import SourceError
from imnet_data.tario import FIXED_MTIME, atomic_file

BLOCK = 512
RECORD = 20 * BLOCK          # tar pads the archive to whole records, as GNU tar and Python's tarfile do
RECORDS = ".imnet-shard"     # per-shard records, next to the shards
INDEX_VERSION = "v1.2"       # DALI's wds2idx format


def tar_header(name: str, size: int, mtime: int = FIXED_MTIME) -> bytes:
    """The 512-byte GNU tar header of a regular file with fixed fields, byte-equal to what Python's tarfile
    writes through :func:`imnet_data.tario.add_bytes` (built directly: this runs three times per sample)."""
    raw = name.encode("utf-8")
    if len(raw) >= 100:
        raise ValueError(f"tar member name {name!r} is too long for a plain header (100 bytes)")
    head = (raw.ljust(100, b"\0") + b"0000644\0" + b"0000000\0" * 2 + b"%011o\0" % size + b"%011o\0" % mtime
            + b" " * 8 + b"0" + b"\0" * 100 + b"ustar  \0" + b"\0" * 80)
    head = head.ljust(BLOCK, b"\0")
    return head[:148] + b"%06o\0" % sum(head) + head[155:]


class HashingWriter:
    """A file writer that counts bytes and computes the sha256 of everything written."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha256, self.pos = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha256.update(data)
        self.pos += len(data)


def add_member(out: HashingWriter, name: str, data: bytes) -> int:
    """Append one member; return the offset of its data (what the DALI index records)."""
    out.write(tar_header(name, len(data)))
    offset = out.pos
    out.write(data)
    if len(data) % BLOCK:
        out.write(b"\0" * (BLOCK - len(data) % BLOCK))
    return offset


def finish_tar(out: HashingWriter) -> None:
    """The end-of-archive marker (two zero blocks) and padding to a whole record."""
    out.write(b"\0" * 2 * BLOCK)
    if out.pos % RECORD:
        out.write(b"\0" * (RECORD - out.pos % RECORD))


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs to write one shard (picklable)."""

    folder: str
    shard: ShardPlan
    options: ShardOptions
    class_names: tuple[str, ...]


def encode(sample: PlannedSample, data: bytes, job: ShardJob) -> tuple[bytes, dict]:
    """The ``.jpg`` bytes and ``.json`` metadata of one sample (fixing or resizing where the options say)."""
    e = sample.entry
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, (width, height) = img.format, img.mode, img.size
    except Exception as err:  # noqa: BLE001 -- hostile bytes make PIL raise many types
        raise SourceError(f"{e.origin}: not a readable image ({err}); run 'imnet-data validate --deep'") from err
    kind, fixed, scale = kind_of(fmt, mode), None, 1.0
    if job.options.fix and kind in FIXABLE - {"gray"}:
        data, fixed = to_rgb_jpeg(data), kind
    if job.options.reencodes():
        data, scale = resize(data, width, height, job.options)
    meta = {"key": sample.key, "label": sample.label, "wnid": e.wnid, "class": job.class_names[sample.label],
            "file": e.name, "format": fmt, "mode": mode, "fixed": fixed,
            "width": round(width * scale), "height": round(height * scale),
            "original_size": [width, height] if scale != 1.0 else None,
            "boxes": [{"wnid": b.wnid, "xmin": round(b.xmin * scale), "ymin": round(b.ymin * scale),
                       "xmax": round(b.xmax * scale), "ymax": round(b.ymax * scale)} for b in e.boxes]}
    return data, meta


def resize(data: bytes, width: int, height: int, options: ShardOptions) -> tuple[bytes, float]:
    """Shrink so the sides fit ``max_size``/``short_side`` (never enlarge) and re-encode at the quality;
    an image already small enough is re-encoded only when a quality alone was asked for."""
    limits = [1.0]
    if options.max_size:
        limits.append(options.max_size / max(width, height))
    if options.short_side:
        limits.append(options.short_side / min(width, height))
    scale = min(limits)
    if scale >= 1.0 and (options.max_size or options.short_side):
        return data, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", size)
        rgb = img.convert("RGB")
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=options.quality or 90)
    return out.getvalue(), scale


def write_shard(job: ShardJob) -> dict:
    """Write the shard, its index and its record; return the record (what the manifest lists per shard)."""
    folder, shard = Path(job.folder), job.shard
    tar_path = folder / shard.name
    idx_path = tar_path.with_suffix(".idx")
    lines, labels, fixed = [], Counter(), []
    with atomic_file(tar_path) as f:
        out = HashingWriter(f)
        for sample in shard.samples:
            image, meta = encode(sample, fetch(sample.entry.loc, sample.entry.origin), job)
            parts = [("cls", str(sample.label).encode()), ("jpg", image),
                     ("json", json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())]
            lines.append(" ".join(f"{ext} {add_member(out, f'{sample.key}.{ext}', data)} {len(data)} "
                                  f"{sample.key}.{ext}" for ext, data in parts))
            labels[sample.label] += 1
            if meta["fixed"]:
                fixed.append([sample.key, meta["fixed"]])
        finish_tar(out)
        index = f"{INDEX_VERSION} {len(lines)}\n" + "".join(line + "\n" for line in lines)
        with atomic_file(idx_path) as fi:
            fi.write(index.encode())
    record = {"name": shard.name, "digest": shard.digest, "samples": len(shard.samples), "bytes": out.pos,
              "sha256": out.sha256.hexdigest(), "histogram": sorted(labels.items()), "fixed": fixed,
              "index": {"name": idx_path.name, "bytes": len(index),
                        "sha256": hashlib.sha256(index.encode()).hexdigest()}}
    write_record(folder, record)
    return record


def record_path(folder: Path, shard_name: str) -> Path:
    return folder / RECORDS / (shard_name + ".json")


def write_record(folder: Path, record: dict) -> None:
    """Store a shard's record (atomically; after the shard itself, so a record always means a whole shard)."""
    path = record_path(folder, record["name"])
    path.parent.mkdir(exist_ok=True)
    with atomic_file(path) as f:
        f.write(json.dumps(record, sort_keys=True).encode())


def read_record(folder: Path, shard_name: str) -> dict | None:
    """A shard's record, or None when absent or unreadable."""
    try:
        return json.loads(record_path(folder, shard_name).read_text())
    except (OSError, ValueError):
        return None
