"""``organize``: from the download (archives read in place, no manual extraction) to the ImageFolder layout
``DEST/train/<wnid>/<name>`` and ``DEST/val/<wnid>/<name>`` that torchvision, timm and most scripts expect.

Labels come from the source readers (val through the devkit ground truth mapped by meta.mat, Kaggle's CSV,
Tiny's annotations). Bytes are copied unchanged unless ``fix`` re-encodes the files that are not RGB JPEGs.

Resumable: a class unit whose folder does not exist yet (a class tar into a new ``DEST/train/<wnid>``) writes its
files into a staging folder ``DEST/.imnet-organize/<split>/<unit>.<pid>-<hex>.partial``, renamed into place once
all are written: per file 3 calls (open, write, close) where a temp name and a Python file object took 7 (with
fstat, ioctl, lseek and the rename; docs/walkthrough.md "Per-file cost"). Any other file (val slices, a class
folder that exists already) is written under a temp name in its folder and renamed. Each unit (a class tar, a val
slice) gets a marker ``DEST/.imnet-organize/<split>/<unit>.json`` listing its files and sizes once they are all
in place. A re-run skips a unit whose marker matches the settings and whose files are all there with those sizes,
and redoes the rest; it first removes the staging folders and temp files a killed run left
(:func:`sweep_temp_files`). Nothing is fsynced per file or per unit, not even the markers: a file's recorded size
is the check, and a marker lost or cut short by a crash is no marker (the unit is redone). An fsync per unit
(1,005 at ImageNet's count, whatever the images' count) waited for the disk each time: 6 ms each, 6 s in all on
a busy 2-core machine where the run took 26 s. The split folders and their staging folders are marked so that the
class folders made in them spread over the disk (:func:`placing.spread_subfolders`): packed beside a just-deleted
earlier output, a re-run paid the kernel's cost of reusing just-freed inodes on every file.

Safety: output paths are built only from a validated WNID and a plain base name, and each class folder must
resolve inside DEST; the readers already refuse traversal, links, devices and oversize members.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import operator
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imnet_data import catalog, imageio, tario
from imnet_data.catalog import UnknownClassError
from imnet_data.errors import UsageError
from imnet_data.parallel import check_visible, default_jobs, map_units
from imnet_data.paths import check_apart
from imnet_data.placing import TMP_SUFFIX, Folders, base_name, spread_subfolders
from imnet_data.report import Report
from imnet_data.sources import Sample, Source, SourceError, SourceRef, Unit, open_source
from imnet_data.sources.base import WNID

STATE = ".imnet-organize"
REPORT = "organize-report.json"
CLASS_INDEX = "class_to_idx.json"
FORMAT_VERSION = 1


def parse_classes(text: str) -> frozenset[str]:
    """Classes from a command-line value: a catalog subset of classes (``imagenet-a``, ``imagenet-r``,
    ``tiny-imagenet``), a file with one WNID per line (``#`` comments allowed), or comma-separated WNIDs."""
    if text in catalog.SUBSETS:
        kind, items = catalog.subset(text)
        if kind != "wnids":
            raise UnknownClassError(text, f"subset {text!r} lists train files, not classes; --classes takes the "
                                    "class subsets " + ", ".join(k for k, v in catalog.SUBSETS.items()
                                                                 if v[1] == "wnids"), [])
        return frozenset(items)
    path = Path(text)
    lines = path.read_text().splitlines() if path.is_file() else text.split(",")
    wnids = [w.split("#", 1)[0].strip() for w in lines]
    bad = [w for w in wnids if w and not WNID.match(w)]
    if bad or not any(wnids):
        raise UnknownClassError(text, f"--classes {text!r}: {bad[:3] or 'no WNIDs'} is not a WNID list (n + 8 "
                                "digits, comma-separated or one per line in a file) nor a class subset", [])
    return frozenset(w for w in wnids if w)


@dataclass
class UnitResult:
    """What one unit put in DEST (paths relative to DEST); also the content of its completion marker."""

    split: str
    unit: str
    settings: dict
    files: list[list] = field(default_factory=list)       # [path, size]
    changed: list[dict] = field(default_factory=list)     # path, kind, old_sha256, new_sha256
    skipped: list[dict] = field(default_factory=list)     # path, origin, reason
    resumed: bool = False


@dataclass(frozen=True)
class Job:
    """Organize one unit (picklable: workers receive it and open the source themselves, once per process and
    run: :meth:`SourceRef.open`, so a long-lived process re-reads a download that changed in between)."""

    source: SourceRef
    dest: str
    fix: bool
    quality: int
    classes: frozenset[str] | None

    def __call__(self, unit: Unit) -> UnitResult:
        """Organize one unit into DEST (or keep it, when its marker and files say it is complete)."""
        settings = self.settings(unit)
        marker = marker_path(self.dest, unit)
        old = load_marker(marker, unit)
        if old and old.settings == settings and all(size_is(self.dest, p, n) for p, n in old.files):
            old.resumed = True
            return old
        result = UnitResult(unit.split, unit.name, settings)
        folders = Folders(self.dest, unit, marker)
        src = self.source.open()
        try:
            for sample in src.read(unit):
                if sample.wnid is None and src.labelled(sample.split):
                    raise SourceError(f"{sample.origin}: no class label for this {sample.split} image: "
                                      f"{src.unlabelled(sample.split)}")
                if self.classes is None or sample.wnid in self.classes or sample.wnid is None:  # test: kept whole
                    self.place(sample, folders, result)
            folders.finish()
        except BaseException:
            folders.abort()
            raise
        if old:
            remove_stale(self.dest, old, result)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with tario.atomic_file(Path(marker), durable=False) as f:   # checked on resume: see the module doc
            f.write(json.dumps(vars(result), sort_keys=True).encode())   # vars: asdict's deep copy cost ~5 µs/file
        return result

    def settings(self, unit: Unit) -> dict:
        """What shapes a unit's output; a marker written under other settings does not count as done. The class
        filter matters only inside units that mix classes (val slices); class units are selected whole."""
        mixed = self.classes is not None and not WNID.match(unit.name)
        return {"fix": self.fix, "quality": self.quality if self.fix else None,
                "classes": sorted(self.classes or ()) if mixed else None}

    def place(self, sample: Sample, folders: Folders, result: UnitResult) -> None:
        """Write one sample to its final path (fixed or skipped under ``fix``) and record it: in its class
        folder, or for a split published without labels (test) in the split folder itself."""
        wnid = sample.wnid or ""
        name = base_name(sample.name, sample.origin)
        rel = f"{sample.split}/{wnid}/{name}" if wnid else f"{sample.split}/{name}"
        data = sample.data
        if self.fix:
            found = imageio.probe(data)
            if found.kind == "undecodable":
                result.skipped.append({"path": rel, "origin": sample.origin, "reason": found.error})
                return
            if found.kind in imageio.FIXABLE:
                data = imageio.to_rgb_jpeg(data, self.quality)
                result.changed.append({"path": rel, "kind": found.kind, "old_sha256": sha256(sample.data),
                                       "new_sha256": sha256(data)})
        folders.write(sample, name, data)
        result.files.append([rel, len(data)])


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def marker_path(dest: str, unit: Unit) -> str:
    """Where a unit's completion marker lives (its name made file-safe; the marker repeats the real name)."""
    return os.path.join(dest, STATE, unit.split, re.sub(r"[^\w.-]+", "_", unit.name).strip("_") + ".json")


def load_marker(path: str, unit: Unit) -> UnitResult | None:
    """The unit's marker, or None if absent, unreadable or about another unit."""
    try:
        with open(path, "rb") as f:
            result = UnitResult(**json.loads(f.read()))
    except (OSError, ValueError, TypeError):
        return None
    return result if (result.split, result.unit) == (unit.split, unit.name) else None


def size_is(dest: str, rel: str, size: int) -> bool:
    """Whether ``DEST/rel`` is a file of ``size`` bytes."""
    try:
        return os.stat(os.path.join(dest, rel)).st_size == size
    except OSError:
        return False


def remove_stale(dest: str, old: UnitResult, new: UnitResult) -> None:
    """Delete the files an earlier run of a unit wrote that this run did not (other settings), so DEST matches
    the report; only paths shaped like our output (split/wnid/name) are touched."""
    keep = {p for p, _ in new.files}
    for rel, _ in old.files:
        parts = rel.split("/")
        if (rel not in keep and len(parts) == 3 and parts[0] == old.split and WNID.match(parts[1])
                and parts[2] and not parts[2].startswith(".")):
            Path(dest, rel).unlink(missing_ok=True)


def sweep_temp_files(dest: str, splits: Iterable[str]) -> None:
    """Remove the temp files a killed run left: in the class folders (``.<name>.partial``), among the units'
    markers (and the units' staging folders) and beside the report and class index (:func:`tario.atomic_file`'s
    ``<name>.<pid>-<hex>.partial``); only those names, only in those folders."""
    splits = list(splits)
    for folder in [os.path.join(dest, STATE, s) for s in splits] + [dest]:
        for entry in os.scandir(folder) if os.path.isdir(folder) else ():
            final = tario.temp_for(entry.name) or ""
            ours = final in (REPORT, CLASS_INDEX) if folder == dest else final.endswith(".json")
            if ours and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            elif final and folder != dest and entry.is_dir(follow_symlinks=False):   # a staging folder
                shutil.rmtree(entry.path)
    for split in splits:
        top = os.path.join(dest, split)
        folders = [e.path for e in os.scandir(top) if e.is_dir(follow_symlinks=False)] if os.path.isdir(top) else []
        for folder in folders:
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                    os.unlink(entry.path)


@dataclass
class OrganizeReport(Report):
    """The outcome: files and bytes per split, changed (``fix``) and skipped files, units found complete."""

    source: str
    layout: str
    dest: str
    fix: bool
    quality: int | None
    splits: list[str]
    classes: list[str] | None
    counts: dict[str, int]
    bytes: dict[str, int]
    changed: list[dict]
    skipped: list[dict]
    missing_classes: list[str]
    not_found: list[str]       # expected splits the download lacks (only when no splits were named)
    resumed: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        """Everything the download should hold was found (the job itself raises when it fails)."""
        return not self.not_found

    def record(self) -> dict:
        """The deterministic part, written to ``DEST/organize-report.json`` (the same for a resumed run)."""
        return {"format_version": FORMAT_VERSION,
                **{k: v for k, v in asdict(self).items() if k not in ("resumed", "seconds")}}

    def render(self) -> str:
        """Counts and bytes per split, the first changed and skipped files, what was not found and kept."""
        lines = [f"organized {self.layout} at {self.source} into {self.dest} in {self.seconds:.1f} s"]
        lines += [f"  {s:<6} {self.counts[s]:>10,} files {self.bytes[s] / 1e9:>9.2f} GB" for s in self.splits]
        lines += [f"  changed  {c['path']}  ({c['kind']} -> RGB JPEG)" for c in self.changed[:10]]
        lines += [f"  skipped  {s['path']}  ({s['reason']})" for s in self.skipped[:10]]
        more = max(0, len(self.changed) - 10) + max(0, len(self.skipped) - 10)
        lines += [f"  ... and {more} more changed/skipped"] if more > 0 else []
        lines += [f"  not found in the download: {', '.join(self.missing_classes)}"] if self.missing_classes else []
        lines += [f"  {len(self.resumed)} units were already complete (kept)"] if self.resumed else []
        lines += [f"  NOT FOUND: {n} (name the splits to do with --splits)" for n in self.not_found]
        return "\n".join(lines + [f"  report: {Path(self.dest, REPORT)}"])


def organize(src: Path, dest: Path, *, layout: str | None = None, splits: Iterable[str] | None = None,
             classes: Iterable[str] | None = None, fix: bool = False, quality: int = 95, jobs: int | None = None,
             quiet: bool = False, label_space: str | None = None) -> OrganizeReport:
    """Organize the download at ``src`` into ``dest`` (see the module doc); safe to re-run after a kill.

    ``classes``: WNIDs to keep (None: all); ``fix``: re-encode CMYK/gray/PNG/other to RGB JPEG at ``quality``
    and skip undecodable files; ``jobs``: worker processes (0/None: all cores); ``label_space``: the index of
    ``dest/class_to_idx.json`` (:func:`imnet_data.catalog.label_space`; a class outside it is refused before
    anything is written). Never writes outside ``dest`` nor touches ``src``; writes
    ``dest/organize-report.json`` at the end.
    """
    start = time.monotonic()
    if not 1 <= quality <= 100:
        raise UsageError(f"quality must be 1..100, got {quality}")
    reader = open_source(Path(src), layout)
    check_apart(src, dest)
    dest = Path(dest).resolve()
    check_visible([Path(src)], [dest])
    wanted = list(splits) if splits is not None else reader.splits()
    not_found = [] if splits is not None else reader.not_found()
    unknown = [s for s in wanted if s not in reader.splits()]
    if unknown:
        raise SourceError(f"{src}: no split {', '.join(unknown)} in this {reader.layout} download "
                          f"(has {', '.join(reader.splits())})")
    keep = frozenset(classes) if classes is not None else None
    units = [u for s in wanted for u in reader.units(s) if keep is None or not WNID.match(u.name) or u.name in keep]
    space = check_space(reader, units, label_space)
    earlier = (dest / STATE).is_dir()
    with holding(dest):
        if earlier:
            sweep_temp_files(str(dest), wanted)
        for split in sorted({u.split for u in units}):     # class folders are made (or staged) in these two
            spread_subfolders(str(dest / split))
            spread_subfolders(str(dest / STATE / split))
        job = Job(SourceRef(str(Path(src).resolve()), reader.layout), str(dest), fix, quality, keep)
        results = list(map_units(job, units, jobs=jobs, desc="organize", quiet=quiet,
                                 weights=[u.size for u in units], runs=reader.runs(units, default_jobs(jobs))))
        report = summarize(job, wanted, results, not_found, time.monotonic() - start)
        tario.write_json(dest / REPORT, report.record())
        tario.write_json(dest / CLASS_INDEX, {wnid: i for i, wnid in enumerate(space)})
    return report


@contextlib.contextmanager
def holding(dest: Path) -> Iterator[None]:
    """This run's hold on DEST: an exclusive lock on ``DEST/.imnet-organize/lock`` for the run, so a second
    organize into DEST is refused while this one writes, and the temp files a run finds at its start are
    leftovers of killed runs (:func:`sweep_temp_files` removes them; no pid needs checking, and a pid would
    not tell on a cluster: the units write from other machines). A filesystem without locks (ENOLCK, ENOSYS,
    EOPNOTSUPP) runs unlocked, as before."""
    (dest / STATE).mkdir(parents=True, exist_ok=True)
    with open(dest / STATE / "lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{dest}: another organize run is writing here (it holds {f.name}); "
                               "run again when it has ended") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
        yield


def check_space(reader: Source, units: list[Unit], name: str | None) -> tuple[str, ...]:
    """The WNIDs of the label space ``DEST/class_to_idx.json`` maps to (the layout's, or ``name``; ImageNet-1k:
    the 1000-class sorted-WNID index, as the shards' ``.cls``), which :func:`imnet_data.imagefolder.image_folder`
    gives torchvision's ImageFolder instead of 0..K-1 over the class folders present. A class unit outside it
    is a SourceError before anything is written."""
    space, classes = catalog.label_space(reader.layout, reader.wnids, name)
    outside = sorted({u.name for u in units if WNID.match(u.name)} - set(classes))
    if outside:
        raise SourceError(f"{reader.home(units[0].split)}: class {outside[0]} ({len(outside)} such) is not one of "
                          f"the {len(classes):,} {space} classes (leave it out with --classes, or pick another "
                          f"--label-space: {', '.join(catalog.LABEL_SPACES)})")
    return classes


def summarize(job: Job, splits: list[str], results: list[UnitResult], not_found: list[str],
              seconds: float) -> OrganizeReport:
    """Add up the units' results into the report, in a deterministic order."""
    counts, sizes = dict.fromkeys(splits, 0), dict.fromkeys(splits, 0)
    found: set[str] = set()
    for r in results:
        counts[r.split] += len(r.files)
        sizes[r.split] += sum(n for _, n in r.files)
        found.update(path.split("/")[1] for path in [p for p, _ in r.files] + [s["path"] for s in r.skipped])
    by_path = operator.itemgetter("path")
    return OrganizeReport(
        job.source.root, job.source.layout, job.dest, job.fix, job.quality if job.fix else None, splits,
        sorted(job.classes) if job.classes is not None else None, counts, sizes,
        sorted((c for r in results for c in r.changed), key=by_path),
        sorted((s for r in results for s in r.skipped), key=by_path),
        sorted(job.classes - found) if job.classes is not None else [], not_found,
        [f"{r.split}/{r.unit}" for r in results if r.resumed], round(seconds, 3))
