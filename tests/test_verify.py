"""Tests of ``imnet-data verify`` and ``imnet-data preview`` on real shards of a fake download: sound shards
pass, and each kind of damage (flipped byte, truncation, missing file, undecodable image) is named."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.shards import ShardOptions, shard
from imnet_data.shards.preview import CELL, pick, preview, shard_paths
from imnet_data.shards.verify import verify
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards (6 samples each) of a fake download with quirks: train 4 shards, val 2."""
    root = tmp_path_factory.mktemp("verify")
    result = make_fake(root / "src", FakeOptions(classes=5, train_per_class=4, val_images=10, with_quirks=True,
                                                 seed=1), quiet=True)
    shard(result.out, root / "dest", ShardOptions(samples_per_shard=6), jobs=1, quiet=True)
    return root / "dest"


@pytest.fixture
def dest(built: Path, tmp_path: Path) -> Path:
    """A private copy of the shards, free to damage."""
    return Path(shutil.copytree(built, tmp_path / "dest"))


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def shard_file(dest: Path, split: str = "train", i: int = 1) -> Path:
    return dest / split / manifest(dest / split)["shards"][i]["name"]


def member(tar: Path, sample: int, ext: str) -> tuple[str, int, int]:
    """``(key, offset, size)`` of one member of the ``sample``-th sample, from the shard's DALI index."""
    fields = tar.with_suffix(".idx").read_text().splitlines()[1 + sample].split()
    for i in range(0, len(fields), 4):
        if fields[i] == ext:
            return fields[i + 3].rsplit(".", 1)[0], int(fields[i + 1]), int(fields[i + 2])
    raise KeyError(ext)


def verify_cli(dest: Path, *args: str) -> tuple[int, dict]:
    r = run_cli("verify", str(dest), "--quiet", "--json", "--jobs", "2", *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_fresh_shards_pass(built: Path) -> None:
    code, report = verify_cli(built, "--deep")
    assert code == 0 and report["ok"] and report["problems"] == []
    assert report["splits"] == ["train", "val"] and report["shards"] == 6 and report["samples"] == 30
    assert report["bytes"] == sum(manifest(built / s)["num_bytes"] for s in ("train", "val"))
    text = run_cli("verify", str(built / "val"), "-q")
    assert text.returncode == 0 and "verified 2 shards of val" in text.stdout and "OK" in text.stdout
    one = verify(built, splits=["train"], jobs=1, quiet=True)
    assert one.ok and one.splits == ["train"] and one.samples == 20


def test_flipped_byte_is_named(dest: Path) -> None:
    tar = shard_file(dest)
    _, offset, size = member(tar, 2, "jpg")
    data = bytearray(tar.read_bytes())
    data[offset + size // 2] ^= 0x01
    tar.write_bytes(bytes(data))
    code, report = verify_cli(dest)
    assert code == 1 and report["problems"] == [f"train/{tar.name}: sha256 differs from the manifest"]


@pytest.mark.parametrize("cut, why", [(700, "unexpected end of data"),           # inside a member
                                      (0, "no end-of-archive marker after 4 samples")])  # between samples
def test_truncated_shard_is_reported_not_fatal(dest: Path, cut: int, why: str) -> None:
    tar = shard_file(dest)
    data = tar.read_bytes()
    tar.write_bytes(data[:len(data) // 2 + cut])
    code, report = verify_cli(dest)
    assert code == 1
    assert any(p.startswith(f"train/{tar.name}: truncated/corrupt tar ({why}") for p in report["problems"])
    assert all(p.startswith(f"train/{tar.name}: ") for p in report["problems"])
    r = run_cli("verify", str(dest), "-q", "--deep")
    assert r.returncode == 1 and "truncated/corrupt tar" in r.stdout and "Traceback" not in r.stderr


def test_damaged_header_ends_the_tar_early(dest: Path) -> None:
    tar = shard_file(dest, "val", 0)
    _, offset, _ = member(tar, 3, "cls")
    data = bytearray(tar.read_bytes())
    data[offset - 512 + 150] ^= 0x07        # the header's checksum field: tarfile would stop quietly here
    tar.write_bytes(bytes(data))
    report = verify(dest / "val", quiet=True, jobs=1)
    assert not report.ok
    assert any(p.startswith(f"val/{tar.name}: truncated/corrupt tar (no end-of-archive marker after 3 samples")
               for p in report.problems), report.problems
    assert f"val/{tar.name}: 3 samples, the manifest says 6" in report.problems


def test_missing_shard_and_index(dest: Path) -> None:
    tar = shard_file(dest, "train", 3)
    tar.unlink()
    idx = shard_file(dest, "val", 1).with_suffix(".idx")
    idx.unlink()
    code, report = verify_cli(dest)
    assert code == 1
    assert f"train/{tar.name}: missing" in report["problems"]
    assert any(p.startswith(f"val/{idx.name}: missing") for p in report["problems"])
    assert len(report["problems"]) == 2


def test_deep_finds_an_undecodable_image_that_matches_the_manifest(dest: Path) -> None:
    """Corrupt an image in place, then make the manifest agree with the new bytes: only --deep can tell."""
    tar = shard_file(dest)
    key, offset, _ = member(tar, 4, "jpg")
    data = bytearray(tar.read_bytes())
    data[offset:offset + 16] = bytes(16)    # no JPEG marker left: not an image, same size
    tar.write_bytes(bytes(data))
    m = manifest(dest / "train")
    m["shards"][1]["sha256"] = hashlib.sha256(data).hexdigest()
    (dest / "train" / "manifest.json").write_text(json.dumps(m))
    code, report = verify_cli(dest)
    assert code == 0 and report["ok"]
    code, report = verify_cli(dest, "--deep")
    assert code == 1 and len(report["problems"]) == 1
    assert report["problems"][0].startswith(f"train/{tar.name}: {key}: .jpg does not decode")


def test_deep_finds_a_cls_that_disagrees_with_the_json(dest: Path) -> None:
    tar = shard_file(dest, "val", 0)
    key, offset, size = member(tar, 0, "cls")
    data = bytearray(tar.read_bytes())
    old = int(data[offset:offset + size])
    new = str((old + 1) % 10 ** size).rjust(size, "0")   # same length, another class
    data[offset:offset + size] = new.encode()
    tar.write_bytes(bytes(data))
    m = manifest(dest / "val")
    counts = dict(map(tuple, m["shards"][0]["histogram"]))
    counts[old] -= 1
    counts[int(new)] = counts.get(int(new), 0) + 1
    m["shards"][0].update(sha256=hashlib.sha256(data).hexdigest(),
                          histogram=sorted([k, v] for k, v in counts.items() if v))
    (dest / "val" / "manifest.json").write_text(json.dumps(m))
    assert verify(dest, quiet=True, jobs=1).ok
    report = verify(dest, deep=True, quiet=True, jobs=1)
    assert report.problems == [f"val/{tar.name}: {key}: .cls {int(new)} differs from the .json label {old}"]


def test_not_a_shard_folder_is_an_error(tmp_path: Path) -> None:
    r = run_cli("verify", str(tmp_path), "-q")
    assert r.returncode == 2 and "not a shard output folder" in r.stderr   # a usage error
    with pytest.raises(ValueError):
        verify(tmp_path, quiet=True)


def test_preview_grid_size_and_determinism(built: Path, tmp_path: Path) -> None:
    r = run_cli("preview", str(built / "train"), "--out", str(tmp_path / "a.png"), "-q")
    assert r.returncode == 0 and str(tmp_path / "a.png") in r.stdout
    with Image.open(tmp_path / "a.png") as img:
        assert img.format == "PNG" and img.size == (4 * CELL, 4 * CELL)      # 16 samples, 4 x 4
    preview(built / "train", tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    one = shard_file(built, "val", 0)
    out = preview(one, tmp_path / "c.png", n=7, columns=3)
    with Image.open(out) as img:
        assert img.size == (3 * CELL, 2 * CELL)          # a shard holds 6 samples: 3 x 2
    assert not list(tmp_path.glob("*.partial"))


def test_preview_per_class_gives_one_cell_per_class(built: Path, tmp_path: Path) -> None:
    classes = [i for i, c in enumerate(manifest(built / "train")["class_counts"]) if c]
    chosen = pick(shard_paths(built / "train"), 100, per_class=True)
    assert [s.label for s in chosen] == classes
    names = {c["index"]: c["name"] for c in manifest(built / "train")["classes"]}
    assert [s.name for s in chosen] == [names[i] for i in classes]
    r = run_cli("preview", str(built / "train"), "--out", str(tmp_path / "p.png"), "--per-class", "--n", "100",
                "--columns", "1", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["height"] == len(classes) * CELL
    out = preview(built / "train", tmp_path / "q.png", n=3, per_class=True)
    cols = math.ceil(math.sqrt(3))
    with Image.open(out) as img:
        assert img.size == (cols * CELL, math.ceil(3 / cols) * CELL)
    assert len(pick(shard_paths(built / "train"), 3, per_class=True)) == 3


def test_preview_of_nothing_is_an_error(tmp_path: Path) -> None:
    r = run_cli("preview", str(tmp_path), "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "neither a shard .tar nor a split folder" in r.stderr   # a usage error
