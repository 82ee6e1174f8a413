"""ImageNet-21k (winter21) at full size, stage by stage: wall time, images/s, the driver's peak RSS, the largest
worker's, and the bytes each stage leaves on disk, for ``validate``, ``shard``, ``shard --classes imagenet-12k``
and ``shard --executor ray`` on a fake ``winter21_whole.tar.gz`` (issue 23, item 4).

The fake (:mod:`imnet_data.fake.scale`: 19,167 classes, tiny unique JPEGs, the counts per class drawn to sum
exactly to the size asked) is made in ``--work`` first, not timed, and reused when present. Each stage is the CLI
as a user runs it, in a subprocess whose process tree is polled (:func:`imnet_data.bench.rss.run_tree`: ``VmHWM``
of the driver and of each descendant), with the CPU seconds (user + system) of the processes it waited for: on a
shared machine the wall time follows the others' load, the CPU time much less. Its output is measured and
deleted before the next stage, so the disk holds one stage's output at a time:

- ``index``: the gzip index (:mod:`imnet_data.sources.gzindex`: rapidgzip on all cores) built alone, as the first
  ``shard`` into a DEST builds it; kept in ``--work``, and copied into each later ``shard`` stage's DEST, so the
  ``shard`` rows are runs with a kept index (a first run costs the ``index`` row more). rapidgzip's memory grows
  with the compression ratio (its issue #2): the fake's tiny JPEGs compress 44x, real JPEGs barely;
- ``validate``: ``imnet-data validate FAKE`` at its default depth (counting: every header through the gzip index,
  no image decoded); ``--expect official`` at the real count (13,151,276), ``--expect self`` below it (the official
  count would be reported missing);
- ``shard``: ``imnet-data shard FAKE OUT --jobs N`` (all 19,167 classes, train);
- ``12k``: the same with ``--classes imagenet-12k`` (train and its held-out val, 40 per class). timm's 12k is cut
  from fall11; the fake winter21 holds every 12k class (:func:`~imnet_data.fake.scale.scaled_classes` puts them
  first), so it runs on the same archive. Whether the real winter21 holds all 11,821 is not checked here: where
  it lacks one, ``shard`` refuses and names it;
- ``ray``: ``shard --executor ray`` with no cluster named, in an environment of its own (HOME and ``RAY_TMPDIR``
  in a temp folder, no ``RAY_ADDRESS``): the driver starts a one-machine cluster and stops it when it ends (its
  start is in the time); the cluster's processes (raylet, GCS, Ray workers) are the driver's descendants.

    python tools/bench_21k_full.py --work /tmp/i23full --sizes 13151276 --stages validate,index,shard,12k
    python tools/bench_21k_full.py --work /tmp/i23full --sizes 1315128 --stages validate,index,shard,12k,ray
    python tools/bench_21k_full.py --quick          # 120,000 images in 2,000 classes: all but 12k
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from imnet_data.bench.rss import TreePeaks, run_tree
from imnet_data.fake.scale import make_scaled_imagenet21k
from imnet_data.sources import gzindex

FULL = 13_151_276     # winter21's images
STAGES = ("validate", "index", "shard", "12k", "ray")
MB = 1 << 20


def fake(work: Path, images: int, classes: int | None) -> Path:
    """The fake winter21 of ``images`` (made once): the folder holding ``winter21_whole.tar.gz``."""
    folder = work / f"fake-{images}" if classes is None else work / f"fake-{images}-{classes}"
    if not (folder / "winter21_whole.tar.gz").is_file():
        print(f"making {folder}: {images:,} images (not timed)", file=sys.stderr, flush=True)
        make_scaled_imagenet21k(folder, images, classes, release="winter21")
    return folder


def command(stage: str, src: Path, out: Path, images: int, jobs: int) -> list[str]:
    """The CLI of ``stage``."""
    cli = [sys.executable, "-m", "imnet_data"]
    if stage == "index":
        return [sys.executable, "-c", "import sys; from pathlib import Path; from imnet_data.sources import gzindex; "
                "gzindex.load_index(Path(sys.argv[1]), Path(sys.argv[2]), gzindex.library())",
                str(archive(src)), str(out)]
    if stage == "validate":
        return [*cli, "validate", str(src), "--jobs", str(jobs), "--quiet", "--expect",
                "official" if images == FULL else "self"]
    extra = {"shard": [], "12k": ["--classes", "imagenet-12k"], "ray": ["--executor", "ray"]}[stage]
    return [*cli, "shard", str(src), str(out), "--jobs", str(jobs), "--quiet", *extra]


def archive(src: Path) -> Path:
    """The fake's archive."""
    return src / "winter21_whole.tar.gz"


def kept_index(src: Path, work: Path, images: int, into: Path) -> None:
    """Copy the index the ``index`` stage kept for ``src`` (if any) into DEST ``into``, where shard looks."""
    kept = gzindex.index_path(archive(src), work / f"index-{images}")
    if kept.is_file():
        target = gzindex.index_path(archive(src), into)
        target.parent.mkdir(parents=True)
        shutil.copyfile(kept, target)


def disk_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when absent)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def measure(stage: str, src: Path, work: Path, images: int, jobs: int) -> dict:
    """Run one stage (its output deleted after); its row."""
    out = work / (f"index-{images}" if stage == "index" else f"out-{stage}")
    shutil.rmtree(out, ignore_errors=True)
    if stage != "validate":
        kept_index(src, work, images, out)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with tempfile.TemporaryDirectory(prefix="b21k", dir="/tmp") as home:   # short: Ray's sockets live in it
        env.update(HOME=home, RAY_TMPDIR=home, PYTHONDONTWRITEBYTECODE="1")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            peaks: TreePeaks = run_tree(command(stage, src, out, images, jobs), env, cwd=work)
        finally:
            on_disk = disk_bytes(out)
            if stage != "index":
                shutil.rmtree(out, ignore_errors=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"stage": stage, "images": images, "seconds": round(peaks.seconds, 1), "cpu_seconds": round(cpu, 1),
            "images_per_s": round(images / peaks.seconds), "driver_bytes": peaks.driver,
            "worker_bytes": peaks.worker_max, "processes": len(peaks.workers), "disk_bytes": on_disk,
            "load": os.getloadavg()}


def show(rows: list[dict]) -> None:
    """The table."""
    print(f"{'stage':<9} {'images':>11} {'wall s':>8} {'img/s':>7} {'CPU s':>8} {'driver MB':>10} "
          f"{'worker MB':>10} {'disk GB':>8}  load (1/5/15 min, at the end)")
    for r in rows:
        print(f"{r['stage']:<9} {r['images']:>11,} {r['seconds']:>8.1f} {r['images_per_s']:>7,} "
              f"{r['cpu_seconds']:>8.1f} {r['driver_bytes'] / MB:>10.0f} {r['worker_bytes'] / MB:>10.0f} "
              f"{r['disk_bytes'] / 1e9:>8.2f}  "
              + " ".join(f"{x:.2f}" for x in r["load"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/imnet-21k-full"),
                        help="fakes and outputs (default /tmp/imnet-21k-full; the full fake is 0.28 GB, a shard "
                             "of it ~40 GB)")
    parser.add_argument("--sizes", default=str(FULL), help=f"image counts, comma-separated (default {FULL})")
    parser.add_argument("--stages", default="validate,shard,12k", help=f"of {','.join(STAGES)}")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of every stage (default 2)")
    parser.add_argument("--quick", action="store_true", help="120,000 images in 2,000 classes: validate, index, "
                        "shard, ray (12k needs its 11,821 classes)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    stages = ["validate", "index", "shard", "ray"] if args.quick else args.stages.split(",")
    if set(stages) - set(STAGES):
        parser.error(f"--stages: of {', '.join(STAGES)}")
    sizes, classes = ([120_000], 2000) if args.quick else ([int(s) for s in args.sizes.split(",")], None)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"fake winter21 in {args.work}; stages {', '.join(stages)}; --jobs {args.jobs}; {os.cpu_count()} cores")
    rows = []
    for images in sizes:
        src = fake(args.work, images, classes)
        for stage in stages:
            rows.append(measure(stage, src, args.work, images, args.jobs))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    show(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
