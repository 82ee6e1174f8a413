"""Run a function over source units, results in unit order, with a progress bar: what validate, organize, shard
and verify call, whatever runs the units.

The units run on the current executor (:mod:`imnet_data.executors`): this machine's process pool, or inside
``with executing("ray", address):`` one Ray task per unit on a cluster; :func:`check_visible` lets a cluster
check that every node sees the folders the units read and write. The callers do not change: what is computed
(the plan, the units, the results in order) is the same, so is the output.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Generic, NoReturn, TypeVar, overload

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
              ahead: int | None = None, runs: Sequence[int] | None = None) -> Iterator[R]:
    """``fn(item)`` for every item, yielded in item order (``fn`` reaches the workers once: bind what the items
    share into it, see :meth:`~imnet_data.executors.base.Executor.map`); ``weights`` (e.g. bytes) drive the
    progress bar (and its lines count the items in ``unit``: ``12/147 shards, 1.6 GB/19.6 GB``);
    ``ahead``: at most this many items in the workers' hands beyond what the caller has taken (a slow consumer,
    e.g. uploading each shard, then bounds what piles up), else all are handed out at once. With a cluster
    executor (:func:`~imnet_data.executors.executing`), ``jobs`` given caps the units in flight.
    ``runs`` (:meth:`~imnet_data.sources.base.Source.runs`): a run number per item, the items of a run
    consecutive; each run goes to one worker as one task, its items read in order there, their results still
    yielded one by one, in item order (with ``ahead``, runs are cut to ``ahead / (2 x workers)`` items: what is
    in the workers' hands stays within ``ahead`` items)."""
    sizes = list(weights) if weights is not None else [1] * len(items)
    weighted = weights is not None
    with progress(total=sum(sizes), desc=desc, unit="B" if weighted else unit, unit_scale=True, quiet=quiet,
                  items=len(items) if weighted else None, item_unit=unit) as bar:
        width = jobs if jobs and jobs > 0 else None
        results = current().map(fn, items, width, ahead) if runs is None else in_runs(fn, items, runs, width, ahead)
        for result, size in zip(results, sizes, strict=True):   # results first: the pool_map generator runs to its end
            bar.update(size, items=1)
            yield result


def in_runs(fn: Callable[[T], R], items: Sequence[T], runs: Sequence[int], width: int | None,
            ahead: int | None) -> Iterator[R]:
    """``fn(item)`` for every item, one task per run (see :func:`map_units`), in item order."""
    most = max(1, ahead // (2 * (width or current().workers()))) if ahead else len(items)
    tasks = in_runs_of(items, runs, most)
    return itertools.chain.from_iterable(current().map(partial(run_all, fn), tasks, width,
                                                       -(-ahead // most) if ahead else None))


def run_all(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``fn(item)`` for every item of a run, in order (one task: a worker's caches serve the next item)."""
    return [fn(item) for item in items]


def in_runs_of(items: Sequence[T], runs: Sequence[int], most: int) -> Lazy[list[T]]:
    """``items`` as runs: the consecutive items of equal ``runs`` number, at most ``most`` at a time, each run a
    list made when it is handed out (``items`` may be made lazily too: :class:`Lazy`)."""
    if len(runs) != len(items):
        raise ValueError(f"{len(runs)} run numbers for {len(items)} items")
    cuts, start = [], 0
    for i in range(1, len(runs)):
        if runs[i] != runs[i - 1] or i - start == most:
            cuts.append(start := i)
    bounds = [0, *cuts, len(items)] if items else [0]
    return Lazy(len(bounds) - 1, lambda i: [items[j] for j in range(bounds[i], bounds[i + 1])])


class Lazy(Sequence[T], Generic[T]):
    """``n`` items (jobs, runs), each made by ``make(i)`` when a worker is about to get it (made all at once, a
    streamed shard's jobs would copy the plan's rows)."""

    def __init__(self, n: int, make: Callable[[int], T]) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> NoReturn: ...

    def __getitem__(self, i: int | slice) -> T:
        """Item ``i`` (negative counts from the end), made now; a slice is refused (it would make them all)."""
        if isinstance(i, slice):
            raise TypeError("items are made one at a time")
        return self.make(range(self.n)[i])
