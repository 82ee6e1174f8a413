"""``tools/train_imagenet.py`` as a user runs it: torchrun with 2 gloo ranks on the CPU, on shards of a fake
download; killed (SIGKILL) after a checkpoint and resumed on 3 ranks (from 2, and from 4 at 37% of the epoch), it
trains on exactly the samples the checkpoint had not seen, in the same global order, and no two ranks see the same
sample."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.shards import ShardOptions, shard
from tests.helpers import ROOT, alive, descendants

torch = pytest.importorskip("torch", reason="the training script needs torch")
pytest.importorskip("torchvision", reason="the training script builds a torchvision model")


def torchrun(data: Path, work: Path, *extra: str, ranks: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
           str(ROOT / "tools" / "train_imagenet.py"), "--data", str(data), "--arch", "resnet18", "--epochs", "1",
           "--batch-size", "4", "--device", "cpu", "--backend", "torch", "--threads", "0", "--min-res", "96",
           "--max-res", "96", "--val-res", "32", "--checkpoint", str(work / "ck.pt"), "--log-every", "5",
           "--record", str(work / "record"), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (torchrun starts its workers in sessions of their own), as a
    node failure would, and wait until none is left."""
    tree = descendants(pid) | {pid}
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(alive(m) for m in tree - {pid}) and time.monotonic() < deadline:
        time.sleep(0.05)


def records(work: Path, rank: int) -> list[dict]:
    path = work / "record" / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.parametrize("ranks, resumed_on, per_class, every, kill_at", [
    (2, 3, 40, 3, 6),       # 240 samples, killed at the checkpoint of step 6 or later (48 samples, 20%, or more)
    (4, 3, 36, 5, 5)])      # 216 samples, killed at step 5's checkpoint: 80 samples, 37% (not a multiple of 3 x 4)
def test_killed_and_resumed_on_other_ranks_training_sees_each_sample_once(
        tmp_path: Path, ranks: int, resumed_on: int, per_class: int, every: int, kill_at: int) -> None:
    src = make_fake(tmp_path / "src", FakeOptions(classes=6, train_per_class=per_class, val_images=12, seed=5),
                    quiet=True)
    shard(src.out, tmp_path / "shards", ShardOptions(samples_per_shard=15), quiet=True)
    total, work = 6 * per_class, tmp_path / "work"
    (work / "record").mkdir(parents=True)
    first = torchrun(tmp_path / "shards", work, "--order", "global", "--checkpoint-every", str(every), ranks=ranks)
    deadline = time.monotonic() + 240
    meta = work / "ck.json"
    while first.poll() is None and time.monotonic() < deadline:
        if meta.is_file() and json.loads(meta.read_text())["loader"]["step"] >= kill_at:
            break
        time.sleep(0.01)
    assert first.poll() is None, f"finished before it could be killed: {first.stdout.read()}"
    kill_tree(first.pid)
    first.wait()
    checkpoint = json.loads(meta.read_text())["loader"]
    seen = [[r for r in records(work, rank) if r["step"] < checkpoint["step"]] for rank in range(ranks)]
    assert all([r["step"] for r in mine] == list(range(checkpoint["step"])) for mine in seen)
    before = {rank: len(records(work, rank)) for rank in range(ranks)}
    resumed = torchrun(tmp_path / "shards", work, "--resume", "--checkpoint-every", str(every), ranks=resumed_on)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    span = resumed_on * 4                                       # a global batch of the resumed ranks
    left = (total - checkpoint["position"]) // span
    assert f"resumed epoch 0 at step 0 of {left}, sample {checkpoint['position']} ({checkpoint['step']} steps done, " \
           f"{ranks} -> {resumed_on} ranks)" in out and "val top1" in out
    again = [records(work, rank)[before.get(rank, 0):] for rank in range(resumed_on)]
    assert all([r["step"] for r in mine] == list(range(left)) for mine in again)
    from imnet_data.loader import build_loader
    whole = build_loader(tmp_path / "shards", "train", 1, backend="torch", device="cpu", seed=0, image_size=96)
    order = [k for b in whole.positions() for k in whole.keys(b)]
    trained = [k for step in zip(*seen, strict=True) for r in step for k in r["keys"]] + \
              [k for step in zip(*again, strict=True) for r in step for k in r["keys"]]
    assert trained == order[:len(trained)]                  # the global order, across the resize, each sample once
    assert len(trained) == checkpoint["position"] + span * left   # all but what the last global batch cannot take


# ---- what the script refuses: a checkpoint it cannot use, starting over a checkpoint, a missing [train] extra ----

SCRIPT = ROOT / "tools" / "train_imagenet.py"


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-small")
    src = make_fake(root / "src", FakeOptions(classes=2, train_per_class=8, val_images=4, seed=1), quiet=True)
    shard(src.out, root / "shards", ShardOptions(samples_per_shard=8), quiet=True)
    return root / "shards"


def train_once(data: Path, checkpoint: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--data", str(data), "--arch", "resnet18", "--epochs", "1", "--batch-size",
           "4", "--backend", "torch", "--threads", "1", "--min-res", "32", "--max-res", "32", "--val-res", "32",
           "--checkpoint", str(checkpoint), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def checkpoint_bytes(kind: str) -> bytes:
    """A file at the checkpoint's path that is no usable checkpoint."""
    import io

    def saved(obj: object) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    whole = {"model": {"fc.weight": torch.zeros(1000, 512)}, "optimizer": {}, "loader": {}, "epoch": 0, "done": 0}
    return {"truncated": lambda: saved(whole)[:5000], "empty": lambda: b"",
            "random": lambda: random.Random(0).randbytes(4096),
            "protocol": lambda: b"\x80\xcc" + random.Random(1).randbytes(4094),  # torch warns of the protocol
            "list": lambda: saved([1, 2, 3]), "keys": lambda: saved({"model": {}, "epoch": "0"}),
            "other-model": lambda: saved(whole)}[kind]()


@pytest.mark.parametrize("kind, reason", [
    ("truncated", "not a readable checkpoint"), ("empty", "not a readable checkpoint"),
    ("random", "not a readable checkpoint"), ("protocol", "not a readable checkpoint"),
    ("list", "not a checkpoint of this script (holds a list, not a dict)"),
    ("keys", "not a checkpoint of this script: optimizer (missing), loader (missing), epoch (str, not int), "
             "done (missing)"),
    ("other-model", "does not fit this run (resnet18, these shards and ranks): Error(s) in loading state_dict")])
def test_resume_refuses_a_bad_checkpoint_in_one_line_and_keeps_it(small_shards: Path, tmp_path: Path, kind: str,
                                                                   reason: str) -> None:
    checkpoint = tmp_path / "ck.pt"
    checkpoint.write_bytes(bad := checkpoint_bytes(kind))
    result = train_once(small_shards, checkpoint, "--resume")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"train_imagenet.py: {checkpoint}: {reason}"), line
    assert checkpoint.read_bytes() == bad and sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_a_run_without_resume_does_not_start_over_a_checkpoint(small_shards: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.pt"
    checkpoint.write_bytes(b"someone's run")
    result = train_once(small_shards, checkpoint)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"train_imagenet.py: {checkpoint} exists: --resume to continue from it, or remove it (or name another "
        "--checkpoint) to start over"]
    assert checkpoint.read_bytes() == b"someone's run"


def test_help_and_a_missing_train_extra(small_shards: Path, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"           # torch and torchvision as a base install (no [train] extra) lacks them
    hidden.mkdir()
    for name in ("torch", "torchvision"):
        (hidden / f"{name}.py").write_text(f"raise ModuleNotFoundError({f'No module named {name!r}'!r}, "
                                           f"name={name!r})\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hidden), *filter(None, [os.environ.get("PYTHONPATH")])])}
    shown = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, **env}, timeout=60)
    assert shown.returncode == 0 and "--resume" in shown.stdout and "default: cuda when a GPU is visible, else cpu" \
        in shown.stdout, shown.stderr
    missing = train_once(small_shards, tmp_path / "ck.pt", env=env)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == ["train_imagenet.py: needs torch: pip install -e '.[train]'"]
