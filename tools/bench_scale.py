"""Memory of ``shard`` against the sample count: peak RSS of the driver and of each worker at two sizes of a fake
ImageNet-21k, and the slope (bytes per sample) between them, in one run; with ``--baseline REV`` the same for the
code of a git revision (the plan of one object per sample), and the ratio of the two slopes.

The fakes (:mod:`imnet_data.fake.scale`: ``fall11_whole.tar`` of ``<wnid>.tar`` inner tars of tiny unique JPEGs,
the same ``--classes`` at both sizes, as a real release has a fixed class count) are made in ``--work`` on the
first run and reused. Each run is ``python -m imnet_data shard FAKE OUT --quiet`` in a subprocess whose tree is
polled (:mod:`imnet_data.bench.rss`: ``VmHWM`` of the driver and of each worker), with ``--shard-size`` giving
several shards per worker; its output is deleted afterwards. Target (issue 23): the driver's slope <= 64 bytes per
sample (the one-object plan: ~650), a worker's independent of the count.

    python tools/bench_scale.py                                    # 500,000 and 2,000,000 images, 21,841 classes
    python tools/bench_scale.py --quick --baseline 630f2fb         # 20,000 and 100,000 in 1,000 classes
    python tools/bench_scale.py --sizes 1000000,4000000 --work /data/scale --json scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from imnet_data.bench.rss import TreePeaks, run_tree, slope
from imnet_data.fake.scale import make_scaled_imagenet21k

ROOT = Path(__file__).resolve().parent.parent
TARGET = 64          # driver bytes per sample (issue 23)
MB = 1 << 20


def measure(src: Path, out: Path, shard_size: str, jobs: int, code: Path | None) -> TreePeaks:
    """One ``shard`` of ``src`` into ``out`` (removed after), with the installed code or that in folder ``code``."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    shutil.rmtree(out, ignore_errors=True)
    try:
        return run_tree([sys.executable, "-m", "imnet_data", "shard", str(src), str(out), "--shard-size", shard_size,
                         "--jobs", str(jobs), "--quiet"], env, cwd=out.parent)   # not here: -m imports from the cwd
    finally:
        shutil.rmtree(out, ignore_errors=True)


def fake(work: Path, images: int, classes: int) -> Path:
    """The fake of ``images`` in ``classes`` (made once)."""
    folder = work / f"fake-{images}-{classes}"
    if not (folder / "fall11_whole.tar").is_file():
        print(f"making {folder}: {images:,} images in {classes:,} classes", file=sys.stderr)
        make_scaled_imagenet21k(folder, images, classes, release="fall11")
    return folder


def series(sizes: list[int], classes: int, work: Path, args: argparse.Namespace, code: Path | None) -> dict:
    """Both sizes measured with one code: rows and slopes."""
    rows = []
    for n in sizes:
        peaks = measure(fake(work, n, classes), work / "out", args.shard_size, args.jobs, code)
        rows.append({"samples": n, "driver_bytes": peaks.driver, "worker_bytes": sorted(peaks.workers.values()),
                     "seconds": round(peaks.seconds, 2)})
    first, last = rows[0], rows[-1]
    return {"rows": rows,
            "driver_slope": slope((first["samples"], first["driver_bytes"]), (last["samples"], last["driver_bytes"])),
            "worker_slope": slope((first["samples"], max(first["worker_bytes"], default=0)),
                                  (last["samples"], max(last["worker_bytes"], default=0)))}


def baseline_code(rev: str, into: Path) -> Path:
    """The package of git revision ``rev`` of this repository, extracted into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "imnet_data"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def show(title: str, result: dict) -> None:
    """Print one code's rows and slopes."""
    print(title)
    print(f"  {'samples':>11} {'driver MB':>10} {'workers MB (each)':<40} {'s':>7}")
    for r in result["rows"]:
        each = " ".join(f"{b / MB:.0f}" for b in r["worker_bytes"]) or "-"
        print(f"  {r['samples']:>11,} {r['driver_bytes'] / MB:>10.1f} {each:<40} {r['seconds']:>7.1f}")
    print(f"  slope: driver {result['driver_slope']:.1f} bytes/sample (target <= {TARGET}), largest worker "
          f"{result['worker_slope']:.1f} bytes/sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500000,2000000", help="two image counts (default 500000,2000000)")
    parser.add_argument("--classes", type=int, default=21841, help="classes of the fakes (default 21841: fall11)")
    parser.add_argument("--quick", action="store_true", help="sizes 20000,100000 in 1,000 classes (a minute)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/imnet-scale"), help="fakes and output (default "
                        "/tmp/imnet-scale; 2M images take ~2.1 GB)")
    parser.add_argument("--shard-size", default="",
                        help="shard --shard-size (default: the larger fake's size / (4 x jobs))")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="shard --jobs (default: all cores)")
    parser.add_argument("--baseline", metavar="REV", help="also measure the code of this git revision")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes, classes = ([20_000, 100_000], 1000) if args.quick else ([int(s) for s in args.sizes.split(",")],
                                                                   args.classes)
    if len(sizes) != 2 or not 0 < sizes[0] < sizes[1]:
        parser.error("--sizes: two increasing counts")
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.shard_size:
        args.shard_size = f"{max(1, sizes[1] * 1100 // (4 * args.jobs) // 1000)}kB"
    print(f"shard --jobs {args.jobs} --shard-size {args.shard_size} on fake ImageNet-21k (fall11 layout, "
          f"{classes:,} classes) in {args.work}; {os.cpu_count()} cores")
    results = {"this": series(sizes, classes, args.work, args, None)}
    show("this checkout", results["this"])
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            results["baseline"] = series(sizes, classes, args.work, args, baseline_code(args.baseline, Path(tmp)))
        show(f"baseline {args.baseline}", results["baseline"])
        print(f"driver slope: {results['this']['driver_slope'] / results['baseline']['driver_slope']:.3f} of the "
              "baseline's")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
