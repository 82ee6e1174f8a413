"""Interrupted runs, as a user interrupts them: Ctrl-C (SIGINT to the whole process group, as a terminal sends it)
or SIGTERM (``kill PID``) once the command is under way. Every command then prints one line and no traceback,
exits 130 / 143, leaves no worker process and nothing half-written under a final name; the same command run
again completes, byte-identical to a run never interrupted. organize also removes the temp files a killed run
left among its records, and refuses to run beside another organize into the same DEST."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.organize import REPORT, STATE
from imnet_data.shards import ShardOptions, shard
from imnet_data.stage import stage
from tests.helpers import ROOT, alive, descendants, run_cli

SHARD = ["--samples-per-shard", "60", "--short-side", "96", "--quality", "80", "--splits", "train"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    """Real-photo images, resized when sharded: slow enough to be caught mid-run."""
    pytest.importorskip("skimage", reason="real-photo fakes need scikit-image (the test extra)")
    return make_fake(tmp_path_factory.mktemp("photos") / "src",
                     FakeOptions(classes=8, train_per_class=60, val_images=8, profile="imagenet"), quiet=True)


@pytest.fixture(scope="module")
def clean(photos: FakeResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shards of a run never interrupted."""
    dest = tmp_path_factory.mktemp("clean") / "shards"
    shard(photos.out, dest, ShardOptions(samples_per_shard=60, short_side=96, quality=80), splits=["train"],
          quiet=True)
    return dest


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    """4,000 small images in 40 class tars: organize takes a few seconds."""
    return make_fake(tmp_path_factory.mktemp("many") / "src",
                     FakeOptions(classes=40, train_per_class=100, val_images=0, seed=2), quiet=True)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative name, temp files (``*.partial``) aside."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".partial")}


def interrupt(command: str, args: list[str], ready: Callable[[int], bool], sig: int, group: bool) -> set[int]:
    """Run ``imnet-data COMMAND ARGS`` in a session of its own, wait until ``ready(pid)``, send ``sig`` (to the
    process group: a terminal's Ctrl-C; else to the command alone: ``kill``), and check what every interrupt
    must give: the exit status 128 + sig, the one line on stderr and nothing else, and every process it
    started gone. Returns those processes."""
    proc = subprocess.Popen([sys.executable, "-m", "imnet_data", command, *args, "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not ready(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"finished before it could be interrupted: {proc.stderr.read()}"
    started = descendants(proc.pid)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert err.splitlines() == [f"imnet-data {command}: interrupted; run the same command again to resume"]
    assert out == ""
    assert [p for p in started if alive(p)] == []
    return started


def appeared(folder: Path, pattern: str) -> Callable[[int], bool]:
    """Under way: a file matching ``pattern`` is in ``folder``."""
    return lambda pid: folder.is_dir() and any(folder.glob(pattern))


# ---- shard ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "kill"])
def test_shard_interrupted_then_rerun_is_byte_identical(photos: FakeResult, clean: Path, tmp_path: Path,
                                                        sig: int, group: bool) -> None:
    dest = tmp_path / "shards"
    args = [str(photos.out), str(dest), *SHARD, "--jobs", "2"]
    workers = interrupt("shard", args, appeared(dest / "train", "*.tar.*.partial"), sig, group)
    assert len(workers) == 2                     # caught while the two workers wrote shards
    reference = files(clean)
    left = files(dest)
    assert "train/manifest.json" not in left
    assert {name: data for name, data in left.items() if data != reference.get(name)} == {}
    again = run_cli("shard", *args, "--quiet")
    assert again.returncode == 0, again.stderr
    assert files(dest) == reference
    assert not list(dest.rglob("*.partial"))


# ---- organize ------------------------------------------------------------------------------------------------

def test_organize_interrupted_then_rerun_completes(many: FakeResult, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    truth = {name: entry["sha256"] for name, entry in many.truth["train"].items()}
    args = [str(many.out), str(dest), "--splits", "train", "--jobs", "2"]
    interrupt("organize", args, appeared(dest / STATE / "train", "*.json"), signal.SIGINT, True)
    written = [p for p in (dest / "train").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert 0 < len(written) < len(truth) and not (dest / REPORT).exists()
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == truth[p.name] for p in written)
    again = run_cli("organize", *args, "--quiet", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"train": len(truth)}
    final = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (dest / "train").rglob("*") if p.is_file()}
    assert final == truth                        # complete, and no temp file left among the images
    assert not list(dest.rglob("*.partial"))


def test_organize_rerun_removes_its_own_leftover_temp_files(tmp_path: Path) -> None:
    fake = make_fake(tmp_path / "src", FakeOptions(classes=3, train_per_class=4, val_images=6), quiet=True)
    dest = tmp_path / "out"
    assert run_cli("organize", str(fake.out), str(dest), "--quiet").returncode == 0
    markers = dest / STATE / "train"
    wnid = sorted(p.stem for p in markers.glob("*.json"))[0]
    (markers / f"{wnid}.json").unlink()          # that unit is redone
    ours = [markers / f"{wnid}.json.4242-0badf00d.partial", markers / f"{wnid}.json.77-12345678.partial",
            dest / STATE / "val" / "val-0.json.99-abcdef01.partial", dest / f"{REPORT}.4242-0badf00d.partial",
            dest / "class_to_idx.json.4242-0badf00d.partial"]
    others = [markers / "notes.txt", markers / f"{wnid}.json.partial", dest / "mine.json.4242-0badf00d.partial",
              markers / f"{wnid}.jpg.4242-0badf00d.partial"]
    for path in ours + others:
        path.write_bytes(b"{half")               # as a run killed mid-write leaves them (SIGKILL: no cleanup)
    again = run_cli("organize", str(fake.out), str(dest), "--quiet", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"train": 12, "val": 6}
    assert [p for p in ours if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert (markers / f"{wnid}.json").is_file()


def test_organize_rerun_removes_a_killed_runs_staging_folder(tmp_path: Path) -> None:
    """A run killed (SIGKILL: no cleanup) before a class unit's staging folder was renamed into place leaves it
    half full beside the markers and no class folder; the re-run removes it and writes the class whole."""
    fake = make_fake(tmp_path / "src", FakeOptions(classes=3, train_per_class=4, val_images=6), quiet=True)
    dest = tmp_path / "out"
    assert run_cli("organize", str(fake.out), str(dest), "--quiet").returncode == 0
    markers = dest / STATE / "train"
    wnid = sorted(p.stem for p in markers.glob("*.json"))[0]
    truth = {p.name: p.read_bytes() for p in (dest / "train" / wnid).iterdir()}
    (markers / f"{wnid}.json").unlink()
    shutil.rmtree(dest / "train" / wnid)
    staging, other = markers / f"{wnid}.4242-0badf00d.partial", markers / "notes.partial"
    for folder in (staging, other):
        folder.mkdir()
        (folder / sorted(truth)[0]).write_bytes(b"half")
    again = run_cli("organize", str(fake.out), str(dest), "--quiet", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"train": 12, "val": 6}
    assert not staging.exists() and (other / sorted(truth)[0]).read_bytes() == b"half"   # only our names
    assert {p.name: p.read_bytes() for p in (dest / "train" / wnid).iterdir()} == truth


def test_organize_refuses_a_dest_another_organize_is_writing(tmp_path: Path) -> None:
    fake = make_fake(tmp_path / "src", FakeOptions(classes=2, train_per_class=2, val_images=2), quiet=True)
    dest = tmp_path / "out"
    (dest / STATE).mkdir(parents=True)
    with open(dest / STATE / "lock", "a") as held:          # what a running organize holds
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = run_cli("organize", str(fake.out), str(dest), "--quiet")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"imnet-data organize: error: {dest}: another organize run is writing here (it holds "
        f"{dest / STATE / 'lock'}); run again when it has ended"]
    assert not (dest / "train").exists()
    assert run_cli("organize", str(fake.out), str(dest), "--quiet").returncode == 0


# ---- validate, stage -----------------------------------------------------------------------------------------

def test_validate_deep_interrupted(photos: FakeResult, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    args = [str(photos.out), "--expect", "self", "--deep", "--jobs", "2", "--report", str(report)]
    workers = interrupt("validate", args, lambda pid: bool(descendants(pid)), signal.SIGINT, True)  # decoding
    assert workers and not report.exists()
    again = run_cli("validate", *args, "--quiet")
    assert again.returncode == 0, again.stderr
    assert json.loads(report.read_text())["ok"]


def test_stage_interrupted_then_rerun_is_byte_identical(clean: Path, tmp_path: Path) -> None:
    stage(clean, tmp_path / "reference", quiet=True)
    reference = files(tmp_path / "reference")
    dest = tmp_path / "local"
    args = [str(clean), str(dest), "--jobs", "2", "--max-rate", "400KB"]
    interrupt("stage", args, appeared(dest / "train", "*.tar.partial"), signal.SIGINT, True)
    assert list((dest / "train").glob("*.partial"))        # the running transfers stopped mid-file, not finished
    left = files(dest)
    assert "train/manifest.json" not in left
    assert [name for name, data in left.items() if data != reference.get(name)] == []
    again = run_cli("stage", *args, "--quiet", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] >= 1
    assert files(dest) == reference
