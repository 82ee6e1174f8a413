"""The shard plan: which sample goes into which shard, computed before any shard is written.

The plan is plain data derived only from the source listing (headers, no image bytes) and the options: sort
every sample by key, shuffle the split with ``seed`` (train; val keeps key order), cut it into near-equal
shards. Workers, resume, multi-node runs and ``--merge`` all read the same plan, which is what makes N nodes
give byte-identical output to one. It is stored as ``DEST/<split>/plan.json.gz`` (:mod:`.planfile`).

Memory does not grow with objects per sample: the samples are the columns of a :class:`~.table.Table` (~40 bytes a
sample for ImageNet's names; the planning steps add one column at a time), so ImageNet-21k's 13 million fit in
well under a gigabyte; a shard's worker receives only its own rows (:meth:`SplitPlan.rows`).
"""
from __future__ import annotations

import array
import contextlib
import ctypes
import hashlib
import json
import math
import mmap
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from imnet_data import __version__, catalog
from imnet_data.catalog import LABEL_SPACES
from imnet_data.parallel import default_jobs, map_units
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.select import LeftOut, selected
from imnet_data.shards.table import Table, concat, sample_key
from imnet_data.sources import Source, SourceError, SourceRef, Unit
from imnet_data.variants import variant

TAR_OVERHEAD = 3 * 512 + 3 * 256 + 400   # headers, mean padding and the .cls/.json bodies of one sample
# the default shard file prefix: by label space, and for the ``found`` space by layout
SPACE_NAMES = {"imagenet-1k": "imagenet-1k", "imagenet-21k": "imagenet-21k", "imagenet-21k-goog": "imagenet-21k",
               "imagenet-21k-p": "imagenet-21k-p", "imagenet-12k": "imagenet-12k",
               "tiny-imagenet-200": "tiny-imagenet-200"}
LAYOUT_NAMES = {"tiny": "tiny-imagenet-200", "imagenet21k": "imagenet-21k"}
FORMAT_VERSION = 1         # the stored plan's JSON is as before (now a shard a line)
BLOCK_ROWS = 1 << 18      # listed rows joined into one block while listing
M_MMAP_THRESHOLD = -3     # glibc's mallopt parameter
UNLABELLED = -1            # the plan's label of a sample of a split published without labels (no .cls written)


@dataclass(frozen=True)
class ShardPlan:
    """One shard: its number, file name, ``[start, end)`` rows of the split's table, and ``digest``, which names
    exactly what it will hold."""

    index: int
    name: str
    start: int
    end: int
    digest: str

    @property
    def samples(self) -> int:
        """How many samples it holds."""
        return self.end - self.start


@dataclass
class SplitPlan:
    """The whole split's plan: the header, the samples in write order (``table``), and the shards cutting it."""

    split: str
    name: str
    options: dict
    source: dict
    label_space: str
    classes: tuple[str, ...]
    table: Table
    shards: list[ShardPlan] = field(default_factory=list)
    left_out: LeftOut = field(default_factory=LeftOut)   # what the class selection left out (for the report)
    labelled: bool = True   # False: a split published without labels (its samples have no .cls)
    evaluation: dict | None = None   # an evaluation set's name, variant and class mask (Source.evaluation)

    @property
    def pattern(self) -> str:
        """The brace pattern of the shard files, e.g. ``imagenet-1k-train-{000000..000127}.tar``."""
        return f"{self.name}-{self.split}-{{{0:06d}..{len(self.shards) - 1:06d}}}.tar"

    @property
    def num_samples(self) -> int:
        """The samples of every shard together."""
        return len(self.table)

    def header(self) -> dict:
        """What the plan file stores besides the sample lists."""
        return {"format": "imnet-data-shard-plan", "format_version": FORMAT_VERSION, "tool_version": __version__,
                "split": self.split, "name": self.name, "pattern": self.pattern, "options": self.options,
                "source": self.source, "label_space": self.label_space, "classes": list(self.classes),
                **({} if self.labelled else {"labelled": False}),
                **({"evaluation": self.evaluation} if self.evaluation else {})}

    def rows(self, shard: ShardPlan) -> Table:
        """The shard's samples, in write order: all a worker needs (a copy of its rows only)."""
        return self.table.take(slice(shard.start, shard.end))

    def weight(self, shard: ShardPlan) -> int:
        """The shard's image bytes (for progress)."""
        return int(self.table.size[shard.start:shard.end].sum())

    @property
    def digest(self) -> str:
        """The sha256 of the header and every shard's digest: names exactly what the split will hold."""
        return _sha256_json([self.header(), [s.digest for s in self.shards]])


def _sha256_json(data: object) -> str:
    return hashlib.sha256(_json(data)).hexdigest()


def _json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _locate(ref: SourceRef, unit: Unit) -> Table:
    """A unit's listing as a table (in a worker: keys made there, the driver receives columns)."""
    return Table.of(ref.open().locate(unit), sample_key)


def list_split(source: Source, split: str, jobs: int | None = None, quiet: bool = False) -> Table:
    """Every sample of the split (headers only), listed in parallel, in unit order (:func:`joined`)."""
    units = source.units(split)
    free_big_arrays_at_once()
    return joined(map_units(partial(_locate, SourceRef.of(source)), units, jobs=jobs, desc=f"list {split}",
                            unit="units", quiet=quiet, ahead=4 * default_jobs(jobs)))


def joined(tables: Iterable[Table]) -> Table:
    """The units' tables of a split's listing as one, in order. They are joined into blocks of
    :data:`BLOCK_ROWS` as they arrive (so the many small ones are let go early), the blocks at the end. The digest
    is the sha256 of every unit's listing lines, in order (a unit's lines are let go once hashed)."""
    blocks: list[Table] = []
    pending: list[Table] = []
    rows = 0    # in pending (counted as they come: summed each time, 21k units' small tables took minutes)
    digest = hashlib.sha256()
    for table in tables:
        digest.update(table.lines)
        table.lines = b""
        pending.append(table)
        rows += len(table)
        if rows >= BLOCK_ROWS:
            blocks.append(concat(pending))
            pending, rows = [], 0
    blocks.append(concat(pending))
    del pending
    out = concat(blocks)
    out.digest = digest.hexdigest()
    return out


def free_big_arrays_at_once() -> None:
    """Make glibc's malloc serve every allocation of 128 KiB or more with its own mapping (a fixed
    ``M_MMAP_THRESHOLD``), so a plan column let go goes back to the system at once. By default the threshold
    rises to the size of the last such block freed (up to 32 MiB), after which a column copy comes from the heap
    and stays resident once freed: planning 2 million samples then kept ~40 bytes a sample of dead columns.
    Nothing happens where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 << 10)


def give_back_freed() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``): planning frees the listing's many
    small per-unit arrays, whose pages would otherwise stay resident in the driver and in every worker it forks
    after. Nothing happens where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cut(n: int, sizes: np.ndarray, options: ShardOptions) -> list[tuple[int, int]]:
    """``[start, end)`` of every shard over ``n`` samples: ``samples_per_shard`` each, or near-equal counts
    with about ``shard_size`` bytes each (equal counts keep distributed loaders balanced)."""
    if n == 0:
        return []
    if options.samples_per_shard:
        per = options.samples_per_shard
        return [(i, min(n, i + per)) for i in range(0, n, per)]
    count = max(1, math.ceil((int(sizes.sum()) + n * TAR_OVERHEAD) / options.shard_size))
    count = min(count, n)
    return [(n * i // count, n * (i + 1) // count) for i in range(count)]


def make_plan(source: Source, split: str, options: ShardOptions, jobs: int | None = None, quiet: bool = False,
              listing: Table | None = None, shared: bool = False) -> SplitPlan:
    """The plan of one split of ``source``: list (or take ``listing``: consumed, unless ``shared``, when the
    rows kept are copied out of it), label, select, sort by key, shuffle, cut. A split the source publishes
    without labels (a test set) is planned whole with label -1 (its shards get no ``.cls``)."""
    table = listing if listing is not None else list_split(source, source_split(split, options), jobs, quiet)
    space, classes = catalog.label_space(source.layout, source.wnids, label_space_of(options))
    identity = source_identity(source, table)
    labelled = source.labelled(split)
    keep, left_out = selected(table, split, options, source) if labelled else (np.ones(len(table), bool), LeftOut())
    if shared:
        table = table.take(keep)
    elif not keep.all():
        table.reorder(keep)
    del keep
    label(table, classes, space, source, split, labelled)
    order(table, options.seed if options.shuffles(split) else None)
    evaluation = source.evaluation(split)
    name = options.name or (evaluation or {}).get("set") or options.variant or SPACE_NAMES.get(space) or \
        LAYOUT_NAMES.get(source.layout, "imagenet")
    recorded = recorded_options(options, split)
    plan = SplitPlan(split, name, recorded, identity, space, classes, table, left_out=left_out, labelled=labelled,
                     evaluation=evaluation)
    prefix = _json(recorded)
    for i, (start, end) in enumerate(cut(len(table), table.size, options)):
        plan.shards.append(ShardPlan(i, f"{name}-{split}-{i:06d}.tar", start, end,
                                     shard_digest(prefix, table, start, end)))
    keep_from_forks(table)
    give_back_freed()
    return plan


def source_split(split: str, options: ShardOptions) -> str:
    """The split of the download a split of the shards is cut from (a variant's val is held out of train)."""
    return "train" if options.variant else split


def label_space_of(options: ShardOptions) -> str | None:
    """The label space asked for: ``--label-space``, else the variant's, else None (the layout's)."""
    return options.label_space or (variant(options.variant).label_space if options.variant else None)


def label(table: Table, classes: tuple[str, ...], space: str, source: Source, split: str,
          labelled: bool = True) -> None:
    """Make the table's class column the label (index into ``classes``; :data:`UNLABELLED` for a sample without
    a class in a split published without labels); SourceError naming the first sample that has no label or a
    class outside the space."""
    index = {w: i for i, w in enumerate(classes)}
    none = -2 if labelled else UNLABELLED
    lookup = np.array([index.get(w, -3) if w is not None else none for w in table.classes] or [0], dtype=np.int32)
    labels = lookup[table.wnid] if len(table) else np.zeros(0, dtype=np.int32)
    bad = np.flatnonzero(labels < (0 if labelled else UNLABELLED))
    if len(bad):
        e = table.entry(int(bad[0]))
        if e.wnid is None:
            raise SourceError(f"{e.origin}: no label: {source.unlabelled(split)}")
        raise SourceError(f"{e.origin}: class {e.wnid} is not one of the {len(classes):,} {space} classes "
                          "(leave it out with --classes, or pick another --label-space: "
                          f"{', '.join(LABEL_SPACES)})")
    table.wnid, table.classes = labels, list(classes)


def order(table: Table, seed: int | None) -> None:
    """Sort the table by key (SourceError naming both files when two give one key), then with a ``seed``
    shuffle it as ``random.Random(seed).shuffle`` shuffles a list of that many samples (the order shards always
    had), applied to an array of 4-byte positions instead of a list of objects."""
    table.reorder(np.argsort(table.keys))
    same = np.flatnonzero(table.keys[1:] == table.keys[:-1])
    if len(same):
        a, b = table.entry(int(same[0])), table.entry(int(same[0]) + 1)
        raise SourceError(f"{b.origin}: sample key {table.key(int(same[0]))!r} also used by {a.origin}")
    if seed is not None:
        positions = array.array("i" if len(table) < 1 << 31 else "q", range(len(table)))
        random.Random(seed).shuffle(positions)
        table.reorder(np.frombuffer(positions, dtype=np.int32 if positions.typecode == "i" else np.int64))
        del positions


def shard_digest(options: bytes, table: Table, start: int, end: int) -> str:
    """The sha256 of the JSON ``[options, [[key, label, size], ...]]`` of the shard's samples in order (keys are
    ``[A-Za-z0-9_-]``: their JSON is the key in quotes), built a shard at a time."""
    h = hashlib.sha256(b"[" + options + b",[")
    rows = zip(table.keys[start:end].tolist(), table.wnid[start:end].tolist(), table.size[start:end].tolist(),
               strict=True)
    h.update(b",".join(b'["%s",%d,%d]' % row for row in rows))
    h.update(b"]]")
    return h.hexdigest()


def keep_from_forks(table: Table) -> None:
    """Move the table's columns into memory that forked worker processes do not inherit (Linux: MADV_DONTFORK),
    so a shard writer holds its own rows only, not a copy-on-write view of the whole plan in its RSS."""
    advice = getattr(mmap, "MADV_DONTFORK", None)
    if advice is None:
        return
    for name in Table.COLUMNS:
        column = getattr(table, name)
        if column.nbytes == 0:
            continue
        region = mmap.mmap(-1, column.nbytes)
        region.madvise(advice)
        moved = np.frombuffer(region, dtype=column.dtype)
        moved[:] = column
        setattr(table, name, moved)
        del column


def recorded_options(options: ShardOptions, split: str) -> dict:
    """The options as the plan and manifest record them (a subset file by its content digest)."""
    out = asdict(options)
    del out["label_space"]   # the plan's header records the space itself, resolved
    for name in ("variant", "squish"):   # recorded when given only: a plan without them is as it always was
        if out[name] is None:
            del out[name]
    out["shuffle"] = options.shuffles(split)
    out["quality"] = options.quality or (90 if options.reencodes() else None)
    if options.classes is not None:
        out["classes"] = sorted(options.classes)
    if options.subset and options.subset not in catalog.SUBSETS:
        out["subset"] = {"file": Path(options.subset).name,
                         "sha256": hashlib.sha256(Path(options.subset).read_bytes()).hexdigest()}
    return out


def source_identity(source: Source, table: Table) -> dict:
    """What the shards were made from: the layout, the archive files' names and sizes, and a digest of the
    split's full listing (names, labels, sizes, unit by unit), so a changed download is noticed."""
    paths = {p[1] for p in table.places if p[0] in ("tar", "zip", "stream")}
    if table.locs is not None:   # locators of other shapes: a stream's (or a zip member's) archive
        paths |= {loc[1] for loc in table.locs.tolist() if loc is not None and loc[0] in ("zip", "stream")}
    return {"layout": source.layout, "samples": len(table),
            "archives": [{"name": Path(p).name, "bytes": Path(p).stat().st_size} for p in sorted(paths)],
            "listing_sha256": table.digest}

