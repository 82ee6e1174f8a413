"""``imnet-data shard``: write WebDataset shards (+ DALI indexes, manifests) from a download, to a folder or an
object-store prefix; and ``shard --merge``, the manifests after a multi-node run."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import (
    DEMO,
    Subparsers,
    _classes,
    _corruptions,
    _emit,
    _int,
    _label_space,
    _layout,
    _nodes,
    _size,
    _splits,
    _workers,
    worked,
)
from imnet_data.errors import UsageError


def cmd_shard(args: argparse.Namespace) -> int:
    """Shard SRC into DEST (this node's part of it with ``--num-nodes``), or with ``--merge`` check every
    node's shards and write the manifests; print the report."""
    from imnet_data import organize, shards, variants
    from imnet_data.cluster import node_of

    if args.merge:
        if len(args.paths) != 1:
            raise UsageError("--merge takes one path: the shard output folder or s3:// prefix DEST")
        manifests = shards.merge(args.paths[0], args.splits, check_sha256=args.verify)
        _emit(args, [{k: m[k] for k in ("split", "pattern", "num_samples", "num_bytes")} for m in manifests],
              "\n".join(f"{m['split']}: {m['num_samples']:,} samples, {len(m['shards'])} shards, manifest "
                        f"written ({m['pattern']})" for m in manifests))
        return 0
    if len(args.paths) != 2:
        raise UsageError("expected SRC DEST (or --merge DEST)")
    rank, count = node_of(args.node_rank, args.num_nodes)
    named = variants.variants().get(args.classes or "")   # a 21k variant: its classes, val split and resize
    classes = tuple(sorted(organize.parse_classes(args.classes))) if args.classes and not named else None
    options = shards.ShardOptions(
        name=args.name, seed=args.seed, shuffle=args.shuffle, samples_per_shard=args.samples_per_shard,
        shard_size=args.shard_size, max_size=args.max_size, short_side=args.short_side, quality=args.quality,
        classes=classes, subset=args.subset, fix=not args.no_fix, label_space=args.label_space,
        variant=named.name if named else None, squish=named.resize if named else None)
    splits = args.splits
    if args.corruptions or args.severities:
        from imnet_data.sources import imagenet_c, open_source
        splits = imagenet_c.selected_splits(open_source(Path(args.paths[0]), args.layout), args.corruptions,
                                            args.severities, splits)
    report = shards.shard(Path(args.paths[0]), args.paths[1], options, layout=args.layout, splits=splits,
                          jobs=args.jobs, node_rank=rank, num_nodes=count, overwrite=args.overwrite,
                          work=args.work, retries=args.retries, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_shard(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``shard``: SRC DEST (or ``--merge`` DEST), the shards' form (size, resize, quality), the
    selection (layout, splits, classes, subset), the nodes, the workers and the object-store options."""
    p = sub.add_parser(
        "shard", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write WebDataset shards (+ DALI indexes, manifest) straight from the download",
        description="Write DEST/<split>/<name>-<split>-%06d.tar WebDataset shards (<key>.jpg, .cls, .json) from "
                    "any download layout, read in place. Train is shuffled across the whole split with --seed; "
                    "val keeps file order. The plan (sample -> shard) is computed first and stored as "
                    "plan.json.gz; each shard gets a DALI index (.idx); manifest.json, wids.json and "
                    "DEST/_info.json are written last. Same source and options give byte-identical output. "
                    "Re-run to resume. Multi-node: --num-nodes/--node-rank (or SLURM / torchrun variables) "
                    "on every node, then 'imnet-data shard --merge DEST' once.\n\nDEST may be an object-store "
                    "prefix (s3://bucket/prefix, gs://bucket/prefix; pip install 'imnet-data[s3]'): each shard is "
                    "written into a local work folder (--work), uploaded and checked (size, sha256) while the "
                    "next ones are written, then removed locally; the manifest is written last. Credentials and "
                    "endpoint as the AWS CLI reads them (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL).",
        epilog="examples:\n  imnet-data shard /data/downloads /data/shards --jobs 8\n"
               "  imnet-data shard /data/downloads /data/shards-160 --short-side 160 --quality 90\n"
               "  imnet-data shard /data/downloads /data/sub --subset 10percent --splits train\n"
               "  imnet-data shard /data/fall11 /data/in12k --classes imagenet-12k --jobs 16\n"
               "  sbatch --array=0-3 --wrap 'imnet-data shard /data/downloads /data/shards'\n"
               "  imnet-data shard --merge /data/shards    # once, after every array task is done\n"
               "  imnet-data shard /data/downloads s3://my-bucket/imagenet --work /scratch/work"
               + worked(f"imnet-data shard {DEMO}/organized {DEMO}/shards-64 --short-side 64 --samples-per-shard 16"))
    p.add_argument("paths", nargs="+", metavar="SRC DEST", help="the download and the output folder or s3:// / gs:// "
                                                                "prefix (with --merge: only DEST)")
    p.add_argument("--merge", action="store_true", help="after a multi-node run: check all shards, write manifests")
    p.add_argument("--verify", action="store_true", help="with --merge: also recompute every shard's sha256")
    _layout(p)
    _splits(p)
    _corruptions(p)
    p.add_argument("--name", help="shard file prefix (default imagenet-1k; tiny-imagenet-200, imagenet-21k)")
    p.add_argument("--seed", type=_int(0), default=0, help="shuffle seed (default 0)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="shuffle across the split (default: train yes, val no)")
    p.add_argument("--samples-per-shard", type=_int(1), metavar="N",
                   help="samples per shard (default: by --shard-size)")
    p.add_argument("--shard-size", type=_size, default=10**9, metavar="SIZE",
                   help="target shard size with its unit, e.g. 500MB, 1GB, 2GiB (default 1GB; a bare number is "
                        "refused; shards get near-equal sample counts)")
    p.add_argument("--max-size", type=_int(1), metavar="PX", help="shrink so the longer side is at most PX")
    p.add_argument("--short-side", type=_int(1), metavar="PX", help="shrink so the shorter side is at most PX")
    p.add_argument("--quality", type=_int(1, 100), metavar="Q",
                   help="JPEG quality of re-encodes (default 90 with a resize; alone: re-encode every image)")
    _classes(p, "only these classes: WNIDs, a file of WNIDs, or imagenet-a, imagenet-r, tiny-imagenet; or an "
                "ImageNet-21k variant: imagenet-12k, imagenet-22k (fall11), imagenet-21k-p (winter21): its classes, "
                "label space, val split held out of train and (21k-p) resize")
    p.add_argument("--subset", metavar="NAME|FILE", help="train subset: 1percent, 10percent, or a file of train "
                                                          "file names (val is kept whole)")
    _label_space(p)
    p.add_argument("--no-fix", action="store_true", help="keep CMYK JPEGs and the PNG as they are (default: "
                                                         "re-encode them to RGB JPEG q95)")
    _nodes(p, "nodes sharing the work (default: from SLURM/torchrun, else 1)")
    p.add_argument("--overwrite", action="store_true", help="replace shards of a different earlier plan in DEST")
    _workers(p)
    p.add_argument("--work", type=Path, metavar="DIR", help="object-store DEST: local folder shards are written "
                   "into before upload (default: one in the temp dir named after DEST; holds a few shards at a time)")
    p.add_argument("--retries", type=_int(0), default=5, help="object-store DEST: retries per request after "
                   "transient errors (a part of a large upload alone; default 5)")
    p.set_defaults(func=cmd_shard)
