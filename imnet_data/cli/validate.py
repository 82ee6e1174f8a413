"""``imnet-data validate``: check that a download is complete and sound; exit 1 when something is missing or
damaged."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _layout, _workers, worked


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate SRC (``--report``: also save the report as JSON, never inside SRC) and print the report."""
    from imnet_data import validate
    from imnet_data.paths import check_apart

    if args.report:
        check_apart(args.src, args.report, "--report")
    report = validate.validate(args.src, layout=args.layout, expect=args.expect, checksums=not args.skip_checksums,
                               deep=args.deep, jobs=args.jobs, quiet=args.quiet)
    if args.report:
        report.save(args.report)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_validate(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``validate``: SRC, what to check it against, how deep, the workers and ``--report``."""
    p = sub.add_parser(
        "validate", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="check that a download is complete and sound (counts, checksums; --deep: every image decodes)",
        description="Check a download against the real set (--expect official: archive sizes and md5s, the 1000 "
                    "class tars, per-class counts, 50,000 val images with their labels, the devkit) or against "
                    "its own metadata (--expect self: subsets and fakes). Counting reads archive headers only; "
                    "--deep also decodes every image in parallel and finds empty, truncated, undecodable, CMYK, "
                    "grayscale, non-JPEG, extreme-size and duplicate files.\n\nExit status: 0 sound (warnings "
                    "and the real set's known quirks allowed), 1 something missing or damaged, 2 usage error.",
        epilog="examples:\n  imnet-data validate /data/downloads                    # counts + md5s\n"
               "  imnet-data validate /data/downloads --skip-checksums --deep --report check.json\n"
               "  imnet-data validate /tmp/fake --expect self --deep --json  # a fake or a subset"
               + worked(f"imnet-data validate {DEMO}/organized --expect self --deep"))
    p.add_argument("src", type=Path, metavar="SRC", help="the download: folder of the official archives, extracted "
                                                         "folders, Kaggle, ImageNet-21k or Tiny ImageNet")
    _layout(p)
    p.add_argument("--expect", choices=["official", "self"], default="official",
                   help="check against the real set (default) or against the download's own metadata")
    p.add_argument("--skip-checksums", action="store_true", help="do not hash the archives")
    p.add_argument("--deep", action="store_true", help="also decode every image (in parallel)")
    _workers(p)
    p.add_argument("--report", type=Path, metavar="FILE", help="also write the full report as JSON to FILE")
    p.set_defaults(func=cmd_validate)
