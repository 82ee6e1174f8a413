"""Run a function over source units in worker processes, results in unit order, with a progress bar.

One place for the process pool so validate, organize and shard share the same behaviour: ``jobs=1`` runs in
this process (simple to debug and to test), ``jobs=0``/None means all cores, results come back in input order
(deterministic reports), a worker's exception propagates with its message, and a worker exits when its parent
dies (a ``kill -9`` of the command leaves no idle workers behind). An interrupt (Ctrl-C, SIGTERM:
:mod:`imnet_data.interrupts`) does not wait for the running units: :func:`stop_workers` ends the workers at once.

The units can run elsewhere: inside ``with executing("ray", address):`` every :func:`map_units` hands them to
that executor instead (:mod:`imnet_data.ray_executor`: one Ray task per unit on a cluster), and
:func:`check_visible` lets it check that every node sees the folders the units read and write. The callers do
not change: what is computed (the plan, the units, the results in order) is the same, so is the output.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import ctypes
import gc
import itertools
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from imnet_data.cluster import EXECUTORS
from imnet_data.errors import UsageError
from imnet_data.progress import progress

T = TypeVar("T")
R = TypeVar("R")
H = TypeVar("H")      # an executor's handle of a submitted item (a future, a Ray object ref)
PROBE = ".imnet-probe-"   # the start of a cluster driver's token in an output folder (see probe_token)


class Executor(Protocol):
    """Where units run when not in this machine's process pool."""

    def workers(self) -> int:
        """How many units run at once (the cluster's CPUs)."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], window: int | None) -> Iterator[R]:
        """``fn(item)`` for every item, in item order, at most ``window`` in flight (None: all)."""

    def check_visible(self, reads: Sequence[Path], writes: Sequence[Path]) -> None:
        """Raise, naming the node, unless every worker sees ``reads`` and writes ``writes`` where this process
        reads them (a shared filesystem)."""


_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("imnet_executor", default=None)


@contextlib.contextmanager
def executing(name: str = "local", address: str | None = None) -> Iterator[None]:
    """Run every :func:`map_units` inside on executor ``name``: ``local`` (this machine's process pool) or
    ``ray`` (the Ray cluster at ``address``, else ``RAY_ADDRESS``, else the one ``ray start`` last started on this
    machine, else one of the run's own: :mod:`imnet_data.ray_connect`)."""
    if name not in EXECUTORS:
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "local":
        yield
        return
    from imnet_data.ray_executor import ray_executor

    with ray_executor(address) as executor:
        token = _CURRENT.set(executor)
        try:
            yield
        finally:
            _CURRENT.reset(token)


def check_visible(reads: Sequence[Path], writes: Sequence[Path] = ()) -> None:
    """With a cluster executor: every node sees ``reads`` and ``writes`` as here (see :class:`Executor`). With
    any executor, the probe tokens that killed drivers on this machine left in ``writes`` are removed first."""
    for folder in writes:
        remove_stale_tokens(Path(folder))
    executor = _CURRENT.get()
    if executor is not None:
        executor.check_visible([Path(p) for p in reads], [Path(p) for p in writes])


def probe_token(folder: Path, content: str) -> Path:
    """The name of the token a cluster driver writes into ``folder`` for its nodes to read back:
    ``.imnet-probe-HOST-PID-CONTENT`` (so the next run on this machine knows whether its driver is alive)."""
    return folder / f"{PROBE}{socket.gethostname()}-{os.getpid()}-{content}"


def remove_stale_tokens(folder: Path) -> None:
    """Remove the probe tokens (:func:`probe_token`) that drivers on this machine left in ``folder`` when they
    were killed (their process is gone); those of live drivers, and of other machines', stay."""
    if not folder.is_dir():
        return
    for token in folder.glob(f"{PROBE}{socket.gethostname()}-*-*"):
        pid = token.name[len(PROBE) + len(socket.gethostname()) + 1:].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            token.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # another user's
        return True
    return True


def default_jobs(jobs: int | None) -> int:
    """``jobs`` if positive, else the number of usable cores (with a cluster executor: the cluster's)."""
    if jobs and jobs > 0:
        return jobs
    executor = _CURRENT.get()
    if executor is not None:
        return executor.workers()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


PR_SET_PDEATHSIG = 1


def init_worker(parent: int) -> None:
    """A worker's initializer: what it inherited from the parent (a plan of a million samples, say) is frozen
    out of the garbage collector's sight, so collections neither scan it nor copy its pages; and the worker is
    killed when the parent dies (Linux: the kernel's parent-death signal) or, anywhere, exits once a watchdog
    thread sees the parent gone. A worker ignores SIGINT (a terminal's Ctrl-C reaches the whole process group:
    the parent decides, and ends the workers) and dies quietly on SIGTERM (no KeyboardInterrupt traceback)."""
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


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def map_units(fn: Callable[[T], R], items: Sequence[T], *, jobs: int | None = None, desc: str = "",
              unit: str = "unit", quiet: bool = False, weights: Iterable[int] | None = None,
              ahead: int | None = None) -> Iterator[R]:
    """``fn(item)`` for every item, yielded in item order; ``weights`` (e.g. bytes) drive the progress bar;
    ``ahead``: at most this many items in the workers' hands beyond what the caller has taken (a slow consumer,
    e.g. uploading each shard, then bounds what piles up), else all are handed out at once. With a cluster
    executor (:func:`executing`), ``jobs`` given caps the units in flight."""
    sizes = list(weights) if weights is not None else [1] * len(items)
    executor = _CURRENT.get()
    with progress(total=sum(sizes), desc=desc, unit="B" if weights is not None else unit, unit_scale=True,
                  quiet=quiet) as bar:
        if executor is not None:
            results = executor.map(fn, items, ahead or (jobs if jobs and jobs > 0 else None))
        else:
            results = pool_map(fn, items, min(default_jobs(jobs), max(1, len(items))), ahead)
        for result, size in zip(results, sizes):   # results first: the pool_map generator runs to its end
            bar.update(size)
            yield result


def pool_map(fn: Callable[[T], R], items: Sequence[T], n: int, ahead: int | None) -> Iterator[R]:
    """``fn(item)`` in ``n`` worker processes (in this one for ``n == 1``), in item order."""
    if n == 1:
        yield from map(fn, items)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=init_worker,
                             initargs=(os.getpid(),)) as pool:
        _POOLS.add(pool)
        try:   # no future cancelled one by one: the pool stop_workers breaks fails every pending future, and
            # Python 3.11's raises InvalidStateError on a cancelled one; shutdown(cancel_futures=True) instead
            yield from in_order(lambda item: submit(pool, fn, item), lambda future, _: future.result(),
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


def in_order(submit: Callable[[T], H], result: Callable[[H, int], R], cancel: Callable[[H], object],
             items: Iterable[T], window: int | None) -> Iterator[R]:
    """The ``result(handle, number)`` of every item ``submit`` hands to an executor, in item order, with at
    most ``window`` submitted and not yet taken (None or 0: all at once); what is still pending when the caller
    stops early is cancelled. The one scheduling loop of every executor."""
    todo = iter(items)
    pending = collections.deque(submit(item) for item in itertools.islice(todo, window or None))
    try:
        for number in itertools.count():
            if not pending:
                return
            out = result(pending.popleft(), number)
            pending.extend(submit(item) for item in itertools.islice(todo, 1))
            yield out
    finally:
        for handle in pending:
            cancel(handle)
