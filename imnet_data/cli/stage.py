"""``imnet-data stage``: copy shards (all, or this node's) to local disk from a folder, http(s) or an object store,
checked and resumable."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _int, _jobs, _nodes, _positive_float, _size, _splits, worked
from imnet_data.errors import UsageError


def cmd_stage(args: argparse.Namespace) -> int:
    """Stage the selected shards (``--ranks``, ``--all``, else this node's by SLURM/torchrun or the options)
    and print the report; 1 when some failed."""
    from imnet_data.cluster import node_of
    from imnet_data.stage import node_selection, parse_ranks, stage

    if args.ranks is not None:
        if not args.world_size:
            raise UsageError("--ranks needs --world-size")
        ranks, world = parse_ranks(args.ranks), args.world_size
    elif args.all:
        ranks, world = None, None
    else:
        ranks, world = node_selection(*node_of(args.node_rank, args.num_nodes), args.world_size)
    report = stage(args.source, args.dest, splits=args.splits, manifest=args.manifest, ranks=ranks, world_size=world,
                   jobs=args.jobs, verify=args.verify, link=args.link, max_rate=args.max_rate, retries=args.retries,
                   timeout=(10.0, args.timeout), fsync=args.fsync, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_stage(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``stage``: SOURCE and DEST, the splits and manifest, which ranks' shards, and the transfer
    settings."""
    p = sub.add_parser(
        "stage", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="copy shards (all, or this node's) to local disk from a folder, http(s) or s3:// URL, checked, resumable",
        description="Copy the shards listed in the source's manifest.json (and their DALI .idx) into "
                    "DEST/<split>/, then wids.json and, last, the manifest, so DEST/<split> is ready for the "
                    "loader. SOURCE: a split folder or URL (holding manifest.json) or the shard root (holding "
                    "<split>/manifest.json; every split, or --splits): a folder, http(s)://, or an object store "
                    "(s3://bucket/prefix, gs://bucket/prefix; pip install 'imnet-data[s3]'; credentials and "
                    "endpoint as the AWS CLI reads them: AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL; "
                    "anonymous when none are set). Files stream to <name>.partial with their "
                    "sha256 checked on the fly and are renamed when size and sha256 match; connection errors, "
                    "timeouts, 5xx and checksum mismatches are retried with backoff, an interrupted download "
                    "resumes with a Range request, 404/403 (NoSuchKey, NoSuchBucket) fail at once. Present files "
                    "of the right size "
                    "(--verify: and sha256) are skipped: re-run to finish. Only this node's shards: --node-rank/"
                    "--num-nodes (default: SLURM or torchrun variables, else all) or --ranks/--world-size, by "
                    "the loader's own assignment.\n\nExit status: 0 every selected shard staged, 1 some failed.",
        epilog="examples:\n  imnet-data stage http://store:8080/shards /local/shards --jobs 8\n"
               "  imnet-data stage /nfs/shards/train /local/shards --node-rank 3 --num-nodes 8\n"
               "  imnet-data stage http://store/shards/train /local/shards --ranks 0-7 --world-size 64\n"
               "  srun --ntasks-per-node=1 imnet-data stage http://store/shards /local/shards --splits train\n"
               "  imnet-data stage /data/shards /scratch/shards --link            # same machine: no copy\n"
               "  imnet-data stage s3://my-bucket/imagenet /local/shards --jobs 8\n"
               "  imnet-data stage http://store/shards /local/shards --max-rate 200MB --verify --json"
               + worked(f"imnet-data stage {DEMO}/shards {DEMO}/staged --node-rank 0 --num-nodes 2"))
    p.add_argument("source", metavar="SOURCE", help="a folder, http(s):// or s3:// / gs:// URL: a split folder or "
                                                     "the shard root")
    p.add_argument("dest", type=Path, metavar="DEST", help="local shard root (files go to DEST/<split>/)")
    _splits(p, "comma-separated splits of a shard root (default: all it lists)")
    p.add_argument("--manifest", metavar="PATH|URL", help="the manifest to follow (default: SOURCE's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true", help="every shard, whatever the SLURM/torchrun variables say")
    g.add_argument("--ranks", metavar="LIST", help="only the shards these ranks read, e.g. 0-7 (with --world-size)")
    p.add_argument("--world-size", type=_int(1), metavar="W", help="ranks in the training job")
    _nodes(p, "nodes in the job (default: from SLURM/torchrun, else 1)")
    _jobs(p, 4, "parallel transfers (default 4; 0: one per core)")
    p.add_argument("--verify", action="store_true", help="also check the sha256 of files already present")
    p.add_argument("--link", action="store_true", help="filesystem source on this machine: hard-link (across "
                                                       "filesystems: symlink) instead of copying")
    p.add_argument("--max-rate", type=_size, metavar="SIZE", help="bytes/s over all transfers, with its unit, "
                                                                   "e.g. 200MB (a bare number is refused)")
    p.add_argument("--retries", type=_int(0), default=5, help="retries per file after transient errors (default 5)")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="S",
                   help="seconds without data before a read is retried (default 60)")
    p.add_argument("--fsync", action="store_true", help="flush each file to disk before its rename (slower)")
    p.set_defaults(func=cmd_stage)
