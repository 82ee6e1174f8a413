"""Peak memory of the train loader against the same loader at an earlier commit (the baseline, default e415f9c:
before its peak RSS doubled, issue 24), same shards, same run.

Each loader reads one epoch of the train split in a process of its own (``--backend dali`` on the CPU and
``torch``: batch ``--batch``, RandomResizedCrop 224 + flip, ``--threads`` threads or workers) and its peak RSS is
read from the kernel (the largest process, reaped workers included). The baseline's code is ``git archive``'d
into a temporary folder and put first on ``PYTHONPATH``; the working tree's is the other. The shards are
``--shards`` (a split folder), else a fake made once in ``--work`` (``--classes`` x ``--per-class`` imagenet-profile
photographs, ~120 kB each, sharded with the default shard size: ~1.4 GB for 12,000). The mapped shards count in RSS
for the pages the batches in flight touched (see ``imnet_data.loader.mapping``); the rest is the decoders' own.

    python tools/bench_loader_rss.py                        # 12,000 images, both backends, e415f9c vs now
    python tools/bench_loader_rss.py --shards /data/shards/train --baseline e415f9c --repeat 2
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from imnet_data.bench.measure import run_measured

ROOT = Path(__file__).resolve().parent.parent
EPOCH = """
import sys, time
import imnet_data
from imnet_data.loader import build_loader
backend, source, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
loader = build_loader(source, "train", batch, backend=backend, device="cpu", num_threads=threads, image_size=224)
start, images = time.perf_counter(), 0
for _, labels in loader:
    images += len(labels)
print(imnet_data.__file__, images / (time.perf_counter() - start))
"""


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default="e415f9c", help="the commit to compare with (default e415f9c)")
    p.add_argument("--shards", type=Path, help="a train split folder of shards (default: a fake in --work)")
    p.add_argument("--work", type=Path, default=Path("/tmp/imnet-bench/rss"))
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--per-class", type=int, default=120)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    return p.parse_args()


def shards(args: argparse.Namespace) -> Path:
    """The train split to read: ``--shards``, else the fake's (made once)."""
    if args.shards:
        return args.shards
    from imnet_data.fake import FakeOptions, make_fake
    from imnet_data.shards import ShardOptions, shard

    out = args.work / f"shards-{args.classes}x{args.per_class}"
    if not (out / "train" / "manifest.json").is_file():
        print(f"making {args.classes} x {args.per_class} imagenet-profile images in {args.work} (once)", flush=True)
        fake = make_fake(args.work / f"src-{args.classes}x{args.per_class}",
                         FakeOptions(classes=args.classes, train_per_class=args.per_class, val_images=args.classes,
                                     profile="imagenet"), quiet=True)
        shard(fake.out, out, ShardOptions(), quiet=True)
    return out / "train"


def main() -> int:
    args = parse()
    split = shards(args)
    size = sum(p.stat().st_size for p in split.glob("*.tar"))
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {args.baseline: tmp, "working tree": str(ROOT)}
        print(f"{split}: {size / 1e9:.2f} GB of shards; batch {args.batch}, {args.threads} threads, one epoch; "
              f"{os.cpu_count()} cores")
        print(f"{'backend':<7} {'code':<14} {'run':>3} {'peak RSS MB':>11} {'ratio':>6} {'img/s':>6}")
        for run in range(args.repeat):
            for backend in ("dali", "torch"):
                base = None
                for name, tree in trees.items():
                    os.environ["PYTHONPATH"] = tree
                    rss, out = run_measured([sys.executable, "-c", EPOCH, backend, str(split), str(args.batch),
                                             str(args.threads)])
                    path, speed = out.split()[-2:]
                    if not path.startswith(tree):
                        raise SystemExit(f"{name}: imported {path}, not the code of {tree}")
                    base = base or rss
                    print(f"{backend:<7} {name:<14} {run + 1:>3} {rss / 1024:>11.0f} {rss / base:>6.2f} "
                          f"{float(speed):>6.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
