"""Where the loader's CPU goes when it streams shards from S3: the CPU seconds of fetching one epoch's shards (the
fake of ``tools/bench_stream.py``, made there first: 60 shards and their indexes, 683 MB) from moto's S3 server on
loopback, in ``--jobs`` threads as the cache's fetch threads do, each way in a process of its own:

- ``in turn``: the cache's transfer (``Transfer(hash_aside=False)``): each thread reads, hashes (sha256) and
  writes each block into one buffer;
- ``hash aside``: stage's transfer (and the cache's before): a helper thread per file hashes a ring of blocks;
- ``read + write``: the store's reads written to disk, no sha256 (what the hash costs, by difference);
- ``read``: the store's reads only (the requests through boto3 and the socket reads);
- ``disk + sha256``: the same bytes read from the local shards and hashed (no network: the baseline).

CPU is the process's user + system seconds around the fetches (boto3 imported and its client made before);
``server CPU s`` is moto's own, spent on the same cores (a real store's is not). Ways alternate, ``--repeat``
times; a ratio to ``hash aside`` of the same repeat is printed for ``in turn``.

    python tools/bench_stream.py --work /tmp/s3cpu/stream --repeat 1   # the shards, once
    python tools/bench_fetch_cpu.py --work /tmp/s3cpu/stream --repeat 3
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/ and tools/: the repository's
from tests.servers import moto_server  # noqa: E402
from tools.bench_stream import BUCKET, KEYS, server_cpu  # noqa: E402

WAYS = ("in turn", "hash aside", "read + write", "read", "disk + sha256")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/imnet-bench/stream"), help="bench_stream.py's --work")
    p.add_argument("--tag", default="imagenet-10x600-100", help="the data set bench_stream.py made there")
    p.add_argument("--jobs", type=int, default=4, help="fetch threads (the cache's default)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--one", help=argparse.SUPPRESS)
    return p.parse_args()


def files(split: Path) -> list[tuple[str, int, str]]:
    """(name, bytes, sha256) of every shard and index of the split's manifest."""
    out = []
    for e in json.loads((split / "manifest.json").read_text())["shards"]:
        out += [(e["name"], e["bytes"], e["sha256"]), (e["index"]["name"], e["index"]["bytes"], e["index"]["sha256"])]
    return out


def in_threads(items: list, jobs: int, work: Callable) -> None:
    """``work`` on every item, by ``jobs`` threads taking the next one in turn."""
    todo = iter(items)
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            work(item)

    threads = [threading.Thread(target=run) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def one(args: argparse.Namespace, split: Path, dest: Path) -> dict:
    """Fetch every file of ``split`` the way ``args.one`` names into ``dest``: CPU and wall seconds."""
    from imnet_data.stage.transfer import CHUNK, FileJob, Transfer
    from imnet_data.stores import open_store

    dest.mkdir(parents=True)
    with open_store(f"s3://{BUCKET}/imagenet/train", args.jobs + 2) as store:
        items = files(split)
        store.stat(items[0][0])                       # boto3 imported, its client made and connected

        def plain(item: tuple[str, int, str]) -> None:
            buf = memoryview(bytearray(CHUNK))
            with store.open(item[0], 0) as (_, readinto), open(dest / item[0], "wb") as out:
                while n := readinto(buf):
                    if args.one == "read + write":
                        out.write(buf[:n])

        def disk(item: tuple[str, int, str]) -> None:
            h = hashlib.sha256()
            with open(split / item[0], "rb") as f:
                while block := f.read(CHUNK):
                    h.update(block)
            assert h.hexdigest() == item[2]

        transfer = Transfer(hash_aside=args.one == "hash aside")

        def fetch(item: tuple[str, int, str]) -> None:
            transfer.fetch(store, FileJob(*item, dest / item[0]))

        work = fetch if args.one in WAYS[:2] else disk if args.one == WAYS[-1] else plain
        cpu, wall = os.times(), time.perf_counter()
        in_threads(items, args.jobs, work)
        done, wall = os.times(), time.perf_counter() - wall
    return {"cpu_s": done.user + done.system - cpu.user - cpu.system, "user_s": done.user - cpu.user,
            "sys_s": done.system - cpu.system, "seconds": wall, "bytes": sum(i[1] for i in items)}


def main() -> int:
    args = parse()
    data = args.work / args.tag
    split, dest = data / "local" / "train", args.work / "fetch-cpu"
    if args.one:
        print(json.dumps(one(args, split, dest)))
        return 0
    if not (split / "manifest.json").is_file():
        raise SystemExit(f"{split}: no shards: run tools/bench_stream.py --work {args.work} first")
    os.environ.update(KEYS)
    results: dict[str, list[dict]] = {w: [] for w in WAYS}
    with moto_server(args.work / "moto-fetch.log") as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        import boto3

        from imnet_data.shards.publish import upload

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        if not upload(data / "local", f"s3://{BUCKET}/imagenet").ok:
            raise SystemExit("the shards could not be uploaded to moto")
        for _ in range(args.repeat):
            for way in WAYS:
                shutil.rmtree(dest, ignore_errors=True)
                before = server_cpu()
                out = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--tag", args.tag,
                                      "--jobs", str(args.jobs), "--one", way], check=True, capture_output=True,
                                     text=True).stdout
                results[way].append({**json.loads(out.strip().splitlines()[-1]), "server_s": server_cpu() - before})
        shutil.rmtree(dest, ignore_errors=True)
    report(args, results)
    return 0


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    """One line per way and repeat: CPU seconds (user, system), wall seconds, MB/s, moto's CPU seconds."""
    print(f"{os.cpu_count()} cores; {args.jobs} fetch threads; one epoch's shards from moto's S3 on loopback")
    print(f"{'way':<14} {'run':>3} {'MB':>6} {'CPU s':>6} {'user':>5} {'sys':>5} {'wall s':>6} {'MB/s':>5} "
          f"{'server CPU s':>12}  ratio")
    for way, runs in results.items():
        for i, r in enumerate(runs):
            ratio = f"{r['cpu_s'] / results['hash aside'][i]['cpu_s']:.2f} of hash aside's CPU" \
                if way == "in turn" else ""
            print(f"{way:<14} {i + 1:>3} {r['bytes'] / 1e6:>6.0f} {r['cpu_s']:>6.2f} {r['user_s']:>5.2f} "
                  f"{r['sys_s']:>5.2f} {r['seconds']:>6.2f} {r['bytes'] / 1e6 / r['seconds']:>5.0f} "
                  f"{r['server_s']:>12.2f}  {ratio}")


if __name__ == "__main__":
    sys.exit(main())
