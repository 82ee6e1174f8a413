"""Scoring on the prepared fake sets: a stand-in model that reads the classes each fake image was drawn with scores
exactly the accuracy the fake's truth gives, on every set, with and without ImageNet-A/-R's class masks, ReaL on
ImageNet val and ImageNet-C's mCE included; the command line's errors (weights that do not fit, an unknown model)
are one line; the model's own preprocessing comes from timm's and torchvision's configs."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imnet_data import catalog, resources
from imnet_data.errors import UsageError
from imnet_data.evaluate import ModelError, Run, evaluate, load_model
from imnet_data.fake import FakeOptions
from imnet_data.fake.evalsets import (
    make_imagenet_a,
    make_imagenet_c,
    make_imagenet_r,
    make_imagenet_sketch,
    make_imagenet_v2,
)
from imnet_data.loader import build_loader
from imnet_data.shards import ShardOptions, shard
from tests.helpers import ROOT

OPTIONS = FakeOptions(classes=3, val_images=9, seed=11)
READER = "imnet_data.fake.code_model:CodeReader"
# the per-corruption AlexNet errors every mCE script divides by (mmpretrain, easyrobust, ...: the means over the
# severities of the ImageNet-C authors' figures)
ALEXNET_MEANS = {"gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
                 "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
                 "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204,
                 "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], dict]]:
    """EVAL/<set>/<split>/ shards of every fake set, ImageNet val among them (gaussian_noise-1's images as a
    val/<wnid>/ folder: real val names, so ReaL applies), and the truth of each (set, variant)."""
    work, out = tmp_path_factory.mktemp("fakes"), tmp_path_factory.mktemp("eval")
    truths: dict[tuple[str, str], dict] = {}
    for layout, make in (("imagenet-a", make_imagenet_a), ("imagenet-r", make_imagenet_r),
                         ("imagenet-sketch", make_imagenet_sketch), ("imagenet-v2", make_imagenet_v2),
                         ("imagenet-c", make_imagenet_c)):
        result = make(work / layout, OPTIONS, quiet=True)
        src = result.out
        if layout == "imagenet-v2":   # shard reads the extracted folders (a .tar.gz has no random access)
            src = work / "v2"
            for archive in result.archives.values():
                with tarfile.open(archive) as tar:
                    tar.extractall(src, filter="data")
        shard(src, out / layout, ShardOptions(samples_per_shard=4), jobs=1, quiet=True)
        for split, entries in result.truth["splits"].items():
            truths[layout, "" if split == "val" else split] = {"mask": result.truth["mask"], "entries": entries}
    with tarfile.open(work / "imagenet-c" / "noise.tar") as tar:
        for m in tar.getmembers():
            if m.name.startswith("gaussian_noise/1/"):
                target = work / "imagenet" / "val" / m.name.split("/", 2)[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
    shard(work / "imagenet", out / "imagenet", ShardOptions(samples_per_shard=4), jobs=1, quiet=True)
    truths["imagenet", "val"] = truths["imagenet-c", "gaussian_noise-1"]
    return out, truths


def expected(entries: dict, mask: list[int] | None, real: bool = False) -> dict[str, int]:
    """What the code reader scores: its logits are 2 on the first drawn class, 1 on the second, then descending
    by index; restricted to ``mask``, the first of those in it wins, else its lowest index. ``real``: the ReaL
    counts too (ImageNet val)."""
    out = {"images": len(entries), "top1": 0, "top5": 0, "real_images": 0, "real_top1": 0}
    for name, e in entries.items():
        first, second = e["drawn"]
        allowed = range(1000) if mask is None else mask
        order = ([c for c in (first, second) if c in allowed] + [c for c in allowed if c not in (first, second)])[:5]
        out["top1"] += order[0] == e["label"]
        out["top5"] += e["label"] in order
        real_labels = catalog.real_labels_of(name.rsplit(".", 1)[0]) if real else None
        if real_labels:
            out["real_images"] += 1
            out["real_top1"] += order[0] in real_labels
    return out


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate_imagenet.py"), *args], capture_output=True,
                          text=True, timeout=600)


def test_the_code_reader_scores_exactly_the_truth(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    root, truths = prepared
    done = tool(str(root), "--model", READER, "--workers", "0", "--batch-size", "16", "--json", "--out",
                str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == json.loads((tmp_path / "out" / "results.json").read_text())
    assert "| imagenet-real | val |" in (tmp_path / "out" / "results.md").read_text()
    scored = {(s["set"], s["variant"]): s for s in report["splits"]}
    assert set(scored) == set(truths)
    for key, truth in truths.items():
        want = expected(truth["entries"], truth["mask"], real=key == ("imagenet", "val"))
        assert {k: scored[key][k] for k in want} == want, key
        assert scored[key]["masked"] == (truth["mask"] is not None)
    rows = {(r["set"], r["variant"]): r for r in report["rows"]}
    real = expected(truths["imagenet", "val"]["entries"], None, real=True)
    assert real["real_images"] >= 5
    assert rows["imagenet-real", "val"]["top1"] == round(100 * real["real_top1"] / real["real_images"], 4)
    # ImageNet-C: CE and relative CE from the shipped AlexNet errors, over the severities of each corruption
    alexnet = resources.read_json("imagenet_c_alexnet.json")
    clean = 1 - real["top1"] / real["images"]
    summary = report["imagenet_c"]
    assert not summary["complete"] and summary["benchmark_corruptions"] == 3
    ces, relatives = [], []
    for corruption in ("gaussian_noise", "shot_noise", "impulse_noise"):
        errors = [1 - expected(truths["imagenet-c", f"{corruption}-{s}"]["entries"], None)["top1"] / 9
                  for s in range(1, 6)]
        ce = 100 * sum(errors) / sum(alexnet["errors"][corruption])
        relative = 100 * (sum(errors) - 5 * clean) / (sum(alexnet["errors"][corruption]) - 5 * alexnet["clean_error"])
        assert summary["corruptions"][corruption]["ce"] == pytest.approx(ce, abs=1e-4)
        assert summary["corruptions"][corruption]["relative_ce"] == pytest.approx(relative, abs=1e-4)
        ces.append(ce)
        relatives.append(relative)
    assert summary["mce"] == pytest.approx(sum(ces) / 3, abs=1e-3)
    assert summary["relative_mce"] == pytest.approx(sum(relatives) / 3, abs=1e-3)


def test_without_masks_and_with_a_limit(prepared: tuple[Path, dict]) -> None:
    root, truths = prepared
    model = load_model(READER)
    report = evaluate(root, model, Run(workers=0, batch_size=8, masks=False), sets=["imagenet-a", "imagenet-r"])
    for split, score in report.results:
        assert score.top1 == expected(truths[split.set, ""]["entries"], None)["top1"]
        assert score.top5 == expected(truths[split.set, ""]["entries"], None)["top5"]
    assert all(r["notes"] == "over all 1000 classes" for r in report.rows())
    # --limit: the first N samples of each split in shard order (val keeps key order), the same every run
    limited = [evaluate(root, model, Run(workers=0, batch_size=3, limit=4), sets=["imagenet-v2"]) for _ in range(2)]
    for split, score in limited[0].results:
        entries = truths["imagenet-v2", split.variant]["entries"]
        first = dict(sorted(entries.items(), key=lambda kv: kv[0].rsplit(".", 1)[0])[:4])
        assert (score.images, score.top1) == (4, expected(first, None)["top1"])
    strip = [{k: v for k, v in s.items() if k != "seconds"} for x in limited for s in x.as_dict()["splits"]]
    assert strip[:3] == strip[3:]


def test_subsets_of_imagenet_c_and_sets(prepared: tuple[Path, dict]) -> None:
    root, _ = prepared
    report = evaluate(root, load_model(READER), Run(workers=0), sets=["imagenet-c"], corruptions=["shot_noise"],
                      severities=[2, 4])
    assert sorted(s.variant for s, _ in report.results) == ["shot_noise-2", "shot_noise-4"]
    assert report.imagenet_c["relative_mce"] is None and list(report.imagenet_c["corruptions"]) == ["shot_noise"]
    with pytest.raises(UsageError, match="no prepared imagenet-o"):
        evaluate(root, load_model(READER), sets=["imagenet-o"])
    with pytest.raises(UsageError, match="fog-1 is not here"):
        evaluate(root, load_model(READER), corruptions=["fog"])


def test_model_errors_are_one_line(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    import torchvision

    root, _ = prepared
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "ten.pth")
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    for args, code, message in (
            (["--model", "torchvision:resnet18", "--weights", str(tmp_path / "ten.pth")], 1,
             f"{tmp_path / 'ten.pth'}: the weights do not fit torchvision:resnet18: 2 of another shape "
             "(e.g. fc.weight: file [10, 512], model [1000, 512])"),
            (["--model", "torchvision:resnet18", "--weights", str(tmp_path / "junk.pth")], 1,
             f"{tmp_path / 'junk.pth'}: not a PyTorch weights file"),
            (["--model", "torchvision:resnet18"], 2, "needs its weights file (--weights FILE); nothing is downloaded"),
            (["--model", "resnet18", "--weights", str(tmp_path / "ten.pth")], 2, "name one: torchvision:resnet18"),
            (["--model", "no_such_module:make"], 2, "cannot import it"),
            (["--model", READER, "--sets", "imagenet-a", "--limit", "0"], 2, "out of range")):
        done = tool(str(root), *args)
        last = done.stderr.strip().splitlines()[-1]   # one line (after argparse's usage, for a bad option)
        assert done.returncode == code and message in last and "Traceback" not in done.stderr, (args, done.stderr)
    assert tool(str(tmp_path), "--model", READER).returncode == 2


def test_an_architecture_with_weights_runs_with_its_own_preprocessing(prepared: tuple[Path, dict],
                                                                      tmp_path: Path) -> None:
    import timm
    import torchvision

    root, _ = prepared
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    model = load_model("timm:resnet18", tmp_path / "r18.pth")
    pre = model.preprocess
    assert (pre.image_size, pre.resize_size, pre.interpolation) == (224, 235, "bicubic")   # crop_pct 0.95
    assert model.weights_sha256 == hashlib.sha256((tmp_path / "r18.pth").read_bytes()).hexdigest()
    report = evaluate(root, model, Run(workers=0, batch_size=4, limit=4), sets=["imagenet-sketch"])
    assert [score.images for _, score in report.results] == [4]
    assert report.settings["interpolation"] == "bicubic" and report.settings["model"] == "timm:resnet18"
    weights = torchvision.models.mobilenet_v2().state_dict()
    for name, resize in (("mobilenet_v2-b0353104.pth", 256), ("mobilenet_v2-7ebf99e0.pth", 232)):
        torch.save(weights, tmp_path / name)   # the weights enum entry is found by its file name
        assert load_model("torchvision:mobilenet_v2", tmp_path / name).preprocess.resize_size == resize
    overridden = load_model("timm:resnet18", tmp_path / "r18.pth", image_size=160, crop_pct=1.0,
                            interpolation="bilinear").preprocess
    assert (overridden.image_size, overridden.resize_size, overridden.interpolation) == (160, 160, "bilinear")
    state = torch.load(tmp_path / "r18.pth", weights_only=True)   # checkpoints: train_imagenet.py's, and DDP's
    torch.save({"model": state, "optimizer": {"param_groups": [{"lr": 0.1}]}, "epoch": 2}, tmp_path / "ck.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    for checkpoint in ("ck.pt", "ddp.pt"):
        loaded = load_model("timm:resnet18", tmp_path / checkpoint).module.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with pytest.raises(ModelError, match="holds no state dict"):
        torch.save([1, 2], tmp_path / "list.pth")
        load_model("timm:resnet18", tmp_path / "list.pth")


def test_imagenet_c_alexnet_errors_are_the_published_ones() -> None:
    alexnet = resources.read_json("imagenet_c_alexnet.json")
    assert set(alexnet["errors"]) == set(ALEXNET_MEANS)
    for corruption, mean in ALEXNET_MEANS.items():
        assert sum(alexnet["errors"][corruption]) / 5 == pytest.approx(mean, abs=1e-6)
    assert alexnet["clean_error"] == pytest.approx(1 - 0.56522)


def test_bicubic_val_resize_is_pils(prepared: tuple[Path, dict]) -> None:
    root, _ = prepared
    split = root / "imagenet-sketch" / "val"
    batches = {how: next(iter(build_loader(split, "val", 4, backend="torch", device="cpu", dtype="uint8",
                                           num_threads=0, interpolation=how, remainder="partial")))[0]
               for how in ("bilinear", "bicubic")}
    with tarfile.open(sorted(split.glob("*.tar"))[0]) as tar:
        jpegs = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")][:4]
    for i, data in enumerate(jpegs):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        rw, rh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        left, top = round((rw - 224) / 2), round((rh - 224) / 2)
        box = (left * w / rw, top * h / rh, (left + 224) * w / rw, (top + 224) * h / rh)
        for how, resample in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
            want = np.asarray(img.resize((224, 224), resample, box=box)).transpose(2, 0, 1)
            assert np.array_equal(batches[how][i].numpy(), want), (how, i)
    assert not torch.equal(batches["bilinear"], batches["bicubic"])
    dali = {how: next(iter(build_loader(split, "val", 4, backend="dali", device="cpu", dtype="uint8",
                                        num_threads=1, interpolation=how, remainder="partial")))[0]
            for how in ("bilinear", "bicubic")}
    assert dali["bicubic"].shape == (4, 3, 224, 224) and not torch.equal(dali["bilinear"], dali["bicubic"])
    with pytest.raises(ValueError, match="interpolation must be one of"):
        build_loader(split, "val", 4, backend="torch", device="cpu", interpolation="lanczos")


def test_imagenet_c_images_are_not_cropped_again(prepared: tuple[Path, dict]) -> None:
    root, _ = prepared
    seen: list[torch.Tensor] = []

    def record(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return torch.zeros(len(images), 1000)

    model = dataclasses.replace(load_model(READER), module=record)
    evaluate(root, model, Run(workers=0, batch_size=2, limit=2), sets=["imagenet-c"], corruptions=["shot_noise"],
             severities=[1])
    split = root / "imagenet-c" / "shot_noise-1"
    with tarfile.open(sorted(split.glob("*.tar"))[0]) as tar:
        jpegs = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")][:2]
    mean, std = torch.tensor(model.preprocess.mean)[:, None, None], torch.tensor(model.preprocess.std)[:, None, None]
    for received, data in zip(seen[0], jpegs, strict=True):
        pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)
        assert pixels.shape == (3, 224, 224)   # the set's 224 x 224 crops, as they are
        assert torch.allclose(received * std + mean, pixels / 255, atol=1e-5)
