"""``shard`` from a layout without random access (gzip streams, parquet row groups): the same shards, byte for
byte, as from the official archives, each source unit read through twice and never extracted.

A globally shuffled shard takes its samples from everywhere, so it cannot be written front to back from streams.
Instead, per split:

1. *measure* (the listing): every unit streamed once in the workers; each sample's entry, and its members
   encoded as the shard will hold them (:func:`~imnet_data.shards.writer.encode`: fixing, resizing), of which
   only the lengths are kept. The plan is then made from these entries as from any layout's.
2. *place*: each shard's size and every sample's offset in it follow from the lengths; the shards still to write
   are created at their full size (``<shard>.tar.partial``: zeros, so the end-of-archive blocks are there).
3. *scatter*: every unit streamed again; each sample of a shard to write is encoded again (the same bytes) and
   written at its offset. Peak memory: one unit (a row group) per worker.
4. *finish*: each shard hashed, its DALI index written from the offsets, renamed, its record written.

A killed run keeps the shards finished (their records match the plan); the rest are placed and scattered again.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from imnet_data import catalog
from imnet_data.parallel import map_units
from imnet_data.shards.manifest import class_names
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.plan import UNLABELLED, ShardPlan, SplitPlan, listing_of, make_plan, source_split
from imnet_data.shards.table import Table, sample_key
from imnet_data.shards.writer import RECORD, ShardJob, encode, finish_record, pack, parts_of, write_index
from imnet_data.sources import Entry, Source, SourceError, SourceRef, Unit
from imnet_data.tario import BLOCK

Lengths = tuple[int, ...]   # the data lengths of a sample's members, in order (.cls, .jpg, .json)


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample as the plan holds it: its shard key, label and entry."""

    key: str
    label: int
    entry: Entry


@dataclass(frozen=True)
class Labels:
    """How a split's samples are labelled (picklable): the label space's WNID -> index, its class names, and
    whether the split carries labels at all."""

    index: dict[str, int]
    names: tuple[str, ...]
    space: str
    labelled: bool

    def planned(self, entry: Entry) -> Sample:
        """The entry as the plan will hold it (a class outside the space is left to the plan to refuse)."""
        label = self.index.get(entry.wnid, UNLABELLED) if entry.wnid and self.labelled else UNLABELLED
        return Sample(sample_key(entry), label, entry)


def measure_unit(job: tuple[SourceRef, Unit, ShardOptions, Labels]) -> list[tuple[Entry, Lengths, str]]:
    """Every sample of one unit: its entry, its members' lengths, and what was fixed (empty when nothing)."""
    ref, unit, options, labels = job
    out = []
    for entry, data in ref.open().stream(unit):  # type: ignore[attr-defined]  # a streaming layout's
        planned = labels.planned(entry)
        image, meta = encode(planned.key, planned.label, entry, data, _job(options, labels))
        out.append((entry, tuple(len(d) for _, d in parts_of(planned.label, image, meta)), meta["fixed"]))
    return out


def _job(options: ShardOptions, labels: Labels) -> ShardJob:
    """The writer's job for :func:`encode` (no shard: only the options and the class names matter)."""
    return ShardJob("", ShardPlan(0, "", 0, 0, ""), Table.of([], sample_key), options, labels.names, labels.space)


def listed(source: Source, split: str, options: ShardOptions, jobs: int | None,
           quiet: bool) -> tuple[SplitPlan, dict[tuple, tuple[Lengths, str]]]:
    """The split's plan (made from the measured entries) and every sample's member lengths by its locator. A
    variant's split is measured from the download's split it is held out of (:func:`.plan.source_split`)."""
    space, classes = catalog.label_space(source.layout, source.wnids, options.label_space)
    labels = Labels({w: i for i, w in enumerate(classes)}, tuple(class_names(space, list(classes))), space,
                    source.labelled(split))
    ref = SourceRef.of(source)
    units = source.units(source_split(split, options))
    measured = map_units(measure_unit, [(ref, u, options, labels) for u in units], jobs=jobs,
                         desc=f"list {split}", quiet=quiet, weights=[u.size for u in units])
    entries, sizes = [], {}
    for found in measured:
        for entry, lengths, fixed in found:
            entries.append(entry)
            sizes[entry.loc] = (lengths, fixed)
    return make_plan(source, split, options, jobs, quiet, listing_of(entries)), sizes


@dataclass(frozen=True)
class Placed:
    """Where one sample goes: its shard's temp file, its offset there, and the sample as planned."""

    path: str
    offset: int
    sample: Sample


def place(folder: Path, plan: SplitPlan, shards: list[ShardPlan],
          sizes: dict[tuple, tuple[Lengths, str]]) -> tuple[list[dict], dict[tuple, Placed]]:
    """Each shard's layout (size, index rows, fixed samples, samples per label) and every sample's place;
    creates each shard's temp file at its full size."""
    layouts, placed = [], {}
    for shard in shards:
        path, pos, rows, fixed = folder / f"{shard.name}.partial", 0, [], []
        table = plan.rows(shard)
        for i in range(len(table)):
            sample = Sample(table.key(i), int(table.wnid[i]), table.entry(i))
            lengths, kind = sizes[sample.entry.loc]
            exts = ("jpg", "json") if sample.label == UNLABELLED else ("cls", "jpg", "json")
            placed[sample.entry.loc] = Placed(str(path), pos, sample)
            fields = []
            for ext, n in zip(exts, lengths, strict=True):
                fields.append((ext, pos + BLOCK, n))
                pos += BLOCK + -(-n // BLOCK) * BLOCK
            rows.append((sample.key, fields))
            if kind:
                fixed.append([sample.key, kind])
        size = -(-(pos + 2 * BLOCK) // RECORD) * RECORD
        with open(path, "wb") as f:
            f.truncate(size)
        layouts.append({"shard": shard, "path": str(path), "size": size, "rows": rows, "fixed": fixed,
                        "labels": Counter(table.wnid.tolist())})
    return layouts, placed


def scatter_unit(job: tuple[SourceRef, Unit, ShardOptions, Labels, dict[int, Placed]]) -> int:
    """Stream one unit again and write each of its samples that a shard to write holds at its place; the
    bytes written. A sample that does not encode to the measured bytes (the download changed) raises."""
    ref, unit, options, labels, targets = job
    written, files = 0, {}
    try:
        for ordinal, (entry, data) in enumerate(ref.open().stream(unit)):  # type: ignore[attr-defined]
            target = targets.get(ordinal)
            if target is None:
                continue
            if entry != target.sample.entry:
                raise SourceError(f"{entry.origin}: is not {target.sample.entry.name} of {entry.size:,} bytes, "
                                  "as listed before; changed since listing? run the command again")
            sample = target.sample
            image, meta = encode(sample.key, sample.label, sample.entry, data, _job(options, labels))
            chunk, _ = pack(sample.key, parts_of(sample.label, image, meta), target.offset)
            if target.path not in files:
                files[target.path] = os.open(target.path, os.O_WRONLY)
            os.pwrite(files[target.path], chunk, target.offset)
            written += len(chunk)
    finally:
        for fd in files.values():
            os.close(fd)
    return written


def finish_shard(folder: Path, layout: dict) -> dict:
    """Hash a scattered shard, write its index, rename it into place, write its record."""
    shard: ShardPlan = layout["shard"]
    path, final = Path(layout["path"]), folder / shard.name
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(partial(f.read, 8 << 20), b""):
            digest.update(block)
        os.fsync(f.fileno())
    index = write_index(final.with_suffix(".idx"), layout["rows"])
    os.replace(path, final)
    return finish_record(folder, shard, layout["size"], digest.hexdigest(), layout["fixed"], index, layout["labels"])


def write_streamed(source: Source, folder: Path, plan: SplitPlan, todo: list[ShardPlan],
                   sizes: dict[tuple, tuple[Lengths, str]], options: ShardOptions, jobs: int | None,
                   quiet: bool) -> Iterator[dict]:
    """Write the shards ``todo`` of ``plan`` (see the module doc); their records, in ``todo`` order."""
    if not todo:
        return
    layouts, placed = place(folder, plan, todo, sizes)
    by_unit: dict[tuple, dict[int, Placed]] = defaultdict(dict)
    for loc, target in placed.items():
        by_unit[loc[1], loc[3]][loc[4]] = target
    units = [u for u in source.units(source_split(plan.split, options)) if by_unit.get(_unit_key(u))]
    space, classes = plan.label_space, plan.classes
    labels = Labels({w: i for i, w in enumerate(classes)}, tuple(class_names(space, list(classes))), space,
                    source.labelled(plan.split))
    ref = SourceRef.of(source)
    for _ in map_units(scatter_unit, [(ref, u, options, labels, by_unit[_unit_key(u)]) for u in units],
                       jobs=jobs, desc=f"shard {plan.split}", quiet=quiet, weights=[u.size for u in units]):
        pass
    yield from map_units(partial(finish_shard, folder), layouts, jobs=jobs, desc=f"hash {plan.split}",
                         quiet=quiet, weights=[layout["size"] for layout in layouts])


def _unit_key(unit: Unit) -> tuple:
    """The ``(path, part)`` of a unit, as its samples' locators give them."""
    return (unit.ref[1], unit.ref[2] if len(unit.ref) > 2 else 0)
