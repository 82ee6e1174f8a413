"""The torch (PIL + DataLoader) loader backend on real shards of a fake download, on the CPU."""
from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.loader import ShardError, build_loader
from imnet_data.loader.base import LoaderOptions
from imnet_data.loader.fallback import TorchLoader, random_resized_crop, transform
from imnet_data.shards import ShardOptions, shard

SIZE = 32


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards (7 samples each) of a fake download: 60 train and 25 val samples over 6 classes."""
    root = tmp_path_factory.mktemp("loader")
    result = make_fake(root / "src", FakeOptions(classes=6, train_per_class=10, val_images=25, seed=2), quiet=True)
    shard(result.out, root / "dest", ShardOptions(samples_per_shard=7), jobs=1, quiet=True)
    return root / "dest"


def truth(folder: Path) -> dict[str, int]:
    """Every sample's label by key, read with webdataset; each ``.cls`` checked against its ``.json`` WNID."""
    manifest = json.loads((folder / "manifest.json").read_text())
    index = {c["wnid"]: c["index"] for c in manifest["classes"]}
    labels = {}
    for sample in wds.WebDataset([str(folder / s["name"]) for s in manifest["shards"]], shardshuffle=False):
        label = int(sample["cls"])
        assert index[json.loads(sample["json"])["wnid"]] == label
        labels[sample["__key__"]] = label
    return labels


def loader(folder: Path, batch_size: int = 8, **settings: object) -> TorchLoader:
    settings = {"device": "cpu", "image_size": SIZE, "num_threads": 0, **settings}
    made = build_loader(folder, batch_size=batch_size, backend="torch", **settings)
    assert isinstance(made, TorchLoader) and made.backend == "torch"
    return made


@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.parametrize("split", ["val", "train"])
def test_every_label_matches_its_sample(shards: Path, split: str, threads: int) -> None:
    expected = truth(shards / split)
    ld = loader(shards / split, remainder="partial", num_threads=threads)
    order = ld.schedule.order(0)
    labels = torch.cat([y for _, y in ld]).numpy()
    assert len(labels) == len(expected) == ld.num_samples
    assert labels.tolist() == [expected[k] for k in ld.keys(order)]
    if split == "val":
        assert order.tolist() == list(range(len(order)))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "uint8"])
def test_shapes_and_dtypes(shards: Path, layout: str, dtype: str) -> None:
    ld = loader(shards / "val", batch_size=5, layout=layout, dtype=dtype)
    images, labels = next(iter(ld))
    assert images.shape == ((5, 3, SIZE, SIZE) if layout == "NCHW" else (5, SIZE, SIZE, 3))
    assert images.dtype == getattr(torch, dtype) and images.is_contiguous() and images.device.type == "cpu"
    assert labels.shape == (5,) and labels.dtype == torch.int64


def test_float_output_is_normalised_uint8(shards: Path) -> None:
    raw, _ = next(iter(loader(shards / "val", dtype="uint8")))
    floats, _ = next(iter(loader(shards / "val", dtype="float32")))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    assert torch.allclose(floats, (raw.float() / 255 - mean) / std, atol=1e-3)
    assert raw.float().std() > 10  # real pictures, not a blank


def test_training_batches_are_deterministic(shards: Path) -> None:
    first = list(loader(shards / "train", seed=5, num_threads=0))
    again = list(loader(shards / "train", seed=5, num_threads=2))
    assert len(first) == len(again) == 60 // 8
    for (x, y), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    other = list(loader(shards / "train", seed=6))
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(first, other, strict=True))


def test_each_epoch_has_its_own_order(shards: Path) -> None:
    ld = loader(shards / "train")
    epoch0 = list(ld)
    assert ld.epoch == 1 and ld.step == 0  # a full pass moves on by itself
    epoch1 = list(ld)
    assert not np.array_equal(ld.schedule.order(0), ld.schedule.order(1))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(epoch0, epoch1, strict=True))
    ld.set_epoch(0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch0, ld, strict=True))


def test_ranks_with_pad_see_every_sample_once(shards: Path) -> None:
    expected = truth(shards / "val")
    seen: list[str] = []
    lengths = set()
    for rank in range(3):
        ld = loader(shards / "val", rank=rank, world_size=3, remainder="pad", num_threads=2)
        positions = ld.positions()
        lengths.add(len(ld))
        for batch, (images, labels) in zip(positions, ld, strict=True):
            assert images.shape[0] == len(batch) == 8
            assert ((labels >= 0).numpy() == (batch >= 0)).all()
            keys = ld.keys(batch[batch >= 0])
            assert labels[labels >= 0].tolist() == [expected[k] for k in keys]
            seen += keys
    assert len(lengths) == 1
    assert sorted(seen) == sorted(expected)


def test_ranks_with_drop_have_equal_lengths(shards: Path) -> None:
    loaders = [loader(shards / "train", batch_size=4, rank=r, world_size=7, remainder="drop", order="local")
               for r in range(7)]
    assert sorted({ld.num_samples for ld in loaders}) == [8, 9]  # unequal shares, the same number of batches
    assert [len(ld) for ld in loaders] == [60 // 7 // 4] * 7
    for ld in loaders:
        assert [len(y) for _, y in ld] == [4] * len(ld)


@pytest.mark.parametrize("threads", [0, 2])
def test_resume_mid_epoch_gives_the_remaining_batches(shards: Path, threads: int) -> None:
    whole = list(loader(shards / "train", seed=3))
    first = loader(shards / "train", seed=3, num_threads=threads)
    for step, _ in enumerate(first):
        if step == 2:
            break
    state = first.state_dict()
    assert (state["epoch"], state["step"]) == (0, 3)
    resumed = loader(shards / "train", seed=3, num_threads=threads)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(whole) - 3
    for (x, y), (x2, y2) in zip(whole[3:], rest, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert resumed.epoch == 1


def test_transforms_match_torchvision(shards: Path) -> None:
    """Val is Resize(256) + CenterCrop(224), train is RandomResizedCrop + flip, also when a big JPEG is decoded at
    reduced scale (draft): only rounding (and the DCT scaling) differ, by < 0.05 (< 1 with draft) of 255 on average."""
    TF = pytest.importorskip("torchvision.transforms.functional", reason="pip install torchvision")
    reader = loader(shards / "train").reader
    small = [reader.sample(i)[0] for i in range(0, 60, 6)]
    big = io.BytesIO()
    Image.open(io.BytesIO(small[0])).convert("RGB").resize((1600, 1200)).save(big, "JPEG", quality=95)
    val, train = LoaderOptions(split="val"), LoaderOptions(split="train")
    for data, limit in [*((d, 0.05) for d in small), (np.frombuffer(big.getvalue(), np.uint8), 1.0)]:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        expected = np.asarray(TF.center_crop(TF.resize(image, 256), 224), np.float32)
        assert np.abs(transform(data, val, None) - expected).mean() < limit
        rng = np.random.default_rng(1)  # the same draws as transform's: crop, then flip
        x, y, w, h = random_resized_crop(*image.size, train.scale, train.ratio, rng)
        expected = np.asarray(TF.resized_crop(image, y, x, h, w, [224, 224]), np.float32)
        if rng.random() < 0.5:
            expected = expected[:, ::-1]
        assert np.abs(transform(data, train, np.random.default_rng(1)) - expected).mean() < limit


def corrupt_copy(shards: Path, dest: Path) -> tuple[Path, str]:
    """A copy of the val shards whose first JPEG keeps its start and end markers but no longer decodes."""
    folder = shutil.copytree(shards / "val", dest)
    fields = (folder / "imagenet-1k-val-000000.idx").read_text().splitlines()[1].split()
    at = fields.index("jpg")
    offset, size, member = int(fields[at + 1]), int(fields[at + 2]), fields[at + 3]
    with open(folder / "imagenet-1k-val-000000.tar", "r+b") as f:
        f.seek(offset + 2)
        f.write(b"\0" * (size - 4))
    return folder, member.rsplit(".", 1)[0]


def test_undecodable_jpeg_raises_or_is_skipped(shards: Path, tmp_path: Path) -> None:
    folder, key = corrupt_copy(shards, tmp_path / "val")
    with pytest.raises(ShardError, match="cannot decode the JPEG") as raised:
        list(loader(folder))
    assert f"imagenet-1k-val-000000.tar: sample {key}:" in str(raised.value)
    skipping = loader(folder, on_error="skip", remainder="partial", num_threads=2)
    labels = torch.cat([y for _, y in skipping])
    assert len(labels) == 25 and (labels >= 0).all()
    assert len(skipping.skipped) == 1 and key in skipping.skipped[0]  # noted in the worker, reported here


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_says_so(shards: Path) -> None:
    with pytest.raises(RuntimeError, match=r"device='cuda' asked but no CUDA GPU is visible; use device='cpu'"):
        loader(shards / "val", device="cuda")


def test_default_workers_are_the_cores_available(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a fixed 4 workers: torch warns about a DataLoader with more workers than the process's cores (on a
    2-core machine it did, twice). Run on one core, so the check holds on any machine."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="This DataLoader will create")
            made = loader(shards / "val", num_threads=None)
            batches = list(made)
    finally:
        os.sched_setaffinity(0, cores)
    assert made.loader.num_workers == 1 and len(batches) == len(made) == 4
