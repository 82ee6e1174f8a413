"""Tests of the loader on real shards of a fake download: DALI CPU-only pipelines (``device="cpu"``, DALI's own
CPU decoders) and the torch fallback, checked sample by sample against the shards read with webdataset."""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.loader import ShardError, build_loader
from imnet_data.shards import ShardOptions, shard
from imnet_data.shards.members import index_rows
from imnet_data.shards.schema import render_index
from imnet_data.tario import tar_bytes

torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
BACKENDS = ["dali", "torch"]


def needs(backend: str) -> None:
    if backend == "dali":
        pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install nvidia-dali-cuda130")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loader")
    src = make_fake(root / "src", FakeOptions(classes=8, train_per_class=9, val_images=29, seed=4,
                                              with_quirks=True), quiet=True)
    shard(src.out, root / "shards", ShardOptions(samples_per_shard=10), quiet=True)
    return root / "shards"


def truth(folder: Path) -> dict[str, int]:
    """Sample key -> label, read from the shards with the plain webdataset library."""
    names = [str(folder / s["name"]) for s in json.loads((folder / "manifest.json").read_text())["shards"]]
    return {s["__key__"]: int(s["cls"]) for s in wds.WebDataset(names, shardshuffle=False)}


def keys_of(loader) -> list[list[str]]:
    """The keys the loader's schedule puts in each remaining batch (pad slots as None)."""
    return [loader.keys(batch) for batch in loader.positions()]


def run(loader) -> tuple[list[list[str]], list[torch.Tensor], list[torch.Tensor]]:
    expected = keys_of(loader)
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(y)
    return expected, images, labels


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_label_matches_its_sample_for_a_whole_epoch(shards: Path, backend: str) -> None:
    needs(backend)
    for split, settings in (("val", {"remainder": "partial"}), ("train", {"remainder": "drop"})):
        want = truth(shards / split)
        loader = build_loader(shards / split, batch_size=8, backend=backend, device="cpu", num_threads=2,
                              **settings)
        keys, images, labels = run(loader)
        assert len(labels) == len(loader) == len(keys)
        for batch_keys, y in zip(keys, labels, strict=True):
            assert y.tolist() == [want[k] for k in batch_keys]
        seen = [k for batch in keys for k in batch]
        assert len(set(seen)) == len(seen)
        assert len(seen) == (len(want) if split == "val" else len(want) // 8 * 8)
        assert images[0].shape == (8, 3, 224, 224) and images[0].dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_dtypes_and_normalisation(shards: Path, backend: str) -> None:
    needs(backend)
    common = {"batch_size": 6, "backend": backend, "device": "cpu", "num_threads": 1, "image_size": 64,
              "remainder": "partial"}
    raw = next(iter(build_loader(shards / "val", dtype="uint8", layout="NHWC", **common)))[0]
    assert raw.shape == (6, 64, 64, 3) and raw.dtype == torch.uint8
    norm = next(iter(build_loader(shards / "val", dtype="float32", layout="NHWC", **common)))[0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(norm, (raw.float() / 255 - mean) / std, atol=2e-2)
    for dtype, want in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        x = next(iter(build_loader(shards / "val", dtype=dtype, **common)))[0]
        assert x.shape == (6, 3, 64, 64) and x.dtype == want


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_is_deterministic_per_seed_and_changes_per_epoch(shards: Path, backend: str) -> None:
    needs(backend)

    def labels(seed: int, epoch: int) -> list[int]:
        loader = build_loader(shards / "train", batch_size=8, backend=backend, device="cpu", seed=seed,
                              num_threads=1, image_size=32)
        loader.set_epoch(epoch)
        return [v for _, y in loader for v in y.tolist()]

    first = labels(1, 0)
    assert first == labels(1, 0)
    assert first != labels(1, 1) and first != labels(2, 0)
    assert sorted(first) != first


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_get_equal_batch_counts_and_val_covers_every_sample_once(shards: Path, backend: str) -> None:
    needs(backend)
    want = truth(shards / "val")
    seen: list[str] = []
    lengths = set()
    for rank in range(3):
        loader = build_loader(shards / "val", batch_size=4, backend=backend, device="cpu", rank=rank,
                              world_size=3, num_threads=1, image_size=32)
        keys, _, labels = run(loader)
        lengths.add(len(loader))
        for batch_keys, y in zip(keys, labels, strict=True):
            assert y.tolist() == [want[k] if k else -1 for k in batch_keys]
            seen += [k for k in batch_keys if k]
    assert len(lengths) == 1 and sorted(seen) == sorted(want)
    train = [len(build_loader(shards / "train", batch_size=5, backend=backend, device="cpu", rank=r,
                              world_size=3, num_threads=1)) for r in range(3)]
    assert len(set(train)) == 1 and train[0] == len(truth(shards / "train")) // 3 // 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_mid_epoch_resume_yields_exactly_the_rest(shards: Path, backend: str) -> None:
    needs(backend)
    settings = {"batch_size": 8, "backend": backend, "device": "cpu", "num_threads": 1, "image_size": 32, "seed": 3}
    full = [y.tolist() for _, y in build_loader(shards / "train", **settings)]
    first = build_loader(shards / "train", **settings)
    it = iter(first)
    head = [next(it)[1].tolist() for _ in range(3)]
    it.close()
    state = first.state_dict()
    assert state["step"] == 3
    resumed = build_loader(shards / "train", **settings)
    resumed.load_state_dict(state)
    assert head + [y.tolist() for _, y in resumed] == full
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["step"] == 0


def corrupt(folder: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the val split with one JPEG's end-of-image marker zeroed (same size, manifest still matches)."""
    copy = tmp_path / "val"
    copy.mkdir()
    for p in folder.iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    index = (copy / "imagenet-1k-val-000000.idx").read_text().splitlines()[1].split()
    parts = {index[i]: (int(index[i + 1]), int(index[i + 2]), index[i + 3]) for i in range(0, len(index), 4)}
    offset, size, name = parts["jpg"]
    tar = copy / "imagenet-1k-val-000000.tar"
    data = bytearray(tar.read_bytes())
    data[offset + size - 16:offset + size] = bytes(16)
    tar.write_bytes(bytes(data))
    return copy, name.split(".")[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_name_what_is_wrong(shards: Path, backend: str, tmp_path: Path) -> None:
    needs(backend)
    copy, key = corrupt(shards / "val", tmp_path)
    loader = build_loader(copy, batch_size=5, backend=backend, device="cpu", num_threads=1, image_size=32)
    with pytest.raises(ShardError, match=f"imagenet-1k-val-000000.tar: sample {key}: truncated JPEG"):
        list(loader)
    skipping = build_loader(copy, batch_size=5, backend=backend, device="cpu", num_threads=1, image_size=32,
                            on_error="skip")
    batches = list(skipping)
    assert len(batches) == len(skipping) and len(skipping.skipped) == 1 and key in skipping.skipped[0]
    (copy / "imagenet-1k-val-000001.tar").write_bytes(b"short")
    with pytest.raises(ShardError, match="imagenet-1k-val-000001.tar: 5 bytes, the manifest says"):
        build_loader(copy, batch_size=5, backend=backend, device="cpu")
    (copy / "imagenet-1k-val-000001.tar").unlink()
    with pytest.raises(ShardError, match="imagenet-1k-val-000001.tar: shard missing"):
        build_loader(copy, batch_size=5, backend=backend, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
            build_loader(shards / "val", batch_size=5, backend=backend, device="cuda")
    with pytest.raises(TypeError, match="unknown loader settings: colour"):
        build_loader(shards / "val", batch_size=5, backend=backend, colour="red")


def test_pattern_source_without_manifest_reads_the_index_files(shards: Path, tmp_path: Path) -> None:
    needs("dali")
    for p in (shards / "val").glob("imagenet-1k-val-*"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    loader = build_loader(str(tmp_path / "imagenet-1k-val-{000000..000002}.tar"), "val", batch_size=29,
                          backend="dali", device="cpu", remainder="partial", image_size=32)
    assert loader.shards.manifest is None and loader.num_samples == 29
    labels = [v for _, y in loader for v in y.tolist()]
    assert sorted(labels) == sorted(truth(shards / "val").values())


def test_shards_are_mapped_without_holding_descriptors(tmp_path: Path) -> None:
    needs("dali")
    src = make_fake(tmp_path / "src", FakeOptions(classes=3, train_per_class=30, val_images=3, seed=1), quiet=True)
    shard(src.out, tmp_path / "shards", ShardOptions(samples_per_shard=1), splits=["train"], quiet=True)
    before = len(list(Path("/proc/self/fd").iterdir()))
    loader = build_loader(tmp_path / "shards" / "train", batch_size=9, backend="dali", device="cpu", num_threads=1,
                          image_size=32)
    labels = [v for _, y in loader for v in y.tolist()]
    assert len(labels) == 90 and len(loader.shards.paths) == 90
    assert len(list(Path("/proc/self/fd").iterdir())) - before < 20     # not one per shard


def test_an_index_that_does_not_fit_its_shard_is_refused_naming_it(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "val"
    copy.mkdir()
    for p in (shards / "val").iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    idx = copy / "imagenet-1k-val-000001.idx"
    lines = idx.read_text().splitlines()
    fields = lines[2].split()
    fields[fields.index("jpg") + 2] = "99999999"
    lines[2] = " ".join(fields)
    idx.write_text("\n".join(lines) + "\n")
    key = fields[3].split(".")[0]
    with pytest.raises(ShardError, match=f"imagenet-1k-val-000001.tar: sample {key}: the index does not fit"):
        build_loader(str(copy / "imagenet-1k-val-{000000..000002}.tar"), "val", batch_size=4, backend="torch",
                     device="cpu")


def test_labels_written_by_another_tool_are_parsed_or_named(shards: Path, tmp_path: Path) -> None:
    jpeg = next(iter(wds.WebDataset(str(shards / "val" / "imagenet-1k-val-000000.tar"), shardshuffle=False)))["jpg"]
    with wds.TarWriter(str(tmp_path / "other-000000.tar")) as sink:
        for i, cls in enumerate([b"3\n", b" 12", b"7"]):
            sink.write({"__key__": f"s{i}", "cls": cls, "jpg": jpeg})
    loader = build_loader(str(tmp_path / "other-000000.tar"), "val", batch_size=3, backend="torch", device="cpu",
                          num_threads=0, image_size=32)
    assert sorted(next(iter(loader))[1].tolist()) == [3, 7, 12]
    with wds.TarWriter(str(tmp_path / "bad-000000.tar")) as sink:
        sink.write({"__key__": "odd", "cls": b"x1", "jpg": jpeg})
    bad = build_loader(str(tmp_path / "bad-000000.tar"), "val", batch_size=1, backend="torch", device="cpu",
                       num_threads=0, image_size=32)
    with pytest.raises(ShardError, match="bad-000000.tar: sample odd: .cls is not a class index"):
        list(bad)
    with wds.TarWriter(str(tmp_path / "negative-000000.tar")) as sink:    # no manifest: no upper bound known
        sink.write({"__key__": "neg", "cls": b"-1", "jpg": jpeg})
    negative = build_loader(str(tmp_path / "negative-000000.tar"), "val", batch_size=1, backend="torch",
                            device="cpu", num_threads=0, image_size=32)
    with pytest.raises(ShardError, match=r"negative-000000.tar: sample neg: .cls -1 is outside the label space "
                                         r"\(class indices are >= 0\)"):
        list(negative)


def relabel(folder: Path, dest: Path, cls: bytes) -> tuple[Path, str]:
    """A copy of the split folder whose first sample's ``.cls`` holds ``cls``: the first shard rewritten with
    tarfile, its ``.idx`` made anew from the tar, the manifest's sizes and sha256s updated, so that only the
    label is wrong. Returns the copy and the sample's key."""
    copy = Path(shutil.copytree(folder, dest))
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = manifest["shards"][0]
    tar, idx = copy / entry["name"], copy / entry["index"]["name"]
    with tarfile.open(tar) as src:
        members = [(m.name, src.extractfile(m).read()) for m in src]
    key = members[0][0].removesuffix(".cls")
    tar.write_bytes(tar_bytes([(members[0][0], cls), *members[1:]]))
    idx.write_text(render_index(index_rows(tar)))
    for file, record in ((tar, entry), (idx, entry["index"])):
        record.update(bytes=file.stat().st_size, sha256=hashlib.sha256(file.read_bytes()).hexdigest())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy, key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [b"1000", b"-1"])   # the first past ImageNet-1k's classes, the pad label
def test_a_label_outside_the_label_space_is_refused_naming_shard_and_key(shards: Path, backend: str, cls: bytes,
                                                                         tmp_path: Path) -> None:
    """Never yielded (train), never taken for a pad slot and masked out (val), never skipped as a damaged
    sample: a label the manifest's classes do not have means the shards are wrong."""
    needs(backend)
    copy, key = relabel(shards / "val", tmp_path / "val", cls)
    first = next(iter(wds.WebDataset(str(copy / "imagenet-1k-val-000000.tar"), shardshuffle=False)))
    assert (first["__key__"], first["cls"]) == (key, cls)      # a sound tar, only the label changed
    says = (f"imagenet-1k-val-000000.tar: sample {key}: .cls {int(cls)} is outside the label space "
            r"\(the manifest's 1000 classes, 0..999\)")
    for settings in ({}, {"on_error": "skip", "train": True, "remainder": "partial"}):
        loader = build_loader(copy, batch_size=4, backend=backend, device="cpu", num_threads=1, image_size=32,
                              **settings)
        with pytest.raises(ShardError, match=says):
            list(loader)


def test_the_gpu_decoder_settings_are_arguments_dali_knows() -> None:
    """Checked here, without a GPU, so a misspelt setting does not cost a run on the GPU machine: DALI's schema
    accepts mixed-only arguments on the CPU backend and refuses unknown ones."""
    needs("dali")
    import nvidia.dali as dali

    from imnet_data.loader.base import LoaderOptions
    from imnet_data.loader.dali import gpu_decoder_args

    args = gpu_decoder_args(LoaderOptions())

    @dali.pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipeline():
        jpegs = dali.fn.external_source(name="jpegs")
        return (dali.fn.decoders.image(jpegs, device="cpu", **args),
                dali.fn.decoders.image_random_crop(jpegs, device="cpu", **args))

    pipeline().build()
    with pytest.raises(Exception, match="not defined"):
        dali.fn.decoders.image(dali.fn.external_source(name="x"), device="cpu", hw_decoder_lod=0.5)


def test_the_loader_takes_what_users_pass(shards: Path) -> None:
    needs("dali")
    want = truth(shards / "val")
    for source, split in ((shards, "val"), (shards / "val", "val"), (shards / "val", None),
                          (shards / "val" / "manifest.json", "val")):
        loader = build_loader(source, split, batch_size=29, backend="torch", device="cpu", num_threads=0,
                              image_size=16, remainder="partial")
        assert sorted(v for _, y in loader for v in y.tolist()) == sorted(want.values())
    with pytest.raises(ShardError, match="holds the 'val' split, not the 'train' asked for"):
        build_loader(shards / "val", "train", batch_size=4, backend="torch", device="cpu")
    with pytest.raises(ShardError, match="a shard root; name one of its splits: split='train' or 'val'"):
        build_loader(shards, batch_size=4, backend="torch", device="cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_labels_come_with_every_val_batch(shards: Path, backend: str) -> None:
    needs(backend)
    from imnet_data import catalog

    loader = build_loader(shards / "val", batch_size=8, backend=backend, device="cpu", num_threads=1,
                          image_size=16, return_real=True)
    keys = keys_of(loader)
    for batch_keys, (_x, y, real) in zip(keys, loader, strict=True):
        assert real.shape == (8, 10) and real.dtype == torch.int64
        for key, label, row in zip(batch_keys, y.tolist(), real.tolist(), strict=True):
            want = list(catalog.real_labels_of(key)) if key else []
            assert [v for v in row if v >= 0] == want and (key is not None or label == -1)
    train = build_loader(shards / "train", batch_size=8, backend=backend, device="cpu", num_threads=1,
                         image_size=16, return_real=True)
    _, y, real = next(iter(train))
    assert real[:, 0].tolist() == y.tolist() and (real[:, 1:] == -1).all()   # not rated: the label itself


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_epoch_changes_the_image_size_and_keys_follow_the_schedule(shards: Path, backend: str) -> None:
    needs(backend)
    loader = build_loader(shards / "train", batch_size=8, backend=backend, device="cpu", num_threads=1,
                          image_size=32, seed=2)
    assert next(iter(loader))[0].shape[-1] == 32
    loader.set_epoch(1, image_size=48)
    expected = [loader.batch_keys(step) for step in range(len(loader))]
    assert expected == keys_of(loader)
    sizes = {x.shape[-1] for x, _ in loader}
    assert sizes == {48} and loader.epoch == 2


def gpu() -> None:
    needs("dali")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here (run on the lent GPU machine)")


@pytest.mark.gpu
def test_gpu_pipeline_matches_the_labels(shards: Path) -> None:
    gpu()
    want = truth(shards / "val")
    loader = build_loader(shards / "val", batch_size=8, backend="dali", device="cuda", remainder="partial",
                          dtype="bfloat16", layout="NHWC")
    keys, images, labels = run(loader)
    assert images[0].is_cuda and images[0].dtype == torch.bfloat16 and images[0].shape == (8, 224, 224, 3)
    assert [v for y in labels for v in y.tolist()] == [want[k] for b in keys for k in b]
    assert np.isfinite(images[0].float().cpu().numpy()).all()


@pytest.mark.gpu
def test_gpu_train_pipeline_every_label_layouts_and_decoder_shares(shards: Path) -> None:
    gpu()
    want = truth(shards / "train")
    order = None
    for load in (0.0, 1.0):
        loader = build_loader(shards / "train", batch_size=8, backend="dali", device="cuda", hw_decoder_load=load,
                              dtype="float32", seed=5)
        keys, images, labels = run(loader)
        assert all(y.is_cuda and y.dtype == torch.int64 for y in labels)
        assert [v for y in labels for v in y.tolist()] == [want[k] for b in keys for k in b]
        assert images[0].shape == (8, 3, 224, 224) and images[0].is_cuda and images[0].dtype == torch.float32
        assert order is None or order == keys      # the decoder share changes no order
        order = keys
    x = next(iter(build_loader(shards / "train", batch_size=8, backend="dali", device="cuda", dtype="bfloat16",
                               layout="channels_last")))[0]
    assert x.shape == (8, 3, 224, 224) and x.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_gpu_and_cpu_val_pipelines_agree(shards: Path) -> None:
    gpu()
    common = {"batch_size": 8, "backend": "dali", "remainder": "partial", "dtype": "float32"}
    on_gpu = list(build_loader(shards / "val", device="cuda", **common))
    on_cpu = list(build_loader(shards / "val", device="cpu", **common))
    for (xg, yg), (xc, yc) in zip(on_gpu, on_cpu, strict=True):
        assert yg.cpu().tolist() == yc.tolist()
        assert (xg.cpu() - xc).abs().mean() < 0.15     # nvJPEG vs libjpeg-turbo: a few levels apart, not shifted


@pytest.mark.gpu
def test_bench_runs_every_gpu_row(shards: Path) -> None:
    gpu()
    pytest.importorskip("torchvision")
    from imnet_data.bench.run import bench

    report = bench(shards, batch_size=8, image_size=64, batches=3, model="resnet18", model_steps=3)
    names = [r.name for r in report.rows]
    assert "DALI decode alone, hardware decoder" in names and "resnet18 fed by plain DALI" in names
    assert all(r.images_per_s > 0 and r.gpu_memory_mb for r in report.rows if "PIL" not in r.name)
    assert report.ratios["resnet18 fed by the loader / resident"] > 0
