"""What a unit's jobs cost to send to the workers for ImageNet-21k (issue 23), in one run.

1. A scatter job's rows taken from a plan of the 21,841 imagenet-21k classes
   (:meth:`~imnet_data.shards.table.Table.take`: the plan's whole class list goes with them), one unit's ~10
   samples: the table's state pickled as a dataclass pickles by default (the class list as a list of strings,
   the baseline) and :class:`~imnet_data.shards.table.Table` itself (its classes one joined string, a list again
   once per process); bytes and milliseconds per job (pickled in the driver, unpickled in a worker).
2. Whole jobs through the local executor's process pool (:func:`~imnet_data.executors.local.pool_map`, 2
   workers, a function that does nothing, so only sending the jobs costs): ``--units`` measure jobs and as many
   scatter jobs (winter21 has 19,167 class tars), each way:

   - baseline: every job carries what the units share, as each job did before: the source reference, the
     options, the split's :class:`~imnet_data.shards.stream.Labels` (21,841 WNIDs and names) and, in a scatter
     job, its rows with the plan's class list;
   - now: what the units share is bound into the function, which reaches each worker once; a job carries its
     unit (and a scatter job its rows without the class list).

   Prints bytes per job and the driver's CPU seconds (every thread: the pool's feeder pickles and writes the
   pipes) each way, and the ratios.

    python tools/bench_table_pickle.py
    python tools/bench_table_pickle.py --rows 100 --repeat 500 --units 2000
"""
from __future__ import annotations

import argparse
import pickle
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np

from imnet_data import catalog
from imnet_data.executors.local import call, pool_map
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.stream import Labels, Targets
from imnet_data.shards.table import Table
from imnet_data.sources import SourceRef, Unit

ARCHIVE = "/data/winter21_whole.tar.gz"


def plan_rows(rows: int) -> Table:
    """``rows`` samples of a plan of the 21,841 imagenet-21k classes, taken as a scatter job takes them."""
    _, classes = catalog.label_space("imagenet21k", list, "imagenet-21k")
    n = rows * 4
    plan = Table.build({"keys": np.array([f"n{i:08d}_{i}".encode() for i in range(n)]),
                        "wnid": (np.arange(n) % len(classes)).astype(np.int32), "place": np.zeros(n, np.int32),
                        "offset": np.arange(n, dtype=np.int64), "size": np.full(n, 110_000, np.uint32),
                        "ext": np.zeros(n, np.uint8)},
                       list(classes), [("stream", ARCHIVE, "n0.tar/", 0)], [".JPEG"])
    return plan.take(np.arange(0, n, 4))


def per_job(dump: Callable[[Table], bytes], table: Table, repeat: int) -> tuple[int, float, float]:
    """Bytes, and milliseconds to pickle and to unpickle one job, the best of ``repeat``."""
    best_dump = best_load = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        data = dump(table)
        t1 = time.perf_counter()
        pickle.loads(data)
        t2 = time.perf_counter()
        best_dump, best_load = min(best_dump, t1 - t0), min(best_load, t2 - t1)
    return len(data), best_dump * 1e3, best_load * 1e3


def before(table: Table) -> bytes:
    """``table``'s state pickled as a dataclass's is by default, its ``__dict__`` (the classes a list of strings),
    as it was before :meth:`Table.__getstate__`."""
    return pickle.dumps(dict(table.__dict__))


def nothing(*job: object) -> int:
    """A unit's work, left out: what is measured is sending the job."""
    return 0


def jobs(rows: Table, units: int, shared: bool) -> tuple[Callable, list, list]:
    """The function and the ``units`` measure and scatter jobs of the baseline (``shared`` False: each job
    carries the reference, options and labels, a scatter job's rows their class list) or now."""
    ref, options = SourceRef(ARCHIVE, "imagenet21k"), ShardOptions()
    labels = Labels.of(rows.classes, "imagenet-21k", True)
    unit = [Unit("train", f"n{i:08d}", ("gzmember", ARCHIVE, i * 10**6, 10**6, f"{ARCHIVE}:n{i:08d}.tar"), 10**6)
            for i in range(units)]
    offsets, shard = np.arange(len(rows), dtype=np.int64) * 2048, np.zeros(len(rows), np.intp)
    own = rows if not shared else replace(rows, classes=[])
    scatter = [Targets(u, own, offsets, shard, ["/out/train/imagenet-21k-train-000000.tar.partial"]) for u in unit]
    if shared:
        return partial(nothing, ref, options, labels), unit, scatter
    return nothing, [(ref, options, labels, u) for u in unit], [(ref, options, labels, t) for t in scatter]


def through_pool(fn: Callable, items: list) -> float:
    """The driver's CPU seconds to run ``items`` through a 2-worker pool."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in pool_map(fn, items, 2, 64):
        pass
    after = resource.getrusage(resource.RUSAGE_SELF)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def job_bytes(items: list) -> int:
    """Bytes a job sends through the pool's pipe (its call and item pickled), the mean."""
    return sum(len(pickle.dumps((call, (item,)))) for item in items[:100]) // min(100, len(items))


def pool_figures(rows: Table, units: int) -> None:
    """Section 2 of the module doc."""
    figures = {}
    for name, shared in (("baseline (shared in every job)", False), ("now (shared sent once)", True)):
        fn, measure, scatter = jobs(rows, units, shared)
        figures[name] = (job_bytes(measure), job_bytes(scatter), through_pool(fn, measure) + through_pool(fn, scatter),
                         len(pickle.dumps(fn)))
    for name, (measure, scatter, cpu, once) in figures.items():
        print(f"{name:32s} measure job {measure:9,d} bytes  scatter job {scatter:9,d} bytes  driver CPU {cpu:6.2f} s "
              f"for {2 * units:,} jobs  (function: {once:,} bytes, once per worker; a forked one inherits it)")
    (bm, bs, bc, _), (nm, ns, nc, _) = figures.values()
    print(f"ratio: measure job {bm / nm:.0f}x, scatter job {bs / ns:.0f}x fewer bytes; driver CPU {bc / nc:.1f}x less "
          f"({bc:.2f} s -> {nc:.2f} s); piped {units * (bm + bs) / 1e9:.1f} GB -> {units * (nm + ns) / 1e9:.3f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10, help="samples in the unit's job (default 10)")
    ap.add_argument("--repeat", type=int, default=200, help="timings per figure, the best kept (default 200)")
    ap.add_argument("--units", type=int, default=19_167, help="measure and scatter jobs each (default 19,167)")
    args = ap.parse_args()
    table = plan_rows(args.rows)
    base = per_job(before, table, args.repeat)
    now = per_job(pickle.dumps, table, args.repeat)
    for name, (size, dump, load) in (("baseline (classes as a list)", base), ("now (Table)", now)):
        print(f"{name:30s} {size:9,d} bytes  pickle {dump:6.3f} ms  unpickle {load:6.3f} ms")
    print(f"speed-up: pickle {base[1] / now[1]:.1f}x, unpickle {base[2] / now[2]:.1f}x; "
          f"19,167 jobs: {19_167 * base[1] / 1e3:.0f} s -> {19_167 * now[1] / 1e3:.0f} s of pickling in the driver")
    pool_figures(table, args.units)


if __name__ == "__main__":
    main()
