"""Progress that reads well everywhere: where stderr is not a terminal (a SLURM log, a pipe) a line every
``--progress-every`` seconds with done/total, rate and ETA and a last line per step, never a carriage return; on
a terminal tqdm's bar; ``-q`` nothing. Each command runs as a user runs it, its stderr a pipe or a pty."""
from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.progress import Lines, amount_of, duration
from tests.helpers import ROOT, run_cli

STAMP = r"\d\d:\d\d:\d\d "
BYTES = r"[\d.]+ (?:B|kB|MB)"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fake download (quirks, no faults) and its shards."""
    work = tmp_path_factory.mktemp("progress")
    make_fake(work / "download", FakeOptions(classes=4, train_per_class=6, val_images=8, with_quirks=True),
              quiet=True)
    done = run_cli("shard", str(work / "download"), str(work / "shards"), "--samples-per-shard", "4", "-q")
    assert done.returncode == 0, done.stderr
    return work


def staged_bytes(shards: Path) -> int:
    """What ``stage --all`` copies: every shard and its index."""
    manifests = [json.loads(p.read_text()) for p in sorted(shards.glob("*/manifest.json"))]
    return sum(s["bytes"] + s["index"]["bytes"] for m in manifests for s in m["shards"])


def test_not_a_terminal_a_line_every_interval_with_done_total_rate_and_eta(made: Path, tmp_path: Path) -> None:
    total = staged_bytes(made / "shards")
    rate = max(total // 3, 1000)                  # about three seconds of copying, a line every 0.4 s
    done = run_cli("stage", str(made / "shards"), str(tmp_path / "staged"), "--max-rate", f"{rate}B",
                   "--progress-every", "0.4")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = done.stderr.splitlines()
    periodic = [m for line in lines if (m := re.fullmatch(
        STAMP + rf"stage: ({BYTES})/({BYTES}) \((\d+\.\d)%\), {BYTES}/s, ETA (\d+s|unknown)", line))]
    assert len(periodic) >= 3, done.stderr
    assert all(m.group(2) == amount_of(total, "B") for m in periodic)
    percents = [float(m.group(3)) for m in periodic]
    assert percents == sorted(percents) and percents[-1] <= 100
    assert re.fullmatch(STAMP + rf"stage: done, {re.escape(amount_of(total, 'B'))} in \d+s \({BYTES}/s\)", lines[-1])


def test_every_long_step_of_every_command_reports_in_lines(made: Path, tmp_path: Path) -> None:
    """validate --deep, organize, shard and verify: each step's last line, counted in its units; nothing but
    lines (no carriage return) and the command's own output."""
    every = ["--progress-every", "0.05"]
    shards = json.loads((made / "shards" / "train" / "manifest.json").read_text())["shards"]
    steps = {
        ("validate", str(made / "download"), "--expect", "self", "--deep"): [r"decode: done, \d+ units, "],
        ("organize", str(made / "download"), str(tmp_path / "organized")): [r"organize: done, \d+ units, "],
        ("shard", str(made / "download"), str(tmp_path / "shards"), "--samples-per-shard", "4"):
            [r"list train: done, 4 units in", rf"shard train: done, {len(shards)} shards, {BYTES} in",
             r"list val: done, 1 units in", r"shard val: done, 2 shards, "],
        ("verify", str(made / "shards")): [rf"verify train: done, {len(shards)} shards, {BYTES} in",
                                           r"verify val: done, 2 shards, "],
    }
    for args, expected in steps.items():
        done = run_cli(*args, *every)
        assert done.returncode == 0, (args, done.stderr)
        assert "\r" not in done.stderr and "\x1b" not in done.stderr, args
        ours = [line for line in done.stderr.splitlines() if re.match(STAMP, line)]
        assert ours == [line for line in done.stderr.splitlines() if line.strip()], (args, done.stderr)
        for pattern in expected:
            assert any(re.match(STAMP + pattern, line) for line in ours), (args, pattern, done.stderr)


def test_quiet_is_silent(made: Path, tmp_path: Path) -> None:
    done = run_cli("stage", str(made / "shards"), str(tmp_path / "staged"), "-q", "--progress-every", "0.01")
    assert done.returncode == 0 and done.stderr == ""


def test_on_a_terminal_the_bar_as_before(made: Path, tmp_path: Path) -> None:
    """stderr a pty: tqdm's bar, redrawn with carriage returns, and no progress line."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a terminal 100 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "imnet_data", "stage", str(made / "shards"),
                             str(tmp_path / "staged"), "--max-rate", f"{staged_bytes(made / 'shards') // 2}B",
                             "--progress-every", "0.1"], stdout=subprocess.PIPE, stderr=child, cwd=ROOT)
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:                  # the child closed the terminal (EIO)
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(60) == 0
    text = seen.decode(errors="replace")
    assert "\r" in text and re.search(r"stage: +\d+%\|", text), text
    assert "ETA" not in text and "done," not in text


def test_a_line_says_what_a_person_needs() -> None:
    """The line's parts, computed: units and bytes done of their totals, the average rate and what is left at it."""
    out = io.StringIO()
    lines = Lines(2_000_000_000, "shard train", "B", items=147, item_unit="shards", every=3600, stream=out)
    lines.start -= 100                               # as if the step had run 100 s
    lines.update(500_000_000, items=40)
    assert lines.line() == "shard train: 40/147 shards, 500.0 MB/2.0 GB (25.0%), 5.0 MB/s, ETA 5m 00s"
    lines.update(1_500_000_000, items=107)
    lines.close()
    assert re.fullmatch(STAMP + r"shard train: done, 147 shards, 2\.0 GB in 1m 40s \(20\.0 MB/s\)\n",
                        out.getvalue())
    counted = Lines(None, "list", "units", every=3600, stream=out)
    counted.update(3)
    counted.close(ok=False)                          # stopped by an error: no "done" line
    assert out.getvalue().count("\n") == 1 and counted.line().startswith("list: 3 units, ")
    assert [duration(s) for s in (5, 65, 7325, 90000)] == ["5s", "1m 05s", "2h 02m", "1d 01h"]


def test_progress_every_must_be_a_positive_number(made: Path, tmp_path: Path) -> None:
    for bad in ("0", "-1", "soon"):
        refused = run_cli("verify", str(made / "shards"), "--progress-every", bad)
        assert refused.returncode == 2 and "--progress-every" in refused.stderr
