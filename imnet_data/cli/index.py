"""``imnet-data index``: adopt WebDataset shards another tool wrote (timm's ``imagenet-1k-wds``): DALI indexes,
manifests and the rest beside them, not a byte of the tars changed."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data import catalog
from imnet_data.cli.shared import DEMO, Subparsers, _emit, _jobs, worked


def cmd_index(args: argparse.Namespace) -> int:
    """Index DEST's shards and print the report; 1 when a shard is not what it claims."""
    from imnet_data.shards.adopt import adopt

    report = adopt(args.dest, label_space=args.label_space, jobs=args.jobs, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_index(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``index``: DEST, the label space, the workers."""
    p = sub.add_parser(
        "index", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="adopt WebDataset shards written elsewhere (timm's imagenet-1k-wds): .idx, manifest, wids, _info.json",
        description="Read every shard in DEST (DEST/<split>/*.tar, or flat <name>-<split>-<n>.tar as timm's "
                    "imagenet-1k-wds has them: those get DEST/<split>/ folders of hard links, validation as val) "
                    "and write beside them what imnet-data's own shards carry: a DALI .idx per shard, and per "
                    "split manifest.json (sha256, counts, class histogram), wids.json, then _info.json (timm's "
                    "kept, the split merged in) and the dataset card. The tars are never modified. Each sample "
                    "needs an image (.jpg/.jpeg/.webp/.png) and a label (.cls, else .json label) in the label "
                    "space, one key once per split; a shard that is not what it claims is named with its member "
                    "and its split gets no manifest.\n\nExit status: 0 indexed, 1 a shard refused, 2 DEST holds "
                    "no shards.",
        epilog="examples:\n  imnet-data index /data/imagenet-1k-wds          # timm's shards, flat\n"
               "  imnet-data verify /data/imagenet-1k-wds && imnet-data preview /data/imagenet-1k-wds/val "
               "--out v.png"
               + worked(f"mkdir -p {DEMO}/wds && cp {DEMO}/shards/val/*.tar {DEMO}/wds/ && "
                        f"imnet-data index {DEMO}/wds"))
    p.add_argument("dest", type=Path, metavar="DEST", help="the folder holding the shards")
    p.add_argument("--label-space", choices=list(catalog.LABEL_SPACES), default="imagenet-1k", metavar="NAME",
                   help="the class index the labels are in (default imagenet-1k: 0..999 sorted-WNID, as timm's)")
    _jobs(p, 0, "shards read in parallel (default 0: one per core)")
    p.set_defaults(func=cmd_index)
