"""The readers people already have, the real libraries, on our output unchanged: wids, timm (with the
arguments its train.py passes), Hugging Face ``datasets`` (webdataset builder, streaming and not, and the
dataset card), torchvision ImageFolder on organize's output; every label checked against the truth."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")   # nothing here may reach a hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from imnet_data import catalog  # noqa: E402
from imnet_data.fake import FakeOptions, FakeResult, make_fake  # noqa: E402
from imnet_data.organize import organize  # noqa: E402
from imnet_data.shards import ShardOptions, shard  # noqa: E402

SPLITS = {"train": "train", "validation": "val"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    root = tmp_path_factory.mktemp("peers")
    return make_fake(root / "src", FakeOptions(classes=6, train_per_class=9, val_images=18, seed=7, bbox=True,
                                               with_quirks=True), quiet=True)


@pytest.fixture(scope="module")
def shards(fake: FakeResult) -> Path:
    dest = fake.out.parent / "shards"
    shard(fake.out, dest, ShardOptions(samples_per_shard=8), quiet=True)
    return dest


def truth(fake: FakeResult, split: str) -> dict[str, int]:
    """Sample key -> class index, from the fake's own record of what it wrote."""
    index = {c.wnid: c.index for c in catalog.ilsvrc2012()}
    return {name.rsplit(".", 1)[0]: index[entry["wnid"]] for name, entry in fake.truth[split].items()}


def test_wids_reads_every_sample(fake: FakeResult, shards: Path, tmp_path: Path) -> None:
    wids = pytest.importorskip("wids")
    for split in ("train", "val"):
        ds = wids.ShardListDataset(str(shards / split / "wids.json"), cache_dir=str(tmp_path / "cache"),
                                   transformations=lambda s: s)
        got = {ds[i]["__key__"]: int(ds[i][".cls"].read()) for i in range(len(ds))}
        assert got == truth(fake, split)


@pytest.mark.parametrize("split", ["train", "validation", "val"])
def test_timm_reads_every_split_with_train_py_defaults(fake: FakeResult, shards: Path, split: str) -> None:
    pytest.importorskip("timm")
    from timm.data import create_dataset

    ds = create_dataset("wds/imagenet-1k", root=str(shards), split=split, is_training=split == "train",
                        class_map="", download=False, batch_size=4, seed=42, repeats=0, input_img_mode="RGB",
                        input_key=None, target_key=None, num_samples=None, trust_remote_code=False)
    labels, want = Counter(target for _, target in ds), Counter(truth(fake, SPLITS.get(split, split)).values())
    assert len(ds) == sum(labels.values())
    if split == "train":   # timm's train reader fills its last batch with repeats: every sample, a few twice
        assert not want - labels and sum((labels - want).values()) < 4
    else:
        assert labels == want


def hf_labels(dataset) -> dict[str, int]:
    return {row["__key__"]: row["cls"] for row in dataset}


@pytest.mark.parametrize("order", [("train", "validation"), ("validation", "train")])
@pytest.mark.parametrize("streaming", [False, True])
def test_hugging_face_webdataset_builder_reads_every_sample(fake: FakeResult, shards: Path, tmp_path: Path,
                                                           order: tuple[str, str], streaming: bool) -> None:
    datasets = pytest.importorskip("datasets")
    files = {name: str(shards / SPLITS[name] / "*.tar") for name in order}
    ds = datasets.load_dataset("webdataset", data_files=files, streaming=streaming,
                               cache_dir=str(tmp_path / "hf"))
    for name, split in SPLITS.items():
        rows = list(ds[name])
        assert hf_labels(rows) == truth(fake, split)
        assert all(row["json"]["label"] == row["cls"] and row["jpg"].size == (row["json"]["width"],
                                                                             row["json"]["height"]) for row in rows)
        if split == "val":
            assert all(row["json"]["real_labels"] == list(catalog.real_labels_of(row["__key__"])) for row in rows)


def test_hugging_face_reads_the_folder_through_its_dataset_card(fake: FakeResult, shards: Path,
                                                               tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(str(shards), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "validation"}
    for name, split in SPLITS.items():
        assert hf_labels(ds[name]) == truth(fake, split)
    features = ds["train"].features["json"]
    assert features["real_labels"] == datasets.List(datasets.Value("int64"))
    assert features["boxes"] == datasets.Value("string")
    boxed = [row["json"]["boxes"] for row in ds["validation"]]
    assert all(boxed) and all(len(b.split()) % 5 == 0 for b in boxed)


def test_imagefolder_on_organized_output_has_the_catalog_indices(fake: FakeResult, tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    from imnet_data.imagefolder import image_folder

    dest = tmp_path / "organized"
    organize(fake.out, dest, quiet=True)
    index = json.loads((dest / "class_to_idx.json").read_text())
    assert len(index) == 1000 and index["n01440764"] == 0 and index["n15075141"] == 999
    for split in ("train", "val"):
        ds = image_folder(dest / split)
        got = {Path(path).stem: target for path, target in ds.samples}
        assert got == truth(fake, split)
        assert ds.class_to_idx == {w: index[w] for w in sorted(os.listdir(dest / split))}
