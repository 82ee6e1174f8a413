"""The measurement behind the object-store library choice (issue 13): one object stream with sha256 on the fly,
through each Python S3 library a user could pick, from two S3-protocol servers on loopback.

Libraries: boto3's ``get_object`` body stream (what ``imnet-data stage`` uses), obstore's ``get().stream()``
(Rust core), boto3's ``download_file`` (its TransferManager, into a file, then hashed, since it gives no
stream) and s3fs (fsspec) ``open().read`` in blocks. Servers: moto's standalone server (``moto[server]``,
objects uploaded first) and nginx serving the same files path-style (``/bucket/key``, no auth checked: a fast
server, so the client's own cost shows). Each library reads every object in turn (``--objects`` of ``--mb`` MB,
random bytes) and checks the sha256; the best of ``--repeat`` runs is shown as MB/s and as a ratio to boto3's
stream (the baseline, measured in the same run). A library not installed is named and skipped
(``pip install obstore s3fs``; neither is a dependency of imnet-data):

    python tools/bench_s3_libraries.py
    python tools/bench_s3_libraries.py --objects 8 --mb 128 --repeat 5
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: the repository's, not installed
from tests.servers import NGINX, moto_server, nginx  # the tests' launchers

BUCKET = "bench"
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
BLOCK = 1 << 20
Reader = Callable[[str], str]      # object key -> its sha256


def boto3_client(endpoint: str):
    """A boto3 S3 client for ``endpoint``, path-style, with the bench keys."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench", config=Config(s3={"addressing_style": "path"}))


def boto3_stream(endpoint: str, work: Path) -> Reader:
    s3 = boto3_client(endpoint)

    def read(key: str) -> str:
        h, body = hashlib.sha256(), s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        while block := body.read(BLOCK):
            h.update(block)
        return h.hexdigest()
    return read


def boto3_download_file(endpoint: str, work: Path) -> Reader:
    s3 = boto3_client(endpoint)

    def read(key: str) -> str:
        path = work / "download"
        s3.download_file(BUCKET, key, str(path))
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                h.update(block)
        path.unlink()
        return h.hexdigest()
    return read


def obstore_stream(endpoint: str, work: Path) -> Reader:
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=endpoint, access_key_id="bench", secret_access_key="bench",
                    region="us-east-1", virtual_hosted_style_request=False, client_options={"allow_http": True})

    def read(key: str) -> str:
        h = hashlib.sha256()
        for block in obstore.get(store, key).stream(min_chunk_size=BLOCK):
            h.update(memoryview(block))
        return h.hexdigest()
    return read


def s3fs_stream(endpoint: str, work: Path) -> Reader:
    import s3fs

    fs = s3fs.S3FileSystem(key="bench", secret="bench", client_kwargs={"endpoint_url": endpoint,
                                                                       "region_name": "us-east-1"})

    def read(key: str) -> str:
        h = hashlib.sha256()
        with fs.open(f"{BUCKET}/{key}", "rb", block_size=8 * BLOCK) as f:
            while block := f.read(BLOCK):
                h.update(block)
        return h.hexdigest()
    return read


LIBRARIES: dict[str, Callable[[str, Path], Reader]] = {
    "boto3 get_object stream": boto3_stream, "obstore get().stream()": obstore_stream,
    "boto3 download_file (+ hash)": boto3_download_file, "s3fs open().read": s3fs_stream}


def make_objects(folder: Path, count: int, size: int) -> dict[str, str]:
    """``count`` random files of ``size`` bytes under ``folder/bench/``; their sha256 by key."""
    (folder / BUCKET).mkdir(parents=True)
    digests = {}
    for i in range(count):
        data = os.urandom(size)
        (folder / BUCKET / f"obj-{i:02d}").write_bytes(data)
        digests[f"obj-{i:02d}"] = hashlib.sha256(data).hexdigest()
    return digests


def measure(name: str, make: Callable[[str, Path], Reader], endpoint: str, work: Path, digests: dict[str, str],
            repeat: int) -> float | None:
    """Best seconds to read every object through library ``name`` (None when it is not installed)."""
    try:
        read = make(endpoint, work)
    except ImportError as e:
        print(f"  {name}: not installed ({e.name}); skipped")
        return None
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for key, want in digests.items():
            if read(key) != want:
                sys.exit(f"{name}: {key} read back with another sha256")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=4, help="objects (default 4)")
    parser.add_argument("--mb", type=int, default=64, help="MB per object (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per library; the best is shown")
    args = parser.parse_args()
    os.environ.update(KEYS)
    with tempfile.TemporaryDirectory(prefix="bench-s3lib-") as tmp:
        work = Path(tmp)
        digests = make_objects(work / "root", args.objects, args.mb << 20)
        total = args.objects * (args.mb << 20)
        rows: dict[str, dict[str, float | None]] = {}
        with moto_server(work / "moto.log") as endpoint:
            s3 = boto3_client(endpoint)
            s3.create_bucket(Bucket=BUCKET)
            for key in digests:
                s3.upload_file(str(work / "root" / BUCKET / key), BUCKET, key)
            print("moto:")
            rows["moto"] = {n: measure(n, m, endpoint, work, digests, args.repeat) for n, m in LIBRARIES.items()}
        if NGINX is None:
            print("nginx not found (apt-get install -y nginx-light): no nginx column")
        else:
            with nginx(work / "root", work / "nginx") as url:
                print("nginx:")
                rows["nginx"] = {n: measure(n, m, url, work, digests, args.repeat) for n, m in LIBRARIES.items()}
    print(f"\n{args.objects} objects x {args.mb} MB, one stream, sha256 on the fly (best of {args.repeat}); "
          f"MB/s and ratio to boto3's stream")
    print(f"{'library':<30}" + "".join(f"{server:>18}" for server in rows))
    for name in LIBRARIES:
        cells = []
        for times in rows.values():
            t, base = times[name], times["boto3 get_object stream"]
            cells.append("not installed" if t is None else f"{total / t / 1e6:,.0f} ({base / t:.2f})")
        print(f"{name:<30}" + "".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
