"""What a unit's scatter job costs to pickle and unpickle for ImageNet-21k (issue 23): its rows taken from a plan
of the 21,841 imagenet-21k classes (:meth:`~imnet_data.shards.table.Table.take`: the plan's whole class list goes
with them), one unit's ~10 samples, in one run,

- baseline: the table's state pickled as a dataclass pickles by default (the class list as a list of strings):
  what every one of 19,167 class tars' jobs cost before;
- now: :class:`~imnet_data.shards.table.Table` itself (its classes one joined string, a list again once per
  process).

Prints bytes and milliseconds per job (pickled in the driver, unpickled in a worker) and the speed-up over the
baseline; 19,167 jobs times the driver's milliseconds is what a full winter21 scatter spends pickling them.

    python tools/bench_table_pickle.py
    python tools/bench_table_pickle.py --rows 100 --repeat 500
"""
from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable

import numpy as np

from imnet_data import catalog
from imnet_data.shards.table import Table


def plan_rows(rows: int) -> Table:
    """``rows`` samples of a plan of the 21,841 imagenet-21k classes, taken as a scatter job takes them."""
    _, classes = catalog.label_space("imagenet21k", list, "imagenet-21k")
    n = rows * 4
    plan = Table.build({"keys": np.array([f"n{i:08d}_{i}".encode() for i in range(n)]),
                        "wnid": (np.arange(n) % len(classes)).astype(np.int32), "place": np.zeros(n, np.int32),
                        "offset": np.arange(n, dtype=np.int64), "size": np.full(n, 110_000, np.uint32),
                        "ext": np.zeros(n, np.uint8)},
                       list(classes), [("stream", "/data/winter21_whole.tar.gz", "n0.tar/", 0)], [".JPEG"])
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10, help="samples in the unit's job (default 10)")
    ap.add_argument("--repeat", type=int, default=200, help="timings per figure, the best kept (default 200)")
    args = ap.parse_args()
    table = plan_rows(args.rows)
    base = per_job(before, table, args.repeat)
    now = per_job(pickle.dumps, table, args.repeat)
    for name, (size, dump, load) in (("baseline (classes as a list)", base), ("now (Table)", now)):
        print(f"{name:30s} {size:9,d} bytes  pickle {dump:6.3f} ms  unpickle {load:6.3f} ms")
    print(f"speed-up: pickle {base[1] / now[1]:.1f}x, unpickle {base[2] / now[2]:.1f}x; "
          f"19,167 jobs: {19_167 * base[1] / 1e3:.0f} s -> {19_167 * now[1] / 1e3:.0f} s of pickling in the driver")


if __name__ == "__main__":
    main()
