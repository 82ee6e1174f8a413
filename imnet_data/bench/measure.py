"""What the benchmarks in ``tools/`` share: a command run with its peak RSS measured, a run timed until it returns
and until a following ``sync`` (its output removed first), a file read into the page cache, the typical two-level
extraction of the train archive (the baseline), the fake download they measure on (its options, made once and
reused) and their table of seconds, MB/s, images/s and ratios to the baseline.

Imported by the scripts as ``from imnet_data.bench.measure import ...`` (the project installed, ``pip install -e
.``): nothing here needs torch or DALI.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.sources.ilsvrc import TRAIN

SPAWN = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class StageFailed(RuntimeError):
    """A measured command exited non-zero; ``stderr``: what it wrote there (if nothing: its last stdout lines)."""

    def __init__(self, cmd: list[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(cmd)} exited {code}")
        self.stderr = stderr


def run_measured(cmd: list[str]) -> tuple[int, str]:
    """Run ``cmd`` (must succeed: else :class:`StageFailed` with its stderr); (peak RSS in KiB of its largest
    process, reaped workers included; its stdout). It is started by a small wrapper (``SPAWN``) that reads the
    rusage, because a child forked from this process would count this process's RSS as its own until its exec."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        code = subprocess.run([sys.executable, "-I", "-S", "-c", SPAWN, rss.name, *cmd], stdout=out,
                              stderr=err, check=False).returncode
        out.seek(0)
        err.seek(0)
        output = out.read().decode(errors="replace")
        if code:
            said = err.read().decode(errors="replace").strip()
            raise StageFailed(cmd, code, said or "\n".join(output.strip().splitlines()[-40:]))
        return int(rss.read()), output


def warm(path: Path) -> None:
    """Read a file once, so every method measured after finds it in the page cache alike."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def ensure_fake(src: Path, classes: int, per_class: int) -> Path:
    """The train archive in ``src``, made there first (imagenet profile, no val) when missing."""
    if not (src / TRAIN).is_file():
        print(f"making a fake download in {src}: {classes} classes x {per_class} images (takes minutes)")
        make_fake(src, FakeOptions(classes=classes, train_per_class=per_class, val_images=0, profile="imagenet"))
    return src / TRAIN


def tar_extract(archive: Path, out: Path) -> None:
    """The typical script: outer tar, then each inner tar into its class folder, deleting the inner tar."""
    out.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
    for inner in sorted(out.glob("*.tar")):
        folder = out / inner.name[:-4]
        folder.mkdir()
        subprocess.run(["tar", "-xf", str(inner), "-C", str(folder)], check=True)
        inner.unlink()


def fresh(out: Path) -> None:
    """``out`` removed, and the disk synced."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()


def timed_run(run: Callable[[], object], out: Path,
              prepare: Callable[[Path], None] = fresh) -> tuple[float, float]:
    """(seconds until ``run`` returns, seconds until a sync after it returns); ``prepare(out)`` first (default:
    ``out`` removed and the disk synced)."""
    prepare(out)
    start = time.perf_counter()
    run()
    returned = time.perf_counter()
    os.sync()
    return returned - start, time.perf_counter() - start


def fake_source_args(parser: argparse.ArgumentParser, classes: int, per_class: int, size: str) -> None:
    """The options of a benchmark on a fake download: --src, --work, --classes, --per-class."""
    parser.add_argument("--src", type=Path, default=Path("/tmp/imnet-bench/src"),
                        help="fake download to use, made there if missing (default /tmp/imnet-bench/src)")
    parser.add_argument("--work", type=Path, help="output folder, on the disk to test (default: beside --src)")
    parser.add_argument("--classes", type=int, default=classes, help=f"classes of a new fake (default {classes})")
    parser.add_argument("--per-class", type=int, default=per_class,
                        help=f"train images per class of a new fake (default {per_class}: ~{size} with {classes} "
                             "classes)")


def prepared(args: argparse.Namespace) -> tuple[Path, Path]:
    """The fake's train archive (made if missing, then read once into the page cache, for every method alike)
    and the output folder."""
    archive = ensure_fake(args.src, args.classes, args.per_class)
    warm(archive)
    return archive, args.work or args.src.parent / "bench-out"


def report(size: int, images: int, times: dict[str, tuple[float, float]], out: Path, footer: str,
           extra: tuple[str, dict[str, str]] = ("", {})) -> None:
    """Print the table: seconds, MB/s and images/s with and without the final sync, ratios to the first method
    (the baseline), an ``extra`` column (title, cell per method) and the ``footer``."""
    title, cells_of = extra
    print(f"train archive {size / 1e9:.2f} GB, {images:,} images; output on {out} ({os.cpu_count()} cores)")
    print(f"{'method':<34} {'s':>7} {'MB/s':>7} {'img/s':>7} {'ratio':>6}   {'s+sync':>7} {'MB/s':>7} "
          f"{'img/s':>7} {'ratio':>6}   {title:>8}")
    base = next(iter(times.values()))
    for name, pair in times.items():
        cells = [f"{s:>7.2f} {size / 1e6 / s:>7.0f} {images / s:>7.0f} {b / s:>6.2f}"
                 for s, b in zip(pair, base, strict=True)]
        print(f"{name:<34} {cells[0]}   {cells[1]}   {cells_of.get(name, ''):>8}")
    print(footer)
