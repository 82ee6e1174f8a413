"""Making a split folder or prefix hold the shards of one plan, whatever the store: new (the plan is written
first), the same plan (a resume: what is there is kept), or a different one (refused, or with ``overwrite``
the old shard set removed first). Shared by ``shard`` (into a folder or a bucket) and ``upload``."""
from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable

from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.peers import WIDS
from imnet_data.shards.planfile import PLAN, read_plan
from imnet_data.shards.writer import RECORDS
from imnet_data.stores import WritableStore

OURS = ("*.tar", "*.idx", "*.partial", PLAN, MANIFEST, WIDS)   # a shard set's files (and its records)
FIRST = ("options", "source")                            # the plan's parts a "differs in" message names first
DERIVED = ("name", "pattern", "label_space", "classes")   # what follows from the options and the source
BRIEF = 60                                                # characters of one value in that message
DIGEST = re.compile(r"[0-9a-f]{64}")                      # a sha256, shown by its first 12 digits


def header(plan: dict) -> dict:
    """A stored plan's data but its sample lists."""
    return {k: v for k, v in plan.items() if k != "shards"}


def prepare(store: WritableStore, head: dict, digests: list[str], raw: Callable[[], bytes], overwrite: bool) -> None:
    """Make ``store`` hold the plan of header ``head`` and shard ``digests`` (``raw()``: its stored bytes, made
    only when they are written), see the module doc; ValueError naming what differs when it holds another plan
    and ``overwrite`` is not given."""
    stored = read_plan(store)
    if stored is not None:
        if header(stored) == head and [s.get("digest") for s in stored["shards"]] == digests:
            return
        if not overwrite:
            raise ValueError(f"{store}: holds shards of a different plan (differs in "
                             f"{differences(header(stored), head)}); use --overwrite or another DEST")
        clear(store)
    store.write(PLAN, raw())


def differences(stored: dict, wanted: dict) -> str:
    """What differs between two plan headers, part by part, each field with the stored and the wanted value:
    ``options: seed 0 -> 1, shard_size 1000000000 -> 500000000; source: samples 20 -> 18``. Fields that follow
    from those (name, pattern, class list) are named only when nothing else differs."""
    keys = (*FIRST, *sorted((set(stored) | set(wanted)) - set(FIRST)))
    changed = [k for k in keys if stored.get(k) != wanted.get(k)]
    shown = [k for k in changed if k not in DERIVED] or changed
    return "; ".join(change(k, stored.get(k), wanted.get(k)) for k in shown) or "sample order"


def change(key: str, old: object, new: object) -> str:
    """``key: old -> new``; two dicts field by field (``options: seed 0 -> 1, quality null -> 90``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return f"{key}: " + ", ".join(f"{k} {brief(old.get(k))} -> {brief(new.get(k))}"
                                      for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
    return f"{key}: {brief(old)} -> {brief(new)}"


def brief(value: object) -> str:
    """A plan value in a few words, cut to :data:`BRIEF` characters: a subset file as ``name@sha256-prefix``,
    a digest by its first 12 digits, a dict as ``key=value`` pairs, a list by its first items and length,
    strings bare, the rest as JSON."""
    if isinstance(value, dict) and set(value) == {"file", "sha256"}:
        text = f"{value['file']}@{str(value['sha256'])[:8]}"
    elif isinstance(value, dict):
        text = " ".join(f"{k}={brief(v)}" for k, v in sorted(value.items()))
    elif isinstance(value, list):
        text = f"[{', '.join(brief(v) for v in value[:3])}{f', ... {len(value)} in all' if len(value) > 3 else ''}]"
    elif isinstance(value, str):
        text = value[:12] + "..." if DIGEST.fullmatch(value) else value
    else:
        text = json.dumps(value)
    return text if len(text) <= BRIEF else text[:BRIEF - 3] + "..."


def clear(store: WritableStore) -> None:
    """Remove what an earlier plan wrote (shards, indexes, records, plan, manifest) and nothing else."""
    for name in store.names():
        if ours(name):
            store.delete(name)


def ours(name: str) -> bool:
    """Whether ``name`` (relative to a split folder) is a file a shard set consists of."""
    top, _, rest = name.partition("/")
    if rest:
        return top == RECORDS and "/" not in rest
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OURS)
