"""``imnet-data index DEST``: adopt WebDataset shards written by another tool (timm's ``imagenet-1k-wds``, or any
tars of ``<key>.jpg`` + ``<key>.cls``) without rewriting a byte of them: beside them, what this project's own
shards carry, so ``verify``, ``stage``, ``preview`` and the loader work on them unchanged.

Shards are found as ``DEST/<split>/*.tar``, or flat in DEST named ``<name>-<split>-<digits>.tar`` (timm's
``imagenet1k-train-0000.tar``, ``imagenet1k-validation-0000.tar``): those get a ``DEST/<split>/`` folder of hard
links to them (``validation`` is this project's ``val``), so the flat files and timm's own ``_info.json`` stay
as they were. Per split, each shard is read as untrusted input (:mod:`imnet_data.shards.members`) in parallel:
every sample needs an image (``.jpg``, ``.jpeg``, ``.webp``, ``.png``) and a label (``.cls``, else a ``.json``
``label``) inside the label space (default ImageNet-1k's 1000 classes), one key once in the split; the tar must
end with its end-of-archive marker. Then: each shard's DALI ``.idx`` (byte-equal to ``wds2idx``'s), and once
every shard of the split is sound, ``manifest.json`` (sha256, counts, class histogram), ``wids.json``,
``_info.json`` (the split merged into timm's, which keeps its other entries) and the dataset card. A shard that
is not what it claims is named with its member; the split then gets no manifest. Re-run: the same files again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data import catalog
from imnet_data.errors import UsageError
from imnet_data.parallel import check_visible, map_units
from imnet_data.report import Report
from imnet_data.shards.manifest import write_manifest
from imnet_data.shards.members import EXTENDED, FOLDER, ShardTarError, headers, member_key, open_shard, samples
from imnet_data.shards.schema import FILE_NAME, KEY, render_index
from imnet_data.stores import FolderStore
from imnet_data.stores.base import file_sha256
from imnet_data.tario import BLOCK, atomic_file

FLAT = re.compile(r"^(?P<name>.+)-(?P<split>[A-Za-z0-9]+)-\d+\.tar$")
SPLITS = {"validation": "val"}    # timm's split names -> this project's folders
IMAGES = ("jpg", "jpeg", "webp", "png")
MAX_PROBLEMS = 20                  # per shard, then a count of the rest


@dataclass(frozen=True)
class AdoptJob:
    """One shard to read (picklable): its path and the label space's size."""

    path: str
    classes: int


@dataclass
class ShardFound:
    """What one shard holds: its record (None when it is not sound), its keys, and its problems."""

    record: dict | None = None
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class AdoptReport(Report):
    """What :func:`adopt` did per split, and every problem (``ok`` when none)."""

    dest: str
    splits: dict[str, dict] = field(default_factory=dict)   # split -> shards, samples, manifest
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every shard sound, every split's manifest written."""
        return not self.problems

    def render(self) -> str:
        """Per split: shards, samples, the manifest; then every problem."""
        lines = [f"indexed {self.dest} ({self.seconds:.1f} s)"]
        for split, s in self.splits.items():
            lines.append(f"  {split}: {s['samples']:,} samples in {s['shards']} shards; manifest: "
                         f"{s['manifest'] or 'NOT WRITTEN (see the problems)'}")
        return "\n".join(lines + ([f"  {len(self.problems)} problems:"] if self.problems else [])
                         + [f"  {p}" for p in self.problems])


def find_splits(dest: Path) -> dict[str, list[Path]]:
    """The tars of each split: ``DEST/<split>/*.tar``, else flat ``<name>-<split>-<digits>.tar`` in DEST (linked
    into ``DEST/<split>/``); UsageError when DEST holds neither."""
    if not dest.is_dir():
        raise UsageError(f"{dest}: no such folder")
    found = {p.name: sorted(p.glob("*.tar")) for p in sorted(dest.iterdir()) if p.is_dir() and FILE_NAME.match(p.name)}
    found = {split: tars for split, tars in found.items() if tars}
    flat: dict[str, list[Path]] = {}
    for path in sorted(dest.glob("*.tar")):
        match = FLAT.match(path.name)
        if not match:
            raise UsageError(f"{path}: not named <name>-<split>-<number>.tar, so its split is unknown; put each "
                             "split's shards in DEST/<split>/")
        flat.setdefault(SPLITS.get(match["split"], match["split"]), []).append(path)
    for split, tars in flat.items():
        found[split] = sorted(set(found.get(split, [])) | {link(path, dest / split) for path in tars})
    if not found:
        raise UsageError(f"{dest}: no WebDataset shards (<split>/*.tar, or <name>-<split>-<n>.tar)")
    return found


def link(path: Path, folder: Path) -> Path:
    """A hard link to ``path`` in ``folder`` (the same file, no byte copied), made unless it is there."""
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if not (target.exists() and os.path.samefile(target, path)):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            os.link(path, tmp, follow_symlinks=True)   # a hub snapshot's symlink: its blob
        except OSError as e:
            raise ValueError(f"{path}: cannot link it into {folder} ({e.strerror}); move each split's shards "
                             f"into DEST/<split>/ and run index again") from e
        os.replace(tmp, target)
    return target


def read_shard(job: AdoptJob) -> ShardFound:
    """Walk one shard: its samples, their labels, its index rows; the record (without the index) when sound."""
    path, found = Path(job.path), ShardFound()
    labels: Counter[int] = Counter()
    rows = []
    try:
        with open(path, "rb", buffering=0) as f:
            for key, group in walk(path):
                rows.append((key, [(ext, offset, size) for ext, (offset, size) in group.items()]))
                found.keys.append(key)
                label = sample_label(path, f.fileno(), key, group, job.classes, found.problems)
                if label is not None:
                    labels[label] += 1
    except (OSError, ShardTarError) as e:
        found.problems.append(f"{path}: truncated or corrupt tar ({str(e).removeprefix(f'{path}: ')})")
    if found.problems:
        more = len(found.problems) - MAX_PROBLEMS
        found.problems = found.problems[:MAX_PROBLEMS] + ([f"{path}: ... and {more} more"] if more > 0 else [])
        return found
    index = render_index(rows).encode()
    with atomic_file(path.with_suffix(".idx")) as f:
        f.write(index)
    found.record = {"name": path.name, "samples": len(rows), "bytes": path.stat().st_size,
                    "sha256": file_sha256(path), "histogram": sorted(labels.items()), "fixed": [],
                    "index": {"name": path.with_suffix(".idx").name, "bytes": len(index),
                              "sha256": hashlib.sha256(index).hexdigest()}}
    return found


def walk(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """``(key, {ext: (data offset, size)})`` of every sample, from the header blocks alone (names checked as
    :func:`~imnet_data.shards.members.member_key` checks them); a tar with extended headers (long names) is
    walked by tarfile instead. ShardTarError for a repeated member, a missing end-of-archive marker, ..."""
    members, end = headers(path)
    if any(kind in EXTENDED for _, kind, _, _ in members):
        with open_shard(path) as tar:
            try:
                return [(key, {ext: (i.offset_data, i.size) for ext, i in group.items()})
                        for key, group in samples(path, tar)]
            except tarfile.TarError as e:
                raise ShardTarError(f"{path}: corrupt tar ({e})") from e
    out: list[tuple[str, dict[str, tuple[int, int]]]] = []
    for name, kind, offset, size in members:
        if kind == FOLDER:
            continue
        info = tarfile.TarInfo(name)
        info.size = size
        key, ext = member_key(path, info)
        if not out or out[-1][0] != key:
            out.append((key, {}))
        elif ext in out[-1][1]:
            raise ShardTarError(f"{path}: member {name!r} repeats .{ext} of sample {key}")
        out[-1][1][ext] = (offset, size)
    with open(path, "rb") as f:
        f.seek(end)
        if f.read(2 * BLOCK) != b"\0" * 2 * BLOCK:
            raise ShardTarError(f"{path}: no end-of-archive marker after {len(out)} samples (cut off?)")
    return out


def sample_label(path: Path, fd: int, key: str, group: dict[str, tuple[int, int]], classes: int,
                 problems: list[str]) -> int | None:
    """A sample's label from ``.cls`` (else its ``.json`` ``label``), checked: an image member, a key DALI's
    index can name, a label inside the space; None (problem added) when not."""
    where = f"{path}: sample {key!r}"
    if not KEY.match(key):
        problems.append(f"{where}: the key is not 1-90 of A-Z a-z 0-9 _ - (DALI's index and readers need that)")
        return None
    if not any(ext in group for ext in IMAGES):
        problems.append(f"{where}: no image member (.{', .'.join(IMAGES)}); has .{', .'.join(sorted(group))}")
    if "cls" in group:
        text = os.pread(fd, group["cls"][1], group["cls"][0]).strip()
        if not text.isdigit():
            problems.append(f"{where}: {key}.cls is not a class index ({text[:20]!r})")
            return None
        label = int(text)
    else:
        try:
            meta = json.loads(os.pread(fd, group["json"][1], group["json"][0])) if "json" in group else None
        except (ValueError, RecursionError):
            meta = None
        given = meta.get("label") if isinstance(meta, dict) else None
        if not isinstance(given, int) or isinstance(given, bool):
            problems.append(f"{where}: no label (no .cls, no .json label)")
            return None
        label = given
    if not 0 <= label < classes:
        problems.append(f"{where}: label {label} is outside the label space's 0..{classes - 1}")
        return None
    return label


def adopt(dest: Path, label_space: str = "imagenet-1k", jobs: int | None = None, quiet: bool = False) -> AdoptReport:
    """Index the WebDataset shards in ``dest`` (see the module doc); problems are reported, not raised."""
    start, dest = time.perf_counter(), Path(dest)
    space = catalog.LABEL_SPACES.get(label_space)
    if space is None:
        raise UsageError(f"unknown label space {label_space!r} (known: {', '.join(catalog.LABEL_SPACES)})")
    check_visible([dest])
    classes = tuple(space.wnids())
    report = AdoptReport(str(dest))
    root = FolderStore(dest)
    splits = find_splits(dest)
    every = [t for tars in splits.values() for t in tars]   # one pass over every split's shards
    results = iter(map_units(read_shard, [AdoptJob(str(t), len(classes)) for t in every], jobs=jobs,
                             desc="index", quiet=quiet, weights=[t.stat().st_size for t in every]))
    for split, tars in splits.items():
        found = [next(results) for _ in tars]
        problems = [p for f in found for p in f.problems] + duplicate_keys(tars, found)
        report.problems += problems
        summary: dict[str, object] = {"shards": len(tars), "samples": sum(len(f.keys) for f in found),
                                      "manifest": None}
        if not problems:
            plan = {"split": split, "name": FLAT.sub(r"\g<name>", tars[0].name) if FLAT.match(tars[0].name)
                    else split, "pattern": "", "options": {}, "label_space": label_space, "classes": list(classes),
                    "source": {"layout": "webdataset", "adopted": True,
                               "shards": [{"name": t.name, "bytes": t.stat().st_size} for t in tars]}}
            write_manifest(root.child(split), root, plan, [f.record for f in found if f.record])
            summary["manifest"] = str(dest / split / "manifest.json")
        report.splits[split] = summary
    report.seconds = time.perf_counter() - start
    return report


def duplicate_keys(tars: list[Path], found: list[ShardFound]) -> list[str]:
    """A key that two samples of the split share, naming both shards (each repeat once)."""
    first: dict[str, Path] = {}
    problems = []
    for path, shard in zip(tars, found, strict=True):
        for key in shard.keys:
            if key in first:
                problems.append(f"{path}: sample {key!r} also in {first[key]} (two samples with one key)")
            else:
                first[key] = path
    return problems[:MAX_PROBLEMS]
