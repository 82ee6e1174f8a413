"""Where units run: the executors by name (:data:`EXECUTORS`, the choices of ``--executor``), and the one that
:func:`imnet_data.parallel.map_units` hands its units to: the executor of the innermost ``with executing(name,
address):`` block, else this machine's process pool (:data:`DEFAULT`). What is computed (the plan, the units, the
results in order) does not depend on the executor, so neither does the output.

- ``local`` (:mod:`imnet_data.executors.local`): worker processes on this machine.
- ``ray`` (:mod:`imnet_data.executors.ray`): one Ray task per unit on a cluster, connected by
  :mod:`imnet_data.executors.ray_connect`.

Adding an executor: a module with a class that meets :class:`~imnet_data.executors.base.Executor` and a factory,
``factory(address)``, a context manager that yields it (connected for the duration, closed after); and one line
in :data:`EXECUTORS`, e.g. ``"dask": Kind("imnet_data.executors.dask:dask_executor", "one Dask task per unit"),``.
A module is imported only when its executor is used: a local run imports neither Ray nor its connection.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from imnet_data.errors import UsageError
from imnet_data.executors.base import Executor, in_order


@dataclass(frozen=True)
class Kind:
    """An executor of the registry: ``factory``, ``"module:function"`` (see the module doc), imported when used;
    ``about``, what it is, in one line (``--executor``'s help)."""

    factory: str
    about: str

    def load(self) -> Callable[[str | None], AbstractContextManager[Executor]]:
        """The factory, its module imported."""
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)

    def open(self, address: str | None) -> AbstractContextManager[Executor]:
        """The executor, connected to ``address`` (what that means is the executor's) while the context lasts."""
        return self.load()(address)


DEFAULT = "local"     # where units run outside any executing(): this machine's process pool
EXECUTORS: dict[str, Kind] = {
    "local": Kind("imnet_data.executors.local:local_executor", "worker processes here (default)"),
    "ray": Kind("imnet_data.executors.ray:ray_executor", "one Ray task per unit on a cluster (pip install "
                "'imnet-data[ray]'; SRC and DEST on a filesystem every node mounts)"),
}

_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("imnet_executor", default=None)


@contextlib.contextmanager
def executing(name: str = DEFAULT, address: str | None = None) -> Iterator[Executor]:
    """Run every :func:`~imnet_data.parallel.map_units` inside on executor ``name`` of :data:`EXECUTORS`, e.g.
    ``local`` (this machine's process pool) or ``ray`` (the Ray cluster at ``address``, else ``RAY_ADDRESS``,
    else the one ``ray start`` last started on this machine, else one of the run's own:
    :mod:`imnet_data.executors.ray_connect`); yields the executor."""
    kind = EXECUTORS.get(name)
    if kind is None:
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    with kind.open(address) as executor:
        token = _CURRENT.set(executor)
        try:
            yield executor
        finally:
            _CURRENT.reset(token)


def current() -> Executor:
    """The executor of the innermost :func:`executing` block; outside any, this machine's process pool (it opens
    nothing, so it needs no block)."""
    executor = _CURRENT.get()
    if executor is None:
        from imnet_data.executors.local import LocalExecutor

        return LocalExecutor()
    return executor


__all__ = ["DEFAULT", "EXECUTORS", "Executor", "Kind", "current", "executing", "in_order"]
