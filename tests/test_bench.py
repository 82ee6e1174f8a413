"""Tests of the measuring code on real shards (CPU): ``bench --host-only``, plain DALI as a user writes it, and
``tools/gpu_check.py --cpu-dry-run``, the one command the GPU machine runs, so it is known to work before a GPU
sees it."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.shards import ShardOptions, shard
from tests.helpers import ROOT, run_cli

pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install nvidia-dali-cuda130")
torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    src = make_fake(root / "src", FakeOptions(classes=5, train_per_class=8, val_images=10, seed=2), quiet=True)
    shard(src.out, root / "shards", ShardOptions(samples_per_shard=7), quiet=True)
    return root / "shards"


def labels_in(folder: Path) -> Counter:
    manifest = json.loads((folder / "manifest.json").read_text())
    counts: Counter = Counter()
    for entry in manifest["shards"]:
        counts.update(dict(entry["histogram"]))
    return counts


def test_plain_dali_reads_every_label_of_an_epoch(shards: Path) -> None:
    from imnet_data.bench.peers import plain_dali

    batches = plain_dali(shards / "train", 8, 1, None, image_size=32)
    seen = Counter()
    for images, labels in (next(batches) for _ in range(40 // 8)):
        assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
        seen.update(labels.tolist())
    assert seen == labels_in(shards / "train")


def test_host_only_bench_prints_both_paths_and_their_ratio(shards: Path) -> None:
    result = run_cli("bench", str(shards), "--host-only", "--threads", "1", "--batch-size", "8", "--batches", "4",
                     "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = [r["name"] for r in report["rows"]]
    assert names == ["loader host path, 1 threads", "DALI readers.webdataset, 1 threads"]
    assert all(r["images_per_s"] > 0 for r in report["rows"])
    ratio = report["ratios"]["host path / DALI reader, 1 threads"]
    assert ratio == pytest.approx(report["rows"][0]["images_per_s"] / report["rows"][1]["images_per_s"])
    text = run_cli("bench", str(shards), "--host-only", "--threads", "1", "--batch-size", "8", "--batches", "2",
                   "--quiet")
    assert "ratio host path / DALI reader, 1 threads:" in text.stdout
    missing = run_cli("bench", str(shards / "train"), "--host-only")
    assert missing.returncode == 1 and "not a shard output folder" in missing.stderr


def test_gpu_check_dry_run_measures_every_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "tools/gpu_check.py", "--out", str(out), "--work", str(tmp_path / "w"),
                           "--cpu-dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["dry_run"] and all(p["ok"] for p in results["phases"].values())
    assert set(results["phases"]) == {"data", "pytest -m gpu", "measure"}
    assert results["phases"]["data"]["detail"]["train"]["samples"] == 40
    groups = Counter(r["group"] for r in results["rows"])
    assert groups == {"loader": 4, "peer": 2, "ceiling": 1, "sweep hw_decoder_load": 5, "sweep num_threads": 2,
                      "sweep prefetch": 2, "host path": 4, "end to end": 6}
    assert all(r["images_per_s"] > 0 for r in results["rows"])
    ratios = results["ratios"]
    for key in ("train bf16 / plain DALI", "train bf16 / ImageFolder", "resnet50 fed by the loader / resident",
                "resnet18 fed by plain DALI / resident", "host path / DALI reader, 2 threads"):
        assert ratios[key] > 0
    assert [t["met"] for t in results["targets"]] == [None] * 6 and all(t["measured"] for t in results["targets"])

    spent = subprocess.run([sys.executable, "tools/gpu_check.py", "--out", str(tmp_path / "spent"), "--work",
                            str(tmp_path / "w"), "--cpu-dry-run", "--budget", "0"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)     # no time left: the target rows only, the rest listed
    assert spent.returncode == 0, spent.stdout[-3000:] + spent.stderr[-3000:]
    results = json.loads((tmp_path / "spent" / "results.json").read_text())
    assert Counter(r["group"] for r in results["rows"]) == {"loader": 4, "peer": 2, "end to end": 6}
    assert len(results["skipped"]) == 1 + 5 + 2 + 2 + 2 and all(t["measured"] for t in results["targets"])
    assert "Skipped (12 rows, the time budget spent)" in (tmp_path / "spent" / "results.md").read_text()
    table = (out / "results.md").read_text()
    assert "| end to end | resnet18 fed by the loader |" in table and "| train / plain DALI | 1.15 |" in table
