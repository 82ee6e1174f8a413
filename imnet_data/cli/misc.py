"""The small commands: ``doctor`` (what this machine has), ``wordnet`` (WordNet for NLTK offline) and ``demo``
(every stage on a fake download)."""
from __future__ import annotations

import argparse
from pathlib import Path

from imnet_data.cli.shared import DEMO, Subparsers, _emit, worked


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what this machine has; always 0, since a missing optional piece is not a failure."""
    from imnet_data import doctor

    checks = doctor.diagnose(args.path)
    _emit(args, [c.as_dict() for c in checks], doctor.render(checks))
    return 0


def add_doctor(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``doctor``: ``--path`` alone (where free disk is reported)."""
    p = sub.add_parser("doctor", parents=[common],
                       help="show what this machine has (PIL build, DALI, GPU, the s3 and ray extras, WordNet)",
                       description="One screen: Python, PIL build, webdataset, DALI/GPU/nvJPEG, boto3 (s3 extra), "
                                   "Ray (ray extra), NLTK WordNet, free disk. Always exits 0; each missing "
                                   "optional piece says how to get it.",
                       epilog="example:\n  imnet-data doctor --path /data" + worked(f"imnet-data doctor --path {DEMO}"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", type=Path, default=Path("."), help="where to report free disk (default .)")
    p.set_defaults(func=cmd_doctor)


def cmd_wordnet(args: argparse.Namespace) -> int:
    """Install WordNet 3.0 for NLTK from a local dict folder and say where, and how NLTK finds it."""
    from imnet_data import wordnet

    dest = wordnet.install_wordnet(args.source, args.to)
    _emit(args, {"nltk_data": str(dest)},
          f"WordNet 3.0 installed for NLTK in {dest}\n(if that is not a default NLTK folder: export NLTK_DATA={dest})")
    return 0


def add_wordnet(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``wordnet``: the dict folder to read and the NLTK data folder to write."""
    p = sub.add_parser("wordnet", parents=[common], help="install WordNet 3.0 for NLTK offline (from Debian's files)",
                       description="Copy a WordNet 3.0 dict folder (Debian: apt-get install wordnet-base "
                                   "wordnet-sense-index) into an NLTK data folder, without network.",
                       epilog="example:\n  imnet-data wordnet --from /usr/share/wordnet --to ~/nltk_data"
                              + worked(f"imnet-data wordnet --from /usr/share/wordnet --to {DEMO}/nltk_data"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", type=Path, default=Path("/usr/share/wordnet"),
                   help="WordNet dict folder (default /usr/share/wordnet)")
    p.add_argument("--to", type=Path, default=None, help="NLTK data folder (default: first writable NLTK folder)")
    p.set_defaults(func=cmd_wordnet)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run every stage on a fresh fake download and print the report; 1 when a stage went wrong."""
    from imnet_data import demo

    report = demo.run(args.dir, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_demo(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``demo``: an optional work folder."""
    p = sub.add_parser("demo", parents=[common], help="make a fake download and run every stage on it",
                       description="Make a fake ILSVRC2012 download (with quirks and faults) and run every stage "
                                   "on it, printing a short report.",
                       epilog="example:\n  imnet-data demo    # in a new temporary folder"
                              + worked(f"imnet-data demo {DEMO}"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, nargs="?", help="work folder (default: a new temporary folder)")
    p.set_defaults(func=cmd_demo)
