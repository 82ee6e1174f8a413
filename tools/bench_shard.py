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
(about two minutes for the default ~1.3 GB) and reused with ``--src``:

    python tools/bench_shard.py --src /tmp/imnet-bench/src
    python tools/bench_shard.py --src /tmp/small --classes 20 --per-class 100 --repeat 3 --jobs 1,2,4
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from bench_organize import fake_source_args, prepared, report, tar_extract, timed  # tools/ is on sys.path when run as a script

from imnet_data.parallel import default_jobs
from imnet_data.sources.ilsvrc import index_tar

TARGET = 0.70


def tar_plain(archive: Path, out: Path) -> None:
    """Plain ``tar -x`` of the archive (the outer tar only: the inner tars land as files)."""
    out.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)


def run_measured(cmd: list[str]) -> int:
    """Run ``cmd`` (must succeed); return the peak RSS in KiB of its largest process, reaped workers included."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return usage.ru_maxrss


def count_images(archive: Path) -> int:
    """The images in the train archive (headers only)."""
    return sum(len(index_tar(archive, ti.offset_data, ti.size)) for ti in index_tar(archive))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fake_source_args(parser, 40, 300, "1.3 GB")
    parser.add_argument("--jobs", default=f"1,{default_jobs(0)}",
                        help="comma-separated shard --jobs values (default 1 and all cores)")
    parser.add_argument("--shard-size", default="256MB",
                        help="shard --shard-size (default 256MB: several shards per worker on the default fake)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each method; the best is shown")
    args = parser.parse_args()
    archive, out = prepared(args)
    cli = [sys.executable, "-m", "imnet_data", "shard", str(args.src), str(out), "--splits", "train",
           "--shard-size", args.shard_size, "--quiet"]
    rss: dict[str, int] = {}

    def shard(name: str, jobs: int) -> Callable[[], None]:
        def run() -> None:
            rss[name] = max(rss.get(name, 0), run_measured([*cli, "--jobs", str(jobs)]))
        return run

    methods: dict[str, Callable[[], None]] = {
        "tar -x (outer only)": lambda: tar_plain(archive, out),
        "tar -x (outer, then each inner)": lambda: tar_extract(archive, out)}
    for jobs in (int(j) for j in args.jobs.split(",")):
        methods[f"shard --jobs {jobs}"] = shard(f"shard --jobs {jobs}", jobs)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, run in methods.items():
            times[name].append(timed(run, out))
    shutil.rmtree(out)
    report(archive.stat().st_size, count_images(archive), {k: tuple(map(min, zip(*v))) for k, v in times.items()},
           out, f"ratio = throughput / plain tar -x throughput; target for shard --jobs 1 >= {TARGET:.2f} (shard "
           "fsyncs every shard, so its 's' already includes the disk writes: compare 's+sync')",
           ("peak RSS", {name: f"{kb / 1024:.0f} MB" for name, kb in rss.items()}))


if __name__ == "__main__":
    main()
