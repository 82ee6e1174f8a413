"""Benchmark ``imnet-data stage`` from nginx on loopback against ``curl`` fetching the same files sequentially.

The source is a shard-like set: ``--files`` files of random bytes (``--size`` in all) with small ``.idx`` files
and a manifest holding their real sizes and sha256 (the stager needs nothing else), made once in ``--src``.
nginx (Debian ``nginx-light``; the same launcher as the tests) serves it on a free loopback port, from the page
cache (the files are read once first). Then, into a fresh DEST on the same disk each run:

(a) one ``curl`` process fetching every file in turn (``-o FILE URL`` pairs: one connection, no hashing);
(b) ``imnet-data stage URL DEST --jobs N --quiet`` (the CLI, timed from start to exit) for each N of ``--jobs``.

Neither curl nor stage (by default) fsyncs; a last row runs stage with ``--fsync`` (each file flushed before
its rename). Each run is timed until it returns and until a following ``sync`` has put its writes on the disk;
the best of ``--repeat`` runs (interleaved) is shown. The ratio is stage's throughput over curl's (target >= 0.80):

    python tools/bench_stage.py
    python tools/bench_stage.py --src /tmp/imnet-bench/stage-src --size 4GB --files 32 --jobs 1,2,4,8 --repeat 5
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_organize import timed  # noqa: E402  (tools/ is on sys.path when run as a script)
from tests.test_stage import NGINX, nginx  # noqa: E402  (the tests' nginx launcher)

TARGET = 0.80
SPLIT = "bench"


def make_source(src: Path, size: int, files: int) -> dict:
    """``src/bench/``: ``files`` random files of ``size`` bytes in all, their indexes and a manifest (reused when
    present with the same size and count)."""
    folder = src / SPLIT
    if (folder / "manifest.json").is_file():
        manifest = json.loads((folder / "manifest.json").read_text())
        if (manifest.get("format_version") == 1 and manifest["num_bytes"] == size // files * files
                and len(manifest["shards"]) == files):
            return manifest
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"writing {files} files, {size / 1e9:.2f} GB in all, into {folder}")
    shards = []
    for i in range(files):
        name = f"bench-{SPLIT}-{i:06d}"
        h = hashlib.sha256()
        with open(folder / f"{name}.tar", "wb") as f:
            left = size // files
            while left:
                block = os.urandom(min(left, 8 << 20))
                f.write(block)
                h.update(block)
                left -= len(block)
        index = f"v1.2 1\ncls 0 1 {name}.cls\n".encode()
        (folder / f"{name}.idx").write_bytes(index)
        shards.append({"name": f"{name}.tar", "samples": 1, "bytes": size // files, "sha256": h.hexdigest(),
                       "histogram": [], "index": {"name": f"{name}.idx", "bytes": len(index),
                                                  "sha256": hashlib.sha256(index).hexdigest()}})
    manifest = {"format": "imnet-data-shards", "format_version": 1, "split": SPLIT, "name": "bench",
                "num_samples": files, "num_bytes": size // files * files, "classes": [], "class_counts": [],
                "shards": shards}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def empty(out: Path) -> None:
    """``out`` emptied (made anew) and the disk synced."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path("/tmp/imnet-bench/stage-src"),
                        help="where the source files are made (default /tmp/imnet-bench/stage-src)")
    parser.add_argument("--work", type=Path, help="DEST, on the disk to test (default: beside --src)")
    parser.add_argument("--size", type=float, default=2.0, help="GB in all (default 2)")
    parser.add_argument("--files", type=int, default=16, help="files (default 16: 128 MB each)")
    parser.add_argument("--jobs", default="1,4", help="comma-separated stage --jobs values (default 1,4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method; the best is shown")
    args = parser.parse_args()
    if NGINX is None:
        sys.exit("nginx not found: apt-get install -y nginx-light")
    if shutil.which("curl") is None:
        sys.exit("curl not found: apt-get install -y curl")
    manifest = make_source(args.src, int(args.size * 1e9), args.files)
    folder, out = args.src / SPLIT, args.work or args.src.parent / "stage-out"
    files = [s["name"] for s in manifest["shards"]] + [s["index"]["name"] for s in manifest["shards"]]
    total = sum((folder / f).stat().st_size for f in files)
    for f in files:         # into the page cache, for every method alike
        with open(folder / f, "rb") as fh:
            while fh.read(16 << 20):
                pass
    with nginx(args.src, args.src.parent / "stage-nginx") as url:
        def curl() -> None:
            cmd = ["curl", "-s", "-f"]
            for f in files:
                cmd += ["-o", str(out / f), f"{url}/{SPLIT}/{f}"]
            subprocess.run(cmd, check=True)

        def stage(*options: str) -> Callable[[], None]:
            return lambda: subprocess.run([sys.executable, "-m", "imnet_data", "stage", f"{url}/{SPLIT}", str(out),
                                           "--quiet", "--all", *options], check=True, stdout=subprocess.DEVNULL)

        jobs = args.jobs.split(",")
        methods = [("curl, sequential (1 process)", curl)] + \
            [(f"imnet-data stage --jobs {j}", stage("--jobs", j)) for j in jobs] + \
            [(f"imnet-data stage --jobs {jobs[-1]} --fsync", stage("--jobs", jobs[-1], "--fsync"))]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):       # interleaved, so a slow moment of the machine hits every method
            for name, run in methods:
                t = timed(run, out, empty)
                best[name] = tuple(min(a, b) for a, b in zip(best.get(name, t), t))  # type: ignore[assignment]
    shutil.rmtree(out, ignore_errors=True)
    base = best[methods[0][0]]
    print(f"\n{len(files)} files, {total / 1e6:,.0f} MB, nginx on loopback -> {out} (best of {args.repeat})")
    print(f"{'method':<32} {'MB/s':>8} {'+sync':>8} {'ratio':>7} {'+sync':>7}")
    for name, _ in methods:
        t = best[name]
        print(f"{name:<32} {total / t[0] / 1e6:>8,.0f} {total / t[1] / 1e6:>8,.0f} {base[0] / t[0]:>7.2f} "
              f"{base[1] / t[1]:>7.2f}")
    print(f"target: stage >= {TARGET:.2f} x curl")


if __name__ == "__main__":
    main()
