"""``imnet-data upload``: upload shards on disk to an object store (s3://, gs://), checked and resumable."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _int, _jobs, _positive_float, _splits, worked


def cmd_upload(args: argparse.Namespace) -> int:
    """Upload DEST's shards to URL and print the report; 1 when some failed."""
    from imnet_data.shards.publish import upload

    report = upload(args.dest, args.url, splits=args.splits, jobs=args.jobs, verify=args.verify,
                    overwrite=args.overwrite, retries=args.retries, timeout=(10.0, args.timeout))
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_upload(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``upload``: DEST and URL, the splits, the parallel uploads, and the checks and retries."""
    p = sub.add_parser(
        "upload", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="upload shards on disk to an object store (s3://, gs://), checked and resumable",
        description="Upload every split of the shard output folder DEST (or one split folder) to URL/<split>/: "
                    "the plan, each shard and its .idx and record (multipart for large files, each checked "
                    "after it lands: size and sha256), then wids.json and, last, manifest.json and URL/_info.json "
                    "and the dataset card, so a reader never sees a manifest naming an incomplete object. "
                    "Objects already there with the right size and sha256 are skipped: re-run to finish. A "
                    "prefix holding shards of another plan is refused (--overwrite replaces them). Credentials "
                    "and endpoint as the AWS CLI reads them (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL); "
                    "pip install 'imnet-data[s3]'.\n\nExit status: 0 every shard up, 1 some failed.",
        epilog="examples:\n  imnet-data upload /data/shards s3://my-bucket/imagenet --jobs 8\n"
               "  AWS_ENDPOINT_URL=http://minio:9000 imnet-data upload /data/shards s3://datasets/imagenet\n"
               "  imnet-data upload /data/shards gs://my-bucket/imagenet --splits val --json"
               + worked(f"AWS_ENDPOINT_URL=http://127.0.0.1:9000 imnet-data upload {DEMO}/shards s3://imnet-demo/shards"
                        "    # a MinIO on port 9000 with a bucket imnet-demo"))
    p.add_argument("dest", type=Path, metavar="DEST", help="the shard output folder (or one split folder)")
    p.add_argument("url", metavar="URL", help="s3://bucket/prefix or gs://bucket/prefix")
    _splits(p, "comma-separated splits (default: all in DEST)")
    _jobs(p, 4, "parallel uploads (default 4; 0: one per core)")
    p.add_argument("--verify", action="store_true", help="read back objects already there and check their sha256")
    p.add_argument("--overwrite", action="store_true", help="replace another plan's shards under URL")
    p.add_argument("--retries", type=_int(0), default=5, help="retries per request after transient errors (a "
                   "part of a large upload alone; default 5)")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="S",
                   help="seconds without an answer before a request is retried (default 60)")
    p.set_defaults(func=cmd_upload)
