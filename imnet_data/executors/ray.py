"""The ``ray`` executor of :func:`imnet_data.parallel.map_units`: one Ray task per unit (a shard, a class tar, a
val slice, a shard to verify) on a cluster, results back to the driver in unit order.

The driver plans as on one machine and writes what it writes today (reports, the manifest); only the units
move. Each task asks for one CPU; Ray retries a task whose worker or node died (``max_retries``; an exception
raised by the unit itself, a damaged input say, is not retried: it is the answer). Units write their files
under temporary names and rename them, and shard records are written by the unit once its shard is complete,
so a retried or re-run unit rewrites the same bytes and a driver killed and re-run keeps what finished.

Sources and DEST must be on a filesystem every node mounts at the same path (units run from the driver's
working folder, so relative paths work as well). Before the units run,
:meth:`RayExecutor.check_visible` runs a probe on every node: the sources must list as the driver lists them,
and a token the driver writes into each output folder must be readable there, so a DEST that is a node's own
local disk is an error naming that node, not shards scattered over machines. Every node must run the same
imnet-data version (checked by the same probe). The tokens stay until the job ends and the first unit each
worker runs repeats the probe on its node, so a node that joins mid-run (an autoscaler's) is refused by name
before it writes anything, instead of writing where the driver never looks. A killed driver's token is removed
by the next run from the same machine, whatever its executor (:func:`imnet_data.parallel.check_visible`).

The cluster is the one at ``address`` (``auto`` or ``HOST:PORT``), else ``RAY_ADDRESS``, else the one ``ray
start`` last started on this machine, else one of the run's own (:mod:`imnet_data.executors.ray_connect`: each
address checked before Ray is asked, so nothing hangs).
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from imnet_data import __version__
from imnet_data.errors import UsageError
from imnet_data.executors.base import in_order
from imnet_data.executors.ray_connect import INSTALL, connected
from imnet_data.executors.tokens import probe_token

RETRIES = 3               # Ray retries of a task whose worker or node died
PROBE_TIMEOUT = 60.0      # seconds every node has to answer the probe
T = TypeVar("T")
R = TypeVar("R")


Probe = tuple[str, list[tuple[str, list[str] | None]], list[tuple[str, str]]]   # (id, reads, tokens)
_CHECKED: set[str] = set()   # in a worker: the probes this node has passed


def imnet_data_unit(fn: Callable[[T], R], item: T, cwd: str, probes: list[Probe]) -> R:
    """A task: one unit, run from the driver's working folder (relative paths mean what they mean there), on a
    node that passes the job's probes (checked by the first unit a worker runs: a node that joined the cluster
    after the probe is refused before it writes anything)."""
    os.chdir(cwd)
    check_node(probes)
    return fn(item)


def check_node(probes: list[Probe]) -> None:
    """RuntimeError naming this node unless it sees what ``probes`` check (each once per worker process)."""
    new = [p for p in probes if p[0] not in _CHECKED]
    problems = [problem for _, reads, tokens in new for problem in probe_problems(imnet_data_probe(reads, tokens))]
    if problems:
        import ray

        here = ray.get_runtime_context().get_node_id()
        node = next((node_name(n) for n in ray.nodes() if n.get("NodeID") == here), here[:12])
        raise RuntimeError(f"node {node}, not in the cluster when the job started (or its view changed since): "
                           f"{'; '.join(problems)}; it ran no unit. Take it out of the cluster or mount the "
                           "folders there, then re-run: finished work is kept")
    _CHECKED.update(p[0] for p in new)


def imnet_data_probe(reads: list[tuple[str, list[str] | None]], tokens: list[tuple[str, str]]) -> dict:
    """On one node: what differs from the driver's view of the folders (see the module doc)."""
    problems = []
    for path, listing in reads:
        try:
            found = sorted(os.listdir(path)) if os.path.isdir(path) else None
        except OSError as e:
            problems.append(f"cannot read {path}: {e.strerror}")
            continue
        if not os.path.exists(path):
            problems.append(f"cannot see {path}")
        elif found != listing:
            problems.append(f"{path} holds other files than on the driver (not the same shared filesystem?)")
    for token, content in tokens:
        try:
            with open(token) as f:
                same = f.read() == content
        except OSError:
            same = False
        if not same:
            problems.append(f"writes to {os.path.dirname(token)} would not reach the driver (that folder is not "
                            "on a filesystem shared with it)")
        elif not os.access(os.path.dirname(token), os.W_OK):
            problems.append(f"cannot write to {os.path.dirname(token)}")
    return {"version": __version__, "problems": problems}


def probe_problems(answer: dict) -> list[str]:
    """A probe's answer as the list of what is wrong (the imnet-data version included)."""
    wrong = [] if answer["version"] == __version__ else [
        f"runs imnet-data {answer['version']}, the driver {__version__}"]
    return answer["problems"] + wrong


def _listing(path: Path) -> list[str] | None:
    return sorted(os.listdir(path)) if path.is_dir() else None


class RayExecutor:
    """Units as Ray tasks on the connected cluster (see the module doc)."""

    def __init__(self, retries: int = RETRIES) -> None:
        import ray

        self.ray, self.retries = ray, retries
        self.probes: list[Probe] = []       # every probe passed: each task's node must pass them too
        self.tokens: list[Path] = []        # their token files, removed by close()

    def workers(self) -> int:
        """The cluster's CPUs (at least 1): how many units run at once."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[[T], R], items: Sequence[T], jobs: int | None, ahead: int | None) -> Iterator[R]:
        """One task per item, ``ahead`` (else ``jobs``, else all) in flight at most, results in item order; a
        unit's own exception is raised as itself, a task that could not finish (worker died ``retries + 1``
        times) as RuntimeError."""
        ray = self.ray
        task = ray.remote(imnet_data_unit).options(num_cpus=1, max_retries=self.retries, retry_exceptions=False)
        shared, probes = ray.put(fn), ray.put(list(self.probes))   # sent once to the cluster, not with every task
        cwd = os.getcwd()
        yield from in_order(lambda item: task.remote(shared, item, cwd, probes), self.get,
                            lambda ref: ray.cancel(ref, force=True), items, ahead or jobs)

    def get(self, ref, number: int):
        """The result of task ``ref`` (unit ``number``): the unit's own exception raised as itself, Ray's
        failures as RuntimeError naming the unit."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause
            if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                raise cause from None
            raise RuntimeError(f"unit {number}: Ray task failed: {str(e).splitlines()[0]}") from None
        except ray.exceptions.RayError as e:
            raise RuntimeError(f"unit {number}: Ray task failed after {self.retries} retries: "
                               f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

    def check_visible(self, reads: Sequence[Path], writes: Sequence[Path]) -> None:
        """A probe on every alive node with CPUs (see the module doc); RuntimeError naming each node and what it
        does not see. The tokens stay until :meth:`close`, so every task checks its own node too (a node that
        joins mid-run)."""
        content = uuid.uuid4().hex
        tokens = []
        for folder in writes:
            folder.mkdir(parents=True, exist_ok=True)
            token = probe_token(folder.resolve(), content)
            token.write_text(content)
            self.tokens.append(token)
            tokens.append((str(token), content))
        probe: Probe = (content, [(str(Path(p).resolve()), _listing(Path(p))) for p in reads], tokens)
        nodes = [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        try:
            found = self.run_probe(probe, nodes)
        except BaseException:
            self.close()
            raise
        bad = [f"node {node_name(n)}: " + "; ".join(probe_problems(r)) for n, r in zip(nodes, found, strict=True)
               if probe_problems(r)]
        if bad:
            self.close()
            raise RuntimeError("the Ray cluster cannot run this job: " + " | ".join(bad))
        self.probes.append(probe)

    def run_probe(self, probe: Probe, nodes: list[dict]) -> list[dict]:
        """The probe's answer from each of ``nodes``."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(imnet_data_probe)
        refs = [remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(probe[1], probe[2]) for n in nodes]
        try:
            return ray.get(refs, timeout=PROBE_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            late = [node_name(n) for n, r in zip(nodes, refs, strict=True) if not ray.wait([r], timeout=0)[0]]
            raise RuntimeError(f"Ray nodes did not answer the probe within {PROBE_TIMEOUT:.0f} s: "
                               f"{', '.join(late)}") from None

    def close(self) -> None:
        """Remove the probes' token files."""
        for token in self.tokens:
            token.unlink(missing_ok=True)
        self.tokens = []


def node_name(node: dict) -> str:
    """A node as ``ray status`` shows it: its address and the start of its ID."""
    return f"{node.get('NodeManagerAddress', '?')} ({node.get('NodeID', '')[:12]})"


@contextlib.contextmanager
def ray_executor(address: str | None) -> Iterator[RayExecutor]:
    """Connected to the cluster (see the module doc) for the duration; disconnected after."""
    try:
        import ray
    except ImportError as e:
        raise UsageError(f"--executor ray needs Ray: {INSTALL}") from e
    with connected(ray, address):
        executor = RayExecutor()
        try:
            yield executor
        finally:
            executor.close()
