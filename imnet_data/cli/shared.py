"""What every command module shares: printing (``--json`` or text) and errors, the typed argparse values, the parser
class, and the options several commands take, each defined once so its name, type and help cannot drift apart."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

from imnet_data import catalog
from imnet_data.executors import DEFAULT, EXECUTORS

Subparsers = argparse._SubParsersAction   # what ``add_subparsers`` returns: each command's ``add_*`` adds to it

DEMO = "/tmp/imnet-demo"    # where the worked examples expect the demo's fake: imnet-data demo /tmp/imnet-demo
LAYOUT_HELP = ("ilsvrc2012, folders, kaggle, imagenet21k, tiny, hf, hf-parquet, or an evaluation set: imagenet-v2, "
               "imagenet-a, imagenet-r, imagenet-sketch, imagenet-c (default: detected)")
SPLITS_HELP = "comma-separated splits, e.g. train,val (default: all in the download)"


def _emit(args: argparse.Namespace, data: object, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text (to ``args._report_to``: the real stdout, while a
    cluster executor's own messages are sent to stderr)."""
    print(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text,
          file=getattr(args, "_report_to", None) or sys.stdout)


def _error(args: argparse.Namespace, error: Exception | str) -> None:
    """Print an error as every command does: ``imnet-data COMMAND: error: ...`` on stderr."""
    print(f"imnet-data {args.command}: error: {error}", file=sys.stderr)


def worked(example: str) -> str:
    """The end of every command's ``--help``: one worked example that runs as written on the demo's fake (what
    ``imnet-data demo /tmp/imnet-demo`` makes; ``tests/test_help.py`` runs each one)."""
    return f"\n\nworked example, on the demo's fake (imnet-data demo {DEMO} makes it):\n  {example}"


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
    """An argparse type: a number above 0 (seconds of a timeout); 0, a negative or NaN is a usage error."""
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


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes long options only as written: argparse's default also takes any unique
    prefix (``--sample 10`` for ``--samples-per-shard``), which hides a typo and breaks when an option is added.
    The subcommand parsers are of this class too (argparse makes them of the top parser's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Take argparse's arguments, with abbreviations always off."""
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def _common() -> argparse.ArgumentParser:
    """The parent parser of every command: ``--quiet``, ``--progress-every`` and ``--json``, so each command takes
    them, alike."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress (bars or lines)")
    common.add_argument("--progress-every", type=_positive_float, default=30.0, metavar="SECONDS",
                        help="where stderr is not a terminal (a log file, a pipe): a progress line every SECONDS "
                             "(default 30) instead of a bar")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    return common


def _layout(p: argparse.ArgumentParser) -> None:
    """``--layout``: the download's layout, for the commands that read a download (default: detected)."""
    p.add_argument("--layout", metavar="NAME", help=LAYOUT_HELP)


def _splits(p: argparse.ArgumentParser, help: str = SPLITS_HELP) -> None:
    """``--splits LIST``: the splits to work on, as a list; ``help`` says what the command takes when it is left out."""
    p.add_argument("--splits", type=_csv, metavar="LIST", help=help)


def _severities(text: str) -> list[int]:
    """``--severities``: comma-separated ImageNet-C severities, 1..5."""
    values = _csv(text)
    if not values or not all(v in "12345" and len(v) == 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected severities 1..5, comma-separated (e.g. 1,3,5)")
    return [int(v) for v in values]


def _corruptions(p: argparse.ArgumentParser) -> None:
    """``--corruptions`` and ``--severities``: a part of ImageNet-C (its 3.75M images) by corruption and severity."""
    p.add_argument("--corruptions", type=_csv, metavar="LIST", help="ImageNet-C: only these corruptions, e.g. "
                   "gaussian_noise,fog (default: every one there)")
    p.add_argument("--severities", type=_severities, metavar="LIST", help="ImageNet-C: only these severities, e.g. "
                   "3,5 (default: 1..5)")


def _classes(p: argparse.ArgumentParser, help: str) -> None:
    """``--classes SPEC``: a class subset, as :func:`imnet_data.organize.parse_classes` reads it (WNIDs, a file of
    WNIDs, or a named subset); ``help`` is the command's own wording."""
    p.add_argument("--classes", metavar="SPEC", help=help)


def _nodes(p: argparse.ArgumentParser, help: str) -> None:
    """``--num-nodes N`` and ``--node-rank K``: this node's part of a multi-node job, as
    :func:`imnet_data.cluster.node_of` reads them (else SLURM / torchrun variables); ``help`` says what N counts."""
    p.add_argument("--num-nodes", type=_int(1), metavar="N", help=help)
    p.add_argument("--node-rank", type=_int(0), metavar="K", help="this node's rank, 0..N-1")


def _jobs(p: argparse.ArgumentParser, default: int, help: str) -> None:
    """``--jobs/-j N``: how many in parallel (0: one per core); what runs in parallel is the command's ``help``."""
    p.add_argument("--jobs", "-j", type=_int(0), default=default, help=help)


def _executor_options(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--ray-address``: where the units run, this machine's processes or a Ray cluster; the
    one place the executor choices reach the command line."""
    p.add_argument("--executor", choices=list(EXECUTORS), default=DEFAULT,
                   help="; ".join(f"{name}: {kind.about}" for name, kind in EXECUTORS.items()))
    p.add_argument("--ray-address", metavar="auto|HOST:PORT", help="with --executor ray: the cluster (default: "
                   "RAY_ADDRESS, else the one `ray start` last started on this machine, else one of the run's own, "
                   "stopped with it)")


def _workers(p: argparse.ArgumentParser) -> None:
    """--jobs and where the units run: this machine's processes or a Ray cluster."""
    _jobs(p, 0, "worker processes (default 0: one per core; --executor ray: units in flight, default all CPUs)")
    _executor_options(p)


def _label_space(p: argparse.ArgumentParser) -> None:
    """--label-space: the class index the labels (.cls, class_to_idx.json) are written in."""
    p.add_argument("--label-space", choices=list(catalog.LABEL_SPACES), metavar="NAME",
                   help="the class index labels are written in: " +
                        "; ".join(f"{k}: {v.about}" for k, v in catalog.LABEL_SPACES.items()) +
                        " (default: imagenet-1k for ImageNet-1k layouts, a subset included; imagenet-21k for 21k; "
                        "tiny-imagenet-200 for Tiny). A class outside it is an error naming the file")
