"""Run a function over source units in worker processes, results in unit order, with a progress bar.

One place for the process pool so validate, organize and shard share the same behaviour: ``jobs=1`` runs in
this process (simple to debug and to test), ``jobs=0``/None means all cores, results come back in input order
(deterministic reports), a worker's exception propagates with its message, and a worker exits when its parent
dies (a ``kill -9`` of the command leaves no idle workers behind).
"""
from __future__ import annotations

import collections
import ctypes
import gc
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from imnet_data.progress import progress

T = TypeVar("T")
R = TypeVar("R")


def default_jobs(jobs: int | None) -> int:
    """``jobs`` if positive, else the number of usable cores."""
    if jobs and jobs > 0:
        return jobs
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


PR_SET_PDEATHSIG = 1


def init_worker(parent: int) -> None:
    """A worker's initializer: what it inherited from the parent (a plan of a million samples, say) is frozen
    out of the garbage collector's sight, so collections neither scan it nor copy its pages; and the worker is
    killed when the parent dies (Linux: the kernel's parent-death signal) or, anywhere, exits once a watchdog
    thread sees the parent gone."""
    gc.freeze()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:   # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="imnet-parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def map_units(fn: Callable[[T], R], items: Sequence[T], *, jobs: int | None = None, desc: str = "",
              unit: str = "unit", quiet: bool = False, weights: Iterable[int] | None = None,
              ahead: int | None = None) -> Iterator[R]:
    """``fn(item)`` for every item, yielded in item order; ``weights`` (e.g. bytes) drive the progress bar;
    ``ahead``: at most this many items in the workers' hands beyond what the caller has taken (a slow consumer,
    e.g. uploading each shard, then bounds what piles up), else all are handed out at once."""
    n = min(default_jobs(jobs), max(1, len(items)))
    sizes = list(weights) if weights is not None else [1] * len(items)
    with progress(total=sum(sizes), desc=desc, unit="B" if weights is not None else unit, unit_scale=True,
                  quiet=quiet) as bar:
        if n == 1:
            results: Iterable[R] = map(fn, items)
            for size, result in zip(sizes, results):
                bar.update(size)
                yield result
            return
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=init_worker,
                                 initargs=(os.getpid(),)) as pool:
            todo = iter(items)
            pending = collections.deque(pool.submit(fn, item) for item in itertools.islice(todo, ahead or None))
            try:
                for size in sizes:
                    result = pending.popleft().result()
                    pending.extend(pool.submit(fn, item) for item in itertools.islice(todo, 1))
                    bar.update(size)
                    yield result
            finally:
                for future in pending:
                    future.cancel()
