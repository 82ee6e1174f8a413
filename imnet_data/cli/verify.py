"""``imnet-data verify`` (check written shards against their manifests) and ``imnet-data preview`` (a PNG contact
sheet of shard samples): the two ways to look at shards already written."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _int, _splits, _workers, worked


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify DEST's shards and print the report; 1 when a problem was found."""
    from imnet_data.shards.verify import verify

    report = verify(args.dest, splits=args.splits, deep=args.deep, jobs=args.jobs, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_verify(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``verify``: DEST, the splits, ``--deep`` and the workers."""
    p = sub.add_parser(
        "verify", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="check written shards against their manifests (size, sha256, samples, classes; --deep: decode)",
        description="Check every shard listed in DEST/<split>/manifest.json, in parallel: the file is present "
                    "with its recorded size and sha256, the tar parses to its end (a truncated or corrupt tar is "
                    "reported, not fatal), the sample count and class histogram recomputed from the .cls members "
                    "match, and the DALI .idx is present with its recorded sha256. --deep also decodes every "
                    ".jpg fully and checks .cls against the .json label. Problems name split, shard and sample "
                    "key.\n\nExit status: 0 every shard sound, 1 a problem found (or DEST holds no manifest).",
        epilog="examples:\n  imnet-data verify /data/shards                  # all splits\n"
               "  imnet-data verify /data/shards --splits val --deep --jobs 16\n"
               "  imnet-data verify /data/shards/train --json     # one split folder"
               + worked(f"imnet-data verify {DEMO}/shards --deep"))
    p.add_argument("dest", type=Path, metavar="DEST", help="the shard output folder (holding <split>/manifest.json) "
                                                           "or one split folder")
    _splits(p, "comma-separated splits, e.g. train,val (default: every split with a manifest)")
    p.add_argument("--deep", action="store_true", help="also decode every image and compare .cls with .json")
    _workers(p)
    p.set_defaults(func=cmd_verify)


def cmd_preview(args: argparse.Namespace) -> int:
    """Write the contact sheet and say where, with its size in pixels."""
    from PIL import Image

    from imnet_data.shards.preview import preview

    out = preview(args.source, args.out, n=args.n, per_class=args.per_class, columns=args.columns)
    with Image.open(out) as img:
        size = img.size
    _emit(args, {"out": str(out), "width": size[0], "height": size[1]},
          f"wrote {out} ({size[0]}x{size[1]} px)")
    return 0


def add_preview(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``preview``: a shard or split folder, the PNG to write, how many cells and columns."""
    p = sub.add_parser(
        "preview", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a PNG contact sheet of shard samples with their class index and name",
        description="Read samples from one shard .tar, or from a split folder's shards in manifest order, and "
                    "write a PNG grid of 160 px cells, each captioned with the class index and name (from the "
                    "sample's .json). --per-class: the first sample of each class met, until N classes, sorted "
                    "by class index. The same input gives the same PNG bytes.",
        epilog="examples:\n  imnet-data preview /data/shards/val --out val.png\n"
               "  imnet-data preview /data/shards/train/imagenet-1k-train-000000.tar --out s.png --n 64\n"
               "  imnet-data preview /data/shards/train --out classes.png --per-class --n 100 --columns 10"
               + worked(f"imnet-data preview {DEMO}/shards/val --out {DEMO}/val.png --per-class"))
    p.add_argument("source", type=Path, metavar="SHARD_OR_FOLDER", help="a shard .tar or a split folder")
    p.add_argument("--out", type=Path, required=True, metavar="PNG", help="the contact sheet to write")
    p.add_argument("--n", type=_int(1), default=16, help="samples (with --per-class: classes) to show (default 16)")
    p.add_argument("--per-class", action="store_true", help="one cell per class: its first sample")
    p.add_argument("--columns", type=_int(1), metavar="C", help="grid columns (default: a near-square grid)")
    p.set_defaults(func=cmd_preview)
