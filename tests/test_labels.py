"""Never a wrong label without a word: which layout a path is, which class index its labels are written in, and
what ``--expect official`` means for every layout. Run as a user would: the CLI in a subprocess, on downloads made
by the tool's own fakes, every ``.cls`` read back and compared with the catalog."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from imnet_data import catalog
from imnet_data.fake.imagenet21k import make_fake_imagenet21k
from tests.helpers import run_cli

WNIDS = catalog.ilsvrc2012().wnids


def labels(split_folder: Path) -> dict[str, int]:
    """Sample key -> ``.cls`` of every shard of a split folder, read from the tars."""
    out = {}
    for shard in sorted(split_folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".cls"):
                    out[member.name[:-4]] = int(tar.extractfile(member).read())
    return out


def wnid_of(key: str) -> str:
    return key.split("_")[0]


@pytest.fixture(scope="module")
def organized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's case: a fake download organized into ``org/{train,val}/<wnid>/``."""
    root = tmp_path_factory.mktemp("labels")
    assert run_cli("fake", str(root / "in"), "--classes", "5", "--train-per-class", "4", "--val-images", "10",
                   "-q").returncode == 0
    assert run_cli("organize", str(root / "in"), str(root / "org"), "-q").returncode == 0
    return root / "org"


@pytest.fixture(scope="module")
def extracted21k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake fall11 extracted to ``<wnid>/`` folders: half of its classes are not ImageNet-1k classes."""
    root = tmp_path_factory.mktemp("x21k")
    archive = make_fake_imagenet21k(root / "archive", classes=4, per_class=3)
    with tarfile.open(archive) as outer:
        for inner in outer.getmembers():
            with tarfile.open(fileobj=outer.extractfile(inner)) as tar:
                tar.extractall(root / "extracted" / inner.name[:-4], filter="data")
    return root / "extracted"


def test_an_organized_split_folder_is_folders_in_the_1k_space(organized: Path, tmp_path: Path) -> None:
    official = run_cli("validate", str(organized / "train"))
    assert official.returncode == 1 and "layout folders" in official.stdout and "NOT SOUND" in official.stdout
    assert "995" in official.stdout and "missing_class" in official.stdout   # a 5-class subset of 1000
    assert "no val split" not in official.stdout                             # one split's folder: only train
    own = run_cli("validate", str(organized / "train"), "--expect", "self")
    assert own.returncode == 0 and "SOUND: complete" in own.stdout
    done = run_cli("shard", str(organized / "train"), str(tmp_path / "sh"), "-q")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "sh" / "train" / "manifest.json").read_text())
    assert manifest["label_space"] == "imagenet-1k" and manifest["pattern"].startswith("imagenet-1k-train-")
    got = labels(tmp_path / "sh" / "train")
    assert len(got) == 20 and all(WNIDS[label] == wnid_of(key) for key, label in got.items())
    assert max(got.values()) > 4                                              # not 0..4 in the order found


def test_a_val_split_folder_keeps_its_name_and_the_1k_labels(organized: Path, tmp_path: Path) -> None:
    done = run_cli("shard", str(organized / "val"), str(tmp_path / "sh"), "-q")
    assert done.returncode == 0, done.stderr
    keys = json.loads((organized / "organize-report.json").read_text())["counts"]["val"]
    got = labels(tmp_path / "sh" / "val")
    truth = {p.stem: p.parent.name for p in (organized / "val").rglob("*.JPEG")}
    assert len(got) == keys == 10 and {k: WNIDS[v] for k, v in got.items()} == truth


def test_a_split_folder_named_otherwise_is_checked_only_against_itself(organized: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my-classes"
    shutil.copytree(organized / "train", mine)
    official = run_cli("validate", str(mine))
    assert official.returncode == 1 and "no split named 'my-classes'" in official.stdout
    assert run_cli("validate", str(mine), "--expect", "self").returncode == 0
    odd = tmp_path / "two words"
    shutil.copytree(organized / "train", odd)
    refused = run_cli("shard", str(odd), str(tmp_path / "sh"))
    assert refused.returncode == 2 and "cannot name a split" in refused.stderr and "Traceback" not in refused.stderr


def test_a_folder_that_fits_two_layouts_is_refused_naming_both(extracted21k: Path, tmp_path: Path) -> None:
    for command in (["validate", str(extracted21k)], ["shard", str(extracted21k), str(tmp_path / "sh")],
                    ["organize", str(extracted21k), str(tmp_path / "org")]):
        r = run_cli(*command)
        assert r.returncode == 2, command
        assert "--layout imagenet21k" in r.stderr and "--layout folders" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "sh").exists() and not (tmp_path / "org").exists()


def test_21k_labels_are_the_published_list_not_the_order_found(extracted21k: Path, tmp_path: Path) -> None:
    fall11 = catalog.imagenet21k("fall11")
    done = run_cli("shard", str(extracted21k), str(tmp_path / "sh"), "--layout", "imagenet21k", "-q")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "sh" / "train" / "manifest.json").read_text())
    assert manifest["label_space"] == "imagenet-21k" and len(manifest["classes"]) == 21841
    got = labels(tmp_path / "sh" / "train")
    assert len(got) == 12 and all(fall11[label] == wnid_of(key) for key, label in got.items())
    found = sorted({wnid_of(k) for k in got})
    mine = run_cli("shard", str(extracted21k), str(tmp_path / "found"), "--layout", "imagenet21k",
                   "--label-space", "found", "-q")
    assert mine.returncode == 0, mine.stderr
    assert {k: found[v] for k, v in labels(tmp_path / "found" / "train").items()} == {k: wnid_of(k) for k in got}


def test_classes_outside_the_1k_space_need_a_label_space(extracted21k: Path, tmp_path: Path) -> None:
    refused = run_cli("shard", str(extracted21k), str(tmp_path / "sh"), "--layout", "folders")
    assert refused.returncode == 1 and "is not one of the 1,000 imagenet-1k classes" in refused.stderr
    assert "--label-space" in refused.stderr and "Traceback" not in refused.stderr
    assert not list((tmp_path / "sh").rglob("*.tar"))
    organize = run_cli("organize", str(extracted21k), str(tmp_path / "org"), "--layout", "folders")
    assert organize.returncode == 1 and "--label-space" in organize.stderr
    assert not list((tmp_path / "org").rglob("*.JPEG"))
    done = run_cli("organize", str(extracted21k), str(tmp_path / "org"), "--layout", "folders",
                   "--label-space", "imagenet-21k", "-q")
    assert done.returncode == 0, done.stderr
    index = json.loads((tmp_path / "org" / "class_to_idx.json").read_text())
    assert index == {w: i for i, w in enumerate(catalog.imagenet21k("fall11"))}


def test_found_is_one_index_for_every_split(organized: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(organized, root, ignore=shutil.ignore_patterns(".imnet-organize", "*.json"))
    val_classes = sorted(p.name for p in (root / "val").iterdir())
    for wnid in sorted(p.name for p in (root / "train").iterdir()):   # val lacks a class train has
        if wnid in val_classes[:1]:
            shutil.rmtree(root / "val" / wnid)
    every = sorted(p.name for p in (root / "train").iterdir())
    done = run_cli("shard", str(root), str(tmp_path / "sh"), "--splits", "val", "--label-space", "found", "-q")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "sh" / "val" / "manifest.json").read_text())
    assert [c["wnid"] for c in manifest["classes"]] == every and manifest["pattern"].startswith("imagenet-val-")
    truth = {p.stem: p.parent.name for p in (root / "val").rglob("*.JPEG")}
    assert {k: every[v] for k, v in labels(tmp_path / "sh" / "val").items()} == truth


def test_21k_official_means_the_real_release(tmp_path: Path) -> None:
    archive = make_fake_imagenet21k(tmp_path / "a", classes=4, per_class=3)
    r = run_cli("validate", str(archive.parent))
    assert r.returncode == 1 and "NOT SOUND" in r.stdout
    assert "4 train classes; of the official releases, fall11 has 21,841" in r.stdout
    assert run_cli("validate", str(archive.parent), "--expect", "self").returncode == 0
    gz = make_fake_imagenet21k(tmp_path / "g", classes=2, per_class=2, compressed=True)
    r = run_cli("validate", str(gz.parent))
    assert r.returncode == 1 and "winter21 has 19,167" in r.stdout and "fall11" not in r.stdout


def test_21k_with_every_class_but_few_images_is_not_sound(extracted21k: Path, tmp_path: Path) -> None:
    """Every fall11 class, one image each (one JPEG hard-linked 21,841 times): the image total is checked too."""
    image = next(extracted21k.rglob("*.JPEG"))
    root = tmp_path / "whole"
    for wnid in catalog.imagenet21k("fall11"):
        (root / wnid).mkdir(parents=True)
        os.link(image, root / wnid / f"{wnid}_1.JPEG")
    r = run_cli("validate", str(root), "--layout", "imagenet21k", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["splits"]["train"] == {"images": 21841, "classes": 21841,
                                                               "bytes": 21841 * image.stat().st_size}
    assert [p["detail"] for p in report["problems"]] == [
        "21,841 train images; the fall11 release has 14,197,122"]
