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

from imnet_data.catalog import real_labels_of
from imnet_data.imageio import FIXABLE, decode_error, jpeg_header, kind_of, to_rgb_jpeg
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.plan import UNLABELLED, ShardPlan
from imnet_data.shards.schema import index_head, index_line, render_index
from imnet_data.shards.table import Table
from imnet_data.sources.access import fetch
from imnet_data.sources.base import Entry, SourceError, printable
from imnet_data.stores import ReadableStore
from imnet_data.tario import BLOCK, FIXED_MTIME, atomic_file, start_writeback

HANDOFF = 1 << 20           # bytes gathered before they are written and hashed
WRITEBACK = 64 << 20        # bytes written between two requests to the disk to write them
JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode   # json.dumps, without a new encoder per call
RECORD = 20 * BLOCK          # tar pads the archive to whole records, as GNU tar and Python's tarfile do
RECORDS = ".imnet-shard"     # per-shard records, next to the shards
_IDS = b"0000644\0" + b"0000000\0" * 2                               # mode, uid, gid
_TAIL = (b"0" + b"\0" * 100 + b"ustar  \0").ljust(BLOCK - 156, b"\0")  # type, linkname, GNU magic, zeros
_FIXED_SUM = sum(_IDS) + sum(b" " * 8) + sum(_TAIL)                   # the checksum of the fixed fields


def tar_header(name: str, size: int, mtime: int = FIXED_MTIME) -> bytes:
    """The 512-byte GNU tar header of a regular file with fixed fields, byte-equal to what Python's tarfile
    writes through :func:`imnet_data.tario.add_bytes`, built directly from a template (:func:`_header`)."""
    raw, stamp = name.encode("utf-8"), b"%011o\0" % mtime
    return _header(raw, size, stamp, _FIXED_SUM + sum(stamp) + sum(raw))


def _header(raw: bytes, size: int, stamp: bytes, known_sum: int) -> bytes:
    """:func:`tar_header` of the name ``raw`` with the mtime field ``stamp``, ``known_sum`` the checksum share of
    all but the size field: the checksum is the fixed fields' sum plus that of the name, size and mtime, and
    :func:`pack`, which makes three headers per sample, sums a sample's key once for its members."""
    if len(raw) >= 100:
        raise ValueError(f"tar member name {raw.decode('utf-8', 'replace')!r} is too long for a plain header "
                         "(100 bytes)")
    size_field = b"%011o\0" % size
    checksum = b"%06o\0 " % (known_sum + sum(size_field))
    return b"".join((raw.ljust(100, b"\0"), _IDS, size_field, stamp, checksum, _TAIL))


_MTIME = b"%011o\0" % FIXED_MTIME   # the mtime field of every header this tool writes


class HashingWriter:
    """A file writer that counts bytes and computes the sha256 of everything written. Writes are copied into one
    buffer of :data:`HANDOFF` bytes, written and hashed when full (a write per small sample would cost more than
    the sample), and every :data:`WRITEBACK` bytes the disk is asked to start writing them
    (:func:`~imnet_data.tario.start_writeback`, not waiting), so a shard reaches the disk as it is made, not all at
    the final fsync. No helper thread: it hashed and wrote beside the packing, but where every core runs a writer
    (a worker per core, the default) there was no core to gain, and its handoffs of the GIL cost CPU time (shard
    of 1,331,167 tiny images on 2 cores: 64-65 CPU s with it, 59-60 without; docs/walkthrough.md). Use as a
    context manager: leaving it writes what is left."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha256, self.pos = f, hashlib.sha256(), 0
        self.buffer, self.filled, self.unsynced = bytearray(HANDOFF), 0, 0

    def write(self, data: bytes) -> None:
        """Append ``data`` (through the buffer, or at once when it is larger)."""
        n = len(data)
        self.pos += n
        if self.filled + n > HANDOFF:
            self._flush()
        if n > HANDOFF:
            self._write(memoryview(data))
        else:
            self.buffer[self.filled:self.filled + n] = data
            self.filled += n

    def _flush(self) -> None:
        if self.filled:
            self._write(memoryview(self.buffer)[:self.filled])
            self.filled = 0

    def _write(self, view: memoryview) -> None:
        self.f.write(view)
        self.sha256.update(view)
        self.unsynced += len(view)
        if self.unsynced >= WRITEBACK:
            self.f.flush()
            start_writeback(self.f.fileno())
            self.unsynced = 0

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._flush()


def pack(key: str, parts: list[tuple[str, bytes]], pos: int) -> tuple[bytes, tuple[str, list[tuple[str, int, int]]]]:
    """The tar members ``<key>.<ext>`` of one sample as bytes to write at offset ``pos`` of a shard, and its DALI
    index row (each member's extension, data offset and size). The headers are :func:`tar_header`'s, the key's
    checksum share summed once: made one by one they were a quarter of a shard writer's time."""
    base = key.encode("utf-8")
    known = _FIXED_SUM + sum(_MTIME) + sum(base) + ord(".")
    chunks: list[bytes] = []
    fields = []
    for ext, data in parts:
        tail, n = ext.encode(), len(data)
        pad = -n % BLOCK
        chunks += (_header(b"%s.%s" % (base, tail), n, _MTIME, known + sum(tail)), data, b"\0" * pad)
        fields.append((ext, pos + BLOCK, n))
        pos += BLOCK + n + pad
    return b"".join(chunks), (key, fields)


def add_sample(out: HashingWriter, key: str, parts: list[tuple[str, bytes]]) -> str:
    """Append the members ``<key>.<ext>`` of one sample in one write; return its DALI index line."""
    chunk, row = pack(key, parts, out.pos)
    out.write(chunk)
    return index_line(*row)


def parts_of(label: int, image: bytes, meta: dict) -> list[tuple[str, bytes]]:
    """A sample's members: ``.cls`` (none for an unlabelled sample), ``.jpg``, ``.json``."""
    cls = [("cls", str(label).encode())] if label != UNLABELLED else []
    return [*cls, ("jpg", image), ("json", sample_json(meta))]


_STR = json.encoder.encode_basestring_ascii   # a str as json.dumps writes it (ASCII, quoted)
_SAMPLE_JSON = ('{"boxes":%s,"class":%s,"file":%s,"fixed":%s,"format":%s,"height":%d,"key":%s,"label":%d,'
                '"mode":%s,"original_size":[%s],"real_labels":[%s],"width":%d,"wnid":%s}')


def sample_json(meta: dict) -> bytes:
    """``JSON(meta).encode()`` of a sample's metadata (the :data:`SAMPLE_FIELDS` in sorted order, each of its one
    type, as :func:`encode` makes it): the same bytes from a template at a third of the encoder's cost, which
    was the largest single cost per sample of a shard (a test checks it against ``JSON`` on every field)."""
    m = meta
    return (_SAMPLE_JSON % (_STR(m["boxes"]), _STR(m["class"]), _STR(m["file"]), _STR(m["fixed"]), _STR(m["format"]),
                            m["height"], _STR(m["key"]), m["label"], _STR(m["mode"]),
                            ",".join(map(str, m["original_size"])), ",".join(map(str, m["real_labels"])), m["width"],
                            _STR(m["wnid"]))).encode()


def finish_tar(out: HashingWriter) -> None:
    """The end-of-archive marker (two zero blocks) and padding to a whole record."""
    out.write(b"\0" * 2 * BLOCK)
    if out.pos % RECORD:
        out.write(b"\0" * (RECORD - out.pos % RECORD))


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs to write one shard (picklable): the shard, its rows of the plan and nothing more."""

    folder: str
    shard: ShardPlan
    rows: Table
    options: ShardOptions
    class_names: tuple[str, ...]
    label_space: str


def encode(key: str, label: int, e: Entry, data: bytes, job: ShardJob) -> tuple[bytes, dict]:
    """The ``.jpg`` bytes and ``.json`` metadata of one sample (fixing or resizing where the options say); the
    metadata holds every field of :data:`~imnet_data.shards.schema.SAMPLE_FIELDS`, each of its one type."""
    fmt, mode, (width, height) = image_info(data, e.origin)
    kind, fixed, (sx, sy) = kind_of(fmt, mode), "", (1.0, 1.0)
    try:
        if job.options.fix and kind in FIXABLE - {"gray"}:
            data, fixed = to_rgb_jpeg(data), kind
        if job.options.reencodes():
            data, (sx, sy) = resize(data, width, height, job.options)
    except ValueError as err:     # the header was read, the pixels are damaged
        raise SourceError(f"{e.origin}: {err}; run 'imnet-data validate --deep'") from err
    real = real_labels_of(key) if job.label_space == "imagenet-1k" else None
    labelled = label != UNLABELLED
    meta = {"key": key, "label": label, "wnid": e.wnid or "", "class": job.class_names[label] if labelled else "",
            "file": printable(e.name), "format": fmt, "mode": mode, "fixed": fixed,
            "width": round(width * sx), "height": round(height * sy), "original_size": [width, height],
            "boxes": " ".join([f"{b.wnid} {round(b.xmin * sx)} {round(b.ymin * sy)} {round(b.xmax * sx)} "
                               f"{round(b.ymax * sy)}" for b in e.boxes]) if e.boxes else "",
            "real_labels": list(real) if real is not None else [label] if labelled else []}
    return data, meta


def image_info(data: bytes, origin: str) -> tuple[str, str, tuple[int, int]]:
    """Format, mode and size of an image from its header (the JPEG fast path, else PIL); SourceError naming
    ``origin`` when it is not a readable image."""
    found = jpeg_header(data)
    if found:
        return "JPEG", found[0], found[1]
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format, img.mode, img.size
    except Exception as err:  # noqa: BLE001 -- hostile bytes make PIL raise many types
        raise SourceError(f"{origin}: not a readable image ({decode_error(err)}); run 'imnet-data validate "
                          "--deep'") from err


def resize(data: bytes, width: int, height: int, options: ShardOptions) -> tuple[bytes, tuple[float, float]]:
    """Shrink so the sides fit ``max_size``/``short_side`` (never enlarge), or with ``squish`` to a square of that
    side when the longer side is at least that (ImageNet-21K-P's resize: the aspect is not kept), and re-encode at
    the quality; an image already small enough is re-encoded only when a quality alone was asked for. Returns
    the bytes and the horizontal and vertical scale."""
    limits = [1.0]
    if options.max_size:
        limits.append(options.max_size / max(width, height))
    if options.short_side:
        limits.append(options.short_side / min(width, height))
    scale = min(limits)
    if options.squish and max(width, height) >= options.squish:
        size = (options.squish, options.squish)
        scales = (size[0] / width, size[1] / height)
    elif scale >= 1.0 and (options.max_size or options.short_side or options.squish):
        return data, (1.0, 1.0)
    else:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        scales = (scale, scale)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", size)
            rgb = img.convert("RGB")
    except Exception as err:  # noqa: BLE001 -- see image_info
        raise ValueError(f"cannot decode image for resizing: {decode_error(err)}") from err
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=options.quality or 90)
    return out.getvalue(), scales


def write_shard(job: ShardJob) -> dict:
    """Write the shard, its index and its record; return the record (what the manifest lists per shard)."""
    folder, shard, table = Path(job.folder), job.shard, job.rows
    tar_path = folder / shard.name
    idx_path = tar_path.with_suffix(".idx")
    lines, fixed = bytearray(), []      # the index as it is written: ~90 bytes a sample, not a row of objects
    labels: Counter[int] = Counter()
    with atomic_file(tar_path) as f:
        with HashingWriter(f) as out:
            for key, label, entry in table.samples():
                image, meta = encode(key, label, entry, fetch(entry.loc, entry.origin), job)
                lines += add_sample(out, key, parts_of(label, image, meta)).encode()
                labels[label] += 1
                if meta["fixed"]:
                    fixed.append([key, meta["fixed"]])
            finish_tar(out)
        index = index_head(len(table)).encode() + lines
        with atomic_file(idx_path) as fi:
            fi.write(index)
    return finish_record(folder, shard, out.pos, out.sha256.hexdigest(), fixed, index, labels)


def write_index(path: Path, rows: list[tuple[str, list[tuple[str, int, int]]]]) -> bytes:
    """Write the DALI index of ``rows`` at ``path`` (atomically); return its bytes."""
    index = render_index(rows).encode()
    with atomic_file(path) as f:
        f.write(index)
    return index


def finish_record(folder: Path, shard: ShardPlan, size: int, sha256: str, fixed: list, index: bytes,
                  labels: Counter[int]) -> dict:
    """Write and return a written shard's record: what the manifest lists per shard (the class histogram of
    its labelled samples, from ``labels``: samples per label)."""
    labels.pop(UNLABELLED, None)
    record = {"name": shard.name, "digest": shard.digest, "samples": shard.samples, "bytes": size,
              "sha256": sha256, "histogram": sorted(labels.items()), "fixed": fixed,
              "index": {"name": Path(shard.name).with_suffix(".idx").name, "bytes": len(index),
                        "sha256": hashlib.sha256(index).hexdigest()}}
    write_record(folder, record)
    return record


def record_name(shard_name: str) -> str:
    """Where a shard's record lives, relative to its split folder or prefix."""
    return f"{RECORDS}/{shard_name}.json"


def record_path(folder: Path, shard_name: str) -> Path:
    """The path of a shard's record in a split folder."""
    return folder / record_name(shard_name)


def write_record(folder: Path, record: dict) -> None:
    """Store a shard's record (atomically; after the shard itself, so a record always means a whole shard)."""
    path = record_path(folder, record["name"])
    path.parent.mkdir(exist_ok=True)
    with atomic_file(path) as f:
        f.write(json.dumps(record, sort_keys=True).encode())


def read_record(store: ReadableStore, shard_name: str) -> dict | None:
    """A shard's record in a split folder or prefix, or None when absent or unreadable."""
    raw = store.read(record_name(shard_name))
    try:
        record = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None
