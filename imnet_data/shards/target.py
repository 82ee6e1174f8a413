"""Making a split folder or prefix hold the shards of one plan, whatever the store: new (the plan is written
first), the same plan (a resume: what is there is kept), or a different one (refused, or with ``overwrite``
the old shard set removed first). Shared by ``shard`` (into a folder or a bucket) and ``upload``."""
from __future__ import annotations

import fnmatch
from typing import Callable

from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.peers import WIDS
from imnet_data.shards.plan import PLAN, read_plan
from imnet_data.shards.writer import RECORDS
from imnet_data.stores import Store

OURS = ("*.tar", "*.idx", "*.partial", PLAN, MANIFEST, WIDS)   # a shard set's files (and its records)


def header(plan: dict) -> dict:
    """A stored plan's data but its sample lists."""
    return {k: v for k, v in plan.items() if k != "shards"}


def prepare(store: Store, head: dict, digests: list[str], raw: Callable[[], bytes], overwrite: bool) -> None:
    """Make ``store`` hold the plan of header ``head`` and shard ``digests`` (``raw()``: its stored bytes, made
    only when they are written), see the module doc; ValueError naming what differs when it holds another plan
    and ``overwrite`` is not given."""
    stored = read_plan(store)
    if stored is not None:
        if header(stored) == head and [s.get("digest") for s in stored["shards"]] == digests:
            return
        if not overwrite:
            differs = [k for k in ("options", "source", "name", "classes") if stored.get(k) != head.get(k)]
            raise ValueError(f"{store}: holds shards of a different plan (differs in: "
                             f"{', '.join(differs) or 'sample order'}); use --overwrite or another DEST")
        clear(store)
    store.write(PLAN, raw())


def clear(store: Store) -> None:
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
