"""``imnet-data bench``: the loader's images/s against plain DALI, decode alone, PIL and ImageFolder, in one run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _int, worked


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark on DEST's shards (progress on stderr unless ``--quiet``) and print the table."""
    from imnet_data.bench.run import bench

    report = bench(args.dest, backend=args.backend, device=args.device, batch_size=args.batch_size,
                   image_size=args.image_size, batches=args.batches, num_threads=args.threads,
                   imagefolder=args.imagefolder, workers=args.workers, model=args.model, model_steps=args.steps,
                   host_only=args.host_only,
                   progress=(lambda s: None) if args.quiet else (lambda s: print(f"... {s}", file=sys.stderr)))
    _emit(args, report.as_dict(), report.render())
    return 0


def add_bench(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``bench``: the shards, the loader's settings, and the optional baselines (ImageFolder, a model,
    ``--host-only``)."""
    p = sub.add_parser(
        "bench", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="loader images/s vs plain DALI, DALI decode alone, PIL decode and torchvision ImageFolder, in one run",
        description="Measure on the same shards in one run: the loader's train and val pipelines, plain DALI "
                    "(readers.webdataset + DALI's defaults, the pipeline written by hand), DALI decode "
                    "alone (hardware and CUDA decoder on a GPU; CPU decoder otherwise), PIL decode on all cores, "
                    "and with --imagefolder torchvision ImageFolder + DataLoader on an organized copy. --model adds "
                    "end to end: training steps fed by the loader and by plain DALI vs on one GPU-resident batch. "
                    "--host-only: the host path alone vs DALI's reader. Prints images/s, CPU cores busy, GPU "
                    "memory and the ratios.",
        epilog="examples:\n  imnet-data bench /data/shards\n"
               "  imnet-data bench /data/shards --imagefolder /data/imagenet --workers 16\n"
               "  imnet-data bench /data/shards --model resnet50 --steps 200\n"
               "  imnet-data bench /data/shards --backend torch --device cpu --batch-size 64\n"
               "  imnet-data bench /data/shards --host-only           # the host side vs DALI's own reader"
               + worked(f"imnet-data bench {DEMO}/shards --device cpu --batch-size 8 --batches 3"))
    p.add_argument("dest", type=Path, help="shard output folder (holding train/ and/or val/ with manifest.json)")
    p.add_argument("--backend", choices=["dali", "torch"], default="dali", help="loader backend (default dali)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when a GPU is visible, else cpu")
    p.add_argument("--batch-size", type=_int(1), default=256, help="default 256")
    p.add_argument("--image-size", type=_int(1), default=224, help="default 224")
    p.add_argument("--batches", type=_int(1), default=50, help="timed batches per pipeline (default 50)")
    p.add_argument("--threads", type=_int(1), help="loader CPU threads (default: all cores)")
    p.add_argument("--imagefolder", type=Path, metavar="DIR", help="organized copy (DIR/train/<wnid>/) for the "
                                                                   "torchvision ImageFolder baseline")
    p.add_argument("--workers", type=_int(0), help="ImageFolder DataLoader workers (default: all cores)")
    p.add_argument("--model", metavar="NAME", help="end to end with a torchvision model, e.g. resnet50 (GPU)")
    p.add_argument("--steps", type=_int(1), default=100, help="timed training steps with --model (default 100)")
    p.add_argument("--host-only", action="store_true",
                   help="only the host path (schedule, reads by index, batches handed to DALI, JPEG headers parsed; "
                        "no decode) vs DALI's readers.webdataset doing the same, at 1, 2, 4, ... threads up to all "
                        "cores (or --threads)")
    p.set_defaults(func=cmd_bench)
