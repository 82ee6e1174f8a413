"""Benchmark the two new sources against what users do today, on the same data in the same run.

1. parquet -> shards (the hub copy as parquet, ``fake --layout hf-parquet``, train split):
   (a) ``imnet-data shard PARQUET OUT --splits train`` (streamed twice, scattered, globally shuffled, .idx and
       manifest, every image byte copied through);
   (b) the way a user does it today: ``datasets.load_dataset("parquet", data_files=...)`` (its Arrow cache
       built first, in a fresh cache folder), then every example written with webdataset's ``ShardWriter``
       (``{"__key__", "jpg": example["image"], "cls": example["label"]}``: the image decoded by ``datasets`` and
       encoded again by webdataset, as the default features make it happen);
   (c) the same with the image column cast to ``Image(decode=False)`` (its bytes written as they are), the
       careful user's version.
   Ratio: (b) and (c) time over (a)'s (goal: (a) >= 3x (b)). Peak RSS of each run's largest process, and the
   largest row group (the bound of what one worker holds).
2. ``imnet-data index`` on timm-style shards (the shards of 1(a) with timm's flat names, linked ``--copies``
   times as as many splits) vs DALI's ``wds2idx``
   over the same tars, one process per tar, as many at once as ``index`` uses (and one after another); index
   also hashes every byte and checks every sample. Ratio: wds2idx's time over index's (goal >= 1).

    python tools/bench_sources.py                          # ~8 MB fake, tiny images
    python tools/bench_sources.py --profile imagenet --classes 20 --per-class 100 --repeat 2
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imnet_data.bench.measure import run_measured

USER_SCRIPT = r"""
import sys, datasets, webdataset as wds
files, out, cache, decode = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=cache)
if not decode:
    ds = ds.cast_column("image", datasets.Image(decode=False))
with wds.ShardWriter(out + "/train-%06d.tar", maxsize=int(sys.argv[5])) as sink:
    for i, ex in enumerate(ds):
        image = ex["image"] if decode else ex["image"]["bytes"]
        sink.write({"__key__": "%08d" % i, "jpg": image, "cls": ex["label"]})
"""


def run(cmd: list[str]) -> tuple[float, int]:
    """Seconds and peak RSS (MiB) of ``cmd``."""
    start = time.perf_counter()
    rss, _ = run_measured(cmd)
    return time.perf_counter() - start, rss // 1024


def best(cmd: list[str], out: Path, repeat: int) -> tuple[float, int]:
    """The best time (and its peak RSS) of ``repeat`` runs of ``cmd``, ``out`` removed before each."""
    runs = []
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        runs.append(run(cmd))
    return min(runs)


def wds2idx_all(tool: str, tars: list[Path], out: Path, jobs: int) -> float:
    """Seconds for DALI's ``wds2idx`` over every tar, ``jobs`` at once."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda t: subprocess.run([tool, str(t), str(out / (t.stem + ".idx"))], check=True,
                                               capture_output=True), tars))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imnet-bench-sources")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--profile", choices=["tiny", "imagenet"], default="tiny")
    parser.add_argument("--shard-size", default="2MB")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--copies", type=int, default=12, help="index: the shards linked as this many splits")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "imnet_data"]
    src = args.work / f"parquet-{args.profile}-{args.classes}x{args.per_class}"
    if not src.is_dir():
        subprocess.run([*cli, "fake", str(src), "--layout", "hf-parquet", "--classes", str(args.classes),
                        "--train-per-class", str(args.per_class), "--val-images", "0", "--profile", args.profile,
                        "--quiet"], check=True)
    files = sorted((src / "data").glob("train-*.parquet"))
    size = sum(p.stat().st_size for p in files)
    for path in files:   # every method reads them from the page cache alike
        path.read_bytes()
    import pyarrow.parquet as pq

    biggest = max(pq.ParquetFile(p).metadata.row_group(g).total_byte_size
                  for p in files for g in range(pq.ParquetFile(p).metadata.num_row_groups))
    images = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    limit = str(int(float(args.shard_size.rstrip("MB")) * 1e6))
    out = args.work / "out"
    ours = best([*cli, "shard", str(src), str(out / "ours"), "--splits", "train", "--shard-size", args.shard_size,
                 "--jobs", str(args.jobs), "--quiet"], out / "ours", args.repeat)
    user = {}
    for decode in ("1", "0"):
        cache = out / f"cache-{decode}"
        user[decode] = best([sys.executable, "-c", USER_SCRIPT, ",".join(map(str, files)), str(out / f"user-{decode}"),
                             str(cache), decode, limit], out / f"user-{decode}", args.repeat)
        shutil.rmtree(cache, ignore_errors=True)
    print(f"parquet -> shards: {images:,} images, {size / 1e6:,.1f} MB in {len(files)} files, largest row group "
          f"{biggest / 1e6:,.1f} MB; best of {args.repeat}; machine: {os.cpu_count()} cores")
    rows = [("imnet-data shard", ours), ("datasets + ShardWriter (decoded, re-encoded)", user["1"]),
            ("datasets + ShardWriter (decode=False)", user["0"])]
    for name, (seconds, rss) in rows:
        print(f"  {name:<46} {seconds:7.2f} s  {images / seconds:9,.0f} img/s  peak RSS {rss:6,} MiB  "
              f"ratio {seconds / ours[0]:5.2f}x of shard's time")
    print(f"  shard vs datasets + ShardWriter: {user['1'][0] / ours[0]:.2f}x (goal >= 3x); vs decode=False: "
          f"{user['0'][0] / ours[0]:.2f}x")

    flat = out / "timm"
    tars = sorted((out / "ours" / "train").glob("*.tar"))
    tool = shutil.which("wds2idx") or str(Path(sys.executable).parent / "wds2idx")
    timings = []
    for _ in range(args.repeat):
        shutil.rmtree(flat, ignore_errors=True)
        flat.mkdir()
        for copy in range(args.copies):   # each copy a split of its own (one key once per split)
            for i, tar in enumerate(tars):
                os.link(tar, flat / f"imagenet1k-train{copy}-{i:04d}.tar")
        start = time.perf_counter()
        subprocess.run([*cli, "index", str(flat), "--jobs", str(args.jobs), "--quiet"], check=True,
                       capture_output=True)
        index_s = time.perf_counter() - start
        every = sorted(flat.glob("*.tar"))
        timings.append((index_s, wds2idx_all(tool, every, out / "idx-par", args.jobs),
                        wds2idx_all(tool, every, out / "idx-seq", 1)))
    index_s, par, seq = (min(t[i] for t in timings) for i in range(3))
    total = sum(t.stat().st_size for t in tars) * args.copies
    print(f"index vs wds2idx: {len(tars) * args.copies} tars, {total / 1e6:,.1f} MB; best of {args.repeat}")
    print(f"  imnet-data index (--jobs {args.jobs}, hashes too) {index_s:7.2f} s")
    print(f"  wds2idx, {args.jobs} at once                     {par:7.2f} s  ratio {par / index_s:5.2f}x "
          "(goal >= 1x)")
    print(f"  wds2idx, one after another            {seq:7.2f} s  ratio {seq / index_s:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
