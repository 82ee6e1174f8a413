"""Benchmark the train loader streaming its shards from an S3 server through its cache, against the same loader
reading the same shards from local disk, and against the two streaming loaders users compare it with, reading
the same JPEGs from the same server: litdata's ``StreamingDataset`` (its own chunk format, written by
``litdata.optimize``) and MosaicML streaming's ``StreamingDataset`` (MDS, written by ``MDSWriter``).

A fake download (``--classes`` x ``--per-class`` images; the ``imagenet`` profile's real photographs, or
``--quick``: the ``tiny`` profile's small ones) is sharded into ``--work``/local (``--samples-per-shard``), and
the same train JPEGs and labels are written in litdata's and MDS's formats. moto's S3 server (``moto[server]``,
the tests' launcher) on loopback holds all three; each run starts with an empty cache. Every method reads one
epoch of the train split in a process of its own (peak RSS of that process, workers included): batches of
``--batch``, RandomResizedCrop ``--image-size`` + flip, float32 normalised, decoded on the CPU (this loader:
``--backend``, DALI CPU by default; the peers: the same PIL transform as this loader's torch backend, in
``--threads`` DataLoader workers). Time: from building the loader to the epoch's last batch (setup, the first
fetches and the decode all count: ``img/s``, the target's ratio), and from the first batch on (``after 1st``:
the steady state, its ratio printed beside); S3 is compared with the local run of the same repeat (side by side);
``waited s``: how long this loader waited for a shard; ``CPU s``: the method's process over the same span (this
loader's ``fetch CPU s`` within it); ``server CPU s``: moto's own CPU time, spent on the same cores; per repeat,
what S3 took in CPU over local and the ratio were moto's CPU not on these cores (an estimate). Targets (issue
24): S3 through the cache >= 0.9 of local disk over the whole epoch; >= 1.5x each peer.

The default epoch is 6,000 images (10 classes x 600, ~680 MB in 60 shards): 15-35 s on a shared 2-core machine, so the
start (the store's first fetches, DALI's setup: about a second) weighs as little as it does in a real epoch of
minutes. A 1,200-image epoch lasts ~2 s and measures mostly the start. A peer not installed is named and
skipped (``pip install litdata mosaicml-streaming``: neither is a dependency of imnet-data).

    python tools/bench_stream.py --repeat 2                   # 6,000 imagenet-profile images
    python tools/bench_stream.py --quick                      # 6,000 small images, for a busy machine
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from torch.utils.data import IterableDataset

from imnet_data.bench.measure import run_measured

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: the repository's, not installed
from tests.servers import moto_server  # the tests' launcher

BUCKET = "bench"
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
METHODS = ("local disk", "S3 through the cache", "litdata StreamingDataset", "MosaicML streaming")
TARGETS = {"S3 through the cache": ("local disk", 0.9), "litdata StreamingDataset": ("S3 through the cache", 1.5),
           "MosaicML streaming": ("S3 through the cache", 1.5)}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/imnet-bench/stream"), help="data and caches")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=600)
    p.add_argument("--quick", action="store_true", help="the tiny profile's small images (for a busy machine)")
    p.add_argument("--samples-per-shard", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--backend", choices=["dali", "torch"], default="dali")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="decode threads / workers")
    p.add_argument("--fetch-jobs", type=int, default=4, help="the cache's fetch threads (default 4, the loader's)")
    p.add_argument("--repeat", type=int, default=1, help="runs of every method, interleaved")
    p.add_argument("--one", help=argparse.SUPPRESS)          # a method's own process: METHOD, then the endpoint
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    return p.parse_args()


# ---- the data, written once into --work ------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> Path:
    """The fake, its shards (``local/``), and the same train samples in litdata's and MDS's formats."""
    from imnet_data.fake import FakeOptions, make_fake
    from imnet_data.shards import ShardOptions, shard

    tag = f"{'tiny' if args.quick else 'imagenet'}-{args.classes}x{args.per_class}-{args.samples_per_shard}"
    data = args.work / tag
    if not (data / "local" / "train" / "manifest.json").is_file():
        print(f"making {tag} in {data} (once)", flush=True)
        fake = make_fake(data / "src", FakeOptions(classes=args.classes, train_per_class=args.per_class,
                                                   val_images=args.classes,
                                                   profile="tiny" if args.quick else "imagenet"), quiet=True)
        shard(fake.out, data / "local", ShardOptions(samples_per_shard=args.samples_per_shard), quiet=True)
    for name, write in (("litdata", write_litdata), ("mds", write_mds)):
        if not (data / name / "index.json").is_file():
            try:
                write(data / "local" / "train", data / name)
            except ImportError as e:
                print(f"{name}: not written ({e.name} not installed)", flush=True)
    return data


def samples(folder: Path) -> Iterator[tuple[bytes, int]]:
    """(JPEG bytes, label) of every sample of a split's shards, in manifest order."""
    for entry in json.loads((folder / "manifest.json").read_text())["shards"]:
        with tarfile.open(folder / entry["name"]) as tar:
            members: dict[str, dict[str, bytes]] = {}
            for m in tar:
                key, _, ext = m.name.partition(".")
                f = tar.extractfile(m)
                if f is not None:
                    members.setdefault(key, {})[ext] = f.read()
            for parts in members.values():
                yield parts["jpg"], int(parts["cls"])


def write_litdata(split: Path, out: Path) -> None:
    """litdata's own format, written by ``litdata.optimize`` (64 MB chunks, as its docs use)."""
    import litdata

    items = list(samples(split))
    litdata.optimize(fn=_litdata_item, inputs=items, output_dir=str(out), chunk_bytes="64MB", num_workers=1,
                     verbose=False)


def _litdata_item(item: tuple[bytes, int]) -> dict:
    return {"image": item[0], "label": item[1]}


def write_mds(split: Path, out: Path) -> None:
    """MosaicML streaming's MDS format (``MDSWriter``, 64 MB shards)."""
    from streaming import MDSWriter

    with MDSWriter(out=str(out), columns={"image": "bytes", "label": "int"}, size_limit="64mb") as writer:
        for jpeg, label in samples(split):
            writer.write({"image": jpeg, "label": label})


def upload(endpoint: str, data: Path) -> None:
    """Everything of ``data``'s three formats into the bucket (``imagenet/``, ``litdata/``, ``mds/``)."""
    import boto3

    from imnet_data.shards.publish import upload as upload_shards

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    if not upload_shards(data / "local", f"s3://{BUCKET}/imagenet").ok:
        raise SystemExit("the shards could not be uploaded to moto")
    client = boto3.client("s3", endpoint_url=endpoint)
    for name in ("litdata", "mds"):
        for path in sorted((data / name).rglob("*")):
            if path.is_file():
                client.upload_file(str(path), BUCKET, f"{name}/{path.relative_to(data / name)}")


# ---- one method, in its own process ----------------------------------------------------------------------------

def one(args: argparse.Namespace) -> dict:
    """One epoch of ``args.one``: images, seconds (and to the first batch), and what its cache did (the cache
    removed after)."""
    data, cache = prepare_paths(args)
    shutil.rmtree(cache, ignore_errors=True)
    start, first, cpu = time.perf_counter(), None, process_cpu()
    loader, stats = make(args, data, cache)
    images = rest = 0
    for batch in loader:
        images += len(batch[1])
        if first is None:
            first, rest = time.perf_counter() - start, -len(batch[1])
        rest += len(batch[1])
    seconds, cpu = time.perf_counter() - start, process_cpu() - cpu
    result = {"images": images, "seconds": seconds, "first_s": first, "steady": rest / (seconds - first),
              "cpu_s": cpu, **stats()}
    shutil.rmtree(cache, ignore_errors=True)
    return result


def process_cpu() -> float:
    """CPU seconds (user + system) this process's threads have used: the decode's, the fetches', the rest."""
    times = os.times()
    return times.user + times.system


def prepare_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    tag = f"{'tiny' if args.quick else 'imagenet'}-{args.classes}x{args.per_class}-{args.samples_per_shard}"
    cache = args.work / "cache" / f"{args.one.split()[0]}-{os.getpid()}"
    return args.work / tag, cache


def make(args: argparse.Namespace, data: Path, cache: Path) -> tuple[object, Callable[[], dict]]:
    """The loader of ``args.one`` and how to read its counters."""
    from imnet_data.loader import build_loader

    settings = {"backend": args.backend, "device": "cpu", "num_threads": args.threads,
                "image_size": args.image_size}
    if args.one == "local disk":
        loader = build_loader(data / "local", "train", args.batch, **settings)
        return loader, lambda: {"fetched_bytes": 0, "hits": None}
    if args.one == "S3 through the cache":
        loader = build_loader(f"s3://{BUCKET}/imagenet", "train", args.batch, cache=str(cache),
                              fetch_jobs=args.fetch_jobs, **settings)
        keep = ("fetched_bytes", "hits", "waited_s", "fetch_cpu_s")
        return loader, lambda: {k: v for k, v in loader.stats().items() if k in keep}
    return peer(args, cache), lambda: {"fetched_bytes": folder_bytes(cache), "hits": None}


def peer(args: argparse.Namespace, cache: Path):
    """litdata's or MosaicML's loader over the bucket, decoding as this loader's torch backend does."""
    import torch

    decode = PeerDecode(args.image_size)
    if args.one == "litdata StreamingDataset":
        import litdata
        import litdata.streaming.downloader

        # its obstore fetches cannot reach a plain-http endpoint (litdata builds the S3Store without allow_http:
        # "HTTP error: builder error"): its boto3 path, the one it takes where obstore is not installed
        litdata.streaming.downloader._OBSTORE_AVAILABLE = False
        dataset = litdata.StreamingDataset(f"s3://{BUCKET}/litdata", cache_dir=str(cache), shuffle=True,
                                           drop_last=True, transform=decode,
                                           storage_options={"endpoint_url": args.endpoint})
        return litdata.StreamingDataLoader(dataset, batch_size=args.batch, num_workers=args.threads,
                                           drop_last=True)
    from streaming import StreamingDataset

    os.environ["S3_ENDPOINT_URL"] = args.endpoint
    mds = StreamingDataset(remote=f"s3://{BUCKET}/mds", local=str(cache), shuffle=True, batch_size=args.batch)
    return torch.utils.data.DataLoader(Mapped(mds, decode), batch_size=args.batch, num_workers=args.threads,
                                       drop_last=True)


class PeerDecode:
    """A sample ``{"image": JPEG bytes, "label": int}`` to ``(float32 [3,H,W] normalised, label)``: the PIL
    RandomResizedCrop + flip of this loader's torch backend (:func:`imnet_data.loader.fallback.transform`)."""

    def __init__(self, size: int) -> None:
        from imnet_data.loader.base import LoaderOptions

        self.options = LoaderOptions(image_size=size)

    def __call__(self, item: dict):
        import numpy as np
        import torch

        from imnet_data.loader.base import MEAN, STD
        from imnet_data.loader.fallback import transform

        rgb = transform(np.frombuffer(item["image"], np.uint8), self.options, np.random.default_rng())
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)
        return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None], int(item["label"])


class Mapped(IterableDataset):
    """MosaicML's dataset with a transform (it is an IterableDataset: iterating it is what streams)."""

    def __init__(self, dataset, decode: PeerDecode) -> None:
        self.dataset, self.decode = dataset, decode

    def __iter__(self):
        return (self.decode(item) for item in self.dataset)


def server_cpu() -> float:
    """CPU seconds used so far by moto's server (a child of this process): on loopback it runs on the same
    cores as the loader it serves, which a real store does not."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and b"moto.server" in (stat.parent / "cmdline").read_bytes():
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


# ---- the driver ------------------------------------------------------------------------------------------------

def main() -> int:
    args = parse()
    if args.one:
        print(json.dumps(one(args)))
        return 0
    data = prepare(args)
    os.environ.update(KEYS)
    results: dict[str, list[tuple[float, dict]]] = {m: [] for m in METHODS}
    with moto_server(args.work / "moto.log") as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        upload(endpoint, data)
        for _ in range(args.repeat):
            for method in METHODS:
                if method in FORMAT and not (data / FORMAT[method] / "index.json").is_file():
                    continue
                cmd = [sys.executable, __file__, "--one", method, "--endpoint", endpoint, *passed(args)]
                try:
                    before = server_cpu()
                    rss, out = run_measured(cmd)
                except Exception as e:   # a peer that fails is reported, the rest still measured
                    print(f"{method}: failed: {getattr(e, 'stderr', e)}"[-3000:], flush=True)
                    continue
                results[method].append((rss / 1024, {**json.loads(out.strip().splitlines()[-1]),
                                                     "server_s": server_cpu() - before}))
    report(args, results)
    return 0


FORMAT = {"litdata StreamingDataset": "litdata", "MosaicML streaming": "mds"}


def passed(args: argparse.Namespace) -> list[str]:
    """The options a method's process needs."""
    out = ["--work", str(args.work), "--classes", str(args.classes), "--per-class", str(args.per_class),
           "--samples-per-shard", str(args.samples_per_shard), "--batch", str(args.batch), "--image-size",
           str(args.image_size), "--backend", args.backend, "--threads", str(args.threads),
           "--fetch-jobs", str(args.fetch_jobs)]
    return out + (["--quick"] if args.quick else [])


def report(args: argparse.Namespace, results: dict[str, list[tuple[float, dict]]]) -> None:
    """One line per method and run: img/s, the ratio its target names, bytes fetched, cache hits, CPU seconds
    (the method's process, this loader's fetch threads, moto's server), peak RSS; then :func:`cpu_costs`."""
    print(f"{os.cpu_count()} cores; batch {args.batch}, RandomResizedCrop {args.image_size} + flip, this loader: "
          f"{args.backend} on the CPU, {args.threads} threads; one epoch each, from an empty cache")
    print(f"{'method':<26} {'run':>3} {'images':>7} {'img/s':>7} {'after 1st':>9} {'ratio':>36} {'fetched MB':>10} "
          f"{'hits':>5} {'waited s':>8} {'1st batch s':>11} {'CPU s':>6} {'fetch CPU s':>11} {'server CPU s':>12} "
          f"{'peak RSS MB':>11}")
    for method, runs in results.items():
        if not runs:
            print(f"{method:<26} not measured (not installed, or failed: see above)")
        for i, (rss, r) in enumerate(runs):
            speed = r["images"] / r["seconds"]
            ratio = ""
            if method in TARGETS:
                against, target = TARGETS[method]
                other = results[against][i][1] if i < len(results[against]) else None   # the same repeat's
                if other is None or not speed:
                    pass
                elif method == METHODS[1]:
                    ratio = f"{speed * other['seconds'] / other['images']:.2f} ({r['steady'] / other['steady']:.2f}" \
                            " after 1st) of local"
                else:
                    ratio = f"ours {other['images'] / other['seconds'] / speed:.2f}x"
                ratio += f" (>={target})"
            hits = "" if r.get("hits") is None else str(r["hits"])
            waited = f"{r['waited_s']:.2f}" if "waited_s" in r else ""
            fetch = f"{r['fetch_cpu_s']:.2f}" if "fetch_cpu_s" in r else ""
            print(f"{method:<26} {i + 1:>3} {r['images']:>7} {speed:>7.0f} {r['steady']:>9.0f} {ratio:>36} "
                  f"{r['fetched_bytes'] / 1e6:>10.1f} {hits:>5} {waited:>8} {r['first_s']:>11.2f} "
                  f"{r['cpu_s']:>6.1f} {fetch:>11} {r['server_s']:>12.2f} {rss:>11.0f}")
    cpu_costs(results)


def cpu_costs(results: dict[str, list[tuple[float, dict]]]) -> None:
    """Per repeat, what S3 cost in CPU beside the local run: the loader's process (its fetch threads within it)
    and moto's server, both on the decode's cores here; and the whole-epoch ratio were moto's CPU not on them
    (an estimate: the S3 run's seconds less moto's CPU seconds spread over the cores)."""
    for i, ((_, s3), (_, local)) in enumerate(zip(results[METHODS[1]], results[METHODS[0]], strict=False)):
        local_speed, cores = local["images"] / local["seconds"], os.cpu_count() or 1
        without = s3["images"] / (s3["seconds"] - s3["server_s"] / cores) / local_speed
        print(f"run {i + 1}: S3 took {s3['cpu_s'] - local['cpu_s']:+.1f} CPU s over local in the loader's process "
              f"(its fetch threads {s3.get('fetch_cpu_s', float('nan')):.2f} s), moto {s3['server_s']:.2f} s; whole "
              f"epoch {s3['images'] / s3['seconds'] / local_speed:.2f} of local, {without:.2f} without moto's CPU on "
              f"these {cores} cores (estimate)")


if __name__ == "__main__":
    sys.exit(main())
