"""``imnet-data fake``: write a miniature, byte-compatible ILSVRC2012 download for tests, demos and benchmarks."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, _int, worked
from imnet_data.fake.layouts import DEFAULT, FAKE_LAYOUTS


def _parse_classes(text: str) -> int | tuple[str, ...]:
    """``--classes`` of ``fake``: a count (``10``) or comma-separated WNIDs (not the class subsets
    :func:`~imnet_data.cli.shared._classes` takes: fake makes classes, it does not pick among real ones)."""
    return int(text) if text.isdigit() else tuple(w.strip() for w in text.split(",") if w.strip())


def cmd_fake(args: argparse.Namespace) -> int:
    """Write the fake download (and ``--truth``), then list the archives written."""
    from imnet_data import fake

    options = fake.FakeOptions(classes=args.classes, train_per_class=args.train_per_class,
                               val_images=args.val_images, seed=args.seed, profile=args.profile,
                               with_quirks=args.with_quirks, with_faults=args.with_faults,
                               bbox=args.bbox, kaggle=args.kaggle)
    result = FAKE_LAYOUTS[args.layout].load()(args.out, options, quiet=args.quiet)
    if args.truth:
        fake.write_truth(result, args.truth)
    files = {k: str(v) for k, v in result.archives.items()}
    _emit(args, {"out": str(result.out), "archives": files, "truth": str(args.truth) if args.truth else None},
          "\n".join(f"{k:<11} {v}" for k, v in files.items()) + (f"\ntruth       {args.truth}" if args.truth else ""))
    return 0


def add_fake(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``fake``: the output folder, its size and seed, and which quirks, faults and extra layouts to add."""
    p = sub.add_parser(
        "fake", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a miniature, byte-compatible ILSVRC2012 download (for tests, demos, benchmarks)",
        description="Write ILSVRC2012_img_train.tar (tar of <wnid>.tar), ILSVRC2012_img_val.tar and "
                    "ILSVRC2012_devkit_t12.tar.gz (real meta.mat layout) into OUT; same options and seed give "
                    "byte-identical files.",
        epilog="examples:\n  imnet-data fake /tmp/in --classes 10 --with-quirks --truth /tmp/in/truth.json\n"
               "  imnet-data fake /tmp/in --classes n01440764,n02105855 --bbox --kaggle\n"
               "  imnet-data fake /tmp/bench --profile imagenet --classes 100 --train-per-class 200"
               + worked(f"imnet-data fake {DEMO}/small --classes 4 --train-per-class 4 --val-images 8"))
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--layout", choices=list(FAKE_LAYOUTS), default=DEFAULT, metavar="NAME",
                   help="which download to fake: " + "; ".join(f"{k}: {v.about}" for k, v in FAKE_LAYOUTS.items()))
    p.add_argument("--classes", type=_parse_classes, default=10, help="a count, or comma-separated WNIDs (default 10)")
    p.add_argument("--train-per-class", type=_int(1), default=6, help="train images per class (default 6)")
    p.add_argument("--val-images", type=_int(0), default=20,
                   help="val images in all, spread over the classes (default 20)")
    p.add_argument("--seed", type=_int(0), default=0, help="random seed (default 0)")
    p.add_argument("--profile", choices=["tiny", "imagenet"], default="tiny",
                   help="tiny: small images, fast (default); imagenet: real-photo JPEGs ~500x375, ~110 KB")
    p.add_argument("--with-quirks", action="store_true", help="CMYK JPEG, PNG named .JPEG, grayscale JPEG")
    p.add_argument("--with-faults", action="store_true", help="truncated JPEG, zero-byte file, non-image, duplicate")
    p.add_argument("--bbox", action="store_true", help="also the bbox archives (PASCAL VOC XML)")
    p.add_argument("--kaggle", action="store_true", help="also the Kaggle CLS-LOC layout under OUT/kaggle")
    p.add_argument("--truth", type=Path, metavar="FILE", help="write the expected truth (labels, quirks) as JSON")
    p.set_defaults(func=cmd_fake)
