"""What every executor is (:class:`Executor`) and the one scheduling loop they share (:func:`in_order`)."""
from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")
H = TypeVar("H")      # an executor's handle of a submitted item (a future, a Ray object ref)


class Executor(Protocol):
    """Where units run: this machine's processes, a cluster's workers."""

    def workers(self) -> int:
        """How many units run at once when the caller does not say (this machine's cores, the cluster's CPUs)."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], jobs: int | None, ahead: int | None) -> Iterator[R]:
        """``fn(item)`` for every item, in item order. ``fn`` is sent to the workers once, each item with its
        own job: what every item shares goes into ``fn`` (a :func:`functools.partial`), not into the items.
        ``jobs``: how many run at once (None: :meth:`workers`; a cluster caps the units in flight instead);
        ``ahead``: at most this many items handed out beyond what the caller has taken (None: all at once)."""

    def check_visible(self, reads: Sequence[Path], writes: Sequence[Path]) -> None:
        """Raise, naming the node, unless every worker sees ``reads`` and writes ``writes`` where this process
        reads them (a shared filesystem)."""


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
