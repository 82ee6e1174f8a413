"""The ``imnet-data`` command: parse arguments, call the library, print (text or ``--json``), set the exit code.

Exit codes: 0 success, 1 the job found a problem or failed, 2 usage errors (bad arguments, unknown classes),
130 / 143 interrupted by SIGINT / SIGTERM (run the same command again to resume).

One module per command or family (``validate``, ``organize``, ``shard``, ``upload``, ``stage``, ``verify`` with
``preview``, ``report``, ``bench``, ``classes``, ``fake``, ``misc``: doctor, wordnet, demo), each with its
``add_*`` (the subcommand's options) and ``cmd_*`` (the run); :mod:`imnet_data.cli.shared` holds what they share. A
new command is a module and one entry in :data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from imnet_data import __version__, progress
from imnet_data.catalog import UnknownClassError
from imnet_data.cli.bench import add_bench
from imnet_data.cli.classes import add_classes
from imnet_data.cli.fake import add_fake
from imnet_data.cli.index import add_index
from imnet_data.cli.misc import add_demo, add_doctor, add_wordnet
from imnet_data.cli.organize import add_organize
from imnet_data.cli.report import add_report
from imnet_data.cli.shard import add_shard
from imnet_data.cli.shared import Subparsers, _common, _error, _Parser
from imnet_data.cli.stage import add_stage
from imnet_data.cli.upload import add_upload
from imnet_data.cli.validate import add_validate
from imnet_data.cli.verify import add_preview, add_verify
from imnet_data.errors import Interrupted, UsageError
from imnet_data.executors import DEFAULT, executing
from imnet_data.interrupts import interruptible

COMMANDS: list[Callable[[Subparsers, argparse.ArgumentParser], None]] = [
    add_demo, add_validate, add_organize, add_shard, add_upload, add_stage, add_verify, add_preview, add_report,
    add_bench, add_classes, add_fake, add_doctor, add_wordnet, add_index]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subcommand per library job)."""
    common = _common()
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
    progress.configure(args.progress_every)
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
        with _executor(getattr(args, "executor", DEFAULT), getattr(args, "ray_address", None)):
            return args.func(args)
    except (UsageError, UnknownClassError) as e:
        _error(args, e)
        return 2
    except (OSError, RuntimeError, ValueError, LookupError) as e:
        _error(args, e)
        return 1
    except Exception as e:  # the last guard: one line naming the error, exit 1
        if os.environ.get("IMNET_DATA_DEBUG"):
            raise
        _error(args, f"unexpected {type(e).__name__}: {e} (IMNET_DATA_DEBUG=1 shows where)")
        return 1
