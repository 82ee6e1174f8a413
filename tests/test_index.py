"""``imnet-data index``: timm-style WebDataset shards (written here with webdataset's TarWriter, as timm's
``imagenet-1k-wds`` was) adopted without a byte of them changed; then verify, preview, stage, the loader and
timm itself work on them, every label checked; tars that are not what they claim are named with their member."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import webdataset as wds

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.shards import ShardOptions, shard
from tests.helpers import run_cli

SPLITS = {"train": "train", "val": "validation"}


@pytest.fixture(scope="module")
def timm_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    """timm's layout: flat ``imagenet1k-<split>-NNNN.tar`` of ``.jpg``/``.cls``/``.json``, its ``_info.json``;
    and the truth, split -> key -> label."""
    root = tmp_path_factory.mktemp("timm")
    fake = make_fake(root / "src", FakeOptions(classes=5, train_per_class=6, val_images=10, seed=5), quiet=True)
    ours = root / "ours"
    shard(fake.out, ours, ShardOptions(samples_per_shard=100), quiet=True)
    out, info, truth = root / "wds", {"splits": {}}, {}
    out.mkdir()
    for split, name in SPLITS.items():
        samples = [s for t in sorted((ours / split).glob("*.tar")) for s in wds.WebDataset(str(t), shardshuffle=False)]
        truth[split] = {s["__key__"]: int(s["cls"]) for s in samples}
        files = []
        for i in range(3):
            files.append(f"imagenet1k-{name}-{i:04d}.tar")
            with wds.TarWriter(str(out / files[-1])) as writer:
                for s in samples[i::3]:
                    meta = json.loads(s["json"])
                    writer.write({"__key__": s["__key__"], "jpg": s["jpg"], "cls": s["cls"],
                                  "json": json.dumps({"filename": meta["file"], "label": meta["label"]}).encode()})
        info["splits"][name] = {"name": name, "num_samples": len(samples), "filenames": files,
                                "shard_lengths": [len(samples[i::3]) for i in range(3)]}
    (out / "_info.json").write_text(json.dumps(info))
    return out, truth


@pytest.fixture(scope="module")
def indexed(timm_like: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, _ = timm_like
    dest = tmp_path_factory.mktemp("indexed") / "wds"
    shutil.copytree(src, dest)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.glob("*.tar")}
    done = run_cli("index", str(dest), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.glob("*.tar")} == sums   # untouched
    return dest


def test_index_writes_what_our_shards_carry(indexed: Path, timm_like: tuple[Path, dict]) -> None:
    _, truth = timm_like
    for split in SPLITS:
        manifest = json.loads((indexed / split / "manifest.json").read_text())
        assert manifest["num_samples"] == len(truth[split]) and len(manifest["classes"]) == 1000
        counts = [0] * 1000
        for label in truth[split].values():
            counts[label] += 1
        assert manifest["class_counts"] == counts
        for s in manifest["shards"]:
            tar = indexed / split / s["name"]
            assert tar.samefile(indexed / s["name"])   # a link to the user's file, not a copy
            assert hashlib.sha256(tar.read_bytes()).hexdigest() == s["sha256"]
        assert (indexed / split / "wids.json").is_file()
    info = json.loads((indexed / "_info.json").read_text())
    assert info["splits"]["validation"]["num_samples"] == len(truth["val"])


def test_index_files_equal_dalis_wds2idx(indexed: Path, tmp_path: Path) -> None:
    tool = shutil.which("wds2idx") or str(Path(sys.executable).parent / "wds2idx")
    if not Path(tool).exists():
        pytest.skip("DALI's wds2idx is not installed (pip install nvidia-dali-cuda130)")
    for tar in sorted(indexed.glob("*/*.tar")):
        subprocess.run([tool, str(tar), str(tmp_path / "ref.idx")], check=True, capture_output=True)
        assert tar.with_suffix(".idx").read_bytes() == (tmp_path / "ref.idx").read_bytes(), tar.name


def test_verify_preview_and_stage_work_on_adopted_shards(indexed: Path, tmp_path: Path) -> None:
    assert run_cli("verify", str(indexed), "--deep", "--quiet").returncode == 0
    assert run_cli("preview", str(indexed / "val"), "--out", str(tmp_path / "v.png"), "--quiet").returncode == 0
    done = run_cli("stage", str(indexed), str(tmp_path / "staged"), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_cli("verify", str(tmp_path / "staged"), "--quiet").returncode == 0


def test_the_loader_reads_every_label(indexed: Path, timm_like: tuple[Path, dict]) -> None:
    torch = pytest.importorskip("torch")
    from imnet_data.loader import build_loader

    _, truth = timm_like
    loader = build_loader(indexed, "val", batch_size=4, backend="torch", device="cpu", image_size=32,
                          num_threads=0, remainder="partial")
    labels = torch.cat([y for _, y in loader]).tolist()
    assert sorted(labels) == sorted(truth["val"].values())


@pytest.mark.parametrize("split", ["train", "validation"])
def test_timm_still_reads_its_own_info(indexed: Path, timm_like: tuple[Path, dict], split: str) -> None:
    timm_data = pytest.importorskip("timm.data")
    _, truth = timm_like
    ds = timm_data.create_dataset("wds/imagenet-1k", root=str(indexed), split=split, is_training=False,
                                  batch_size=1)
    labels = sorted(int(target) for _, target in ds)
    assert labels == sorted(truth[{"validation": "val"}.get(split, split)].values())


def rewrite(path: Path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path)) as writer:
        for s in samples:
            writer.write(s)


def one_sample(key: str, label: str = "3") -> dict:
    return {"__key__": key, "jpg": b"\xff\xd8\xff not decoded by index", "cls": label.encode()}


BAD = {
    "no label": (lambda p: rewrite(p, [{"__key__": "k1", "jpg": b"\xff\xd8\xff"}]), "sample 'k1': no label"),
    "label outside": (lambda p: rewrite(p, [one_sample("k1", "1000")]), "sample 'k1': label 1000 is outside"),
    "two samples one key": (lambda p: rewrite(p, [one_sample("k1"), one_sample("k2"), one_sample("k1")]),
                            "sample 'k1' also in"),
    "truncated": (lambda p: (rewrite(p, [one_sample(f"k{i}") for i in range(9)]),
                             p.write_bytes(p.read_bytes()[:3000])), "truncated or corrupt tar"),
    "no image": (lambda p: rewrite(p, [{"__key__": "k1", "cls": b"3"}]), "sample 'k1': no image member"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_tar_that_is_not_what_it_claims_is_named_and_left_alone(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    folder = tmp_path / "wds" / "val"
    folder.mkdir(parents=True)
    rewrite(folder / "good-0000.tar", [one_sample("g1")])
    bad = folder / "bad-0001.tar"
    make(bad)
    before = bad.read_bytes()
    done = run_cli("index", str(tmp_path / "wds"), "--quiet")
    assert done.returncode == 1
    assert str(bad) in done.stdout and message in done.stdout, done.stdout
    assert bad.read_bytes() == before and not (folder / "manifest.json").exists()
    assert "Traceback" not in done.stderr


def test_shards_of_image_and_label_alone_verify(tmp_path: Path) -> None:
    folder = tmp_path / "wds" / "train"
    folder.mkdir(parents=True)
    rewrite(folder / "a-0000.tar", [one_sample(f"k{i}", str(i)) for i in range(4)])
    assert run_cli("index", str(tmp_path / "wds"), "--quiet").returncode == 0
    done = run_cli("verify", str(tmp_path / "wds"), "--quiet")
    assert done.returncode == 0, done.stdout


def test_a_folder_without_shards_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("index", str(tmp_path), "--quiet")
    assert done.returncode == 2 and "no WebDataset shards" in done.stderr
