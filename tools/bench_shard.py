"""Benchmark pass-through ``shard`` against plain ``tar -x`` of the same official train archive, on the same disk.

(a) ``tar -xf ILSVRC2012_img_train.tar -C OUT``: the baseline, a plain extraction of the archive;
(b) the typical two-level extraction of ``tools/bench_organize.py`` (outer tar, then each inner tar), for scale;
(c) ``imnet-data shard SRC OUT --splits train --jobs N`` for each N of ``--jobs`` (no resize: every image is
    copied through unchanged, with its ``.cls``/``.json``, the DALI index and the manifest).

The archive is read once beforehand so every run reads it from the page cache, outputs are deleted (and synced)
between runs, and each run is timed twice: until it returns, and until a following ``sync`` has put its writes
on the disk (shard fsyncs each shard it writes, tar does not: compare the figures with the sync); the best of
``--repeat`` runs is shown. Throughput is archive MB/s and images/s; the ratio is the throughput over plain
``tar -x``'s (target for ``shard --jobs 1``: >= 0.70). Peak RSS is that of the largest single process of the
run (``shard --jobs N``: the parent or one worker). The fake is made on the first run
(about two minutes for the default ~1.3 GB) and reused with ``--src``.

``--executor ray`` adds, on a Ray cluster started here (a head node with as many CPUs as the largest ``--jobs``,
the tests' launcher), ``shard --executor ray --jobs N`` for each N: the engine's overhead is its time over
``shard --jobs N`` local in the same run (target >= 0.85), and the per-task overhead is measured with empty
units (``map_units`` of a no-op: the wall time per unit with every worker busy, and the round trip of one unit
at a time), against the local process pool. As the CLI rows include a Ray command's fixed costs (connecting,
the probe of every node, disconnecting: about a second, whatever the job), the same job is also timed through
the library with the driver already connected (the steady state, what a long conversion sees), and the fixed
costs are printed apart:

    python tools/bench_shard.py --src /tmp/imnet-bench/src
    python tools/bench_shard.py --src /tmp/small --classes 20 --per-class 100 --repeat 3 --jobs 1,2,4
    python tools/bench_shard.py --jobs 2 --executor ray --repeat 3
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imnet_data.bench.measure import fake_source_args, prepared, report, run_measured, tar_extract, timed_run
from imnet_data.executors import executing
from imnet_data.parallel import default_jobs, map_units
from imnet_data.sources.ilsvrc import index_tar

TARGET = 0.70
TARGET_RAY = 0.85
EMPTY_UNITS = 400


def tar_plain(archive: Path, out: Path) -> None:
    """Plain ``tar -x`` of the archive (the outer tar only: the inner tars land as files)."""
    out.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)


def count_images(archive: Path) -> int:
    """The images in the train archive (headers only)."""
    return sum(len(index_tar(archive, ti.offset_data, ti.size)) for ti in index_tar(archive))


def noop(x: int) -> int:
    """An empty unit."""
    return x


@contextlib.contextmanager
def ray_cluster(cpus: int, work: Path) -> Iterator[str]:
    """A one-node Ray cluster with ``cpus`` worker CPUs (the tests' launcher); yields its address."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: the repository's, not installed
    from tests.servers import ray_head, wait_nodes

    work.mkdir(parents=True, exist_ok=True)
    with ray_head(work / "ray.log", cpus) as address:
        wait_nodes(address, 1)
        yield address


def per_task(executor: str, address: str | None, jobs: int) -> tuple[float, float]:
    """Milliseconds per empty unit: with ``jobs`` units in flight, and one at a time (the round trip)."""
    out = []
    with executing(executor, address):
        list(map_units(noop, list(range(jobs * 4)), jobs=jobs, quiet=True))      # workers started, code shipped
        for ahead, n in ((None, EMPTY_UNITS), (1, EMPTY_UNITS // 4)):
            start = time.perf_counter()
            list(map_units(noop, list(range(n)), jobs=jobs, ahead=ahead, quiet=True))
            out.append((time.perf_counter() - start) / n * 1e3)
    return out[0], out[1]


def steady(src: Path, out: Path, shard_size: str, jobs: int, address: str, repeat: int) -> dict[str, float]:
    """Seconds of the same shard job through the library, the driver already connected (``ray``) vs local, best
    of ``repeat``; and the fixed costs of a Ray command: connecting, the probe of the nodes, disconnecting."""
    from imnet_data.cli.shared import _size
    from imnet_data.parallel import check_visible
    from imnet_data.shards import ShardOptions, shard

    options = ShardOptions(shard_size=_size(shard_size))
    def run() -> None:
        shard(src, out, options, splits=["train"], jobs=jobs, quiet=True)

    found = {"local": min(timed_run(run, out)[1] for _ in range(repeat))}
    start = time.perf_counter()
    with executing("ray", address):
        found["connect"] = time.perf_counter() - start
        start = time.perf_counter()
        check_visible([src], [out.parent])
        found["probe"] = time.perf_counter() - start
        found["ray"] = min(timed_run(run, out)[1] for _ in range(repeat))
        start = time.perf_counter()
    found["disconnect"] = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fake_source_args(parser, 40, 300, "1.3 GB")
    parser.add_argument("--jobs", default=f"1,{default_jobs(0)}",
                        help="comma-separated shard --jobs values (default 1 and all cores)")
    parser.add_argument("--shard-size", default="256MB",
                        help="shard --shard-size (default 256MB: several shards per worker on the default fake)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each method; the best is shown")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: also each --jobs N on a Ray cluster started here, and the per-task overhead")
    args = parser.parse_args()
    archive, out = prepared(args)
    jobs_list = [int(j) for j in args.jobs.split(",")]
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(ray_cluster(max(jobs_list), out.parent / "bench-ray")) \
            if args.executor == "ray" else None
        run_all(args, archive, out, jobs_list, address)


def run_all(args: argparse.Namespace, archive: Path, out: Path, jobs_list: list[int], address: str | None) -> None:
    cli = [sys.executable, "-m", "imnet_data", "shard", str(args.src), str(out), "--splits", "train",
           "--shard-size", args.shard_size, "--quiet"]
    rss: dict[str, int] = {}

    def shard(name: str, jobs: int, *more: str) -> Callable[[], None]:
        def run() -> None:
            rss[name] = max(rss.get(name, 0), run_measured([*cli, "--jobs", str(jobs), *more])[0])
        return run

    methods: dict[str, Callable[[], None]] = {
        "tar -x (outer only)": lambda: tar_plain(archive, out),
        "tar -x (outer, then each inner)": lambda: tar_extract(archive, out)}
    for jobs in jobs_list:
        methods[f"shard --jobs {jobs}"] = shard(f"shard --jobs {jobs}", jobs)
        if address:
            methods[f"shard --executor ray --jobs {jobs}"] = shard(f"shard --executor ray --jobs {jobs}", jobs,
                                                                   "--executor", "ray", "--ray-address", address)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, run in methods.items():
            times[name].append(timed_run(run, out))
    shutil.rmtree(out)
    best = {k: tuple(map(min, zip(*v, strict=True))) for k, v in times.items()}
    report(archive.stat().st_size, count_images(archive), best,
           out, f"ratio = throughput / plain tar -x throughput; target for shard --jobs 1 >= {TARGET:.2f} (shard "
           "fsyncs every shard, so its 's' already includes the disk writes: compare 's+sync')",
           ("peak RSS", {name: f"{kb / 1024:.0f} MB (driver)" if "ray" in name else f"{kb / 1024:.0f} MB"
                         for name, kb in rss.items()}))
    if address:
        for jobs in jobs_list:
            local, ray = best[f"shard --jobs {jobs}"][1], best[f"shard --executor ray --jobs {jobs}"][1]
            print(f"Ray / local, --jobs {jobs} (with sync): {local / ray:.2f}   (target >= {TARGET_RAY:.2f}; the "
                  "Ray run includes connecting to the cluster and shipping the code)")
        jobs = max(jobs_list)
        t = steady(args.src, out, args.shard_size, jobs, address, args.repeat)
        print(f"steady state, --jobs {jobs}, driver connected (library call, with sync): Ray {t['ray']:.2f} s, local "
              f"{t['local']:.2f} s: {t['local'] / t['ray']:.2f} (target >= {TARGET_RAY:.2f}); fixed per command: "
              f"connect {t['connect']:.2f} s, node probe {t['probe']:.2f} s, disconnect {t['disconnect']:.2f} s")
        (lb, l1), (rb, r1) = per_task("local", None, jobs), per_task("ray", address, jobs)
        print(f"per-task overhead, empty units: Ray {rb:.2f} ms/unit with {jobs} in flight, {r1:.2f} ms round "
              f"trip; local pool {lb:.2f} ms/unit, {l1:.2f} ms round trip")


if __name__ == "__main__":
    main()
