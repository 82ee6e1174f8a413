"""The one schema of a shard folder's metadata: the manifest, DALI ``.idx`` files and ``_info.json``.

Every reader (``verify``, ``stage``, ``merge``, the loader, ``bench``, ``preview``) parses these here, so a
malformed or hostile file gets one kind of error, :class:`SchemaError`, naming the file and the field (e.g.
``.../manifest.json: shards[3].sha256: expected a 64-digit hex string, got None``), never a traceback. Sizes are
capped before parsing (:data:`MAX_METADATA`), deep nesting is refused, and every file name a manifest or index
gives must be a plain name inside its folder.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imnet_data.stores.base import MAX_METADATA

MANIFEST_FORMAT = "imnet-data-shards"
FORMAT_VERSION = 1
INDEX_VERSION = "v1.2"           # DALI's wds2idx format
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")   # a plain file name in the split folder
KEY = re.compile(r"^[A-Za-z0-9_-]{1,90}$")                      # a sample key (see shards.table.sample_key)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# one index line: groups of "ext offset size <key>.ext", one key for all (backreferences: \2 the key, \1 and
# \3 the extension of the group being matched)
INDEX_LINE = re.compile(r"([A-Za-z0-9]{1,16}) \d{1,15} \d{1,15} ([A-Za-z0-9_-]{1,90})\.\1"
                        r"(?: ([A-Za-z0-9]{1,16}) \d{1,15} \d{1,15} \2\.\3)*")


# The sample ``.json``: every field in every sample, always of its one type (readers that infer a schema from
# the first few samples, Hugging Face ``datasets`` among them, then read every sample). name -> (JSON type,
# Hugging Face dtype, meaning).
SAMPLE_FIELDS: dict[str, tuple[type, str, str]] = {
    "key": (str, "string", "the sample key (``__key__``)"),
    "label": (int, "int64", "class index (= ``.cls``)"),
    "wnid": (str, "string", "WordNet ID of the class"),
    "class": (str, "string", "class name"),
    "file": (str, "string", "original file name (bytes that are not UTF-8 written as \\xNN)"),
    "width": (int, "int64", "width of the stored image, pixels"),
    "height": (int, "int64", "height of the stored image, pixels"),
    "format": (str, "string", "format of the source file (JPEG, PNG, ...)"),
    "mode": (str, "string", "mode of the source image (RGB, L, CMYK)"),
    "fixed": (str, "string", "what was re-encoded to RGB JPEG: cmyk, png, other; empty when nothing"),
    "original_size": (list, "list:int64", "[width, height] of the source image (the stored size unless resized)"),
    "boxes": (str, "string", "bounding boxes as 'wnid xmin ymin xmax ymax' groups (Kaggle's PredictionString), "
                             "in stored pixels; empty when none"),
    "real_labels": (list, "list:int64", "class indices that count as correct: for ILSVRC2012 val the ReaL labels "
                                        "(empty where the raters kept none), elsewhere [label]"),
}


def check_sample_json(meta: Any, where: str) -> dict:
    """``meta`` if it holds exactly the :data:`SAMPLE_FIELDS`, each of its type; else SchemaError."""
    top = _Fields(meta, where)
    if set(meta) != set(SAMPLE_FIELDS):
        top.fail("", f"the fields {sorted(SAMPLE_FIELDS)}", sorted(meta))
    for name, (kind, _, _) in SAMPLE_FIELDS.items():
        value = meta[name]
        ok = isinstance(value, kind) and not isinstance(value, bool) and (not isinstance(value, list) or all(
            isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            top.fail(name, kind.__name__ + (" of ints" if kind is list else ""), value)
    return meta


class SchemaError(ValueError):
    """A metadata file that is not what the tool wrote; the message names the file and the field."""


def read_capped(path: Path, what: str) -> bytes:
    """A metadata file's bytes, at most the schema's cap (a huge or endless file is refused unread)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_METADATA + 1)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what} ({e.strerror})") from e
    if len(raw) > MAX_METADATA:
        raise SchemaError(f"{path}: over the {MAX_METADATA:,}-byte cap for metadata; not a {what}")
    return raw


def load_json(raw: bytes, where: str) -> Any:
    """JSON of at most :data:`MAX_METADATA` bytes; SchemaError naming ``where`` otherwise."""
    if len(raw) > MAX_METADATA:
        raise SchemaError(f"{where}: {len(raw):,} bytes, over the {MAX_METADATA:,}-byte cap for metadata")
    try:
        return json.loads(raw)
    except RecursionError:
        raise SchemaError(f"{where}: JSON nested too deeply") from None
    except ValueError as e:
        raise SchemaError(f"{where}: not JSON ({e})") from None


class _Fields:
    """Typed access to one JSON object's fields, raising SchemaError with the file and the field's path."""

    def __init__(self, data: Any, where: str, path: str = "") -> None:
        self.where, self.path = where, path
        if not isinstance(data, dict):
            self.fail("", "an object", data)
        self.data = data

    def fail(self, name: str, wanted: str, got: Any) -> None:
        field = ".".join(p for p in (self.path, name) if p) or "the top level"
        shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
        raise SchemaError(f"{self.where}: {field}: expected {wanted}, got {shown[:80]}")

    def get(self, name: str, wanted: str, ok) -> Any:
        value = self.data.get(name)
        if not ok(value):
            self.fail(name, wanted, value)
        return value

    def count(self, name: str) -> int:
        return self.get(name, "a whole number >= 0", is_count)

    def text(self, name: str, pattern: re.Pattern | None = None) -> str:
        wanted = f"a string matching {pattern.pattern}" if pattern else "a string"
        return self.get(name, wanted, lambda v: isinstance(v, str) and (pattern is None or pattern.match(v)))

    def sha256(self, name: str) -> str:
        return self.get(name, "a 64-digit hex string", lambda v: isinstance(v, str) and SHA256.match(v))

    def items(self, name: str) -> list:
        return self.get(name, "a list", lambda v: isinstance(v, list))

    def child(self, name: str, value: Any | None = None) -> _Fields:
        return _Fields(self.data.get(name) if value is None else value, self.where,
                       f"{self.path}.{name}" if self.path else name)


def is_count(value: Any) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest(data: Any, where: str) -> dict:
    """``data`` if it is a shard manifest every reader can use (types, names, label range), else SchemaError."""
    top = _Fields(data, where)
    if data.get("format") != MANIFEST_FORMAT:
        top.fail("format", repr(MANIFEST_FORMAT), data.get("format"))
    if data.get("format_version") != FORMAT_VERSION:
        top.fail("format_version", f"{FORMAT_VERSION} (this tool's; a newer tool wrote it?)",
                 data.get("format_version"))
    top.text("split", FILE_NAME)
    top.text("name")
    classes = top.items("classes")
    for i, c in enumerate(classes):
        entry = top.child(f"classes[{i}]", c)
        entry.get("index", f"{i} (its position)", lambda v, i=i: v == i and not isinstance(v, bool))
        entry.text("wnid")
    top.count("num_samples")
    top.count("num_bytes")
    top.get("class_counts", f"a list of {len(classes)} whole numbers",
            lambda v: isinstance(v, list) and len(v) == len(classes) and all(map(is_count, v)))
    seen: set[str] = set()
    for i, s in enumerate(top.items("shards")):
        shard = top.child(f"shards[{i}]", s)
        name = shard.text("name", FILE_NAME)
        if not name.endswith(".tar") or name in seen:
            shard.fail("name", "a .tar file name listed once", name)
        seen.add(name)
        shard.count("samples")
        shard.count("bytes")
        shard.sha256("sha256")
        shard.get("histogram", f"[[label 0..{len(classes) - 1}, count], ...]",
                  lambda v: isinstance(v, list) and all(
                      isinstance(p, list) and len(p) == 2 and is_count(p[0]) and p[0] < len(classes)
                      and is_count(p[1]) for p in v))
        index = shard.child("index")
        if not index.text("name", FILE_NAME).endswith(".idx"):
            index.fail("name", "an .idx file name", index.data["name"])
        index.count("bytes")
        index.sha256("sha256")
    return data


def check_evaluation(manifest: dict, where: str) -> dict | None:
    """A manifest's ``evaluation`` (an evaluation set's ``set``, ``variant``, ``mask``: sorted distinct class
    indices of the label space or null, and for ImageNet-C ``corruption`` and ``severity``), or None when it has
    none; SchemaError naming the field when it is malformed."""
    if "evaluation" not in manifest:
        return None
    top = _Fields(manifest, where).child("evaluation")
    top.text("set", FILE_NAME)
    top.text("variant")
    n = len(manifest["classes"])
    top.get("mask", f"null or sorted distinct class indices 0..{n - 1}", lambda v: v is None or (
        isinstance(v, list) and bool(v) and all(is_count(i) and i < n for i in v) and v == sorted(set(v))))
    if "severity" in top.data:
        top.text("corruption")
        top.get("severity", "a severity 1..5", lambda v: is_count(v) and 1 <= v <= 5)
    return top.data


def parse_manifest(raw: bytes, where: str) -> dict:
    """A manifest's content (from a file or a download), checked by :func:`check_manifest`."""
    return check_manifest(load_json(raw, where), where)


def check_info(data: Any, where: str) -> dict:
    """``_info.json`` (the split table timm and Hugging Face read): its split names must be plain names."""
    top = _Fields(data, where)
    splits = top.get("splits", "an object of splits", lambda v: isinstance(v, dict))
    for name in splits:
        if not FILE_NAME.match(name):
            top.fail(f"splits.{name[:40]}", "a plain split name", name)
    return data


def parse_index(raw: bytes, where: str) -> Iterator[tuple[str, list[str]]]:
    """The samples of a DALI ``.idx`` (``v1.2 N`` then one line per sample of ``ext offset size name``
    groups), one ``(key, fields)`` at a time (``fields``: the line split at its spaces, see :func:`index_parts`;
    a generator, so a million lines never live at once); SchemaError naming the line for anything else (a byte
    that is not ASCII, a name that is not ``<key>.<ext>``, a negative or non-numeric offset, two keys or one
    extension twice on a line, a count that does not match: raised once the lines are read)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        row = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise SchemaError(f"{where}:{row}: byte 0x{raw[e.start]:02x} at column {column} is not ASCII (an index "
                          "is ASCII text)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    head = lines[0].split(" ") if lines else []
    if len(head) != 2 or head[0] != INDEX_VERSION or not head[1].isdigit():
        raise SchemaError(f"{where}:1: expected '{INDEX_VERSION} <samples>', got {(lines or [''])[0][:60]!r}")
    for number, line in enumerate(lines[1:], 2):
        fields = line.split(" ")
        if not INDEX_LINE.fullmatch(line) or len(set(fields[::4])) * 4 != len(fields):
            raise SchemaError(f"{where}:{number}: expected groups of 'ext offset size <key>.ext' with one key and "
                              f"each extension once, got {line[:80]!r}")
        yield fields[3].partition(".")[0], fields
    if len(lines) - 1 != int(head[1]):
        raise SchemaError(f"{where}:1: says {head[1]} samples, the index lists {len(lines) - 1}")


def index_parts(fields: list[str]) -> dict[str, tuple[int, int]]:
    """``{ext: (data offset, size)}`` of one line's ``fields`` (as :func:`parse_index` gives them)."""
    return {fields[i]: (int(fields[i + 1]), int(fields[i + 2])) for i in range(0, len(fields), 4)}


def render_index(rows: list[tuple[str, list[tuple[str, int, int]]]]) -> str:
    """A DALI ``.idx`` (byte-equal to ``wds2idx``'s) of ``[(key, [(ext, data offset, size), ...]), ...]``."""
    return index_head(len(rows)) + "".join(index_line(key, parts) for key, parts in rows)


def index_head(samples: int) -> str:
    """The first line of a DALI ``.idx`` of ``samples`` samples."""
    return f"{INDEX_VERSION} {samples}\n"


def index_line(key: str, parts: list[tuple[str, int, int]]) -> str:
    """A sample's line of a DALI ``.idx``: ``ext offset size <key>.<ext>`` for each of its members."""
    return " ".join([f"{ext} {offset} {size} {key}.{ext}" for ext, offset, size in parts]) + "\n"
