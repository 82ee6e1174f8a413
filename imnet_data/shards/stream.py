"""``shard`` from a layout without random access (gzip streams, parquet row groups): the same shards, byte for
byte, as from the official archives, each source unit read through twice and never extracted.

A globally shuffled shard takes its samples from everywhere, so it cannot be written front to back from streams.
Instead, per split:

1. *measure* (the listing): every unit streamed once in the workers; each sample's entry, and its members
   encoded as the shard will hold them (:func:`~imnet_data.shards.writer.encode`: fixing, resizing), of which
   only the lengths are kept. The plan is then made from these entries as from any layout's. The driver holds
   columns, not objects, per sample: the plan's table and each sample's member lengths (:class:`Measured`).
2. *place*: each shard's size and every sample's offset in it follow from the lengths (:func:`layout`); the
   shards still to write are created at their full size (``<shard>.tar.partial``: zeros, so the end-of-archive
   blocks are there).
3. *scatter*: every unit streamed again; each sample of a shard to write is encoded again (the same bytes) and
   written at its offset; a unit's worker receives only its own samples' rows, offsets and shard files. Peak
   memory: one unit (a row group) per worker.
4. *finish*: each shard hashed, its DALI index written from its rows' lengths, renamed, its record written.

A killed run keeps the shards finished (their records match the plan); the rest are placed and scattered again.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import cast

import numpy as np

from imnet_data import catalog
from imnet_data.parallel import Lazy, default_jobs, map_units
from imnet_data.shards.manifest import class_names
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.plan import (
    UNLABELLED,
    ShardPlan,
    SplitPlan,
    free_big_arrays_at_once,
    joined,
    make_plan,
    source_split,
)
from imnet_data.shards.table import Joined, Table, joined_names, sample_key, split_names
from imnet_data.shards.writer import RECORD, ShardJob, encode, finish_record, pack, parts_of, write_index
from imnet_data.sources import Entry, Source, SourceError, SourceRef, Unit
from imnet_data.tario import BLOCK

EXTS = ("cls", "jpg", "json")   # a sample's members, in order (an unlabelled sample has no .cls)
RUN_AHEAD = 16   # scatter's jobs in the workers' hands, per worker (each holds its unit's rows of the plan): runs
#                  of 8 neighbouring units, 2 a worker (a gzip's neighbours share decoded chunks: Source.runs)


@dataclass(frozen=True)
class Labels:
    """How a split's samples are labelled (picklable): the label space's WNID -> index, its class names, and
    whether the split carries labels at all."""

    index: dict[str, int]
    names: tuple[str, ...]
    space: str
    labelled: bool

    @staticmethod
    def of(classes: Sequence[str], space: str, labelled: bool) -> Labels:
        """The labels of the label space ``space`` whose classes are ``classes``, in index order."""
        return Labels(_index(classes), tuple(class_names(space, list(classes))), space, labelled)

    @cached_property
    def classes(self) -> list[str | None]:
        """The label space's WNIDs in index order, as a table's ``classes`` (one list per process: every unit's
        rows use it, :func:`scatter_unit`)."""
        return list(self.index)

    def __reduce__(self) -> tuple:
        """Pickled as its WNIDs and its names each joined into one string, as a table's classes are
        (:func:`~imnet_data.shards.table.joined_names`), rebuilt once per process (:func:`_labels`): as a dict
        and a tuple, ImageNet-21k's 21,841 classes were 600 KB and ~7 ms to pickle and unpickle."""
        return _labels, (joined_names(list(self.index)), joined_names(self.names), self.space, self.labelled)

    def planned(self, entry: Entry) -> tuple[str, int]:
        """The entry's key and label as the plan will hold them (a class outside the space is left to the plan
        to refuse)."""
        label = self.index.get(entry.wnid, UNLABELLED) if entry.wnid and self.labelled else UNLABELLED
        return sample_key(entry), label


@lru_cache(maxsize=4)
def _labels(classes: Joined, names: Joined, space: str, labelled: bool) -> Labels:
    """:class:`Labels` from its pickled form (``Labels.__reduce__``), built once per process (a label space's
    WNIDs and names hold no None)."""
    wnids, titles = (cast("tuple[str, ...]", split_names(*joined)) for joined in (classes, names))
    return Labels(_index(wnids), titles, space, labelled)


def _index(classes: Sequence[str]) -> dict[str, int]:
    """Each class's index: its position in ``classes``."""
    return {w: i for i, w in enumerate(classes)}


@dataclass
class Measured:
    """Samples as measured, row for row of a table: each one's member lengths (``.cls``, ``.jpg``, ``.json``;
    0 for the ``.cls`` an unlabelled sample has not), and what was fixed by row (only where something was)."""

    lengths: np.ndarray                                  # (rows, 3) uint32
    fixed: dict[int, str] = field(default_factory=dict)


def measure_unit(ref: SourceRef, options: ShardOptions, labels: Labels, unit: Unit) -> tuple[Table, Measured]:
    """Every sample of one unit: its listing (a table) and its samples' measures, row for row (what every unit
    shares comes first: :func:`listed` binds it, sent to each worker once)."""
    entries: list[Entry] = []
    lengths: list[list[int]] = []
    fixed = {}
    for entry, data in ref.open().stream(unit):  # type: ignore[attr-defined]  # a streaming layout's
        key, label = labels.planned(entry)
        image, meta = encode(key, label, entry, data, _job(options, labels))
        parts = [len(d) for _, d in parts_of(label, image, meta)]
        lengths.append([0] * (len(EXTS) - len(parts)) + parts)
        if meta["fixed"]:
            fixed[len(entries)] = meta["fixed"]
        entries.append(entry)
    return Table.of(entries, sample_key), Measured(np.array(lengths, dtype=np.uint32).reshape(-1, len(EXTS)), fixed)


def _job(options: ShardOptions, labels: Labels) -> ShardJob:
    """The writer's job for :func:`encode` (no shard: only the options and the class names matter)."""
    return ShardJob("", ShardPlan(0, "", 0, 0, ""), Table.of([], sample_key), options, labels.names, labels.space)


def listed(source: Source, split: str, options: ShardOptions, jobs: int | None,
           quiet: bool) -> tuple[SplitPlan, Measured]:
    """The split's plan (made from the measured listing) and its samples' measures, row for row of the plan's
    table. A variant's split is measured from the download's split it is held out of (:func:`.plan.source_split`)."""
    space, classes = catalog.label_space(source.layout, source.wnids, options.label_space)
    labels = Labels.of(classes, space, source.labelled(split))
    ref = SourceRef.of(source)
    units = source.units(source_split(split, options))
    first: dict[tuple, int] = {}   # each unit's first row in the listing
    measured: list[Measured] = []

    def tables() -> Iterator[Table]:
        row = 0
        for unit, (table, found) in zip(units, map_units(
                partial(measure_unit, ref, options, labels), units, jobs=jobs, desc=f"list {split}",
                quiet=quiet, weights=[u.size for u in units], runs=source.runs(units, default_jobs(jobs))),
                strict=True):
            first[_unit_key(unit)] = row
            measured.append(Measured(found.lengths, {row + i: kind for i, kind in found.fixed.items()}))
            row += len(table)
            yield table

    free_big_arrays_at_once()
    plan = make_plan(source, split, options, jobs, quiet, joined(tables()))
    rows = by_unit(plan.table, first, ordinal=True)   # each planned sample's row in the listing
    lengths = np.concatenate([m.lengths for m in measured]) if measured else np.zeros((0, len(EXTS)), np.uint32)
    fixed = {row: kind for m in measured for row, kind in m.fixed.items()}
    measured.clear()
    hits = np.flatnonzero(np.isin(rows, np.fromiter(fixed, dtype=np.int64, count=len(fixed))))
    return plan, Measured(lengths[rows], {i: fixed[row] for i, row in zip(hits.tolist(), rows[hits].tolist(),
                                                                          strict=True)})


def by_unit(table: Table, number: dict[tuple, int], ordinal: bool) -> np.ndarray:
    """For each row of ``table``: the ``number`` of its unit (by the ``(path, part)`` of its locator), plus with
    ``ordinal`` its ordinal in the unit (int64)."""
    first = np.array([number[p[1], p[3]] if p[0] == "stream" else 0 for p in table.places] or [0], dtype=np.int64)
    out = first[table.place] + (table.offset if ordinal else 0)
    for i, loc in enumerate(table.locs.tolist() if table.locs is not None else []):
        if loc is not None:   # a locator of no place's shape (a parquet row's)
            out[i] = number[loc[1], loc[3]] + (loc[4] if ordinal else 0)
    return out


def layout(labels: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, int]:
    """Where each member (``.cls``, ``.jpg``, ``.json``) of a shard's samples starts (its header; an absent
    ``.cls`` takes no room), and the shard's size: as :func:`~.writer.pack` writes the members, each a header block
    and its data padded to whole blocks, then the end-of-archive blocks, padded to a whole record."""
    blocks = BLOCK + -(-lengths.astype(np.int64) // BLOCK) * BLOCK
    blocks[:, 0] *= labels != UNLABELLED
    ends = np.cumsum(blocks.ravel()).reshape(blocks.shape)
    end = int(ends[-1, -1]) if len(ends) else 0
    return ends - blocks, -(-(end + 2 * BLOCK) // RECORD) * RECORD


@dataclass(frozen=True)
class Targets:
    """A unit's samples that shards to write hold (picklable: a scatter job): their rows of the plan without its
    class list (the ``wnid`` column indexes the labels' classes, which every job shares: 21k's 21,841 WNIDs were
    219 KB of each of 19,167 jobs), each one's offset in its shard and its shard's temp file (an index into
    ``paths``)."""

    unit: Unit
    rows: Table
    offsets: np.ndarray
    shard: np.ndarray
    paths: list[str]


def scatter_unit(ref: SourceRef, options: ShardOptions, labels: Labels, targets: Targets) -> int:
    """Stream one unit again and write each of its samples that a shard to write holds at its place; the
    bytes written. A sample that does not encode to the measured bytes (the download changed) raises. What
    every unit shares comes first (:func:`scatter` binds it, sent to each worker once)."""
    rows = replace(targets.rows, classes=labels.classes)
    wanted = {rows.entry(i).loc[4]: i for i in range(len(rows))}   # ordinal in the unit -> row
    written, files = 0, {}
    try:
        for ordinal, (entry, data) in enumerate(ref.open().stream(targets.unit)):  # type: ignore[attr-defined]
            i = wanted.get(ordinal)
            if i is None:
                continue
            planned = rows.entry(i)
            if entry != planned:
                raise SourceError(f"{entry.origin}: is not {planned.name} of {entry.size:,} bytes, "
                                  "as listed before; changed since listing? run the command again")
            key, label, offset = rows.key(i), int(rows.wnid[i]), int(targets.offsets[i])
            image, meta = encode(key, label, planned, data, _job(options, labels))
            chunk, _ = pack(key, parts_of(label, image, meta), offset)
            path = targets.paths[targets.shard[i]]
            if path not in files:
                files[path] = os.open(path, os.O_WRONLY)
            os.pwrite(files[path], chunk, offset)
            written += len(chunk)
    finally:
        for fd in files.values():
            os.close(fd)
    return written


@dataclass(frozen=True)
class Finish:
    """What a worker needs to finish one scattered shard (picklable): its rows of the plan, their members'
    lengths, its fixed samples (``[key, what]``) and its size."""

    shard: ShardPlan
    rows: Table
    lengths: np.ndarray
    fixed: list[list[str]]
    size: int


def finish_shard(folder: Path, job: Finish) -> dict:
    """Hash a scattered shard, write its index, rename it into place, write its record."""
    path, final = folder / f"{job.shard.name}.partial", folder / job.shard.name
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(partial(f.read, 8 << 20), b""):
            digest.update(block)
        os.fsync(f.fileno())
    starts, _ = layout(job.rows.wnid, job.lengths)
    rows = []
    for i, (begins, lengths) in enumerate(zip(starts.tolist(), job.lengths.tolist(), strict=True)):
        first = int(job.rows.wnid[i] == UNLABELLED)
        rows.append((job.rows.key(i), [(ext, begin + BLOCK, n) for ext, begin, n
                                       in zip(EXTS[first:], begins[first:], lengths[first:], strict=True)]))
    index = write_index(final.with_suffix(".idx"), rows)
    os.replace(path, final)
    return finish_record(folder, job.shard, job.size, digest.hexdigest(), job.fixed, index,
                         Counter(job.rows.wnid.tolist()))


def write_streamed(source: Source, folder: Path, plan: SplitPlan, todo: list[ShardPlan], sizes: Measured,
                   options: ShardOptions, jobs: int | None, quiet: bool) -> Iterator[dict]:
    """Write the shards ``todo`` of ``plan`` (see the module doc); their records, in ``todo`` order."""
    if not todo:
        return
    size = scatter(source, folder, plan, todo, sizes, options, jobs, quiet)
    table, fixed = plan.table, np.array(sorted(sizes.fixed), dtype=np.int64)

    def finish_job(i: int) -> Finish:
        shard = todo[i]
        lo, hi = np.searchsorted(fixed, [shard.start, shard.end]).tolist()
        return Finish(shard, plan.rows(shard), sizes.lengths[shard.start:shard.end],
                      [[table.key(r), sizes.fixed[r]] for r in fixed[lo:hi].tolist()], size[shard.name])

    yield from map_units(partial(finish_shard, folder), Lazy(len(todo), finish_job), jobs=jobs,
                         desc=f"hash {plan.split}", quiet=quiet, weights=[size[s.name] for s in todo],
                         ahead=2 * default_jobs(jobs))


def scatter(source: Source, folder: Path, plan: SplitPlan, todo: list[ShardPlan], sizes: Measured,
            options: ShardOptions, jobs: int | None, quiet: bool) -> dict[str, int]:
    """Place the shards ``todo`` (their temp files created at full size) and scatter their samples into them;
    each one's size by name."""
    table, paths = plan.table, [str(folder / f"{shard.name}.partial") for shard in todo]
    offsets = np.full(len(table), -1, dtype=np.int64)   # each sample's offset in its shard; -1: not written now
    size = {}
    for shard, path in zip(todo, paths, strict=True):
        rows = slice(shard.start, shard.end)
        starts, size[shard.name] = layout(table.wnid[rows], sizes.lengths[rows])
        offsets[rows] = starts[:, 0]
        with open(path, "wb") as f:
            f.truncate(size[shard.name])
    # a row's shard (its index in ``todo``): the last one starting at or before it
    firsts = np.array([shard.start for shard in todo], dtype=np.int64)
    units = source.units(source_split(plan.split, options))
    unit_of = by_unit(table, {_unit_key(u): i for i, u in enumerate(units)}, ordinal=False).astype(np.int32)
    unit_of[offsets < 0] = len(units)
    order = np.argsort(unit_of, kind="stable")   # the samples to write, unit by unit
    bounds = np.concatenate([[0], np.cumsum(np.bincount(unit_of, minlength=len(units) + 1))])
    del unit_of
    mine = [u for u in range(len(units)) if bounds[u] < bounds[u + 1]]
    space, classes = plan.label_space, plan.classes
    labels = Labels.of(classes, space, source.labelled(plan.split))
    ref = SourceRef.of(source)

    def job(i: int) -> Targets:
        rows = order[bounds[mine[i]]:bounds[mine[i] + 1]]
        used, shard = np.unique(np.searchsorted(firsts, rows, side="right") - 1, return_inverse=True)
        return Targets(units[mine[i]], replace(table.take(rows), classes=[]), offsets[rows], shard,
                       [paths[j] for j in used.tolist()])

    for _ in map_units(partial(scatter_unit, ref, options, labels), Lazy(len(mine), job), jobs=jobs,
                       desc=f"shard {plan.split}", quiet=quiet, weights=[units[u].size for u in mine],
                       ahead=RUN_AHEAD * default_jobs(jobs), runs=source.runs([units[u] for u in mine],
                                                                              default_jobs(jobs))):
        pass
    return size


def _unit_key(unit: Unit) -> tuple:
    """The ``(path, part)`` of a unit, as its samples' locators give them."""
    return (unit.ref[1], unit.ref[2] if len(unit.ref) > 2 else 0)
