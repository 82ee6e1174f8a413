"""``imnet-data report``: one self-contained HTML page about a shard set (counts, classes, image sizes, the
problems found and what was done, contact sheets, label space, provenance), from what the tool already wrote."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _int, _splits, worked


def cmd_report(args: argparse.Namespace) -> int:
    """Write the page and say where, with what it covers."""
    from imnet_data.report_html import write_report

    report = write_report(args.dest, args.out, validate_report=args.validate_report,
                          organize_report=args.organize_report, splits=args.splits, max_samples=args.samples,
                          sheet=args.sheet, thumbnails=args.thumbnails, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0


def add_report(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``report``: DEST, the page to write, the reports of validate and organize, how much to read and draw."""
    p = sub.add_parser(
        "report", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write one self-contained HTML page about a shard set (counts, classes, sizes, problems, provenance)",
        description="Write one HTML file (no script, no network: charts as inline SVG, images inline) from what "
                    "the tool already wrote: per split counts and bytes (manifests), the class histogram with the "
                    "smallest and largest classes named, distributions of image width, height, aspect ratio "
                    "(sample .json) and file size (.idx), every problem validate found with what was done about "
                    "it (organize --fix, shard) and a thumbnail, a contact sheet per split, the label space and "
                    "the provenance (source layout, the options as a command, versions, sha256 of each "
                    "manifest).\n\nExit status: 0 written, 1 an input is not what the tool writes (named), 2 DEST "
                    "holds no manifest or --out is inside it.",
        epilog="examples:\n  imnet-data report /data/shards --out report.html\n"
               "  imnet-data report /data/shards --validate-report check.json --organize-report /data/imagenet "
               "--out report.html"
               + worked(f"imnet-data report {DEMO}/shards --validate-report {DEMO}/validate-report.json "
                        f"--organize-report {DEMO}/organized --out {DEMO}/report.html"))
    p.add_argument("dest", type=Path, metavar="DEST", help="the shard output folder (holding <split>/manifest.json) "
                                                           "or one split folder")
    p.add_argument("--out", type=Path, required=True, metavar="HTML", help="the page to write (not inside DEST)")
    p.add_argument("--validate-report", type=Path, metavar="FILE", help="what 'validate --report FILE' wrote: its "
                   "problems are listed with what was done about each")
    p.add_argument("--organize-report", type=Path, metavar="PATH", help="organize's DEST (or its "
                   "organize-report.json): the files it re-encoded or skipped")
    _splits(p, "comma-separated splits, e.g. train,val (default: every split with a manifest)")
    p.add_argument("--samples", type=_int(0), default=50_000, metavar="N", help="sample .json read per split for "
                   "the width, height and aspect charts, spread evenly (default 50,000; 0: all)")
    p.add_argument("--sheet", type=_int(0), default=32, metavar="N", help="classes on each split's contact sheet "
                   "(default 32; 0: none)")
    p.add_argument("--thumbnails", type=_int(0), default=200, metavar="N", help="problem images drawn at most "
                   "(default 200)")
    p.set_defaults(func=cmd_report)
