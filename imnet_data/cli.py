"""The ``imnet-data`` command: parse arguments, call the library, print (text or ``--json``), set the exit code.

Exit codes: 0 success, 1 the job found a problem or failed, 2 usage errors (bad arguments, unknown classes),
130 / 143 interrupted by SIGINT / SIGTERM (run the same command again to resume).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from imnet_data import __version__, catalog
from imnet_data.catalog import UnknownClassError
from imnet_data.errors import Interrupted, UsageError
from imnet_data.executors import DEFAULT, EXECUTORS, executing
from imnet_data.interrupts import interruptible


def _emit(args: argparse.Namespace, data: object, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text (to ``args._report_to``: the real stdout, while a
    cluster executor's own messages are sent to stderr)."""
    print(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text,
          file=getattr(args, "_report_to", None) or sys.stdout)


def _int(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (either end open); anything else is a usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"{low}..{high}" if low is not None and high is not None else f">= {low}" if low is not None \
                else f"<= {high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range (must be {span})")
        return value
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _csv(text: str) -> list[str]:
    """A comma-separated option value as a list (``train,val`` -> ``["train", "val"]``)."""
    return [x.strip() for x in text.split(",") if x.strip()]


def _error(args: argparse.Namespace, error: Exception) -> None:
    """Print an error as every command does: ``imnet-data COMMAND: error: ...`` on stderr."""
    print(f"imnet-data {args.command}: error: {error}", file=sys.stderr)


# ---- classes -------------------------------------------------------------------------------------------------

def _class_row(c: catalog.SynsetClass) -> dict:
    return {"index": c.index, "wnid": c.wnid, "ilsvrc2012_id": c.ilsvrc2012_id, "names": list(c.names),
            "gloss": c.gloss, "train_images": c.train_images}


def _class_table(classes: list[catalog.SynsetClass]) -> str:
    lines = [f"{'index':>5}  {'wnid':<9}  {'id':>4}  {'train':>5}  names"]
    lines += [f"{c.index:>5}  {c.wnid:<9}  {c.ilsvrc2012_id:>4}  {c.train_images:>5}  {', '.join(c.names)}"
              for c in classes]
    return "\n".join(lines)


def _synset_label(wnid: str) -> str:
    return f"{wnid}  {catalog.synset_words(wnid)}"


def cmd_classes(args: argparse.Namespace) -> int:
    from imnet_data import wordnet

    cat = catalog.ilsvrc2012()
    if args.ancestors:
        path = wordnet.hierarchy(args.backend).hypernym_path(args.ancestors)
        _emit(args, [{"wnid": w, "words": catalog.synset_words(w)} for w in path],
              "\n".join("  " * depth + _synset_label(w) for depth, w in enumerate(path)))
        return 0
    if args.under:
        catalog.synset_words(args.under)  # unknown synset -> error with suggestions
        found = [cat.by_wnid(w) for w in wordnet.hierarchy(args.backend).descendants(args.under)]
        _emit(args, [_class_row(c) for c in found],
              f"{_class_table(found)}\n{len(found)} classes under {_synset_label(args.under)}")
        return 0
    if args.depth is not None:
        groups = wordnet.hierarchy(args.backend).group_at_depth(cat.wnids, args.depth)
        by_group: dict[str, list[str]] = {}
        for wnid, group in groups.items():
            by_group.setdefault(group, []).append(wnid)
        _emit(args, by_group, "\n".join(f"{len(m):>4}  {_synset_label(g)}" for g, m in sorted(by_group.items()))
              + f"\n{len(by_group)} groups at depth {args.depth}")
        return 0
    if args.query is None:
        found = list(cat)
    else:
        found = cat.search(args.query) or [cat.get(args.query)]
    _emit(args, [_class_row(c) for c in found], _class_table(found))
    return 0


def add_classes(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "classes", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="look up ILSVRC2012 classes, names and WordNet ancestry",
        description="List or search the 1000 ILSVRC2012 classes (index = sorted-WNID order, id = devkit order).",
        epilog="examples:\n  imnet-data classes                       # all 1000\n"
               "  imnet-data classes terrier --json        # substring search\n"
               "  imnet-data classes 0                     # by index (also a WNID or exact name)\n"
               "  imnet-data classes --ancestors n02085620 # WordNet hypernym path\n"
               "  imnet-data classes --under n02084071     # every class under 'dog'\n"
               "  imnet-data classes --depth 4             # coarse groups at WordNet depth 4")
    p.add_argument("query", nargs="?", help="index, WNID, or a name / substring to search")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ancestors", metavar="WNID", help="print the WordNet hypernym path of a synset")
    g.add_argument("--under", metavar="WNID", help="list the classes under a synset (e.g. n02084071 dog)")
    g.add_argument("--depth", type=_int(0), metavar="N", help="group the 1000 classes by their ancestor at depth N")
    p.add_argument("--backend", choices=["auto", "nltk", "offline"], default="auto",
                   help="WordNet source: NLTK's corpus, the shipped image-net.org is-a edges, or auto (default)")
    p.set_defaults(func=cmd_classes)


# ---- fake ----------------------------------------------------------------------------------------------------

def _parse_classes(text: str) -> int | tuple[str, ...]:
    return int(text) if text.isdigit() else tuple(w.strip() for w in text.split(",") if w.strip())


def cmd_fake(args: argparse.Namespace) -> int:
    from imnet_data import fake

    options = fake.FakeOptions(classes=args.classes, train_per_class=args.train_per_class,
                               val_images=args.val_images, seed=args.seed, profile=args.profile,
                               with_quirks=args.with_quirks, with_faults=args.with_faults,
                               bbox=args.bbox, kaggle=args.kaggle)
    result = fake.make_fake(args.out, options, quiet=args.quiet)
    if args.truth:
        fake.write_truth(result, args.truth)
    files = {k: str(v) for k, v in result.archives.items()}
    _emit(args, {"out": str(result.out), "archives": files, "truth": str(args.truth) if args.truth else None},
          "\n".join(f"{k:<11} {v}" for k, v in files.items()) + (f"\ntruth       {args.truth}" if args.truth else ""))
    return 0


def add_fake(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "fake", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a miniature, byte-compatible ILSVRC2012 download (for tests, demos, benchmarks)",
        description="Write ILSVRC2012_img_train.tar (tar of <wnid>.tar), ILSVRC2012_img_val.tar and "
                    "ILSVRC2012_devkit_t12.tar.gz (real meta.mat layout) into OUT; same options and seed give "
                    "byte-identical files.",
        epilog="examples:\n  imnet-data fake /tmp/in --classes 10 --with-quirks --truth /tmp/in/truth.json\n"
               "  imnet-data fake /tmp/in --classes n01440764,n02105855 --bbox --kaggle\n"
               "  imnet-data fake /tmp/bench --profile imagenet --classes 100 --train-per-class 200")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--classes", type=_parse_classes, default=10, help="a count, or comma-separated WNIDs (default 10)")
    p.add_argument("--train-per-class", type=_int(1), default=6, help="train images per class (default 6)")
    p.add_argument("--val-images", type=_int(0), default=20, help="val images in all, spread over the classes (default 20)")
    p.add_argument("--seed", type=_int(0), default=0, help="random seed (default 0)")
    p.add_argument("--profile", choices=["tiny", "imagenet"], default="tiny",
                   help="tiny: small images, fast (default); imagenet: real-photo JPEGs ~500x375, ~110 KB")
    p.add_argument("--with-quirks", action="store_true", help="CMYK JPEG, PNG named .JPEG, grayscale JPEG")
    p.add_argument("--with-faults", action="store_true", help="truncated JPEG, zero-byte file, non-image, duplicate")
    p.add_argument("--bbox", action="store_true", help="also the bbox archives (PASCAL VOC XML)")
    p.add_argument("--kaggle", action="store_true", help="also the Kaggle CLS-LOC layout under OUT/kaggle")
    p.add_argument("--truth", type=Path, metavar="FILE", help="write the expected truth (labels, quirks) as JSON")
    p.set_defaults(func=cmd_fake)


# ---- doctor / wordnet / demo ---------------------------------------------------------------------------------

def cmd_doctor(args: argparse.Namespace) -> int:
    from imnet_data import doctor

    checks = doctor.diagnose(args.path)
    _emit(args, [c.as_dict() for c in checks], doctor.render(checks))
    return 0


def add_doctor(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common],
                       help="show what this machine has (PIL build, DALI, GPU, the s3 and ray extras, WordNet)",
                       description="One screen: Python, PIL build, webdataset, DALI/GPU/nvJPEG, boto3 (s3 extra), "
                                   "Ray (ray extra), NLTK WordNet, free disk. Always exits 0; each missing "
                                   "optional piece says how to get it.",
                       epilog="example:\n  imnet-data doctor --path /data", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", type=Path, default=Path("."), help="where to report free disk (default .)")
    p.set_defaults(func=cmd_doctor)


def cmd_wordnet(args: argparse.Namespace) -> int:
    from imnet_data import wordnet

    dest = wordnet.install_wordnet(args.source, args.to)
    _emit(args, {"nltk_data": str(dest)},
          f"WordNet 3.0 installed for NLTK in {dest}\n(if that is not a default NLTK folder: export NLTK_DATA={dest})")
    return 0


def add_wordnet(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("wordnet", parents=[common], help="install WordNet 3.0 for NLTK offline (from Debian's files)",
                       description="Copy a WordNet 3.0 dict folder (Debian: apt-get install wordnet-base "
                                   "wordnet-sense-index) into an NLTK data folder, without network.",
                       epilog="example:\n  imnet-data wordnet --from /usr/share/wordnet --to ~/nltk_data",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", type=Path, default=Path("/usr/share/wordnet"),
                   help="WordNet dict folder (default /usr/share/wordnet)")
    p.add_argument("--to", type=Path, default=None, help="NLTK data folder (default: first writable NLTK folder)")
    p.set_defaults(func=cmd_wordnet)


def cmd_demo(args: argparse.Namespace) -> int:
    from imnet_data import demo

    report = demo.run(args.dir, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_demo(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="make a fake download and run every stage on it",
                       description="Make a fake ILSVRC2012 download (with quirks and faults) and run every stage "
                                   "on it, printing a short report.",
                       epilog="example:\n  imnet-data demo /tmp/imnet-demo", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, nargs="?", help="work folder (default: a new temporary folder)")
    p.set_defaults(func=cmd_demo)


# ---- validate ------------------------------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
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


def add_validate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
               "  imnet-data validate /tmp/fake --expect self --deep --json  # a fake or a subset")
    p.add_argument("src", type=Path, metavar="SRC", help="the download: folder of the official archives, extracted "
                                                         "folders, Kaggle, ImageNet-21k or Tiny ImageNet")
    p.add_argument("--layout", metavar="NAME", help="ilsvrc2012, folders, kaggle, imagenet21k or tiny "
                                                    "(default: detected)")
    p.add_argument("--expect", choices=["official", "self"], default="official",
                   help="check against the real set (default) or against the download's own metadata")
    p.add_argument("--skip-checksums", action="store_true", help="do not hash the archives")
    p.add_argument("--deep", action="store_true", help="also decode every image (in parallel)")
    _workers(p)
    p.add_argument("--report", type=Path, metavar="FILE", help="also write the full report as JSON to FILE")
    p.set_defaults(func=cmd_validate)


# ---- organize ------------------------------------------------------------------------------------------------

def cmd_organize(args: argparse.Namespace) -> int:
    from imnet_data import organize

    classes = organize.parse_classes(args.classes) if args.classes else None
    report = organize.organize(args.src, args.dest, layout=args.layout, splits=args.splits, classes=classes,
                               fix=args.fix, quality=args.quality, jobs=args.jobs, quiet=args.quiet,
                               label_space=args.label_space)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_organize(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
               "  imnet-data organize /data/downloads /data/sub --classes wnids.txt --json")
    p.add_argument("src", type=Path, help="the download: folder of the official archives, extracted folders, "
                                          "Kaggle, ImageNet-21k or Tiny ImageNet")
    p.add_argument("dest", type=Path, help="output folder (created; re-run with the same DEST to resume)")
    p.add_argument("--layout", metavar="NAME", help="ilsvrc2012, folders, kaggle, imagenet21k or tiny "
                                                    "(default: detected)")
    p.add_argument("--splits", type=_csv, metavar="LIST",
                   help="comma-separated splits, e.g. train,val (default: all in the download)")
    p.add_argument("--classes", metavar="SPEC", help="only these classes: comma-separated WNIDs, a file with one "
                                                      "WNID per line, or a class subset (imagenet-a, imagenet-r, "
                                                      "tiny-imagenet)")
    p.add_argument("--fix", action="store_true", help="re-encode CMYK/grayscale JPEGs and the PNG named .JPEG to "
                                                      "RGB JPEG (same name); skip undecodable files")
    p.add_argument("--quality", type=_int(1, 100), default=95, help="JPEG quality of --fix re-encodes (default 95)")
    _label_space(p)
    _workers(p)
    p.set_defaults(func=cmd_organize)


# ---- shard ---------------------------------------------------------------------------------------------------

def cmd_shard(args: argparse.Namespace) -> int:
    from imnet_data import organize, shards
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
    classes = tuple(sorted(organize.parse_classes(args.classes))) if args.classes else None
    options = shards.ShardOptions(
        name=args.name, seed=args.seed, shuffle=args.shuffle, samples_per_shard=args.samples_per_shard,
        shard_size=args.shard_size, max_size=args.max_size, short_side=args.short_side, quality=args.quality,
        classes=classes, subset=args.subset, fix=not args.no_fix, label_space=args.label_space)
    report = shards.shard(Path(args.paths[0]), args.paths[1], options, layout=args.layout, splits=args.splits,
                          jobs=args.jobs, node_rank=rank, num_nodes=count, overwrite=args.overwrite,
                          work=args.work, retries=args.retries, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def _workers(p: argparse.ArgumentParser) -> None:
    """--jobs and where the units run: this machine's processes or a Ray cluster."""
    p.add_argument("--jobs", "-j", type=_int(0), default=0,
                   help="worker processes (default 0: one per core; --executor ray: units in flight, default all CPUs)")
    p.add_argument("--executor", choices=list(EXECUTORS), default=DEFAULT,
                   help="; ".join(f"{name}: {kind.about}" for name, kind in EXECUTORS.items()))
    p.add_argument("--ray-address", metavar="auto|HOST:PORT", help="with --executor ray: the cluster (default: "
                   "RAY_ADDRESS, else the one `ray start` last started on this machine, else one of the run's own, "
                   "stopped with it)")


def _label_space(p: argparse.ArgumentParser) -> None:
    """--label-space: the class index the labels (.cls, class_to_idx.json) are written in."""
    p.add_argument("--label-space", choices=list(catalog.LABEL_SPACES), metavar="NAME",
                   help="the class index labels are written in: " +
                        "; ".join(f"{k}: {v.about}" for k, v in catalog.LABEL_SPACES.items()) +
                        " (default: imagenet-1k for ImageNet-1k layouts, a subset included; imagenet-21k for 21k; "
                        "tiny-imagenet-200 for Tiny). A class outside it is an error naming the file")


def _size(text: str) -> int:
    """Bytes (at least 1) from a number with its unit: ``500MB``, ``1GB``, ``2GiB``, ``200kB``, ``4096B``. A bare
    number is a usage error: ``--shard-size 10`` read as 10 bytes made a shard per sample without a word."""
    units = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    low = text.strip().lower()
    suffix = next((u for u in sorted(units, key=len, reverse=True) if low.endswith(u)), "")
    number = low[:len(low) - len(suffix)].strip()
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500MB, 1GB, 2GiB)")
    if not suffix:
        raise argparse.ArgumentTypeError(f"{text!r} has no unit: write {number}B, {number}kB, {number}MB or "
                                         f"{number}GB (or KiB, MiB, GiB)")
    if value * units[suffix] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be at least 1 byte")
    return int(value * units[suffix])


def add_shard(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
               "  sbatch --array=0-3 --wrap 'imnet-data shard /data/downloads /data/shards'\n"
               "  imnet-data shard --merge /data/shards    # once, after every array task is done\n"
               "  imnet-data shard /data/downloads s3://my-bucket/imagenet --work /scratch/work")
    p.add_argument("paths", nargs="+", metavar="SRC DEST", help="the download and the output folder or s3:// / gs:// "
                                                                "prefix (with --merge: only DEST)")
    p.add_argument("--merge", action="store_true", help="after a multi-node run: check all shards, write manifests")
    p.add_argument("--verify", action="store_true", help="with --merge: also recompute every shard's sha256")
    p.add_argument("--layout", metavar="NAME", help="ilsvrc2012, folders, kaggle, imagenet21k or tiny "
                                                    "(default: detected)")
    p.add_argument("--splits", type=_csv, metavar="LIST",
                   help="comma-separated splits, e.g. train,val (default: all in the download)")
    p.add_argument("--name", help="shard file prefix (default imagenet-1k; tiny-imagenet-200, imagenet-21k)")
    p.add_argument("--seed", type=_int(0), default=0, help="shuffle seed (default 0)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="shuffle across the split (default: train yes, val no)")
    p.add_argument("--samples-per-shard", type=_int(1), metavar="N", help="samples per shard (default: by --shard-size)")
    p.add_argument("--shard-size", type=_size, default=10**9, metavar="SIZE",
                   help="target shard size with its unit, e.g. 500MB, 1GB, 2GiB (default 1GB; a bare number is "
                        "refused; shards get near-equal sample counts)")
    p.add_argument("--max-size", type=_int(1), metavar="PX", help="shrink so the longer side is at most PX")
    p.add_argument("--short-side", type=_int(1), metavar="PX", help="shrink so the shorter side is at most PX")
    p.add_argument("--quality", type=_int(1, 100), metavar="Q", help="JPEG quality of re-encodes (default 90 with a resize; "
                                                             "alone: re-encode every image)")
    p.add_argument("--classes", metavar="SPEC", help="only these classes: WNIDs, a file of WNIDs, or imagenet-a, "
                                                      "imagenet-r, tiny-imagenet")
    p.add_argument("--subset", metavar="NAME|FILE", help="train subset: 1percent, 10percent, or a file of train "
                                                          "file names (val is kept whole)")
    _label_space(p)
    p.add_argument("--no-fix", action="store_true", help="keep CMYK JPEGs and the PNG as they are (default: "
                                                         "re-encode them to RGB JPEG q95)")
    p.add_argument("--num-nodes", type=_int(1), metavar="N", help="nodes sharing the work (default: from SLURM/torchrun, else 1)")
    p.add_argument("--node-rank", type=_int(0), metavar="K", help="this node's rank, 0..N-1")
    p.add_argument("--overwrite", action="store_true", help="replace shards of a different earlier plan in DEST")
    _workers(p)
    p.add_argument("--work", type=Path, metavar="DIR", help="object-store DEST: local folder shards are written "
                   "into before upload (default: one in the temp dir named after DEST; holds a few shards at a time)")
    p.add_argument("--retries", type=_int(0), default=5, help="object-store DEST: retries per request after "
                   "transient errors (a part of a large upload alone; default 5)")
    p.set_defaults(func=cmd_shard)


# ---- upload --------------------------------------------------------------------------------------------------

def cmd_upload(args: argparse.Namespace) -> int:
    from imnet_data.shards.publish import upload

    report = upload(args.dest, args.url, splits=args.splits, jobs=args.jobs, verify=args.verify,
                    overwrite=args.overwrite, retries=args.retries, timeout=(10.0, args.timeout))
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_upload(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
               "  imnet-data upload /data/shards gs://my-bucket/imagenet --splits val --json")
    p.add_argument("dest", type=Path, metavar="DEST", help="the shard output folder (or one split folder)")
    p.add_argument("url", metavar="URL", help="s3://bucket/prefix or gs://bucket/prefix")
    p.add_argument("--splits", type=_csv, metavar="LIST", help="comma-separated splits (default: all in DEST)")
    p.add_argument("--jobs", "-j", type=_int(0), default=4, help="parallel uploads (default 4; 0: one per core)")
    p.add_argument("--verify", action="store_true", help="read back objects already there and check their sha256")
    p.add_argument("--overwrite", action="store_true", help="replace another plan's shards under URL")
    p.add_argument("--retries", type=_int(0), default=5, help="retries per request after transient errors (a "
                   "part of a large upload alone; default 5)")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="S",
                   help="seconds without an answer before a request is retried (default 60)")
    p.set_defaults(func=cmd_upload)


# ---- verify / preview ----------------------------------------------------------------------------------------

def cmd_verify(args: argparse.Namespace) -> int:
    from imnet_data.shards.verify import verify

    report = verify(args.dest, splits=args.splits, deep=args.deep, jobs=args.jobs, quiet=args.quiet)
    _emit(args, report.as_dict(), report.render())
    return 0 if report.ok else 1


def add_verify(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
               "  imnet-data verify /data/shards/train --json     # one split folder")
    p.add_argument("dest", type=Path, metavar="DEST", help="the shard output folder (holding <split>/manifest.json) "
                                                           "or one split folder")
    p.add_argument("--splits", type=_csv, metavar="LIST",
                   help="comma-separated splits, e.g. train,val (default: every split with a manifest)")
    p.add_argument("--deep", action="store_true", help="also decode every image and compare .cls with .json")
    _workers(p)
    p.set_defaults(func=cmd_verify)


def cmd_preview(args: argparse.Namespace) -> int:
    from PIL import Image

    from imnet_data.shards.preview import preview

    out = preview(args.source, args.out, n=args.n, per_class=args.per_class, columns=args.columns)
    with Image.open(out) as img:
        size = img.size
    _emit(args, {"out": str(out), "width": size[0], "height": size[1]},
          f"wrote {out} ({size[0]}x{size[1]} px)")
    return 0


def add_preview(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "preview", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a PNG contact sheet of shard samples with their class index and name",
        description="Read samples from one shard .tar, or from a split folder's shards in manifest order, and "
                    "write a PNG grid of 160 px cells, each captioned with the class index and name (from the "
                    "sample's .json). --per-class: the first sample of each class met, until N classes, sorted "
                    "by class index. The same input gives the same PNG bytes.",
        epilog="examples:\n  imnet-data preview /data/shards/val --out val.png\n"
               "  imnet-data preview /data/shards/train/imagenet-1k-train-000000.tar --out s.png --n 64\n"
               "  imnet-data preview /data/shards/train --out classes.png --per-class --n 100 --columns 10")
    p.add_argument("source", type=Path, metavar="SHARD_OR_FOLDER", help="a shard .tar or a split folder")
    p.add_argument("--out", type=Path, required=True, metavar="PNG", help="the contact sheet to write")
    p.add_argument("--n", type=_int(1), default=16, help="samples (with --per-class: classes) to show (default 16)")
    p.add_argument("--per-class", action="store_true", help="one cell per class: its first sample")
    p.add_argument("--columns", type=_int(1), metavar="C", help="grid columns (default: a near-square grid)")
    p.set_defaults(func=cmd_preview)


# ---- bench ---------------------------------------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    from imnet_data.bench.run import bench

    report = bench(args.dest, backend=args.backend, device=args.device, batch_size=args.batch_size,
                   image_size=args.image_size, batches=args.batches, num_threads=args.threads,
                   imagefolder=args.imagefolder, workers=args.workers, model=args.model, model_steps=args.steps,
                   host_only=args.host_only, progress=(lambda s: None) if args.quiet else (lambda s: print(f"... {s}", file=sys.stderr)))
    _emit(args, report.as_dict(), report.render())
    return 0


def add_bench(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="loader images/s vs plain DALI, DALI decode alone, PIL decode and torchvision ImageFolder, in one run",
        description="Measure on the same shards in one run: the loader's train and val pipelines, plain DALI "
                    "(readers.webdataset + DALI's defaults, the pipeline written by hand), DALI decode "
                    "alone (hardware and CUDA decoder on a GPU; CPU decoder otherwise), PIL decode on all cores, "
                    "and with --imagefolder torchvision ImageFolder + DataLoader on an organized copy. --model adds "
                    "end to end: training steps fed by the loader and by plain DALI vs on one GPU-resident batch. "
                    "--host-only: the host path alone vs DALI's reader. Prints images/s, CPU cores busy, GPU "
                    "memory and the ratios.",
        epilog="examples:\n  imnet-data bench /data/shards\n"
               "  imnet-data bench /data/shards --imagefolder /data/imagenet --workers 16\n"
               "  imnet-data bench /data/shards --model resnet50 --steps 200\n"
               "  imnet-data bench /data/shards --backend torch --device cpu --batch-size 64\n"
               "  imnet-data bench /data/shards --host-only           # the host side vs DALI's own reader")
    p.add_argument("dest", type=Path, help="shard output folder (holding train/ and/or val/ with manifest.json)")
    p.add_argument("--backend", choices=["dali", "torch"], default="dali", help="loader backend (default dali)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when a GPU is visible, else cpu")
    p.add_argument("--batch-size", type=_int(1), default=256, help="default 256")
    p.add_argument("--image-size", type=_int(1), default=224, help="default 224")
    p.add_argument("--batches", type=_int(1), default=50, help="timed batches per pipeline (default 50)")
    p.add_argument("--threads", type=_int(1), help="loader CPU threads (default: all cores)")
    p.add_argument("--imagefolder", type=Path, metavar="DIR", help="organized copy (DIR/train/<wnid>/) for the "
                                                                   "torchvision ImageFolder baseline")
    p.add_argument("--workers", type=_int(0), help="ImageFolder DataLoader workers (default: all cores)")
    p.add_argument("--model", metavar="NAME", help="end to end with a torchvision model, e.g. resnet50 (GPU)")
    p.add_argument("--steps", type=_int(1), default=100, help="timed training steps with --model (default 100)")
    p.add_argument("--host-only", action="store_true",
                   help="only the host path (schedule, reads by index, batches handed to DALI, JPEG headers parsed; "
                        "no decode) vs DALI's readers.webdataset doing the same, at 1, 2, 4, ... threads up to all "
                        "cores (or --threads)")
    p.set_defaults(func=cmd_bench)


# ---- stage ---------------------------------------------------------------------------------------------------

def cmd_stage(args: argparse.Namespace) -> int:
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


def add_stage(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
               "  imnet-data stage http://store/shards /local/shards --max-rate 200MB --verify --json")
    p.add_argument("source", metavar="SOURCE", help="a folder, http(s):// or s3:// / gs:// URL: a split folder or "
                                                     "the shard root")
    p.add_argument("dest", type=Path, metavar="DEST", help="local shard root (files go to DEST/<split>/)")
    p.add_argument("--splits", type=_csv, metavar="LIST",
                   help="comma-separated splits of a shard root (default: all it lists)")
    p.add_argument("--manifest", metavar="PATH|URL", help="the manifest to follow (default: SOURCE's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true", help="every shard, whatever the SLURM/torchrun variables say")
    g.add_argument("--ranks", metavar="LIST", help="only the shards these ranks read, e.g. 0-7 (with --world-size)")
    p.add_argument("--world-size", type=_int(1), metavar="W", help="ranks in the training job")
    p.add_argument("--num-nodes", type=_int(1), metavar="N", help="nodes in the job (default: from SLURM/torchrun, else 1)")
    p.add_argument("--node-rank", type=_int(0), metavar="K", help="this node's rank, 0..N-1")
    p.add_argument("--jobs", "-j", type=_int(0), default=4, help="parallel transfers (default 4; 0: one per core)")
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


COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    add_demo, add_validate, add_organize, add_shard, add_upload, add_stage, add_verify, add_preview, add_bench,
    add_classes, add_fake, add_doctor, add_wordnet]


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes long options only as written: argparse's default also takes any unique
    prefix (``--sample 10`` for ``--samples-per-shard``), which hides a typo and breaks when an option is added.
    The subcommand parsers are of this class too (argparse makes them of the top parser's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subcommand per library job)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = _Parser(prog="imnet-data", description="Validate, reorganize, shard, stage and load ImageNet.",
                     epilog="run 'imnet-data COMMAND --help' for each command's options and examples")
    parser.add_argument("--version", action="version", version=f"imnet-data {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub, common)
    return parser


@contextlib.contextmanager
def _executor(name: str, address: str | None) -> Iterator[None]:
    """``--executor``: the default (``local``) runs as is (nothing imported); another's units run inside
    :func:`~imnet_data.executors.executing`, with stdout sent to stderr (Ray prints its warnings there, a worker
    died, ...), so stdout stays the report's (``args._report_to``)."""
    if name == DEFAULT:
        yield
        return
    with executing(name, address), contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``imnet-data`` and ``python -m imnet_data``: 0 done, 1 a problem found or the job failed,
    2 a usage error (argparse's own errors included), 130 / 143 interrupted (SIGINT / SIGTERM: one line, the
    workers ended, a re-run resumes). An unexpected exception is reported in one line, not a traceback
    (``IMNET_DATA_DEBUG=1`` shows it)."""
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):   # a file name with non-UTF-8 bytes prints as \xNN, not a codec error
        sys.stdout.reconfigure(errors="backslashreplace")
    args._report_to = sys.stdout
    line = f"imnet-data {args.command}: interrupted; run the same command again to resume"
    with interruptible(line):
        try:
            return _run(args)
        except Interrupted as e:      # SIGINT / SIGTERM: no traceback, no worker left, 130 / 143
            from imnet_data.executors.local import stop_workers

            stop_workers()
            print(line, file=sys.stderr)
            return e.status


def _run(args: argparse.Namespace) -> int:
    """The command, its errors as one line and an exit status (see :func:`main`)."""
    try:
        with _executor(getattr(args, "executor", "local"), getattr(args, "ray_address", None)):
            return args.func(args)
    except (UsageError, UnknownClassError) as e:
        _error(args, e)
        return 2
    except (OSError, RuntimeError, ValueError, LookupError) as e:
        _error(args, e)
        return 1
    except Exception as e:  # noqa: BLE001 -- the last guard: one line naming the error, exit 1
        if os.environ.get("IMNET_DATA_DEBUG"):
            raise
        _error(args, f"unexpected {type(e).__name__}: {e} (IMNET_DATA_DEBUG=1 shows where)")
        return 1
