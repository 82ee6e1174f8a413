"""``imnet-data verify``: check written shards against their manifests, in parallel.

Per shard: the file is present with the recorded size and sha256, the tar parses to its end-of-archive marker
(links, special files, odd names and oversized members refused, see :mod:`imnet_data.shards.members`), every
sample has its ``.cls``/``.jpg``/``.json`` (no ``.cls`` in a split published without labels; shards adopted by
``index``: ``.cls`` and ``.jpg``), the sample count and class histogram recomputed from the ``.cls``
members equal the manifest's, and the DALI index is present with its recorded sha256 and lists exactly the tar's
members (offsets, sizes, names). ``deep`` also
decodes every ``.jpg`` fully and checks that ``.cls`` equals the ``.json`` label. Problems are plain strings
naming split, shard and sample key (at most :data:`MAX_PER_SHARD` per shard, then a count of the rest).
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.imageio import probe
from imnet_data.parallel import check_visible, map_units
from imnet_data.report import Report
from imnet_data.shards.manifest import MANIFEST, read_manifest
from imnet_data.shards.members import ShardTarError, index_row, open_shard, read, samples
from imnet_data.shards.schema import SchemaError, parse_index, render_index
from imnet_data.stores.base import file_sha256
from imnet_data.tario import BLOCK

MAX_PER_SHARD = 20            # problems listed per shard; a wrecked shard would otherwise flood the report
PARTS = ("cls", "jpg", "json")


@dataclass(frozen=True)
class ShardCheck:
    """What a worker needs to check one shard (picklable)."""

    split: str
    folder: str
    shard: dict
    num_classes: int
    deep: bool = False
    labelled: bool = True   # False: the split was published without labels (no .cls expected)
    parts: tuple[str, ...] = PARTS   # the members every sample has (adopted shards: .cls and .jpg)


@dataclass
class ShardResult:
    """What one shard's check found: samples and bytes read, and the problems (already named)."""

    samples: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyReport(Report):
    """The outcome of :func:`verify`: what was checked and every problem found (``ok`` when none)."""

    dest: str
    splits: list[str]
    deep: bool
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def render(self) -> str:
        """What was checked and the rate, then OK or every problem."""
        rate = self.bytes / self.seconds / 1e6 if self.seconds else 0.0
        head = (f"verified {self.shards} shards of {', '.join(self.splits) or 'no split'} in {self.dest}"
                f"{' (deep: every image decoded)' if self.deep else ''}: {self.samples:,} samples, "
                f"{self.bytes / 1e6:,.1f} MB in {self.seconds:.1f} s ({rate:,.0f} MB/s)")
        if self.ok:
            return head + "\n  OK: every shard matches its manifest"
        return "\n".join([head, f"  {len(self.problems)} problems:"] + [f"  {p}" for p in self.problems])


def check_shard(job: ShardCheck) -> ShardResult:
    """Check one shard and its index against the manifest's entry (never raises for damaged files)."""
    s, name = job.shard, f"{job.split}/{job.shard['name']}"
    result, found = ShardResult(), []
    tar, idx = Path(job.folder, s["name"]), Path(job.folder, s["index"]["name"])
    index = read_index(idx, s, job.split, result.problems)
    if not tar.is_file():
        result.problems.insert(0, f"{name}: missing")
        return result
    result.bytes = tar.stat().st_size
    if result.bytes != s["bytes"]:
        found.append(f"size {result.bytes:,} bytes differs from the manifest's {s['bytes']:,}")
    if file_sha256(tar) != s["sha256"]:
        found.append("sha256 differs from the manifest")
    labels: Counter[int] = Counter()
    rows: list = []
    try:
        read_samples(tar, job, result, labels, found, rows)
    except (tarfile.TarError, OSError, EOFError, ShardTarError) as e:
        found.append(f"truncated/corrupt tar ({str(e).removeprefix(f'{tar}: ')})")
    else:
        problem = index_problem(index, rows, f"{job.split}/{idx.name}") if index is not None else None
        if problem:
            found.append(f"the index {idx.name} {problem}")
    if result.samples != s["samples"]:
        found.append(f"{result.samples} samples, the manifest says {s['samples']}")
    if sorted(labels.items()) != [tuple(x) for x in s["histogram"]]:
        found.append("class histogram (from the .cls members) differs from the manifest")
    more = len(found) - MAX_PER_SHARD
    result.problems[:0] = [f"{name}: {p}" for p in found[:MAX_PER_SHARD]] + \
        ([f"{name}: ... and {more} more problems"] if more > 0 else [])
    return result


def read_index(idx: Path, entry: dict, split: str, problems: list[str]) -> bytes | None:
    """The shard's ``.idx`` bytes when present and of the recorded sha256; else None, with the problem added."""
    if not idx.is_file():
        problems.append(f"{split}/{idx.name}: missing (the DALI index of {entry['name']})")
        return None
    raw = idx.read_bytes()
    if hashlib.sha256(raw).hexdigest() != entry["index"]["sha256"]:
        problems.append(f"{split}/{idx.name}: sha256 differs from the manifest")
        return None
    return raw


def index_problem(raw: bytes, rows: list, where: str) -> str | None:
    """What is wrong with an index whose bytes are not the tar's own index (``rows`` as walked): malformed, or
    well-formed but naming other offsets, sizes or members; None when it is exactly the tar's."""
    if raw == render_index(rows).encode():
        return None
    try:
        for _ in parse_index(raw, where):
            pass
    except SchemaError as e:
        return f"not a DALI index ({e})"
    return "does not match the tar's members (offsets, sizes or names)"


def read_samples(path: Path, job: ShardCheck, result: ShardResult, labels: Counter[int], found: list[str],
                 rows: list) -> None:
    """Walk the tar's samples (headers only, unless ``deep``; refusals as :mod:`imnet_data.shards.members`
    makes them), counting samples into ``result``, labels into ``labels`` and index rows into ``rows``, adding
    problems to ``found``. Raises on a truncated or corrupt archive (the samples before the damage stay
    counted)."""
    with open_shard(path) as tar:
        for key, group in samples(path, tar):
            result.samples += 1
            rows.append(index_row(key, group))
            check_sample(tar, key, group, job, labels, found)
        end = tar.offset
    with open(path, "rb") as f:   # tarfile stops quietly at a damaged header: demand the end-of-archive marker
        f.seek(end)
        if f.read(2 * BLOCK) != b"\0" * 2 * BLOCK:
            raise tarfile.ReadError(f"no end-of-archive marker after {result.samples} samples, at offset {end:,}")


def check_sample(tar: tarfile.TarFile, key: str, group: dict[str, tarfile.TarInfo], job: ShardCheck,
                 labels: Counter[int], found: list[str]) -> None:
    """Check one sample's members: all parts present, a valid ``.cls`` (and with ``deep`` the image and
    the ``.json`` label)."""
    missing = [p for p in job.parts if p not in group and (job.labelled or p != "cls")]
    if missing:
        found.append(f"{key}: no {', '.join('.' + p for p in missing)}")
    if "cls" in group and not job.labelled:
        found.append(f"{key}: a .cls in a split published without labels")
    if "cls" not in group:
        return
    text = read(tar, group, "cls")
    try:
        label = int(text)
    except ValueError:
        found.append(f"{key}: .cls is not a class index ({text[:20]!r})")
        return
    labels[label] += 1
    if not 0 <= label < job.num_classes:
        found.append(f"{key}: .cls {label} is outside the manifest's {job.num_classes} classes")
    if not job.deep:
        return
    if "jpg" in group:
        image = probe(read(tar, group, "jpg"))
        if image.kind == "undecodable":
            found.append(f"{key}: .jpg does not decode ({image.error})")
    if "json" in group:
        try:
            meta = json.loads(read(tar, group, "json"))
            if meta.get("label") != label:
                found.append(f"{key}: .cls {label} differs from the .json label {meta.get('label')}")
        except (ValueError, AttributeError, RecursionError):
            found.append(f"{key}: .json is not a JSON object")


def split_folders(dest: Path, splits: Iterable[str] | None) -> list[Path]:
    """The split folders to check: ``dest`` itself when it holds a manifest, else ``dest/<split>``."""
    dest = Path(dest)
    if (dest / MANIFEST).is_file():
        return [dest]
    if splits:
        return [dest / s for s in splits]
    found = sorted(p.parent for p in dest.glob(f"*/{MANIFEST}"))
    if not found:
        raise UsageError(f"{dest}: no manifest.json nor <split>/manifest.json; not a shard output folder")
    return found


def verify(dest: Path, splits: Iterable[str] | None = None, deep: bool = False, jobs: int | None = None,
           quiet: bool = False) -> VerifyReport:
    """Check every shard of ``dest`` (a shard output folder, or one split folder) against its manifest;
    ``jobs`` worker processes (0/None: all cores). Damage is reported, not raised."""
    start = time.perf_counter()
    check_visible([Path(dest)])
    report = VerifyReport(str(dest), [], deep)
    for folder in split_folders(Path(dest), list(splits) if splits else None):
        try:
            manifest = read_manifest(folder)
        except ValueError as e:
            report.splits.append(folder.name)
            report.problems.append(f"{folder.name}: {e}")
            continue
        split = manifest["split"]
        report.splits.append(split)
        labelled = manifest.get("labelled") is not False
        source = manifest.get("source")
        parts = ("cls", "jpg") if isinstance(source, dict) and source.get("adopted") is True else PARTS
        checks = [ShardCheck(split, str(folder), s, len(manifest["classes"]), deep, labelled, parts)
                  for s in manifest["shards"]]
        for result in map_units(check_shard, checks, jobs=jobs, desc=f"verify {split}", unit="shards",
                                quiet=quiet,
                                weights=[s["bytes"] for s in manifest["shards"]]):
            report.shards += 1
            report.samples += result.samples
            report.bytes += result.bytes
            report.problems += result.problems
        listed = sum(s["samples"] for s in manifest["shards"])
        if listed != manifest["num_samples"]:
            report.problems.append(f"{split}: the manifest's shards hold {listed} samples, its num_samples "
                                   f"says {manifest['num_samples']}")
    report.seconds = time.perf_counter() - start
    return report
