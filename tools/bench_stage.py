"""Benchmark ``imnet-data stage`` from nginx and from an S3-protocol server on loopback, against the standard
tool for each: ``curl`` fetching the same files sequentially, and boto3's own bulk download (what
``aws s3 cp --recursive`` runs).

The source is a shard-like set: ``--files`` files of random bytes (``--size`` in all) with small ``.idx`` files
and a manifest holding their real sizes and sha256 (the stager needs nothing else), made once in ``--src``.
nginx (Debian ``nginx-light``; the same launcher as the tests) serves it on a free loopback port, from the page
cache (the files are read once first); moto's S3 server (``moto[server]``; the tests' launcher) holds the same
files in a bucket (uploaded before timing). Then, into a fresh DEST on the same disk each run:

(a) one ``curl`` process fetching every file in turn (``-o FILE URL`` pairs: one connection, no hashing);
(b) ``imnet-data stage URL DEST --jobs N --quiet`` (the CLI, timed from start to exit) for each N of ``--jobs``;
(c) one process running boto3's ``TransferManager`` over every object with the AWS CLI's settings
    (``max_concurrency`` 10, 8 MB multipart chunks: ``aws s3 cp --recursive``), no hashing;
(d) for reference, boto3's plain ``get_object`` stream, one object after another (no hashing);
(e) ``imnet-data stage s3://bench/stage DEST --jobs N`` (endpoint from ``AWS_ENDPOINT_URL``) for each N.

Neither curl nor stage (by default) fsyncs; a last row runs stage with ``--fsync`` (each file flushed before
its rename). Each run is timed until it returns and until a following ``sync`` has put its writes on the disk;
the best of ``--repeat`` runs (interleaved) is shown. The ratio is stage's throughput over its group's baseline
(targets: >= 0.80 of curl over HTTP, >= 0.90 of the S3 bulk download with ``--jobs 1``, more with more jobs):

    python tools/bench_stage.py
    python tools/bench_stage.py --src /tmp/imnet-bench/stage-src --size 4GB --files 32 --jobs 1,2,4,8 --repeat 5
    python tools/bench_stage.py --no-s3           # HTTP only
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from imnet_data.bench.measure import timed_run, warm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: the repository's, not installed
from tests.servers import NGINX, moto_server, nginx  # the tests' launchers

TARGET = 0.80
TARGET_S3 = 0.90
SPLIT = "bench"
BUCKET = "bench"
# What `aws s3 cp --recursive` does (the AWS CLI's s3transfer defaults), as one process: the S3 baseline.
CLI_COPY = """
import sys, boto3
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
bucket, prefix, out = sys.argv[1:4]
s3 = boto3.client("s3")
config = TransferConfig(max_concurrency=10, multipart_chunksize=8 << 20, multipart_threshold=8 << 20)
with TransferManager(s3, config) as tm:
    for key in sys.argv[4:]:
        tm.download(bucket, f"{prefix}/{key}", f"{out}/{key}")
"""
# The library's plain stream, one object after another into files (no hashing): a reference, not the baseline.
RAW_GET = """
import shutil, sys, boto3
bucket, prefix, out = sys.argv[1:4]
s3 = boto3.client("s3")
for key in sys.argv[4:]:
    with open(f"{out}/{key}", "wb") as f:
        shutil.copyfileobj(s3.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"], f, 1 << 20)
"""


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


@contextlib.contextmanager
def s3_bucket(folder: Path, files: list[str], work: Path) -> Iterator[dict | None]:
    """moto's server holding ``folder``'s files under ``s3://bench/stage/``; yields the environment that points
    boto3 at it (None when moto or boto3 is not installed)."""
    if importlib.util.find_spec("boto3") is None or importlib.util.find_spec("moto") is None:
        yield None                       # moto or boto3 missing: no S3 rows
        return
    import boto3

    work.mkdir(parents=True, exist_ok=True)
    with moto_server(work / "moto.log") as endpoint:
        env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": endpoint}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        s3.create_bucket(Bucket=BUCKET)
        for name in files + ["manifest.json"]:
            s3.upload_file(str(folder / name), BUCKET, f"stage/{name}")
        yield env


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
    parser.add_argument("--no-s3", action="store_true", help="leave out the object-store rows")
    args = parser.parse_args()
    if NGINX is None:
        sys.exit("nginx not found: apt-get install -y nginx-light")
    if shutil.which("curl") is None:
        sys.exit("curl not found: apt-get install -y curl")
    manifest = make_source(args.src, int(args.size * 1e9), args.files)
    folder, out = args.src / SPLIT, args.work or args.src.parent / "stage-out"
    files = [s["name"] for s in manifest["shards"]] + [s["index"]["name"] for s in manifest["shards"]]
    total = sum((folder / f).stat().st_size for f in files)
    for f in files:
        warm(folder / f)
    with nginx(args.src, args.src.parent / "stage-nginx") as url, \
            (contextlib.nullcontext(None) if args.no_s3 else s3_bucket(folder, files, args.src.parent / "stage-s3")
             ) as s3env:
        def curl() -> None:
            cmd = ["curl", "-s", "-f"]
            for f in files:
                cmd += ["-o", str(out / f), f"{url}/{SPLIT}/{f}"]
            subprocess.run(cmd, check=True)

        def stage(source: str, *options: str, env: dict | None = None) -> Callable[[], None]:
            return lambda: subprocess.run([sys.executable, "-m", "imnet_data", "stage", source, str(out), "--quiet",
                                           "--all", *options], check=True, stdout=subprocess.DEVNULL,
                                          env={**os.environ, **(env or {})})

        def boto3_run(code: str) -> Callable[[], None]:
            def run() -> None:
                (out / SPLIT).mkdir(parents=True, exist_ok=True)
                subprocess.run([sys.executable, "-c", code, BUCKET, "stage", str(out / SPLIT), *files], check=True,
                               env={**os.environ, **s3env})
            return run

        jobs = args.jobs.split(",")
        groups = [("curl, sequential (1 process)", curl, TARGET,
                   [(f"imnet-data stage --jobs {j}", stage(f"{url}/{SPLIT}", "--jobs", j)) for j in jobs] +
                   [(f"imnet-data stage --jobs {jobs[-1]} --fsync", stage(f"{url}/{SPLIT}", "--jobs", jobs[-1],
                                                                          "--fsync"))])]
        if s3env is None and not args.no_s3:
            print("moto[server] or boto3 not installed: no object-store rows (pip install -e '.[test]')")
        elif s3env is not None:
            groups.append(("S3: aws s3 cp --recursive (boto3)", boto3_run(CLI_COPY), TARGET_S3,
                           [("S3: boto3 get_object, sequential", boto3_run(RAW_GET))] +
                           [(f"S3: imnet-data stage --jobs {j}", stage(f"s3://{BUCKET}/stage", "--jobs", j,
                                                                       env=s3env)) for j in jobs]))
        methods = [(name, run) for base, run0, _, rows in groups for name, run in [(base, run0)] + rows]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):       # interleaved, so a slow moment of the machine hits every method
            for name, run in methods:
                t = timed_run(run, out, empty)
                best[name] = tuple(min(a, b) for a, b in zip(best.get(name, t), t, strict=True))  # type: ignore[assignment]
    shutil.rmtree(out, ignore_errors=True)
    print(f"\n{len(files)} files, {total / 1e6:,.0f} MB, servers on loopback -> {out} (best of {args.repeat})")
    print(f"{'method':<40} {'MB/s':>8} {'+sync':>8} {'ratio':>7} {'+sync':>7}")
    for base_name, _, target, rows in groups:
        base = best[base_name]
        for name in [base_name] + [n for n, _ in rows]:
            t = best[name]
            print(f"{name:<40} {total / t[0] / 1e6:>8,.0f} {total / t[1] / 1e6:>8,.0f} {base[0] / t[0]:>7.2f} "
                  f"{base[1] / t[1]:>7.2f}")
        print(f"  target: stage >= {target:.2f} x {base_name}")


if __name__ == "__main__":
    main()
