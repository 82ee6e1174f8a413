"""Minimal reproduction of the cost of creating files right after deleting many (issue 23 item 5): the file
patterns of ``tar -x`` and of ``organize``, each timed in a fresh area and again right after deleting its own
earlier output, with no image handling at all.

Why: on ext4 without a journal (this machine's ``/``) the inode allocator skips every free inode of a block group
that was deleted in the last 60 s (360 s while its inode table block is dirty): ``find_inode_bit`` calls
``recently_deleted`` on each free bit from the start of the group, one buffer-cache lookup per bit, for every file
created. New folders go to the block groups beside their parent folder (Orlov), which right after ``rm -rf`` of an
earlier output in the same place are the ones just freed, so each create scans past thousands of just-freed
inodes. Whether a run is hit depends on where its folders land, not on the file pattern: ``tar`` and ``staged``
pay alike (``perf record -g`` shows the time in ``find_inode_bit``/``recently_deleted``; ``sys`` is the kernel CPU
time of the creating processes). ``spread`` marks the parent as the top of unrelated folders (``chattr +T``), so
Orlov places each class folder in the flex group with the fewest folders, anywhere on the disk: few land in the
groups just freed.

Patterns, ``--folders`` class folders of ``--files`` files of ``--size`` bytes each:

    tar       one process: per folder, ``mkdir`` then each file created and written in turn (``tar -x``)
    organize  two processes taking alternate folders, each file written under ``.<name>.partial`` then renamed
              (``organize --jobs 2`` before 2026-12-07)
    staged    two processes taking alternate folders, each folder's files written under their own names (bare
              ``open``/``write``/``close``) in a staging folder ``.staging/<folder>.partial``, then the folder
              renamed into place (``organize --jobs 2`` from then: a class tar into a new class folder)
    spread    ``staged`` with the output folder and ``.staging`` marked by ``placing.spread_subfolders`` (ext4's
              ``chattr +T``), so the class folders go to the block groups with the fewest folders rather than
              beside the output's folder, where the earlier output was just deleted (``organize`` since
              2026-12-07 08:00 UTC)

Each pattern: a fresh run into ``WORK/<pattern>``, then that output deleted (``rm -rf``), a sync, ``--pause``
seconds, and the same run again into the same path; the other patterns' outputs stay until the end. Ratio =
tar's seconds over the pattern's in the same condition (higher is better for organize).

    python tools/bench_recent_delete.py --work /tmp/recent --folders 100 --files 400
    python tools/bench_recent_delete.py --work /tmp/recent --folders 300 --files 1000 --patterns tar,staged,spread
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from multiprocessing import Process
from pathlib import Path

from imnet_data.placing import spread_subfolders

PATTERNS = ("tar", "organize", "staged", "spread")


def create(out: Path, folders: list[int], files: int, data: bytes, pattern: str) -> None:
    """Write ``files`` files into each of ``folders`` (created here) under ``out`` as ``pattern`` does."""
    if pattern in ("staged", "spread"):
        staged(out, folders, files, data)
        return
    rename = pattern == "organize"
    for k in folders:
        folder = out / f"n{k:08d}"
        folder.mkdir(parents=True)
        for i in range(files):
            final = folder / f"n{k:08d}_{i}.JPEG"
            path = folder / f".{final.name}.partial" if rename else final
            with open(path, "wb") as f:
                f.write(data)
            if rename:
                os.replace(path, final)


def staged(out: Path, folders: list[int], files: int, data: bytes) -> None:
    """Each folder written whole in ``out/.staging/<name>.partial`` (bare calls per file), then renamed into
    ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for k in folders:
        folder = out / ".staging" / f"n{k:08d}.partial"
        folder.mkdir(parents=True)
        for i in range(files):
            fd = os.open(folder / f"n{k:08d}_{i}.JPEG", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
        os.rename(folder, out / f"n{k:08d}")


def run(pattern: str, out: Path, folders: int, files: int, size: int) -> tuple[float, float]:
    """(wall seconds, kernel CPU seconds of the creating processes) of one run of ``pattern`` into ``out``."""
    data = os.urandom(size)
    workers = 1 if pattern == "tar" else 2
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
    start = time.perf_counter()
    if pattern == "spread":     # once, before the workers, as organize marks its split folders in its driver
        spread_subfolders(str(out))
        spread_subfolders(str(out / ".staging"))
    procs = [Process(target=create, args=(out, list(range(w, folders, workers)), files, data, pattern))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"{pattern}: a worker failed with exit status {p.exitcode}")
    os.sync()
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before


def delete(out: Path, pause: float) -> float:
    """``rm -rf out``, a sync, then ``pause`` seconds; the seconds the delete took."""
    start = time.perf_counter()
    shutil.rmtree(out)
    os.sync()
    took = time.perf_counter() - start
    time.sleep(pause)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder on the disk to test (made, removed)")
    parser.add_argument("--folders", type=int, default=100, help="class folders per run (default 100)")
    parser.add_argument("--files", type=int, default=400, help="files per folder (default 400)")
    parser.add_argument("--size", type=int, default=3000, help="bytes per file (default 3000)")
    parser.add_argument("--pause", type=float, default=60, help="seconds between the delete and the run (default 60)")
    parser.add_argument("--patterns", default=",".join(PATTERNS),
                        help=f"comma-separated, run in this order, tar first among them (default {','.join(PATTERNS)})")
    args = parser.parse_args()
    patterns = args.patterns.split(",")
    if patterns[0] != "tar" or not set(patterns) <= set(PATTERNS):
        parser.error(f"--patterns {args.patterns}: tar first, then any of {', '.join(PATTERNS[1:])}")
    if args.work.exists():
        parser.error(f"--work {args.work} exists; give a new folder")
    seconds: dict[tuple[str, str], float] = {}
    try:
        for pattern in patterns:
            out = args.work / pattern
            for condition in ("fresh", "after a delete"):
                note = ""
                if condition != "fresh":
                    note = f"  (deleted {args.folders * args.files:,} files in {delete(out, args.pause):.1f} s, " \
                           f"paused {args.pause:.0f} s)"
                wall, sys_s = run(pattern, out, args.folders, args.files, args.size)
                seconds[pattern, condition] = wall
                print(f"{pattern:<9} {condition:<15} {wall:7.2f} s+sync  sys {sys_s:6.2f} s{note}", flush=True)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    for pattern in patterns[1:]:
        for condition in ("fresh", "after a delete"):
            print(f"ratio tar pattern's seconds / {pattern} pattern's, {condition}: "
                  f"{seconds['tar', condition] / seconds[pattern, condition]:.2f}")


if __name__ == "__main__":
    main()
