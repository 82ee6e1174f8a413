"""The shard plan: which sample goes into which shard, computed before any shard is written.

The plan is plain data derived only from the source listing (headers, no image bytes) and the options: sort
every sample by key, shuffle the split with ``seed`` (train; val keeps key order), cut it into near-equal
shards. Workers, resume, multi-node runs and ``--merge`` all read the same plan, which is what makes N nodes
give byte-identical output to one. It is stored as ``DEST/<split>/plan.json.gz``.
"""
from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import io
import itertools
import json
import math
import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from imnet_data import __version__, catalog
from imnet_data.catalog import LABEL_SPACES
from imnet_data.errors import UsageError
from imnet_data.parallel import map_units
from imnet_data.shards.schema import KEY
from imnet_data.sources import Entry, Source, SourceError, SourceRef, Unit
from imnet_data.sources.base import stem
from imnet_data.stores import ReadableStore

PLAN = "plan.json.gz"
MAX_PLAN = 4 << 30         # bytes a stored plan may inflate to (the full 21k plan is far smaller)
FORMAT_VERSION = 1
TAR_OVERHEAD = 3 * 512 + 3 * 256 + 400   # headers, mean padding and the .cls/.json bodies of one sample
# the default shard file prefix: by label space, and for the ``found`` space by layout
SPACE_NAMES = {"imagenet-1k": "imagenet-1k", "imagenet-21k": "imagenet-21k", "imagenet-21k-goog": "imagenet-21k",
               "imagenet-21k-p": "imagenet-21k-p", "tiny-imagenet-200": "tiny-imagenet-200"}
LAYOUT_NAMES = {"tiny": "tiny-imagenet-200", "imagenet21k": "imagenet-21k"}
KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
UNLABELLED = -1            # the plan's label of a sample of a split published without labels (no .cls written)


@dataclass(frozen=True)
class ShardOptions:
    """Everything that decides the shards' bytes (recorded in the plan and the manifest)."""

    name: str | None = None               # file name prefix; default by layout (imagenet-1k, ...)
    seed: int = 0
    shuffle: bool | None = None           # None: shuffle train, keep val in key order
    samples_per_shard: int | None = None  # else cut by shard_size
    shard_size: int = 1_000_000_000       # target bytes per shard
    max_size: int | None = None           # resize so the longer side is at most this
    short_side: int | None = None         # resize so the shorter side is at most this
    quality: int | None = None            # re-encode quality (default 90 when resizing)
    classes: tuple[str, ...] | None = None
    subset: str | None = None             # 1percent, 10percent, or a file of train file names
    fix: bool = True                      # CMYK / PNG / other formats -> RGB JPEG
    label_space: str | None = None        # a catalog.LABEL_SPACES name; None: the layout's (the plan records it)

    def __post_init__(self) -> None:
        """UsageError naming the first option out of range."""
        for name, low, high in (("samples_per_shard", 1, None), ("shard_size", 1, None), ("max_size", 1, None),
                                ("short_side", 1, None), ("quality", 1, 100)):
            value = getattr(self, name)
            if value is not None and not (low <= value and (high is None or value <= high)):
                span = f"{low}..{high}" if high else f"{low} or more"
                raise UsageError(f"{name.replace('_', '-')} must be {span}, got {value}")

    def shuffles(self, split: str) -> bool:
        """Whether ``split`` is shuffled: ``shuffle`` when given, else train only."""
        return self.shuffle if self.shuffle is not None else split == "train"

    def reencodes(self) -> bool:
        """Whether images are re-encoded (a size cap or a quality given)."""
        return bool(self.max_size or self.short_side or self.quality)


@dataclass(frozen=True, slots=True)
class PlannedSample:
    """A sample's place in the plan: its shard key, label, where to read it, and what the JSON carries."""

    key: str
    label: int
    entry: Entry


@dataclass
class ShardPlan:
    """One shard: its file name and samples in write order; ``digest`` names exactly what it will hold."""

    index: int
    name: str
    samples: list[PlannedSample]
    digest: str = ""


@dataclass
class SplitPlan:
    """The whole split's plan."""

    split: str
    name: str
    options: dict
    source: dict
    label_space: str
    classes: tuple[str, ...]
    shards: list[ShardPlan] = field(default_factory=list)
    labelled: bool = True   # False: a split published without labels (its samples have no .cls)
    evaluation: dict | None = None   # an evaluation set's name, variant and class mask (Source.evaluation)

    @property
    def pattern(self) -> str:
        """The brace pattern of the shard files, e.g. ``imagenet-1k-train-{000000..000127}.tar``."""
        return f"{self.name}-{self.split}-{{{0:06d}..{len(self.shards) - 1:06d}}}.tar"

    @property
    def num_samples(self) -> int:
        """The samples of every shard together."""
        return sum(len(s.samples) for s in self.shards)

    def header(self) -> dict:
        """What the plan file stores besides the sample lists."""
        return {"format": "imnet-data-shard-plan", "format_version": FORMAT_VERSION, "tool_version": __version__,
                "split": self.split, "name": self.name, "pattern": self.pattern, "options": self.options,
                "source": self.source, "label_space": self.label_space, "classes": list(self.classes),
                **({} if self.labelled else {"labelled": False}),
                **({"evaluation": self.evaluation} if self.evaluation else {})}

    def as_dict(self) -> dict:
        """The plan file's content: the header, then each shard's name, digest, keys and labels."""
        return {**self.header(), "shards": [
            {"name": s.name, "digest": s.digest, "keys": [p.key for p in s.samples],
             "labels": [p.label for p in s.samples]} for s in self.shards]}

    @property
    def digest(self) -> str:
        """The sha256 of the header and every shard's digest: names exactly what the split will hold."""
        return _sha256_json([self.header(), [s.digest for s in self.shards]])


def _sha256_json(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _locate(ref: SourceRef, unit: Unit) -> list[Entry]:
    return list(ref.open().locate(unit))


def list_split(source: Source, split: str, jobs: int | None = None, quiet: bool = False) -> list[Entry]:
    """Every sample of the split as an :class:`Entry` (headers only), listed in parallel, in unit order."""
    units = source.units(split)
    found = map_units(partial(_locate, SourceRef.of(source)), units, jobs=jobs, desc=f"list {split}", unit="units",
                      quiet=quiet)
    return [e for entries in found for e in entries]


def select(entries: list[Entry], split: str, options: ShardOptions) -> list[Entry]:
    """The entries kept by ``--classes`` and ``--subset`` (subset lists name train files; val is kept whole)."""
    kept = entries
    if options.classes is not None:
        wanted = set(options.classes)
        kept = [e for e in kept if e.wnid in wanted]
    if options.subset and split == "train":
        names = set(subset_files(options.subset))
        kept = [e for e in kept if e.name in names]
    return kept


def subset_files(spec: str) -> list[str]:
    """Train file names of ``1percent``/``10percent`` or of a file with one name per line."""
    if spec in catalog.SUBSETS:
        kind, items = catalog.subset(spec)
        if kind != "files":
            raise UsageError(f"--subset {spec}: a class subset; use --classes {spec}")
        return items
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--subset {spec}: neither 1percent, 10percent nor a file of train file names")
    return [line.strip().rsplit("/", 1)[-1] for line in path.read_text().splitlines() if line.strip()]


def sample_key(entry: Entry) -> str:
    """The ``__key__``: the file stem with every character but ASCII letters, digits, ``-`` and ``_`` made a
    ``_``: dots (WebDataset splits a member name at its first dot), and spaces, newlines, non-ASCII or
    non-UTF-8 bytes, which would break DALI's index and other readers. The original name stays in the sample's
    ``.json`` (``file``); two names that give one key are refused by :func:`make_plan`, naming both."""
    key = KEY_UNSAFE.sub("_", stem(entry.name))
    if not KEY.match(key):
        raise SourceError(f"{entry.origin}: file name {entry.name!r} gives no usable sample key (1-90 characters)")
    return key


def cut(n: int, sizes: list[int], options: ShardOptions) -> list[tuple[int, int]]:
    """``[start, end)`` of every shard over ``n`` samples: ``samples_per_shard`` each, or near-equal counts
    with about ``shard_size`` bytes each (equal counts keep distributed loaders balanced)."""
    if n == 0:
        return []
    if options.samples_per_shard:
        per = options.samples_per_shard
        return [(i, min(n, i + per)) for i in range(0, n, per)]
    count = max(1, math.ceil(sum(s + TAR_OVERHEAD for s in sizes) / options.shard_size))
    count = min(count, n)
    return [(n * i // count, n * (i + 1) // count) for i in range(count)]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: building a million small objects (none of them in cycles)
    would otherwise set off collections that scan all of them again and again (a fifth of planning time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@gc_paused()
def make_plan(source: Source, split: str, options: ShardOptions, jobs: int | None = None,
              quiet: bool = False, entries: list[Entry] | None = None) -> SplitPlan:
    """The plan of one split of ``source``: list (unless its ``entries`` are given), label, select, sort by key,
    shuffle, cut. A split the source publishes without labels (a test set) is planned with label -1 (its
    shards get no ``.cls``)."""
    entries = list_split(source, split, jobs, quiet) if entries is None else entries
    space, classes = catalog.label_space(source.layout, source.wnids, options.label_space)
    index = {w: i for i, w in enumerate(classes)}
    labelled = source.labelled(split)
    planned = []
    for e in select(entries, split, options) if labelled else entries:
        if e.wnid is None and not labelled:
            planned.append(PlannedSample(sample_key(e), UNLABELLED, e))
            continue
        if e.wnid is None:
            raise SourceError(f"{e.origin}: no label: {source.unlabelled(split)}")
        if e.wnid not in index:
            raise SourceError(f"{e.origin}: class {e.wnid} is not one of the {len(classes):,} {space} classes "
                              "(leave it out with --classes, or pick another --label-space: "
                              f"{', '.join(LABEL_SPACES)})")
        planned.append(PlannedSample(sample_key(e), index[e.wnid], e))
    planned.sort(key=lambda p: p.key)
    for a, b in itertools.pairwise(planned):
        if a.key == b.key:
            raise SourceError(f"{b.entry.origin}: sample key {b.key!r} also used by {a.entry.origin}")
    if options.shuffles(split):
        random.Random(options.seed).shuffle(planned)
    evaluation = source.evaluation(split)
    name = options.name or (evaluation or {}).get("set") or SPACE_NAMES.get(space) or \
        LAYOUT_NAMES.get(source.layout, "imagenet")
    plan = SplitPlan(split, name, recorded_options(options, split), source_identity(source, split, entries),
                     space, classes, labelled=labelled, evaluation=evaluation)
    for i, (start, end) in enumerate(cut(len(planned), [p.entry.size for p in planned], options)):
        shard = ShardPlan(i, f"{name}-{split}-{i:06d}.tar", planned[start:end])
        shard.digest = _sha256_json([plan.options, [(p.key, p.label, p.entry.size) for p in shard.samples]])
        plan.shards.append(shard)
    return plan


def recorded_options(options: ShardOptions, split: str) -> dict:
    """The options as the plan and manifest record them (a subset file by its content digest)."""
    out = asdict(options)
    del out["label_space"]   # the plan's header records the space itself, resolved
    out["shuffle"] = options.shuffles(split)
    out["quality"] = options.quality or (90 if options.reencodes() else None)
    if options.classes is not None:
        out["classes"] = sorted(options.classes)
    if options.subset and options.subset not in catalog.SUBSETS:
        out["subset"] = {"file": Path(options.subset).name,
                         "sha256": hashlib.sha256(Path(options.subset).read_bytes()).hexdigest()}
    return out


def source_identity(source: Source, split: str, entries: list[Entry]) -> dict:
    """What the shards were made from: the layout, the archive files' names and sizes, and a digest of the
    split's full listing (names, labels, sizes), so a changed download is noticed."""
    listing = "".join(f"{e.name}\t{e.wnid}\t{e.size}\n" for e in entries)
    paths = sorted({e.loc[1] for e in entries if e.loc[0] in ("zip", "stream") or e.loc[1].endswith(".tar")})
    return {"layout": source.layout, "samples": len(entries),
            "archives": [{"name": Path(p).name, "bytes": Path(p).stat().st_size} for p in paths],
            "listing_sha256": hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()}


def plan_bytes(plan: SplitPlan) -> bytes:
    """The plan as stored (``plan.json.gz``): deterministic bytes for the same plan."""
    data = json.dumps(plan.as_dict(), sort_keys=True, separators=(",", ":")).encode()
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=1) as gz:
        gz.write(data)
    return out.getvalue()


def read_plan(store: ReadableStore) -> dict | None:
    """The plan stored in a split folder or prefix as plain data, or None (also for one that is not a plan)."""
    raw = store.read(PLAN)
    if raw is None:
        return None
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflate.decompress(raw, MAX_PLAN)
        plan = json.loads(data) if not inflate.unconsumed_tail else None
    except (zlib.error, ValueError, RecursionError):
        return None
    return plan if isinstance(plan, dict) and isinstance(plan.get("shards"), list) else None
