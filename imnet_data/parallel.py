"""Run a function over source units, results in unit order, with a progress bar: what validate, organize, shard
and verify call, whatever runs the units.

The units run on the current executor (:mod:`imnet_data.executors`): this machine's process pool, or inside
``with executing("ray", address):`` one Ray task per unit on a cluster; :func:`check_visible` lets a cluster
check that every node sees the folders the units read and write. The callers do not change: what is computed
(the plan, the units, the results in order) is the same, so is the output.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from imnet_data.executors import current
from imnet_data.executors.tokens import remove_stale_tokens
from imnet_data.progress import progress

T = TypeVar("T")
R = TypeVar("R")


def check_visible(reads: Sequence[Path], writes: Sequence[Path] = ()) -> None:
    """With a cluster executor: every node sees ``reads`` and ``writes`` as here (see
    :meth:`~imnet_data.executors.base.Executor.check_visible`). With any executor, the probe tokens that killed
    drivers on this machine left in ``writes`` are removed first."""
    for folder in writes:
        remove_stale_tokens(Path(folder))
    current().check_visible([Path(p) for p in reads], [Path(p) for p in writes])


def default_jobs(jobs: int | None) -> int:
    """``jobs`` if positive, else the number of usable cores (with a cluster executor: the cluster's)."""
    return jobs if jobs and jobs > 0 else current().workers()


def map_units(fn: Callable[[T], R], items: Sequence[T], *, jobs: int | None = None, desc: str = "",
              unit: str = "units", quiet: bool = False, weights: Iterable[int] | None = None,
              ahead: int | None = None) -> Iterator[R]:
    """``fn(item)`` for every item, yielded in item order (``fn`` reaches the workers once: bind what the items
    share into it, see :meth:`~imnet_data.executors.base.Executor.map`); ``weights`` (e.g. bytes) drive the
    progress bar (and its lines count the items in ``unit``: ``12/147 shards, 1.6 GB/19.6 GB``);
    ``ahead``: at most this many items in the workers' hands beyond what the caller has taken (a slow consumer,
    e.g. uploading each shard, then bounds what piles up), else all are handed out at once. With a cluster
    executor (:func:`~imnet_data.executors.executing`), ``jobs`` given caps the units in flight."""
    sizes = list(weights) if weights is not None else [1] * len(items)
    weighted = weights is not None
    with progress(total=sum(sizes), desc=desc, unit="B" if weighted else unit, unit_scale=True, quiet=quiet,
                  items=len(items) if weighted else None, item_unit=unit) as bar:
        results = current().map(fn, items, jobs if jobs and jobs > 0 else None, ahead)
        for result, size in zip(results, sizes, strict=True):   # results first: the pool_map generator runs to its end
            bar.update(size, items=1)
            yield result
