"""``imnet-data validate``: is the download complete and sound? Answered in minutes, before days of training.

Three passes, each reporting :class:`Problem` objects instead of stopping at the first:

* structure and counts, from archive headers only (no image byte is read): archives, splits and classes present,
  images per class against the truth (``expect="official"``: the catalog's numbers of the real set;
  ``expect="self"``: the download's own metadata, for subsets and fakes), val files and labels;
* checksums (official only): each official archive's size, then its md5 (streamed; a wrong size is not hashed);
* ``deep``: every image fully decoded with PIL in worker processes: empty, truncated, undecodable and non-image
  files, CMYK, grayscale and non-JPEG content, extreme sizes, and byte-identical duplicates across all splits.

Severities: ``error`` (missing or damaged: the download is not sound), ``warning`` (sound, worth knowing or
fixing), ``known`` (a documented quirk of the real set, e.g. its 22 CMYK JPEGs and one PNG).
"""
from __future__ import annotations

import hashlib
import itertools
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Iterator

from PIL import ImageFile

from imnet_data import catalog, imageio, tario
from imnet_data.catalog import UnknownClassError
from imnet_data.errors import UsageError
from imnet_data.parallel import check_visible, default_jobs, map_units
from imnet_data.progress import progress
from imnet_data.report import Report
from imnet_data.sources import Source, SourceError, SourceRef, Unit, detect_layout
from imnet_data.sources.base import WNID
from imnet_data.sources.devkit import ARCHIVE as DEVKIT_ARCHIVE, Devkit
from imnet_data.sources.imagenet21k import ARCHIVES as ARCHIVES_21K
from imnet_data.sources.kaggle import SOLUTION, load_solution

EXPECTS = ("official", "self")
SEVERITIES = ("error", "warning", "known")
MIN_SIDE, MAX_SIDE, MAX_PIXELS = 16, 10_000, 50_000_000   # outside these an image is "extreme"
TINY_TRAIN_PER_CLASS = 500
HASH_BLOCK = 8 << 20
PIECES_PER_JOB = 8    # deep: big units cut (where the reader can) into pieces of ~1/(jobs x this) of the bytes ...
MIN_PIECE = 1 << 20   # ... and no smaller than this: a short tail, without re-indexing most class tars
UNREADABLE = (SourceError, OSError)   # a malformed download, or a file the disk cannot give back: reported


@dataclass(frozen=True)
class Problem:
    """One finding. ``where`` names the file and member, e.g. ``.../ILSVRC2012_img_train.tar:n01440764.tar:
    n01440764_1.JPEG``; ``kind`` is a short stable name (``empty``, ``count``, ``cmyk``, ...)."""

    severity: str   # "error" | "warning" | "known"
    kind: str
    where: str
    detail: str


@dataclass
class ValidationReport(Report):
    """What :func:`validate` found: per-split totals, checksums and every problem."""

    source: str
    layout: str
    expect: str
    deep: bool
    splits: dict[str, dict[str, int]] = field(default_factory=dict)      # split -> images, classes, bytes
    checksums: dict[str, dict[str, str | None]] = field(default_factory=dict)  # archive -> expected, actual
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Sound: nothing missing or damaged (warnings and known quirks allowed)."""
        return not any(p.severity == "error" for p in self.problems)

    def tally(self) -> dict[str, dict[str, int]]:
        """Problem counts by severity, then kind."""
        out: dict[str, dict[str, int]] = {s: {} for s in SEVERITIES}
        for p in self.problems:
            out[p.severity][p.kind] = out[p.severity].get(p.kind, 0) + 1
        return out

    def as_dict(self) -> dict:
        """The report as JSON-ready data (what ``--json`` prints and ``--report`` writes)."""
        return {"source": self.source, "layout": self.layout, "expect": self.expect, "deep": self.deep,
                "ok": self.ok, "seconds": round(self.seconds, 2), "splits": self.splits,
                "checksums": self.checksums, "tally": self.tally(), "problems": [asdict(p) for p in self.problems]}

    def save(self, path: Path) -> None:
        """Write :meth:`as_dict` as JSON, atomically (a reader never sees half a report)."""
        tario.write_json(Path(path), self.as_dict())

    def render(self, per_kind: int = 5) -> str:
        """A readable summary: totals, checksums, problems by severity and kind (the first ``per_kind`` of
        each), and the verdict."""
        lines = [f"{self.source}: layout {self.layout}, expect {self.expect}"
                 f"{', deep' if self.deep else ''} ({self.seconds:.1f} s)",
                 f"  {'split':<8}{'images':>12}{'classes':>9}{'size':>12}"]
        lines += [f"  {split:<8}{t['images']:>12,}{t['classes']:>9,}{_size(t['bytes']):>12}"
                  for split, t in self.splits.items()]
        lines += [f"  md5 {name}: {c['actual']}" + (" (ok)" if c["actual"] == c["expected"] else "")
                  for name, c in self.checksums.items()]
        tally = self.tally()
        lines.append("problems: " + ", ".join(f"{s} {sum(tally[s].values()):,}" for s in SEVERITIES))
        for severity, kind in ((s, k) for s in SEVERITIES for k in sorted(tally[s])):
            found = [p for p in self.problems if p.severity == severity and p.kind == kind]
            lines.append(f"  {severity} {kind} ({len(found):,})")
            lines += [f"    {p.where}: {p.detail}" for p in found[:per_kind]]
            if len(found) > per_kind:
                lines.append(f"    ... and {len(found) - per_kind:,} more (all of them in --report / --json)")
        errors = sum(tally["error"].values())
        lines.append(f"verdict: {'SOUND' if self.ok else 'NOT SOUND'}: " + (
            f"{errors:,} error{'s' * (errors != 1)}: files missing or damaged" if errors else
            "complete" + ("; every image decodes" if self.deep else "; add --deep to decode every image")))
        return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


# ---- what a sound download holds ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What a sound download holds; a split absent from a map is not checked on that point."""

    family: str                          # the class set, for messages
    known: Callable[[str], bool]         # whether a class may appear at all
    splits: tuple[str, ...] = ("train", "val")
    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # split -> wnid -> images
    names: dict[str, frozenset[str]] = field(default_factory=dict)    # split -> every file name
    labels: dict[str, dict[str, str]] = field(default_factory=dict)   # split -> file name -> wnid
    releases: dict[str, tuple[catalog.Release, ...]] = field(default_factory=dict)  # split -> totals it may have


def _val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def _is_synset(wnid: str) -> bool:
    try:
        catalog.synset_words(wnid)
    except UnknownClassError:
        return False
    return True


def _ilsvrc_classes() -> Expected:
    return Expected("ILSVRC2012", frozenset(catalog.ilsvrc2012().wnids).__contains__)


def _with_truth(base: Expected, train: dict[str, int], val: dict[str, str]) -> Expected:
    """``base`` expecting ``train`` images per class and exactly the val files ``val`` (name -> label); the
    val count per class follows from the labels."""
    return replace(base, counts={"train": train, "val": dict(Counter(val.values()))}, names={"val": frozenset(val)},
                   labels={"val": val})


def _ilsvrc_official(base: Expected, _: Source) -> Expected:
    """The real set: train counts per class, 50,000 val files with their official labels (50 per class)."""
    cat = catalog.ilsvrc2012()
    val = {_val_name(i): cat.by_ilsvrc2012_id(c).wnid for i, c in enumerate(catalog.val_ground_truth(), 1)}
    return _with_truth(base, {c.wnid: c.train_images for c in cat}, val)


def _tiny_classes() -> Expected:
    return Expected("Tiny ImageNet", frozenset(catalog.subset("tiny-imagenet")[1]).__contains__)


def _tiny_official(base: Expected, _: Source) -> Expected:
    """Tiny ImageNet: 500 train images per class, 10,000 val images labelled as the catalog says."""
    val = {file: wnid for file, wnid, _ in catalog.tiny_imagenet_val_annotations()}
    return _with_truth(base, dict.fromkeys(catalog.subset("tiny-imagenet")[1], TINY_TRAIN_PER_CLASS), val)


def _imagenet21k_official(base: Expected, src: Source) -> Expected:
    """ImageNet-21k (no per-class counts are published): the release its archive names, or for an extracted
    folder the one whose class count it has; that many classes, every one in fall11's list, and its images."""
    archive = src.archive  # type: ignore[attr-defined]
    releases = tuple(r for r in catalog.imagenet21k_releases() if archive is None or r.archive == archive.name)
    fall11 = frozenset(catalog.imagenet21k("fall11"))
    return replace(base, family="ImageNet-21k (fall11's 21,841 classes)", known=fall11.__contains__,
                   releases={"train": releases})


CLASSES: dict[str, Callable[[], Expected]] = {
    "tiny": _tiny_classes,
    "imagenet21k": lambda: Expected("ImageNet (words.txt)", _is_synset, splits=("train",)),
}
OFFICIAL: dict[str, Callable[[Expected, Source], Expected]] = {
    "ilsvrc2012": _ilsvrc_official, "folders": _ilsvrc_official, "kaggle": _ilsvrc_official, "tiny": _tiny_official,
    "imagenet21k": _imagenet21k_official}


def _classes(src: Source) -> Expected:
    """Only the class set of ``src``'s layout (and the splits it should hold): what is checked when nothing else
    is known. One split's folder (``DEST/train``) should hold only that split."""
    base = CLASSES.get(src.layout, _ilsvrc_classes)()
    return replace(base, splits=tuple(src.splits())) if getattr(src, "single", False) else base


def _expected(src: Source, expect: str, kit: Devkit | None) -> Expected:
    """The truth to check ``src`` against: the catalog's (official) or the download's own metadata (self)."""
    base = _classes(src)
    if expect == "official":
        unknown = [s for s in base.splits if s not in ("train", "val")]
        if unknown:
            raise SourceError(f"{src.root}: the official set has no split named {unknown[0]!r}, so there are no "
                              "official counts to check it against: name the folder train or val, or check it "
                              "with --expect self")
        return OFFICIAL[src.layout](base, src)
    if kit is not None:
        val = {_val_name(i): w for i, w in enumerate(kit.val_wnids, 1)}
        return _with_truth(base, {w: n for w, n in kit.num_train_images.items() if n > 0}, val)
    if src.layout == "kaggle":
        rows = load_solution(src.root / SOLUTION["val"])
        return replace(base, names={"val": frozenset(f"{key}.JPEG" for key in rows)} if rows else {})
    return base


def _check_devkit(src: Source, expect: str) -> tuple[Devkit | None, list[Problem]]:
    """The devkit of a layout that has one (official archives, folders), and what is wrong with it."""
    if not isinstance(getattr(type(src), "devkit", None), cached_property):   # not hasattr: that would load it
        return None, []
    where = str(src.root / DEVKIT_ARCHIVE)
    try:
        kit = src.devkit
    except UNREADABLE as e:
        return None, [Problem("error", "devkit", where, str(e))]
    if kit is None:
        missing = Problem("error", "missing", where, "no devkit (archive or extracted folder): val cannot be labelled")
        return None, [missing] if src.layout == "ilsvrc2012" else []
    if expect != "official":
        return kit, []
    official = {c.ilsvrc2012_id: c.wnid for c in catalog.ilsvrc2012()}
    wrong = sorted(i for i in official.keys() | kit.id_to_wnid.keys() if official.get(i) != kit.id_to_wnid.get(i))
    if wrong:
        return kit, [Problem("error", "devkit", kit.origin, f"meta.mat maps {len(wrong)} ILSVRC2012_IDs unlike the "
                             f"official devkit, e.g. ID {wrong[0]} -> {kit.id_to_wnid.get(wrong[0])} "
                             f"(official {official.get(wrong[0])})")]
    return kit, []


# ---- checksums ------------------------------------------------------------------------------------------------

def md5_file(path: Path, *, quiet: bool = False) -> str:
    """The md5 of a file, streamed with a progress bar."""
    digest = hashlib.md5()
    with open(path, "rb") as f, progress(total=path.stat().st_size, desc=f"md5 {path.name}", unit="B",
                                          unit_scale=True, quiet=quiet) as bar:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _checksums(src: Source, expect: str, enabled: bool, quiet: bool) -> tuple[dict, list[Problem]]:
    """md5 of each official archive present (a missing one is reported by the split and devkit checks)."""
    if src.layout != "ilsvrc2012":
        return {}, []
    out, problems = {}, []
    for role in ("train", "val", "devkit"):
        fact = catalog.facts()["archives"][role]
        path = src.root / fact["name"]
        if not path.is_file():
            continue
        official = expect == "official"
        actual, problem = _checksum(path, fact, quiet) if official and enabled else (
            "skipped" if official else "not applicable", None)
        out[fact["name"]] = {"expected": fact["md5"] if official else None, "actual": actual}
        problems += [problem] if problem else []
    return out, problems


def _checksum(path: Path, fact: dict, quiet: bool) -> tuple[str, Problem | None]:
    """``(md5 or why not hashed, problem)`` of one official archive; a wrong size is reported, not hashed."""
    size = path.stat().st_size
    if fact["size"] is not None and size != fact["size"]:
        return "not hashed", Problem("error", "size", str(path), f"{size:,} bytes, the official file has "
                                     f"{fact['size']:,}: incomplete or another file (not hashed)")
    actual = md5_file(path, quiet=quiet)
    if actual != fact["md5"]:
        return actual, Problem("error", "checksum", str(path), f"md5 {actual}, the official file has {fact['md5']}")
    return actual, None


# ---- where things are, for messages --------------------------------------------------------------------------

def _inside(home: str, name: str) -> str:
    """``name`` in ``home``: ``archive.tar:name`` or ``folder/name``."""
    return f"{home}:{name}" if ".tar" in home else f"{home}/{name}"


def _class_where(home: str, split: str, wnid: str) -> str:
    """Where one class lives: its inner tar or folder (``train.tar:<wnid>.tar``, ``train/<wnid>``) in train,
    the split (a flat val holds every class) elsewhere."""
    return _inside(home, f"{wnid}.tar" if ".tar" in home else wnid) if split == "train" else home


def _unit_where(src: Source, unit: Unit) -> str:
    home = src.home(unit.split)
    return _class_where(home, unit.split, unit.name) if WNID.match(unit.name) else home


# ---- the per-unit pass (worker processes) ---------------------------------------------------------------------

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
    where = _unit_where(src, unit)
    for name, wnid, size in src.list(unit):
        yield name, wnid, size, _inside(where, name), None


def _check_unit(job: tuple[SourceRef, bool, Unit]) -> UnitResult:
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
        result.problems.append(Problem("error", "structure", _unit_where(src, unit),
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


# ---- the parent: units, aggregation, split-level checks -------------------------------------------------------

@dataclass
class _Tally:
    """One split's totals, aggregated as unit results arrive."""

    images: int = 0
    bytes: int = 0
    classes: Counter = field(default_factory=Counter)            # wnid (None: unlabelled) -> images
    names: dict[str, str | None] = field(default_factory=dict)   # file name -> wnid, where names are checked

    def add(self, entries: list[tuple[str, str | None, int]], keep_names: bool) -> None:
        for name, wnid, size in entries:
            self.images += 1
            self.bytes += size
            self.classes[wnid] += 1
            if keep_names:
                self.names[name] = wnid

    def summary(self) -> dict[str, int]:
        return {"images": self.images, "classes": len(self.classes.keys() - {None}), "bytes": self.bytes}


def _units(src: Source, expected: Expected) -> tuple[dict[str, list[Unit]], list[Problem]]:
    """The units of each split that can be listed, and the splits that are missing or cannot be listed."""
    units, problems = {}, []
    have = src.splits()
    for split in dict.fromkeys([*expected.splits, *have]):
        if split not in have:
            problems.append(Problem("error", "missing", src.home(split), f"no {split} split"))
            continue
        try:
            units[split] = src.units(split)
        except UNREADABLE as e:
            problems.append(Problem("error", "structure", src.home(split), f"{e} (split not checked further)"))
    return units, problems


def _scan(ref: SourceRef, by_split: dict[str, list[Unit]], deep: bool, keep: set[str], jobs: int | None,
          quiet: bool) -> tuple[dict[str, _Tally], list[UnitResult]]:
    """Run :func:`_check_unit` over every unit in worker processes, largest first (no straggler at the end);
    totals by split, and the unit results (entries dropped once counted) in unit order."""
    src = ref.open()
    units = [u for split_units in by_split.values() for u in split_units]
    if deep and hasattr(src, "pieces"):   # decoding dominates: cut big units so no worker is left alone at the end
        target = max(MIN_PIECE, sum(u.size for u in units) // (default_jobs(jobs) * PIECES_PER_JOB))
        units = [p for u in units for p in src.pieces(u, -(-u.size // target))]
    order = sorted(range(len(units)), key=lambda i: -units[i].size)
    results = [UnitResult()] * len(units)
    tallies = {split: _Tally() for split in by_split}
    done = map_units(_check_unit, [(ref, deep, units[i]) for i in order], jobs=jobs,
                     desc="decode" if deep else "list", quiet=quiet, weights=[units[i].size for i in order])
    for result, i in zip(done, order):   # ``done`` first: its pool closes as it runs out
        tallies[units[i].split].add(result.entries, units[i].split in keep)
        results[i] = replace(result, entries=[])
    return tallies, results


def _check_split(split: str, tally: _Tally, expected: Expected, home: str) -> list[Problem]:
    """The split's classes, per-class counts, file names and labels against ``expected``."""
    problems = []
    counts = expected.counts.get(split)
    for wnid, n in sorted((w, n) for w, n in tally.classes.items() if w is not None):
        if not expected.known(wnid):
            problems.append(Problem("error", "unknown_class", _class_where(home, split, wnid),
                                    f"{wnid}: {n:,} images of a class not in {expected.family}"))
        elif counts is not None and n != counts.get(wnid, 0):
            problems.append(Problem("error", "count", _class_where(home, split, wnid),
                                    f"{wnid}: {n:,} {split} images, expected {counts.get(wnid, 0):,}"))
    for wnid, n in sorted((counts or {}).items()):
        if n and wnid not in tally.classes:
            problems.append(Problem("error", "missing_class", _class_where(home, split, wnid),
                                    f"{wnid}: missing ({n:,} {split} images expected)"))
    if tally.classes[None]:
        problems.append(Problem("error", "unlabelled", home, f"{tally.classes[None]:,} {split} images have no label"))
    return problems + _check_release(split, tally, expected.releases.get(split, ()), home) + \
        _check_names(split, tally, expected, home)


def _check_release(split: str, tally: _Tally, releases: tuple[catalog.Release, ...], home: str) -> list[Problem]:
    """The split's class and image totals against the release with that many classes (ImageNet-21k, whose
    per-class counts are not published); a count no release has is a subset or an incomplete copy."""
    if not releases:
        return []
    classes = len(tally.classes.keys() - {None})
    release = next((r for r in releases if r.classes == classes), None)
    if release is None:
        known = ", ".join(f"{r.name} has {r.classes:,}" for r in releases)
        return [Problem("error", "count", home, f"{classes:,} {split} classes; of the official releases, {known} "
                        "(a subset or an incomplete copy: --expect self checks it as it is)")]
    if tally.images < release.images or (tally.images > release.images and not release.images_at_least):
        bound = "at least " if release.images_at_least else ""
        return [Problem("error", "count", home, f"{tally.images:,} {split} images; the {release.name} release has "
                        f"{bound}{release.images:,}")]
    return []


def _check_names(split: str, tally: _Tally, expected: Expected, home: str) -> list[Problem]:
    """Missing and unexpected file names (a few named, all counted), and each wrong label."""
    problems = []
    names = expected.names.get(split)
    if names is not None:
        for kind, found, whole in (("missing", names - tally.names.keys(), len(names)),
                                   ("unexpected", tally.names.keys() - names, len(tally.names))):
            if found:
                problems.append(Problem("error", kind, home, f"{len(found):,} of {whole:,} {split} files "
                                        f"{kind}, e.g. {', '.join(sorted(found)[:5])}"))
    labels = expected.labels.get(split, {})
    for name, wnid in sorted(tally.names.items()):
        if wnid is not None and labels.get(name, wnid) != wnid:
            problems.append(Problem("error", "label", _inside(home, name), f"labelled {wnid}, expected {labels[name]}"))
    return problems


def _duplicates(results: Iterable[UnitResult]) -> list[Problem]:
    """Byte-identical images across all splits: each copy after the first, naming the first. (The digests and
    origins held for this cost about 250 bytes an image: some 300 MB for the full train and val sets.)"""
    first: dict[bytes, str] = {}
    problems = []
    for digest, where in itertools.chain.from_iterable(r.digests for r in results):
        if digest in first:
            problems.append(Problem("warning", "duplicate", where, f"byte-identical to {first[digest]}"))
        else:
            first[digest] = where
    return problems


def validate(path: Path | str, *, layout: str | None = None, expect: str = "official", checksums: bool = True,
             deep: bool = False, jobs: int | None = None, quiet: bool = False) -> ValidationReport:
    """Check the download at ``path`` (see the module doc); ``jobs`` worker processes (None/0: all cores).

    Problems in the download are reported, not raised (a damaged or hostile archive included). Raises UsageError
    only when ``path`` cannot be opened as a download at all (missing, not a known layout, unknown ``layout``)
    or ``expect`` is unknown.
    """
    if expect not in EXPECTS:
        raise UsageError(f"expect must be one of {', '.join(EXPECTS)}, got {expect!r}")
    start = time.perf_counter()
    ref = SourceRef(str(Path(path)), layout or detect_layout(Path(path)))
    src = ref.open()   # here, before the workers fork: they inherit it (its devkit parsed once)
    check_visible([Path(path)])
    report = ValidationReport(ref.root, src.layout, expect, deep)
    try:
        _fill(report, ref, checksums, jobs, quiet)
    except UNREADABLE as e:   # a reader failing outside one unit (a hostile index, say): the download is not sound
        report.problems.append(Problem("error", "structure", ref.root, f"{e} (the check stopped here)"))
    report.seconds = time.perf_counter() - start
    return report


def _fill(report: ValidationReport, ref: SourceRef, checksums: bool, jobs: int | None, quiet: bool) -> None:
    """Every pass of :func:`validate` over the download ``ref``, adding to ``report``."""
    src, expect, deep, root = ref.open(), report.expect, report.deep, report.source
    kit, report.problems = _check_devkit(src, expect)
    try:
        expected = _expected(src, expect, kit)
    except UNREADABLE as e:
        expected = _classes(src)
        report.problems.append(Problem("error", "structure", root, f"{e} (its expectations not checked)"))
    report.checksums, problems = _checksums(src, expect, checksums, quiet)
    units, more = _units(src, expected)
    keep = set(expected.names) | set(expected.labels)
    tallies, results = _scan(ref, units, deep, keep, jobs, quiet)
    # dict.fromkeys: pieces of one unit that fail alike (a damaged class tar) report it once
    report.problems += problems + more + list(dict.fromkeys(p for r in results for p in r.problems))
    for split, tally in tallies.items():
        report.splits[split] = tally.summary()
        report.problems += _check_split(split, tally, expected, src.home(split))
    report.problems += _duplicates(results)
