"""ImageNet-C (Hendrycks & Dietterich 2019): the 50,000 val images under 15 corruptions (and 4 extra ones) at 5
severities, read in place from the per-family tars as they ship (``noise.tar``, ``blur.tar``, ``weather.tar``,
``digital.tar``, ``extra.tar``: members ``<corruption>/<severity>/<wnid>/ILSVRC2012_val_%08d.JPEG``), or from the
folders they were extracted into (``<corruption>/<severity>/<wnid>/``).

Each corruption and severity is a split, ``<corruption>-<severity>`` (``gaussian_noise-3``), so a subset of the
3.75M images is chosen by split (``--corruptions`` / ``--severities``) and each is scored alone.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from imnet_data import catalog
from imnet_data.errors import UsageError
from imnet_data.sources.access import fetch
from imnet_data.sources.base import Entry, Sample, Source, SourceError, Unit, stem
from imnet_data.sources.folders import class_units, entries, file_locs, read_files
from imnet_data.sources.ilsvrc import VAL_UNIT, index_tar
from imnet_data.sources.safety import DEFAULT_LIMITS

FAMILIES = {"noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
            "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
            "weather": ("snow", "frost", "fog", "brightness"),
            "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
            "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate")}
FAMILY_OF = {c: family for family, members in FAMILIES.items() for c in members}
BENCHMARK = tuple(c for family in ("noise", "blur", "weather", "digital") for c in FAMILIES[family])  # the mCE's 15
SEVERITIES = (1, 2, 3, 4, 5)
SPLIT = re.compile(r"^([a-z_]+)-([1-5])$")
REFERENCE = "https://github.com/hendrycks/robustness"


def split_name(corruption: str, severity: int) -> str:
    """The split of one corruption at one severity, e.g. ``gaussian_noise-3``."""
    return f"{corruption}-{severity}"


def parse_split(split: str) -> tuple[str, int] | None:
    """``(corruption, severity)`` of an ImageNet-C split name, or None."""
    match = SPLIT.match(split)
    return (match.group(1), int(match.group(2))) if match and match.group(1) in FAMILY_OF else None


def select(available: Iterable[str], corruptions: Iterable[str] | None, severities: Iterable[int] | None) -> list[str]:
    """The splits of ``available`` with one of ``corruptions`` (default: all) at one of ``severities`` (default:
    1..5); UsageError naming a corruption or severity that does not exist or that ``available`` lacks."""
    parsed = [p for p in map(parse_split, available) if p is not None]
    have = [split_name(c, s) for c, s in parsed]
    wanted_c = list(corruptions) if corruptions else sorted({c for c, _ in parsed})
    wanted_s = list(severities) if severities else list(SEVERITIES)
    unknown = [c for c in wanted_c if c not in FAMILY_OF] + [str(s) for s in wanted_s if s not in SEVERITIES]
    if unknown:
        raise UsageError(f"unknown ImageNet-C corruption or severity {unknown[0]!r} (corruptions: "
                         f"{', '.join(FAMILY_OF)}; severities 1..5)")
    chosen = [split_name(c, s) for c in wanted_c for s in wanted_s]
    missing = [s for s in chosen if s not in have]
    if missing:
        raise UsageError(f"{missing[0]} is not here ({len(missing)} of the {len(chosen)} splits asked for are "
                         f"missing; found {len(have)}: {', '.join(have[:6])}{', ...' if len(have) > 6 else ''})")
    return chosen


def selected_splits(source: Source, corruptions: Iterable[str] | None, severities: Iterable[int] | None,
                    splits: Iterable[str] | None = None) -> list[str]:
    """The splits of the ImageNet-C download ``source`` that ``--corruptions`` / ``--severities`` pick
    (:func:`select`); UsageError for another layout, or with ``--splits`` given too."""
    if source.layout != ImageNetC.layout:
        raise UsageError(f"--corruptions and --severities pick ImageNet-C splits; {source.root} is read as "
                         f"layout {source.layout}")
    if splits:
        raise UsageError("give --splits or --corruptions / --severities, not both")
    return select(source.splits(), corruptions, severities)


def _family_tar(path: Path) -> bool:
    return path.is_file() and path.suffix == ".tar" and path.stem in FAMILIES


def _corruption_folder(path: Path) -> bool:
    """An extracted ``<corruption>/`` folder: a known corruption's name, holding a severity folder."""
    return path.name in FAMILY_OF and path.is_dir() and any((path / str(s)).is_dir() for s in SEVERITIES)


class ImageNetC(Source):
    """ImageNet-C's family tars (a tar, or a folder holding them) or extracted ``<corruption>/`` folders."""

    layout = "imagenet-c"
    about = "ImageNet-C (noise.tar, blur.tar, weather.tar, digital.tar, extra.tar, or their <corruption>/ folders)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._indexes: dict[Path, dict[tuple[str, int], list[tuple[str, str, int, int]]]] = {}

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A family tar, or a folder holding one or an extracted corruption folder."""
        if path.is_file():
            return _family_tar(path)
        if not path.is_dir():
            return False
        with os.scandir(path) as it:
            return any(_family_tar(Path(e.path)) or _corruption_folder(Path(e.path)) for e in it)

    def _places(self) -> dict[str, Path]:
        """Corruption -> where it is: its family tar, or its extracted folder; SourceError when both."""
        tars = [self.root] if self.root.is_file() else [Path(e.path) for e in entries(self.root)
                                                        if _family_tar(Path(e.path))]
        out = {c: tar for tar in tars for c in FAMILIES[tar.stem]}
        for folder in ([] if self.root.is_file() else [Path(e.path) for e in entries(self.root)]):
            if _corruption_folder(folder):
                if folder.name in out:
                    raise SourceError(f"{self.root}: {folder.name} is both in {out[folder.name].name} and "
                                      f"extracted in {folder}/; point at one")
                out[folder.name] = folder
        return out

    def splits(self) -> list[str]:
        """Every corruption of each family tar at severities 1..5, and each extracted severity folder."""
        out = []
        for corruption, where in sorted(self._places().items()):
            severities = SEVERITIES if where.is_file() else [s for s in SEVERITIES if (where / str(s)).is_dir()]
            out += [split_name(corruption, s) for s in severities]
        return out

    def home(self, split: str) -> str:
        """The family tar, or the extracted ``<corruption>/<severity>`` folder."""
        corruption, severity = self._parse(split)
        where = self._places().get(corruption, self.root)
        return str(where if where.is_file() else where / str(severity))

    def evaluation(self, split: str) -> dict:
        """The set, the corruption and the severity (all 1000 classes)."""
        corruption, severity = self._parse(split)
        return {"set": "imagenet-c", "variant": split, "corruption": corruption, "severity": severity,
                "mask": None, "reference": REFERENCE}

    def _parse(self, split: str) -> tuple[str, int]:
        parsed = parse_split(split)
        if parsed is None:
            raise SourceError(f"{self.root}: {split!r} is not an ImageNet-C split (<corruption>-<severity>)")
        return parsed

    def units(self, split: str) -> list[Unit]:
        """Slices of the split's members in a family tar, or one unit per class folder of an extracted one."""
        corruption, severity = self._parse(split)
        where = self._places().get(corruption)
        if where is None or split not in self.splits():
            raise SourceError(f"{self.root}: no {corruption}/{severity}/ here (have {', '.join(self.splits())})")
        if where.is_dir():
            return [Unit(u.split, u.name, ("folder", *u.ref), u.size)
                    for u in class_units(split, where / str(severity))]
        members = sorted(self._index(where).get((corruption, severity), []), key=lambda m: m[0].rsplit("/", 1)[-1])
        if not members:
            raise SourceError(f"{where}: holds no {corruption}/{severity}/ images")
        return [Unit(split, f"{split}[{i}:{i + len(chunk)}]", ("tar", str(where), tuple(chunk)),
                     sum(m[3] for m in chunk))
                for i in range(0, len(members), VAL_UNIT) for chunk in [members[i:i + VAL_UNIT]]]

    def _index(self, tar: Path) -> dict[tuple[str, int], list[tuple[str, str, int, int]]]:
        """``(corruption, severity) -> [(member, wnid, offset, size)]`` of a family tar, each member checked to
        be ``<corruption>/<severity>/<wnid>/<file>`` of that family (headers only, once per reader)."""
        if tar not in self._indexes:
            known = set(catalog.ilsvrc2012().wnids)
            out: dict[tuple[str, int], list[tuple[str, str, int, int]]] = {}
            for ti in index_tar(tar, max_member=DEFAULT_LIMITS.max_image_bytes):
                parts, origin = ti.name.split("/"), f"{tar}:{ti.name}"
                ok = (len(parts) == 4 and FAMILY_OF.get(parts[0]) == tar.stem and parts[1] in "12345"
                      and len(parts[1]) == 1 and parts[3] != "")
                if not ok:
                    raise SourceError(f"{origin}: unexpected member (expected <corruption>/<severity>/<wnid>/<file> "
                                      f"of the {tar.stem} corruptions: {', '.join(FAMILIES[tar.stem])})")
                if parts[2] not in known:
                    raise SourceError(f"{origin}: class folder {parts[2]!r} is not an ImageNet-1k WNID")
                out.setdefault((parts[0], int(parts[1])), []).append((ti.name, parts[2], ti.offset_data, ti.size))
            self._indexes[tar] = out
        return self._indexes[tar]

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The unit's images with their class folder's label."""
        kind, path, files = unit.ref
        if kind == "folder":
            for name, data, origin in read_files(path, files):
                yield Sample(unit.split, stem(name), unit.name, name, data, origin)
            return
        for entry, (member, *_) in zip(self.locate(unit), files, strict=True):
            origin = f"{path}:{member}"
            yield Sample(unit.split, stem(entry.name), entry.wnid, entry.name, fetch(entry.loc, origin), origin)

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """The unit's members as listed (no image read)."""
        kind, path, files = unit.ref
        if kind == "folder":
            for name, size, file in file_locs(path, files):
                yield Entry(name, unit.name, size, ("range", file, 0, size))
            return
        for member, wnid, offset, size in files:
            yield Entry(member.rsplit("/", 1)[-1], wnid, size, ("range", path, offset, size))
