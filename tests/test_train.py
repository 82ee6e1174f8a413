"""``tools/train_imagenet.py`` as a user runs it: torchrun with 2 gloo ranks on the CPU, on shards of a fake
download; killed (SIGKILL) after a checkpoint and resumed, it trains on exactly the batches the checkpoint had
not seen, and the two ranks never see the same sample."""
from __future__ import annotations

import json
import os
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


def torchrun(data: Path, work: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tools" / "train_imagenet.py"), "--data", str(data), "--arch", "resnet18", "--epochs", "1",
           "--batch-size", "4", "--device", "cpu", "--backend", "torch", "--threads", "0", "--min-res", "96",
           "--max-res", "96", "--val-res", "32", "--checkpoint", str(work / "ck.pt"), "--checkpoint-every", "3",
           "--log-every", "5", "--record", str(work / "record"), *extra]
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


def test_killed_and_resumed_training_sees_each_batch_once(tmp_path: Path) -> None:
    src = make_fake(tmp_path / "src", FakeOptions(classes=6, train_per_class=40, val_images=12, seed=5), quiet=True)
    shard(src.out, tmp_path / "shards", ShardOptions(samples_per_shard=15), quiet=True)
    work = tmp_path / "work"
    (work / "record").mkdir(parents=True)
    first = torchrun(tmp_path / "shards", work)
    deadline = time.monotonic() + 240
    meta = work / "ck.json"
    while first.poll() is None and time.monotonic() < deadline:
        if meta.is_file() and json.loads(meta.read_text())["loader"]["step"] >= 6:
            break
        time.sleep(0.01)
    assert first.poll() is None, f"finished before it could be killed: {first.stdout.read()}"
    kill_tree(first.pid)
    first.wait()
    checkpoint = json.loads(meta.read_text())["loader"]
    seen = {rank: [r for r in records(work, rank) if r["step"] < checkpoint["step"]] for rank in (0, 1)}
    before = {rank: len(records(work, rank)) for rank in (0, 1)}
    resumed = torchrun(tmp_path / "shards", work, "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"resumed epoch 0 at step {checkpoint['step']}" in out and "val top1" in out
    from imnet_data.loader import build_loader
    keys_of_rank = {}
    for rank in (0, 1):
        again = records(work, rank)[before[rank]:]
        assert [r["step"] for r in again] == list(range(checkpoint["step"], checkpoint["batches"]))
        assert [r["step"] for r in seen[rank]] == list(range(checkpoint["step"]))
        schedule = build_loader(tmp_path / "shards", "train", 4, backend="torch", device="cpu", rank=rank,
                                world_size=2, seed=0, image_size=96)
        assert [r["keys"] for r in seen[rank] + again] == [schedule.batch_keys(s) for s in range(len(schedule))]
        keys_of_rank[rank] = {k for r in seen[rank] + again for k in r["keys"]}
    assert keys_of_rank[0] and keys_of_rank[1] and not keys_of_rank[0] & keys_of_rank[1]
