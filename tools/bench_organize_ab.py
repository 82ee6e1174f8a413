"""``organize`` of two checkouts against each other and ``tar -x``, alternating, on one download: what a change
to organize's per-file cost is worth, in one run, under the same load.

Runs, ``--repeat`` rounds of: ``tar -x`` (outer train tar, then each inner tar: ``tar_extract``), ``organize``
of the ``--baseline`` checkout, ``organize`` of this one (``--jobs``, ``--splits train``: the same images), each
timed until it returns and a following ``sync``. Each run writes into a new folder and nothing is deleted until
the end: on ext4 without a journal a file created within minutes of a big delete can cost several times more
(see ``tools/bench_recent_delete.py``), so a delete between runs would measure where the freed inodes lie, not
the program. The download is one of ``tools/bench_fullcount.py`` (``--src``; ``--scale 0.1``: 133,118 tiny JPEGs).
Start it on a disk that saw no big delete in the last 6 minutes; the outputs (~0.6 GB a run at --scale 0.1)
are deleted at the end, eight class folders at once.

    git worktree add /tmp/old main                          # the baseline: another checkout of this project
    python tools/bench_organize_ab.py --src /tmp/fc/src --baseline /tmp/old --work /tmp/ab --repeat 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench_fullcount import remove_tree

from imnet_data.bench.measure import tar_extract
from imnet_data.sources.ilsvrc import TRAIN

ROOT = Path(__file__).resolve().parent.parent


def organize_cmd(checkout: Path, src: Path, out: Path, jobs: int) -> list[str]:
    """``python -m imnet_data organize`` importing the package of ``checkout``."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(checkout)!r}); "
            "from imnet_data.cli import main; sys.exit(main())", "organize", str(src), str(out), "--jobs",
            str(jobs), "--splits", "train", "--quiet"]


def timed(run: Callable[[], object], out: Path) -> float:
    """Seconds until ``run`` has written ``out`` and a sync has put it on the disk."""
    start = time.perf_counter()
    run()
    os.sync()
    if not out.is_dir():
        raise SystemExit(f"{out}: the run wrote nothing")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="a bench_fullcount download")
    parser.add_argument("--baseline", type=Path, required=True, help="the checkout to compare with (its root)")
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the outputs (removed at the end)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--jobs", type=int, default=2, help="organize --jobs (default 2)")
    args = parser.parse_args()
    if args.work.exists():
        parser.error(f"--work {args.work} exists; give a new folder")
    subprocess.run(["cat", str(args.src / TRAIN)], check=True, stdout=subprocess.DEVNULL)   # into the page cache
    names = ("tar -x", "organize baseline", "organize this")
    seconds: dict[str, list[float]] = {n: [] for n in names}
    try:
        args.work.mkdir(parents=True)
        os.sync()
        for r in range(args.repeat):
            outs = [args.work / f"{i}-{r}" for i in range(3)]
            runs: list[Callable[[], object]] = [
                    partial(tar_extract, args.src / TRAIN, outs[0]),
                    *(partial(subprocess.run, organize_cmd(checkout, args.src, out, args.jobs), check=True,
                              stdout=subprocess.DEVNULL)
                      for checkout, out in ((args.baseline, outs[1]), (ROOT, outs[2])))]
            for name, run, out in zip(names, runs, outs, strict=True):
                seconds[name].append(timed(run, out))
            print(f"round {r + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in names), flush=True)
    finally:
        if args.work.exists():
            remove_tree(args.work)
    med = {n: statistics.median(s) for n, s in seconds.items()}
    print("median s+sync: " + ", ".join(f"{n} {med[n]:.2f}" for n in names))
    tar, old, new = (med[n] for n in names)
    print(f"ratio tar -x's s / organize's: baseline {tar / old:.2f}, this {tar / new:.2f}; baseline's s / this "
          f"one's {old / new:.2f} (higher is better for this one)")


if __name__ == "__main__":
    main()
