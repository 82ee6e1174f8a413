"""Which listed samples a split of the shards holds: ``--classes``, ``--subset``, and a named ImageNet-21k variant
(:mod:`imnet_data.variants`: its classes, and its val split held out of the release's images).

Everything here works on a plan's :class:`~imnet_data.shards.table.Table` as boolean masks over its rows, class
by class where a rule needs a class's keys, so selecting costs a byte a sample, not a copy of the listing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imnet_data import catalog
from imnet_data.errors import UsageError
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.table import KEY_UNSAFE, Table
from imnet_data.sources import Source, SourceError
from imnet_data.sources.base import stem
from imnet_data.variants import HOLDOUT_SEED, Variant, key_hash, variant


@dataclass
class LeftOut:
    """What a selection left out of the listing, for the report: classes and images."""

    classes: int = 0
    images: int = 0
    why: str = ""


def selected(table: Table, split: str, options: ShardOptions, source: Source) -> tuple[np.ndarray, LeftOut]:
    """The rows ``split`` keeps (a boolean mask) and what the class selection left out."""
    keep = np.ones(len(table), dtype=bool)
    wanted: frozenset[str] | None = None
    if options.classes is not None:
        wanted = frozenset(options.classes)
    if options.variant:
        v = variant(options.variant)
        wanted = frozenset(v.wnids())
        keep &= variant_split(table, split, v, source)
    if wanted is not None:
        in_class = class_rows(table, wanted)
        keep &= in_class
        out = [w for w in table.classes if w is not None and w not in wanted]
        left = LeftOut(len(out), int(len(table) - in_class.sum()),
                       f"not in {options.variant}" if options.variant else "not in --classes")
    else:
        left = LeftOut()
    if options.subset and split == "train":
        keep &= subset_rows(table, options.subset)
    return keep, left


def class_rows(table: Table, wnids: frozenset[str]) -> np.ndarray:
    """The rows of a class in ``wnids``."""
    inside = np.array([w in wnids for w in table.classes] or [False], dtype=bool)
    return inside[table.wnid] if len(table) else np.zeros(0, dtype=bool)


def variant_split(table: Table, split: str, v: Variant, source: Source) -> np.ndarray:
    """The rows of ``split`` (train or val) of variant ``v`` over its release's listing ``table``: its classes
    checked first (SourceError naming a class of the download that is no 21k class, a class of the variant the
    download lacks, a class too small to hold out ``v.val_per_class`` images from)."""
    if split not in ("train", "val"):
        raise UsageError(f"{v.name} has the splits train and val, not {split!r}")
    fall11, found = frozenset(catalog.imagenet21k("fall11")), {w for w in table.classes if w is not None}
    alien = sorted(found - fall11)
    if alien:
        raise SourceError(f"{source.home('train')}: class {alien[0]} ({len(alien)} such) is not an ImageNet-21k "
                          f"class (fall11's 21,841), so not one {v.name} is cut from: is this a 21k download?")
    missing = [w for w in v.wnids() if w not in found]
    if missing:
        raise SourceError(f"{source.home('train')}: no images of {len(missing):,} of the {v.count:,} {v.name} "
                          f"classes, e.g. {', '.join(missing[:3])} (class tar missing? {v.name} is cut from "
                          f"{v.release})")
    held = held_out(table, class_rows(table, v.val_wnids()), v)
    return held if split == "val" else ~held


def held_out(table: Table, eligible: np.ndarray, v: Variant) -> np.ndarray:
    """The rows held out for val: ``v.val_per_class`` of every class with eligible rows, by ``v.val_rule``
    (:mod:`imnet_data.variants`), decided from the class's own keys. SourceError naming a class with too few."""
    mask = np.zeros(len(table), dtype=bool)
    rows = np.flatnonzero(eligible)
    rows = rows[np.argsort(table.wnid[rows], kind="stable")]
    labels = table.wnid[rows]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]]) if len(rows) else np.zeros(0, dtype=np.int64)
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(rows)], strict=True):
        group = rows[start:end]
        if len(group) <= v.val_per_class:
            wnid = table.classes[table.wnid[group[0]]]
            raise SourceError(f"class {wnid}: {len(group):,} images, too few to hold out {v.val_per_class} for "
                              f"{v.name}'s val and keep any for train")
        keys = table.keys[group]
        rank = key_hash(keys, HOLDOUT_SEED) if v.val_rule == "random" else keys
        mask[group[np.argsort(rank, kind="stable")[:v.val_per_class]]] = True
    return mask


def subset_rows(table: Table, spec: str) -> np.ndarray:
    """The rows whose file name is in the train subset ``spec`` (matched by key first, then by name)."""
    names = set(subset_files(spec))
    keys = np.array(sorted({KEY_UNSAFE.sub("_", stem(n)).encode() for n in names}) or [b""])
    mask = np.isin(table.keys, keys)
    for i in np.flatnonzero(mask).tolist():
        mask[i] = table.name(i) in names
    return mask


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
