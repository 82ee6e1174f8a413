"""``imnet-data organize``: sort a download into DEST/{train,val}/<wnid>/, read in place, resumable."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import (
    DEMO,
    Subparsers,
    _classes,
    _emit,
    _int,
    _label_space,
    _layout,
    _splits,
    _workers,
    worked,
)


def cmd_organize(args: argparse.Namespace) -> int:
    """Organize SRC into DEST and print the report; 1 when something the download should hold was not found."""
    from imnet_data import organize

    classes = organize.parse_classes(args.classes) if args.classes else None
    report = organize.organize(args.src, args.dest, layout=args.layout, splits=args.splits, classes=classes,
                               fix=args.fix, quality=args.quality, jobs=args.jobs, quiet=args.quiet,
                               label_space=args.label_space)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_organize(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``organize``: SRC and DEST, what to take (layout, splits, classes), ``--fix``, the label
    space and the workers."""
    p = sub.add_parser(
        "organize", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="sort the download into DEST/{train,val}/<wnid>/ straight from the archives",
        description="Write DEST/train/<wnid>/<name> and DEST/val/<wnid>/<name> from the download, reading the "
                    "archives in place (no manual extraction). Val is labelled from the devkit (Kaggle: its CSV, "
                    "Tiny: val_annotations.txt). Bytes are copied unchanged unless --fix. Killed and re-run, it "
                    "resumes: finished units (classes, val slices) are kept. DEST/organize-report.json lists "
                    "changed and skipped files.",
        epilog="examples:\n  imnet-data organize /data/downloads /data/imagenet\n"
               "  imnet-data organize /data/downloads /data/imagenet --fix --jobs 8\n"
               "  imnet-data organize /data/downloads /data/in-a --classes imagenet-a --splits val\n"
               "  imnet-data organize /data/downloads /data/sub --classes n01440764,n02102040\n"
               "  imnet-data organize /data/downloads /data/sub --classes wnids.txt --json"
               + worked(f"imnet-data organize {DEMO}/download {DEMO}/organized-again --fix"))
    p.add_argument("src", type=Path, help="the download: folder of the official archives, extracted folders, "
                                          "Kaggle, ImageNet-21k or Tiny ImageNet")
    p.add_argument("dest", type=Path, help="output folder (created; re-run with the same DEST to resume)")
    _layout(p)
    _splits(p)
    _classes(p, "only these classes: comma-separated WNIDs, a file with one WNID per line, or a class subset "
                "(imagenet-a, imagenet-r, tiny-imagenet)")
    p.add_argument("--fix", action="store_true", help="re-encode CMYK/grayscale JPEGs and the PNG named .JPEG to "
                                                      "RGB JPEG (same name); skip undecodable files")
    p.add_argument("--quality", type=_int(1, 100), default=95, help="JPEG quality of --fix re-encodes (default 95)")
    _label_space(p)
    _workers(p)
    p.set_defaults(func=cmd_organize)
