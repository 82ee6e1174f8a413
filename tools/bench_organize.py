"""Benchmark ``organize`` against plain ``tar -x`` of the same official train archive, on the same disk.

(a) what a typical extraction script does: ``tar -xf ILSVRC2012_img_train.tar -C OUT``, then for each inner
    ``<wnid>.tar`` in turn: ``mkdir OUT/<wnid>``, ``tar -xf <wnid>.tar -C OUT/<wnid>``, ``rm <wnid>.tar``;
(b) ``organize --splits train`` with ``--jobs 1`` and with all cores.

The archive is read once beforehand so every run reads it from the page cache, outputs are deleted (and synced)
between runs, and each run is timed twice: until it returns, and until a following ``sync`` has put its writes
on the disk. Throughput is archive MB/s and images/s; the ratio is organize's throughput over tar's (target
>= 0.70). The fake is made on the first run (minutes, for the default ~2 GB) and reused with ``--src``:

    python tools/bench_organize.py --src /tmp/imnet-bench/src
    python tools/bench_organize.py --src /tmp/small --classes 20 --per-class 100 --repeat 3
"""
from __future__ import annotations

import argparse
import shutil
import statistics
from collections.abc import Callable

from imnet_data.bench.measure import fake_source_args, prepared, report, tar_extract, timed_run
from imnet_data.organize import organize
from imnet_data.parallel import default_jobs

TARGET = 0.70


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fake_source_args(parser, 100, 195, "2 GB")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each method; the median is shown")
    args = parser.parse_args()
    archive, out = prepared(args)
    cores = default_jobs(0)
    methods: dict[str, Callable[[], object]] = {
        "tar -x (outer, then each inner)": lambda: tar_extract(archive, out),
        "organize --jobs 1": lambda: organize(args.src, out, splits=["train"], jobs=1, quiet=True),
        f"organize --jobs {cores} (all cores)": lambda: organize(args.src, out, splits=["train"], jobs=cores,
                                                                 quiet=True)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, run in methods.items():
            times[name].append(timed_run(run, out))
    images = organize(args.src, out, splits=["train"], quiet=True).counts["train"]  # the last run, resumed
    shutil.rmtree(out)
    report(archive.stat().st_size, images,
           {k: tuple(map(statistics.median, zip(*v, strict=True))) for k, v in times.items()},
           out, f"ratio = organize throughput / tar throughput; target >= {TARGET:.2f}")


if __name__ == "__main__":
    main()
