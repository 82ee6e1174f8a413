"""The per-unit pass of ``validate``: every unit of the download counted (from headers) or, ``deep``, read and
every image decoded and hashed, in worker processes; the units' results added up per split, and the duplicates
found across all of them."""
from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from PIL import ImageFile

from imnet_data import catalog, imageio
from imnet_data.parallel import default_jobs, map_units
from imnet_data.sources import Source, SourceRef, Unit
from imnet_data.validate.report import UNREADABLE, Problem, inside, unit_where

MIN_SIDE, MAX_SIDE, MAX_PIXELS = 16, 10_000, 50_000_000   # outside these an image is "extreme"
PIECES_PER_JOB = 8    # deep: big units cut (where the reader can) into pieces of ~1/(jobs x this) of the bytes ...
MIN_PIECE = 1 << 20   # ... and no smaller than this: a short tail, without re-indexing most class tars


@dataclass
class UnitResult:
    """What a worker found in one unit: small data only, never image bytes."""

    entries: list[tuple[str, str | None, int]] = field(default_factory=list)   # name, wnid, size
    problems: list[Problem] = field(default_factory=list)
    digests: list[tuple[bytes, str]] = field(default_factory=list)             # sha256[:16], where


def _records(src: Source, unit: Unit, deep: bool) -> Iterator[tuple[str, str | None, int, str, bytes | None]]:
    """``(name, wnid, size, where, data)`` of each member: read (``deep``) or listed from headers (data None)."""
    if deep:
        for s in src.read(unit):
            yield s.name, s.wnid, len(s.data), s.origin, s.data
        return
    where = unit_where(src, unit)
    for name, wnid, size in src.list(unit):
        yield name, wnid, size, inside(where, name), None


def check_unit(job: tuple[SourceRef, bool, Unit]) -> UnitResult:
    """Count one unit's members and (``deep``) decode and hash each; a reading error ends the unit, reported."""
    ref, deep, unit = job
    src = ref.open()
    result, quirks = UnitResult(), catalog.known_quirks()
    saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False   # truncation must raise
    try:
        for name, wnid, size, where, data in _records(src, unit, deep):
            result.entries.append((name, wnid, size))
            if size == 0:
                result.problems.append(Problem("error", "empty", where, "zero-byte file"))
            elif data is not None:
                result.problems += _inspect(name, data, where, quirks)
                result.digests.append((hashlib.sha256(data).digest()[:16], where))
    except UNREADABLE as e:
        result.problems.append(Problem("error", "structure", unit_where(src, unit),
                                       f"{e} (the rest of this unit was not read)"))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    return result


def _inspect(name: str, data: bytes, where: str, quirks: dict[str, frozenset[str]]) -> list[Problem]:
    """Decode ``data`` fully (:func:`imnet_data.imageio.probe`: libjpeg's warnings count as damage) and report
    what is damaged or unusual (nothing for a plain RGB JPEG)."""
    found = imageio.probe(data)
    if found.oversized:
        return [Problem("warning", "extreme_size", where, found.error or "")]
    if found.kind == "undecodable":
        error = found.error or ""
        if error.startswith("not an image"):
            return [Problem("error", "not_image", where, f"not an image; it starts with {data[:24]!r}")]
        truncated = "truncated" in error or "premature end" in error.lower()
        return [Problem("error", "truncated" if truncated else "undecodable", where, error)]
    problems = _content_problems(found.kind, name, f"{found.format} {found.mode}", where, quirks)
    width, height = found.size or (0, 0)
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        problems.append(Problem("warning", "extreme_size", where, f"{width}x{height} pixels"))
    return problems


def _content_problems(kind: str, name: str, what: str, where: str, quirks: dict[str, frozenset[str]]) -> list[Problem]:
    """Findings for a decodable image that is not an RGB JPEG; the real set's listed quirks are ``known``."""
    if kind == "jpeg":
        return []
    if kind == "gray":
        return [Problem("known", "grayscale", where, "grayscale JPEG (the real set has many): convert when loading")]
    listed = name in quirks["cmyk" if kind == "cmyk" else "png"]
    note = "; a known quirk of ILSVRC2012" if listed else ""
    if kind == "cmyk":
        return [Problem("known" if listed else "warning", "cmyk", where, f"CMYK JPEG{note}: many loaders expect RGB")]
    return [Problem("known" if listed else "warning", "not_jpeg", where, f"{what} data in a file named {name}{note}")]


# ---- the parent: units, aggregation ---------------------------------------------------------------------------

@dataclass
class Tally:
    """One split's totals, aggregated as unit results arrive."""

    images: int = 0
    bytes: int = 0
    classes: Counter = field(default_factory=Counter)            # wnid (None: unlabelled) -> images
    names: dict[str, str | None] = field(default_factory=dict)   # file name -> wnid, where names are checked

    def add(self, entries: list[tuple[str, str | None, int]], keep_names: bool) -> None:
        """Count one unit's entries (and keep their names, where the split's names are checked)."""
        for name, wnid, size in entries:
            self.images += 1
            self.bytes += size
            self.classes[wnid] += 1
            if keep_names:
                self.names[name] = wnid

    def summary(self) -> dict[str, int]:
        """The split's line of the report: images, classes and bytes."""
        return {"images": self.images, "classes": len(self.classes.keys() - {None}), "bytes": self.bytes}


def units(src: Source, splits: tuple[str, ...]) -> tuple[dict[str, list[Unit]], list[Problem]]:
    """The units of each split (those expected in ``splits``, and any other the download holds) that can be
    listed, and the splits that are missing or cannot be listed."""
    found, problems = {}, []
    have = src.splits()
    for split in dict.fromkeys([*splits, *have]):
        if split not in have:
            problems.append(Problem("error", "missing", src.home(split), f"no {split} split"))
            continue
        try:
            found[split] = src.units(split)
        except UNREADABLE as e:
            problems.append(Problem("error", "structure", src.home(split), f"{e} (split not checked further)"))
    return found, problems


def scan(ref: SourceRef, by_split: dict[str, list[Unit]], deep: bool, keep: set[str], jobs: int | None,
         quiet: bool) -> tuple[dict[str, Tally], list[UnitResult]]:
    """Run :func:`check_unit` over every unit in worker processes, largest first (no straggler at the end);
    totals by split, and the unit results (entries dropped once counted) in unit order."""
    src = ref.open()
    todo = [u for split_units in by_split.values() for u in split_units]
    if deep and hasattr(src, "pieces"):   # decoding dominates: cut big units so no worker is left alone at the end
        target = max(MIN_PIECE, sum(u.size for u in todo) // (default_jobs(jobs) * PIECES_PER_JOB))
        todo = [p for u in todo for p in src.pieces(u, -(-u.size // target))]
    order = sorted(range(len(todo)), key=lambda i: -todo[i].size)
    results = [UnitResult()] * len(todo)
    tallies = {split: Tally() for split in by_split}
    done = map_units(check_unit, [(ref, deep, todo[i]) for i in order], jobs=jobs,
                     desc="decode" if deep else "list", quiet=quiet, weights=[todo[i].size for i in order])
    for result, i in zip(done, order, strict=True):   # ``done`` first: its pool closes as it runs out
        tallies[todo[i].split].add(result.entries, todo[i].split in keep)
        results[i] = replace(result, entries=[])
    return tallies, results


def duplicates(results: Iterable[UnitResult]) -> list[Problem]:
    """Byte-identical images across all splits: each copy after the first, naming the first; the digests and
    origins held for this cost about 250 bytes an image (some 300 MB for the full train and val sets)."""
    first: dict[bytes, str] = {}
    problems = []
    for digest, where in itertools.chain.from_iterable(r.digests for r in results):
        if digest in first:
            problems.append(Problem("warning", "duplicate", where, f"byte-identical to {first[digest]}"))
        else:
            first[digest] = where
    return problems
