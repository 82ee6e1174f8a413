"""The time and disk of each step of docs/walkthrough.md, measured on two fake downloads of ImageNet-sized
photographs and extrapolated to the real ILSVRC2012 archives, with ``tar -x`` of the same archives measured in the
same run as the baseline (the ratio: tar's seconds over the step's).

Each step is the walkthrough's command, run as a subprocess (``python -m imnet_data``), its output folder emptied
and the disk synced first, timed until it returns (the figure used) and until a following ``sync`` is done (shown:
on a disk shared with other work it is noisy); the median of ``--repeat`` runs is shown. The fakes (``imnet-data
fake --profile imagenet``, made in ``--src`` on the first run and kept) have the real set's mean image size (~110
KB): a tiny one (2 images per class), whose seconds are a step's fixed costs (interpreter start, imports, the
first shard), and a large one. The estimate for the real set is the large fake's seconds plus the slope between
the two (seconds per archive byte) times the bytes beyond it, so the fixed costs are not multiplied: an estimate
for these cores and this disk, labelled as one. ``shard`` uses ``--shard-size 10MB`` so that a fake gives several
shards per core, as the real set's 1 GB shards do. Disk: the bytes each step leaves, scaled by bytes for the copies
of the download (tar, shard, stage; not for the reports, whose size follows the problems and classes). The validate
step adds the md5 pass over the archives (what ``validate`` does on the real set; a fake has no official md5, so
the same function is timed here).

    python tools/bench_walkthrough.py --repeat 3
    python tools/bench_walkthrough.py --src /tmp/wt --classes 10 --per-class 50 --json walkthrough.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from imnet_data import catalog
from imnet_data.bench.measure import run_measured, tar_extract, timed_run, warm
from imnet_data.fake import FakeOptions, make_fake
from imnet_data.progress import amount_of, duration
from imnet_data.sources.ilsvrc import TRAIN, VAL
from imnet_data.validate.checksums import md5_file

REAL_IMAGES = 1_281_167 + 50_000
COPIES = ("tar -x (baseline)", "shard", "stage (folder to local disk)")   # outputs as large as the download


def cli(*args: str) -> Callable[[], object]:
    """A step: ``python -m imnet_data ARGS -q``, measured (StageFailed with its stderr if it fails)."""
    return lambda: run_measured([sys.executable, "-m", "imnet_data", *args, "-q"])


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def baseline(src: Path, out: Path) -> None:
    """tar -x of both archives: the train tar's inner tars into class folders, the val tar flat."""
    tar_extract(src / TRAIN, out / "train")
    (out / "val").mkdir()
    subprocess.run(["tar", "-xf", str(src / VAL), "-C", str(out / "val")], check=True)


def make(src: Path, classes: int, per_class: int) -> None:
    """A fake download of ImageNet-sized photographs in ``src`` (val: a fifth of train), unless it is there."""
    if not (src / TRAIN).is_file():
        print(f"making a fake download in {src}: {classes} classes x {per_class} (imagenet profile)", flush=True)
        make_fake(src, FakeOptions(classes=classes, train_per_class=per_class, val_images=classes * per_class // 5,
                                   profile="imagenet"), quiet=True)


def steps(src: Path, work: Path) -> dict[str, tuple[Callable[[], object], Path]]:
    """The walkthrough's steps on ``src`` with their output folders under ``work``, in order (each reads what the
    ones before it wrote)."""
    shards, check = work / "shards", work / "validate" / "v.json"
    archives = [src / TRAIN, src / VAL]
    return {
        "tar -x (baseline)": (lambda: baseline(src, work / "tar"), work / "tar"),
        "validate --deep (+ md5 pass)": (lambda: (cli("validate", str(src), "--expect", "self", "--deep",
                                                      "--report", str(check))(),
                                                  [md5_file(p, quiet=True) for p in archives]), work / "validate"),
        "shard": (cli("shard", str(src), str(shards), "--shard-size", "10MB"), shards),
        "verify": (cli("verify", str(shards)), work / "none"),
        "verify --deep": (cli("verify", str(shards), "--deep"), work / "none"),
        "report (every .json read)": (cli("report", str(shards), "--validate-report", str(check), "--samples", "0",
                                          "--out", str(work / "report" / "report.html")), work / "report"),
        "stage (folder to local disk)": (cli("stage", str(shards), str(work / "local")), work / "local"),
    }


def measure(src: Path, work: Path, repeat: int) -> tuple[int, dict[str, tuple[float, float]], dict[str, int]]:
    """(archive bytes, median (seconds until it returned, until synced) per step, bytes each step left) on one
    fake."""
    for path in (src / TRAIN, src / VAL):
        warm(path)
    runs = steps(src, work)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    disk: dict[str, int] = {}
    for _ in range(repeat):
        for name, (run, out) in runs.items():
            times[name].append(timed_run(run, out, prepare=empty))
            disk[name] = du(out)
    return (src / TRAIN).stat().st_size + (src / VAL).stat().st_size, \
        {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in times.items()}, disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path("/tmp/imnet-walkthrough-bench"),
                        help="where the two fakes are made (tiny/, large/) and kept (default "
                             "/tmp/imnet-walkthrough-bench)")
    parser.add_argument("--work", type=Path, help="outputs, on the disk to measure (default: --src/out)")
    parser.add_argument("--classes", type=int, default=20, help="classes of the fakes (default 20)")
    parser.add_argument("--per-class", type=int, default=100, help="train images per class of the large fake "
                        "(default 100: ~260 MB of archives with 20 classes; the tiny one has 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each step; the median is shown")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    work = args.work or args.src / "out"
    sizes = [(args.src / "tiny", 2), (args.src / "large", args.per_class)]
    for src, per_class in sizes:
        make(src, args.classes, per_class)
    (small, t_small, _), (large, t_large, disk) = (measure(src, work, args.repeat) for src, _ in sizes)
    facts = catalog.facts()["archives"]
    real = facts["train"]["size"] + facts["val"]["size"]
    rows = []
    for name, (seconds, synced) in t_large.items():
        slope = max(seconds - t_small[name][0], 0.0) / (large - small)       # seconds per archive byte
        rows.append({"step": name, "seconds_tiny": t_small[name][0], "seconds": seconds, "seconds_synced": synced,
                     "mb_s": large / 1e6 / seconds, "ratio": t_large["tar -x (baseline)"][0] / seconds,
                     "real_seconds": seconds + slope * (real - large), "disk": disk[name],
                     "real_disk": disk[name] * real / large if name in COPIES else None})
    print(f"fakes: {small / 1e6:.1f} MB and {large / 1e6:.0f} MB of archives ({args.classes} classes, imagenet "
          f"profile); real: {REAL_IMAGES:,} images, {real / 1e9:.1f} GB; {os.cpu_count()} cores; outputs in {work}")
    print(f"{'step':<30} {'s tiny':>7} {'s large':>8} {'+sync':>7} {'MB/s':>6} {'ratio':>6}  {'real set (est.)':>15}  "
          f"{'disk (large)':>12} {'disk (real, est.)':>17}")
    for r in rows:
        print(f"{r['step']:<30} {r['seconds_tiny']:>7.2f} {r['seconds']:>8.2f} {r['seconds_synced']:>7.2f} "
              f"{r['mb_s']:>6.0f} {r['ratio']:>6.2f}  {duration(r['real_seconds']):>15}  "
              f"{amount_of(r['disk'], 'B'):>12} {amount_of(r['real_disk'], 'B') if r['real_disk'] else '-':>17}")
    print("seconds until the command returned (+sync: until its writes were on the disk); ratio = tar -x's seconds "
          "/ the step's, on the large fake; real set = the large fake's seconds + the slope between the two fakes "
          "x the bytes beyond: an estimate for these cores and this disk (report reads every .json here; on the "
          "real set at most --samples per split)")
    if args.json:
        args.json.write_text(json.dumps({"small_bytes": small, "large_bytes": large, "real_bytes": real,
                                         "cores": os.cpu_count(), "rows": rows}, indent=2))


def empty(out: Path) -> None:
    """Before a step: its output folder empty (a fresh run), and the disk synced."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.sync()


if __name__ == "__main__":
    main()
