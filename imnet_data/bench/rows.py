"""A benchmark row, the report of ``imnet-data bench``, and how a row is measured: images/s and CPU cores busy
over timed steps after a warm-up, GPU memory in use at the end."""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imnet_data.loader import build_loader


@dataclass
class Row:
    """One measured pipeline: its rate, the CPU cores it kept busy, a note, the GPU memory in use after it."""

    name: str
    images_per_s: float
    cores_busy: float
    note: str = ""
    gpu_memory_mb: float | None = None


@dataclass
class BenchReport:
    """The setting measured, the rows and the ratios between them."""

    setting: dict
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The report as JSON-ready data (``--json``)."""
        return {"setting": self.setting, "rows": [vars(r) for r in self.rows], "ratios": self.ratios}

    def render(self) -> str:
        """The report as a table, the ratios below it."""
        lines = [", ".join(f"{k}={v}" for k, v in self.setting.items()),
                 f"{'pipeline':<52} {'images/s':>10} {'cores busy':>10} {'GPU MB':>8}  note"]
        lines += [f"{r.name:<52} {r.images_per_s:>10,.0f} {r.cores_busy:>10.1f} "
                  f"{'' if r.gpu_memory_mb is None else f'{r.gpu_memory_mb:,.0f}':>8}  {r.note}" for r in self.rows]
        lines += [f"ratio {k}: {v:.2f}" for k, v in self.ratios.items()]
        return "\n".join(lines)


def timed(images_per_step: int, steps: Iterable, warmup: int, seconds: float | None = None) -> tuple[float, float]:
    """Images/s and CPU cores busy (this process and its children) over ``steps`` after ``warmup`` steps,
    stopping early after ``seconds`` when given."""
    it = iter(steps)
    for _ in range(warmup):
        next(it)
    sync()
    t0, c0, n = time.perf_counter(), cpu_seconds(), 0
    for _ in it:
        n += 1
        if seconds is not None and time.perf_counter() - t0 > seconds:
            break
    sync()
    wall = time.perf_counter() - t0
    return n * images_per_step / wall, (cpu_seconds() - c0) / wall


def cpu_seconds() -> float:
    """CPU seconds used by this process, its live descendants (DataLoader / pool workers, from /proc) and its
    finished children."""
    t = os.times()
    ticks = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks

    def mine(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False

    live = sum(v for pid, v in used.items() if pid != os.getpid() and mine(pid))
    return t.user + t.system + t.children_user + t.children_system + live


def cuda() -> bool:
    """Whether torch is installed and sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def sync() -> None:
    """Wait for the GPU's queued work (nothing without a GPU), so a timing covers it."""
    if cuda():
        import torch
        torch.cuda.synchronize()


def gpu_memory_mb() -> float | None:
    """Memory in use on the current GPU by every allocator (DALI's and torch's), None without a GPU."""
    if not cuda():
        return None
    import torch
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def measured(name: str, batch_size: int, steps: Iterable, warmup: int, note: str = "",
             seconds: float | None = None) -> Row:
    """A row: ``steps`` timed (see :func:`timed`), GPU memory read at the end."""
    rate, busy = timed(batch_size, steps, warmup, seconds)
    return Row(name, rate, busy, note, gpu_memory_mb())


def limited(loader: Iterable, batches: int | None = None) -> Iterator:
    """Up to ``batches`` batches of ``loader`` (None: endless), epoch after epoch."""
    done = 0
    while batches is None or done < batches:
        for batch in loader:
            yield batch
            done += 1
            if done == batches:
                return


def loader_row(name: str, source: Path, batches: int, warmup: int, seconds: float | None = None,
               **settings: Any) -> Row:
    """A row of the loader built with ``settings`` (``batch_size`` among them) over ``source``."""
    loader = build_loader(source, **settings)
    return measured(name, settings["batch_size"], limited(loader, batches + warmup), warmup,
                    f"{len(loader)} batches/epoch", seconds)
