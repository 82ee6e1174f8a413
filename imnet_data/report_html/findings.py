"""The problems the report lists, each with what was done about it: every finding of ``validate --report``, the
files ``organize --fix`` re-encoded or skipped and the images ``shard`` re-encoded, matched by file name and
sample key, so a person sees in one table that the CMYK JPEG was fixed, the truncated one skipped and the
grayscale one kept as a known quirk; and a thumbnail of each image that is in the shards (as stored there).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePosixPath

from PIL import ImageFont

from imnet_data.report_html.inputs import Location, SplitData, Supplied, fixed_keys, read_image
from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.preview import Sample, cell
from imnet_data.shards.table import KEY_UNSAFE
from imnet_data.sources.base import stem

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
ORDER = {"error": 0, "skipped": 1, "warning": 2, "known": 3, "fixed": 4}   # the table's order of severities


@dataclass
class Finding:
    """One row of the problems table: what was found where, what was done about it, and (when the image is in
    the shards) its split and location there."""

    severity: str
    kind: str
    where: str
    detail: str
    outcome: str = ""
    key: str | None = None
    split: str | None = None
    location: Location | None = None
    thumbnail: bytes | None = None     # a JPEG cell drawn from the shards' image


def file_name(where: str) -> str:
    """The file a finding names: the last part of ``archive:inner.tar:member`` or of a path."""
    return PurePosixPath(where.rsplit(":", 1)[-1]).name


def image_key(where: str) -> str | None:
    """The sample key of the image file a finding names (the rule of ``shard``), None when it names no image
    (an archive, a class count)."""
    name = file_name(where)
    return KEY_UNSAFE.sub("_", stem(name)) if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES else None


def wanted_keys(validate: Supplied | None, organize: Supplied | None) -> set[str]:
    """The sample keys of every image the reports name, to be located in the shards."""
    names = [p["where"] for p in validate.data["problems"]] if validate else []
    if organize:
        names += [c["path"] for c in organize.data["changed"]] + [s["path"] for s in organize.data["skipped"]]
    return {k for k in map(image_key, names) if k}


def findings(splits: list[SplitData], validate: Supplied | None, organize: Supplied | None) -> list[Finding]:
    """Every finding, with its outcome: the validate report's problems, then what organize changed or skipped
    and shard re-encoded that no problem named (matched by sample key); errors first."""
    changed = keyed(organize.data["changed"], "path") if organize else {}
    skipped = keyed(organize.data["skipped"], "origin") if organize else {}
    fixed = {key: (split.name, kind) for split in splits
             for key, kind in fixed_keys(split.manifest, str(split.folder / MANIFEST)).items()}
    out = [Finding(p["severity"], p["kind"], p["where"], p["detail"], key=image_key(p["where"]))
           for p in (validate.data["problems"] if validate else [])]
    keys = {f.key for f in out}
    out += [Finding("skipped", "organize", s["origin"], s["reason"], key=k) for k, s in skipped.items()
            if k not in keys]
    out += [Finding("fixed", c["kind"], c["path"], "re-encoded to RGB JPEG by organize --fix", key=k)
            for k, c in changed.items() if k not in keys]
    out += [Finding("fixed", kind, f"{split}: {key}", "re-encoded to RGB JPEG by shard", key=key)
            for key, (split, kind) in fixed.items() if key not in keys]
    for f in out:
        place = next(((s.name, s.images[f.key]) for s in splits if f.key in s.images), None)
        f.split, f.location = place if place else (None, None)
        key = f.key or ""
        f.outcome = outcome(f, changed.get(key), skipped.get(key), fixed.get(key))
    return sorted(out, key=lambda f: (ORDER.get(f.severity, 9), f.kind, f.where))


def keyed(entries: list[dict], name: str) -> dict[str, dict]:
    """``entries`` (organize's changed or skipped files) by the sample key of their field ``name``."""
    return {key: e for e in entries if (key := image_key(e[name]))}


def outcome(f: Finding, changed: dict | None, skipped: dict | None, fixed: tuple[str, str] | None) -> str:
    """What was done about one finding, from what the tool recorded."""
    if changed:
        return f"fixed: re-encoded to RGB JPEG by organize --fix ({changed['kind']})"
    if skipped:
        return f"skipped by organize --fix ({skipped['reason']})" + (
            "; not in the shards" if f.location is None else "; yet a sample with its key is in the shards")
    if fixed:
        return f"fixed: re-encoded to RGB JPEG by shard ({fixed[1]})"
    if f.key is None:
        return "no image file (see the detail)"
    if f.location is None:
        return "not in the shards"
    return f"kept as is in the shards ({'a known quirk' if f.severity == 'known' else f.severity})"


def draw_thumbnails(found: list[Finding], splits: list[SplitData], limit: int) -> int:
    """A cell captioned with the class index and name (as ``preview`` draws them, JPEG) for the first ``limit``
    findings whose image is in the shards; how many were drawn."""
    font, drawn = ImageFont.load_default(), 0
    names = {s.name: [c.get("name") or c["wnid"] for c in s.manifest["classes"]] for s in splits}
    for f in found:
        if f.location is None or f.split is None or drawn >= limit:
            continue
        label = f.location.label
        name = names[f.split][label] if 0 <= label < len(names[f.split]) else "no label"
        image = cell(Sample(f.key or "", label, name, read_image(f.location)), font)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=85)
        f.thumbnail, drawn = buf.getvalue(), drawn + 1
    return drawn
