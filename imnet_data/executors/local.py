"""The ``local`` executor: units in worker processes of this machine, results in unit order.

``jobs=1`` runs in this process (simple to debug and to test), no ``jobs`` means all usable cores, a worker's
exception propagates with its message, and a worker exits when its parent dies (a ``kill -9`` of the command
leaves no idle workers behind). An interrupt (Ctrl-C, SIGTERM: :mod:`imnet_data.interrupts`) does not wait for
the running units: :func:`stop_workers` ends the workers at once.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

from imnet_data.executors.base import in_order

T = TypeVar("T")
R = TypeVar("R")
PR_SET_PDEATHSIG = 1


class LocalExecutor:
    """This machine's process pool (see the module doc)."""

    def workers(self) -> int:
        """The usable cores."""
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def map(self, fn: Callable[[T], R], items: Sequence[T], jobs: int | None, ahead: int | None) -> Iterator[R]:
        """``fn(item)`` in ``jobs`` processes (no more than there are items; one: in this process), in order."""
        return pool_map(fn, items, min(jobs or self.workers(), max(1, len(items))), ahead)

    def check_visible(self, reads: Sequence[Path], writes: Sequence[Path]) -> None:
        """Nothing to check: the workers are this machine's processes."""


@contextlib.contextmanager
def local_executor(address: str | None = None) -> Iterator[LocalExecutor]:
    """The registry's factory (:data:`imnet_data.executors.EXECUTORS`): nothing to connect to (``address`` is
    a cluster's, unused here)."""
    yield LocalExecutor()


def init_worker(parent: int, fn: Callable[[T], R]) -> None:
    """A worker's initializer: it keeps ``fn``, which every item of the pool is run through (:func:`call`), so
    ``fn`` and what it binds reach each worker once, inherited (fork) or pickled once (spawn), not pickled and
    piped with every item (a split's 21,841 labels were 465 KB for each of 19,167 units); what it inherited
    from the parent (a plan of a million samples, say) is frozen out of the garbage collector's sight, so
    collections neither scan it nor copy its pages; and the worker is killed when the parent dies (Linux: the
    kernel's parent-death signal) or, anywhere, exits once a watchdog thread sees the parent gone. A worker
    ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: the parent decides, and ends the
    workers) and dies quietly on SIGTERM (no KeyboardInterrupt traceback)."""
    _FN[:] = [fn]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # held back while it was forked (submit)
    gc.freeze()
    die_with_parent(parent)
    threading.Thread(target=_watch, args=(parent,), name="imnet-parent-watch", daemon=True).start()


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent (the thread that started it) dies, on Linux
    (the parent-death signal, kept across ``exec``: as a ``preexec_fn`` it covers the command started); exit
    now if ``parent`` is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:   # the parent died before the line above
        os._exit(1)


_FN: list[Callable] = []   # a worker's function, as init_worker kept it


def call(item: object) -> object:
    """``fn(item)`` in a worker, ``fn`` as :func:`init_worker` kept it."""
    return _FN[0](item)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def pool_map(fn: Callable[[T], R], items: Sequence[T], n: int, ahead: int | None) -> Iterator[R]:
    """``fn(item)`` in ``n`` worker processes (in this one for ``n == 1``), in item order, at most ``ahead``
    items handed out beyond what the caller has taken (None: all at once); ``fn`` goes to each worker once
    (:func:`init_worker`), each item with its job."""
    if n == 1:
        yield from map(fn, items)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=init_worker,
                             initargs=(os.getpid(), fn)) as pool:
        _POOLS.add(pool)
        try:   # no future cancelled one by one: the pool stop_workers breaks fails every pending future, and
            # Python 3.11's raises InvalidStateError on a cancelled one; shutdown(cancel_futures=True) instead
            yield from in_order(lambda item: submit(pool, call, item), lambda future, _: future.result(),
                                lambda future: None, items, ahead)
        except KeyboardInterrupt:
            stop_workers()      # before the pool's exit, which would wait for the running units
            raise
        finally:
            _POOLS.discard(pool)
            pool.shutdown(cancel_futures=True)   # the caller stopped early: what has not started never will


_POOLS: set[ProcessPoolExecutor] = set()    # the pools pool_map has open in this process
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def submit(pool: ProcessPoolExecutor, fn: Callable[[T], R], item: T) -> Future:
    """``pool.submit(fn, item)`` with SIGINT and SIGTERM held back until it returns (a submit may fork the
    workers): Python drops what a signal handler raises inside fork's callbacks (the interrupt would be lost),
    and a worker must not be interrupted before :func:`init_worker` sets its own handlers."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return pool.submit(fn, item)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def stop_workers() -> None:
    """End the workers of every pool open in this process now, running units and all (an interrupt: what they
    were writing stays under a temp name, which the next run removes). ``ProcessPoolExecutor`` has no public
    way to do this before Python 3.14 (``terminate_workers``): its ``_processes``."""
    workers = [w for pool in list(_POOLS) for w in list((getattr(pool, "_processes", None) or {}).values())]
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(5)
        if worker.is_alive():
            worker.kill()
            worker.join()
    for pool in list(_POOLS):   # the pool's own thread fails the units left, then ends
        thread = getattr(pool, "_executor_manager_thread", None)
        if thread is not None:
            thread.join(5)
