"""Peak memory of a command and of every process it starts: the driver and each worker, apart.

``run_measured`` (:mod:`.measure`) gives the largest process of a run; a memory budget needs the driver's peak
and each worker's, so :func:`run_tree` polls the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``)
of the command and of its descendants while it runs. The mark only grows, so a poll that comes late still reads the
peak so far; a process that lives less than a poll interval may be missed (pool workers live for the whole run).
Linux only (``/proc``). :func:`slope` turns the driver's peaks at two sample counts into bytes per sample.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data.bench.measure import StageFailed

PROC = Path("/proc")


@dataclass
class TreePeaks:
    """A finished run: peak RSS in bytes of the command's own process (``driver``) and of each descendant seen
    (``workers``, by pid), and its seconds."""

    driver: int
    workers: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def worker_max(self) -> int:
        """The largest worker's peak (0 when no worker was seen)."""
        return max(self.workers.values(), default=0)


def run_tree(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
             interval: float = 0.05) -> TreePeaks:
    """Run ``cmd`` in ``cwd`` (it must succeed: else :class:`StageFailed` with its stderr), polling every ``interval`` s
    the peak RSS of it and of its descendants."""
    peaks: dict[int, int] = {}
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        while proc.poll() is None:
            for pid in (proc.pid, *descendants(proc.pid)):
                hwm = high_water(pid)
                if hwm:
                    peaks[pid] = max(peaks.get(pid, 0), hwm)
            time.sleep(interval)
        seconds = time.perf_counter() - start
        if proc.returncode:
            err.seek(0)
            out.seek(0)
            said = err.read().decode(errors="replace").strip() or out.read().decode(errors="replace")[-4000:]
            raise StageFailed(cmd, proc.returncode, said)
    driver = peaks.pop(proc.pid, 0)
    return TreePeaks(driver, peaks, seconds)


def descendants(root: int) -> list[int]:
    """The pids below ``root`` now (from every process's parent pid in ``/proc/<pid>/stat``)."""
    parent: dict[int, int] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            try:
                stat = (PROC / entry.name / "stat").read_text()
            except OSError:     # it ended meanwhile
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    below, frontier = [], [root]
    while frontier:
        frontier = [pid for pid, ppid in parent.items() if ppid in frontier]
        below += frontier
    return below


def high_water(pid: int) -> int:
    """``VmHWM`` of ``pid`` in bytes; 0 when it is gone or has none (a zombie)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def slope(small: tuple[int, int], large: tuple[int, int]) -> float:
    """Bytes per sample between two ``(samples, peak bytes)`` points."""
    return (large[1] - small[1]) / (large[0] - small[0])
