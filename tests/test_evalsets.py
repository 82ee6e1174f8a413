"""The evaluation sets as layouts, on their fakes (real tar, tar.gz and zip archives of real JPEGs): detected, read
and sharded with every label in the ImageNet-1k index equal to the truth, the set's class mask equal to the
published lists, the set and variant in the manifest, ``_info.json`` and the dataset card; ``validate`` checks
counts and classes; bad archives are refused by name."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from imnet_data import catalog
from imnet_data.errors import UsageError
from imnet_data.fake import FakeOptions, FakeResult, write_truth
from imnet_data.fake.evalsets import (
    make_imagenet_a,
    make_imagenet_c,
    make_imagenet_r,
    make_imagenet_sketch,
    make_imagenet_v2,
)
from imnet_data.shards import ShardOptions, shard
from imnet_data.sources import detect_layout, open_source
from tests.helpers import run_cli

OPTIONS = FakeOptions(classes=3, val_images=9, seed=3)
MAKERS = {"imagenet-a": make_imagenet_a, "imagenet-r": make_imagenet_r, "imagenet-sketch": make_imagenet_sketch,
          "imagenet-v2": make_imagenet_v2, "imagenet-c": make_imagenet_c}
# hendrycks/natural-adv-examples eval.py: the 1k indices of ImageNet-A's classes (thousand_k_to_200 != -1)
HENDRYCKS_A = [6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70, 71, 76, 79, 89, 90, 94, 96, 97, 99, 105,
               107, 108, 110, 113, 124, 125, 130, 132, 143, 144, 150, 151, 207, 234, 235, 254, 277, 283, 287, 291, 295,
               298, 301, 306, 307, 308, 309, 310, 311, 313, 314, 315, 317, 319, 323, 324, 326, 327, 330, 334, 335, 336,
               347, 361, 363, 372, 378, 386, 397, 400, 401, 402, 404, 407, 411, 416, 417, 420, 425, 428, 430, 437, 438,
               445, 456, 457, 461, 462, 470, 472, 483, 486, 488, 492, 496, 514, 516, 528, 530, 539, 542, 543, 549, 552,
               557, 561, 562, 569, 572, 573, 575, 579, 589, 606, 607, 609, 614, 626, 627, 640, 641, 642, 643, 658, 668,
               677, 682, 684, 687, 701, 704, 719, 736, 746, 749, 752, 758, 763, 765, 768, 773, 774, 776, 779, 780, 786,
               792, 797, 802, 803, 804, 813, 815, 820, 823, 831, 833, 835, 839, 845, 847, 850, 859, 862, 870, 879, 880,
               888, 890, 897, 900, 907, 913, 924, 932, 933, 934, 937, 943, 945, 947, 951, 954, 956, 957, 959, 971, 972,
               980, 981, 984, 986, 987, 988]


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FakeResult]:
    root = tmp_path_factory.mktemp("eval-fakes")
    return {layout: make(root / layout, OPTIONS, quiet=True) for layout, make in MAKERS.items()}


@pytest.fixture(scope="module")
def v2_folder(fakes: dict[str, FakeResult], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three V2 archives extracted (what shard reads: a gzip stream has no random access)."""
    out = tmp_path_factory.mktemp("v2-extracted")
    for path in fakes["imagenet-v2"].archives.values():
        with tarfile.open(path) as tar:
            tar.extractall(out, filter="data")
    return out


@pytest.fixture(scope="module")
def sharded(fakes: dict[str, FakeResult], v2_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-shards")
    for layout, result in fakes.items():
        shard(v2_folder if layout == "imagenet-v2" else result.out, out / layout, ShardOptions(samples_per_shard=5),
              jobs=1, quiet=True)
    return out


def shard_labels(split_folder: Path) -> dict[str, tuple[int, str]]:
    """file -> (.cls, .json wnid) of every sample of a split's shards, read with tarfile."""
    out = {}
    for path in sorted(split_folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                meta = json.loads(data)
                out[meta["file"]] = (int(members[name[:-5] + ".cls"]), meta["wnid"])
    return out


def test_each_set_is_detected_and_read_with_the_truth(fakes: dict[str, FakeResult], v2_folder: Path) -> None:
    for layout, result in fakes.items():
        for path in [result.out, *result.archives.values()]:
            assert detect_layout(path) == layout
        src = open_source(result.out)
        assert sorted(src.splits()) == sorted(result.truth["splits"])
        for split, truth in result.truth["splits"].items():
            read = {s.name: s for s in src.samples(split)}
            assert {n: s.wnid for n, s in read.items()} == {n: t["wnid"] for n, t in truth.items()}
            assert all(t["label"] == catalog.ilsvrc2012().wnid_to_index(t["wnid"]) for t in truth.values())
    assert detect_layout(v2_folder) == "imagenet-v2"
    assert open_source(v2_folder / "imagenetv2-top-images-format-val").splits() == ["top-images"]


def test_shards_carry_the_truth_in_the_1k_index(fakes: dict[str, FakeResult], sharded: Path) -> None:
    one_k = catalog.ilsvrc2012()
    for layout, result in fakes.items():
        info = json.loads((sharded / layout / "_info.json").read_text())
        card = (sharded / layout / "README.md").read_text()
        for split, truth in result.truth["splits"].items():
            manifest = json.loads((sharded / layout / split / "manifest.json").read_text())
            assert manifest["label_space"] == "imagenet-1k" and len(manifest["classes"]) == 1000
            assert manifest["name"] == layout and manifest["evaluation"]["set"] == layout
            assert manifest["evaluation"]["mask"] == result.truth["mask"]
            expected = {name: (t["label"], t["wnid"]) for name, t in truth.items()}
            assert shard_labels(sharded / layout / split) == expected
            assert info["splits"][split]["evaluation"] == {"set": layout,
                                                           "variant": manifest["evaluation"]["variant"]}
            assert f"split `{split}`: {layout}" in card
    assert json.loads((sharded / "imagenet-c" / "shot_noise-4" / "manifest.json").read_text())["evaluation"] == {
        "set": "imagenet-c", "variant": "shot_noise-4", "corruption": "shot_noise", "severity": 4, "mask": None,
        "reference": "https://github.com/hendrycks/robustness"}
    assert "- split: matched_frequency\n    path: matched-frequency/*.tar" in (sharded / "imagenet-v2" / "README.md"
                                                                             ).read_text()
    # ImageNetV2's class folders are 1k indices: folder "10" is class 10, not ImageFolder's 3rd of sorted names
    v2 = fakes["imagenet-v2"].truth["splits"]["threshold0.7"]
    assert {t["label"] for t in v2.values()} == {one_k.wnid_to_index(w) for w in {t["wnid"] for t in v2.values()}}


def test_masks_equal_the_published_class_lists(sharded: Path) -> None:
    masks = {layout: json.loads((sharded / layout / "val" / "manifest.json").read_text())["evaluation"]["mask"]
             for layout in ("imagenet-a", "imagenet-r")}
    timm_info = resources.files("timm.data._info")
    for layout in masks:
        published = [int(x) for x in timm_info.joinpath(f"{layout.replace('-', '_')}_indices.txt").read_text().split()]
        assert masks[layout] == published
    assert masks["imagenet-a"] == HENDRYCKS_A


def test_validate_checks_counts_and_classes(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    for layout, result in fakes.items():
        ok = run_cli("validate", str(result.out), "--expect", "self", "--deep", "--json", "-q")
        assert ok.returncode == 0, ok.stderr
        official = run_cli("validate", str(result.out), "--json", "-q")
        assert official.returncode == 1
        kinds = {p["kind"] for p in json.loads(official.stdout)["problems"]}
        assert kinds == ({"count", "missing_class"} if layout != "imagenet-c" else {"count", "missing_class",
                                                                                       "missing"}), layout
    # ImageNet-C's labels are the official val labels: a file under another class is named
    bad = tmp_path / "c"
    bad.mkdir()
    with tarfile.open(fakes["imagenet-c"].archives["noise"]) as src, tarfile.open(bad / "noise.tar", "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.startswith("fog"):
                continue
            if m.name.startswith("gaussian_noise/2/"):
                parts = m.name.split("/")
                other = next(w for w in catalog.ilsvrc2012().wnids if w != parts[2])
                m.name = "/".join([*parts[:2], other, parts[3]])
            dst.addfile(m, io.BytesIO(data))
    problems = json.loads(run_cli("validate", str(bad), "--json", "-q").stdout)["problems"]
    labels = [p for p in problems if p["kind"] == "label"]
    assert len(labels) == 9 and all("gaussian_noise/2" not in p["where"] or "noise.tar" in p["where"]
                                    for p in labels)


def _retar(src: Path, dst: Path, rename: dict[str, str]) -> None:
    """A copy of tar ``src`` with member names changed by ``rename`` (prefix -> prefix)."""
    with tarfile.open(src) as a, tarfile.open(dst, "w:gz" if src.name.endswith(".gz") else "w") as b:
        for m in a.getmembers():
            data = a.extractfile(m).read() if m.isfile() else None
            for old, new in rename.items():
                if m.name.startswith(old):
                    m.name = new + m.name[len(old):]
            b.addfile(m, io.BytesIO(data) if data is not None else None)


def test_bad_archives_are_refused_by_name(fakes: dict[str, FakeResult], v2_folder: Path, tmp_path: Path) -> None:
    a_tar = fakes["imagenet-a"].archives["val"]
    wnid = sorted(fakes["imagenet-a"].truth["splits"]["val"].values(), key=lambda t: t["wnid"])[0]["wnid"]
    outsider = next(w for w in catalog.ilsvrc2012().wnids if w not in catalog.subset("imagenet-a")[1])
    cases = {}
    (tmp_path / "wnid").mkdir()
    _retar(a_tar, tmp_path / "wnid" / "imagenet-a.tar", {f"imagenet-a/{wnid}/": f"imagenet-a/{outsider}/"})
    cases["wnid"] = (tmp_path / "wnid", f"class folder {outsider!r} is not one of the 200 imagenet-a classes")
    top = tmp_path / "v2" / "imagenetv2-top-images-format-val"   # extracted: shard reads it in place
    shutil.copytree(v2_folder / top.name, top)
    folder = next(iter(fakes["imagenet-v2"].truth["splits"]["top-images"].values()))["label"]
    (top / str(folder)).rename(top / "1000")
    cases["v2"] = (tmp_path / "v2", "class folder '1000' is not a class index 0..999")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "imagenet-a.tar").write_bytes(a_tar.read_bytes()[: a_tar.stat().st_size // 2])
    cases["cut"] = (tmp_path / "cut", "truncated download?")
    sketch = fakes["imagenet-sketch"].archives["val"]
    (tmp_path / "zip").mkdir()
    (tmp_path / "zip" / sketch.name).write_bytes(sketch.read_bytes()[: sketch.stat().st_size - 100])
    cases["zip"] = (tmp_path / "zip", "not a readable zip archive")
    for case, (path, message) in cases.items():
        for command in (["validate", str(path), "-q"], ["shard", str(path), str(tmp_path / f"out-{case}"), "-q"]):
            done = run_cli(*command)
            assert done.returncode == 1 and message in done.stdout + done.stderr, (case, command, done.stdout,
                                                                                   done.stderr)
            assert "Traceback" not in done.stderr
    gz = fakes["imagenet-v2"].archives["threshold0.7"]   # a cut gzip stream: validate reads it through
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / gz.name).write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    done = run_cli("validate", str(tmp_path / "gz"), "--expect", "self", "-q")
    assert done.returncode == 1 and f"{gz.name}: truncated or corrupt archive" in done.stdout, done.stdout
    # a V2 tar.gz cannot be sharded in place: the error says to extract it
    done = run_cli("shard", str(fakes["imagenet-v2"].out), str(tmp_path / "v2out"), "-q")
    assert done.returncode == 1 and "tar -xzf imagenetv2-matched-frequency.tar.gz" in done.stderr


def test_detection_is_never_a_guess(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    with zipfile.ZipFile(fakes["imagenet-sketch"].archives["val"]) as zf:
        zf.extractall(tmp_path / "sk")
    assert detect_layout(tmp_path / "sk") == "imagenet-sketch"    # the folder holding sketch/
    done = run_cli("validate", str(tmp_path / "sk" / "sketch"), "-q")   # sketch/ alone: also one split's folder
    assert done.returncode == 2 and "--layout imagenet-sketch" in done.stderr and "--layout folders" in done.stderr
    assert run_cli("validate", str(tmp_path / "sk" / "sketch"), "--layout", "imagenet-sketch", "--expect", "self",
                   "-q").returncode == 0
    with tarfile.open(fakes["imagenet-a"].archives["val"]) as tar:
        tar.extractall(tmp_path / "a", filter="data")
    assert detect_layout(tmp_path / "a") == detect_layout(tmp_path / "a" / "imagenet-a") == "imagenet-a"
    (tmp_path / "a" / "imagenet-a" / "README.txt").unlink()   # no marker: a folder of 1k class folders
    assert detect_layout(tmp_path / "a" / "imagenet-a") == "folders"
    (tmp_path / "domainnet" / "sketch" / "airplane").mkdir(parents=True)   # another set's sketch/: not claimed
    (tmp_path / "domainnet" / "sketch" / "airplane" / "a.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="not a known ImageNet layout"):
        detect_layout(tmp_path / "domainnet")
    both = tmp_path / "both"
    shutil.copytree(tmp_path / "sk", both)
    shutil.copy(fakes["imagenet-sketch"].archives["val"], both)
    done = run_cli("validate", str(both), "-q")
    assert done.returncode == 1 and "holds both ImageNet-Sketch.zip and its extracted sketch/" in done.stdout


def test_fake_cli_writes_each_set_and_its_truth(tmp_path: Path) -> None:
    done = run_cli("fake", str(tmp_path / "r"), "--layout", "imagenet-r", "--classes", "2", "--val-images", "4",
                   "--truth", str(tmp_path / "r.json"), "--json")
    assert done.returncode == 0, done.stderr
    truth = json.loads((tmp_path / "r.json").read_text())
    assert truth["layout"] == "imagenet-r" and len(truth["splits"]["val"]) == 4
    again = make_imagenet_r(tmp_path / "r2", FakeOptions(classes=2, val_images=4), quiet=True)
    assert (tmp_path / "r2" / "imagenet-r.tar").read_bytes() == (tmp_path / "r" / "imagenet-r.tar").read_bytes()
    write_truth(again, tmp_path / "r2.json")
    assert json.loads((tmp_path / "r2.json").read_text())["splits"] == truth["splits"]
    refused = run_cli("fake", str(tmp_path / "x"), "--layout", "imagenet-a", "--classes", "n01440764")
    assert refused.returncode == 2 and "not one of the 200 imagenet-a classes" in refused.stderr
    refused = run_cli("fake", str(tmp_path / "x"), "--layout", "imagenet-c", "--with-faults")
    assert refused.returncode == 2 and "--with-faults is for the ilsvrc2012 fake" in refused.stderr


def test_imagenet_c_subsets_by_corruption_and_severity(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    src = fakes["imagenet-c"].out
    done = run_cli("shard", str(src), str(tmp_path / "c"), "--corruptions", "impulse_noise,gaussian_noise",
                   "--severities", "2,5", "-q")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir()) == [
        "gaussian_noise-2", "gaussian_noise-5", "impulse_noise-2", "impulse_noise-5"]
    for args, message in ((["--corruptions", "fog"], "fog-1 is not here"),
                          (["--corruptions", "rain"], "unknown ImageNet-C corruption or severity 'rain'"),
                          (["--severities", "0"], "expected severities 1..5")):
        done = run_cli("shard", str(src), str(tmp_path / "x"), *args, "-q")
        assert done.returncode == 2 and message in done.stderr, done.stderr
    done = run_cli("shard", str(fakes["imagenet-a"].out), str(tmp_path / "x"), "--severities", "3", "-q")
    assert done.returncode == 2 and "pick ImageNet-C splits" in done.stderr
    # a family tar missing a corruption is reported by name
    with tarfile.open(fakes["imagenet-c"].archives["noise"]) as a, tarfile.open(tmp_path / "noise.tar", "w") as b:
        for m in a.getmembers():
            if not m.name.startswith("shot_noise/3/"):
                b.addfile(m, a.extractfile(m))
    done = run_cli("validate", str(tmp_path / "noise.tar"), "--expect", "self", "-q")
    assert done.returncode == 1 and "noise.tar: holds no shot_noise/3/ images" in done.stdout


def test_hugging_face_reads_every_variant(fakes: dict[str, FakeResult], sharded: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")   # nothing here may reach a hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = datasets.load_dataset(str(sharded / "imagenet-v2"), cache_dir=str(tmp_path / "hf"))
    assert sorted(ds) == ["matched_frequency", "threshold0.7", "top_images"]   # the card's names for the splits
    for variant, truth in fakes["imagenet-v2"].truth["splits"].items():
        rows = ds[variant.replace("-", "_")]
        assert {r["json"]["file"]: r["cls"] for r in rows} == {name: t["label"] for name, t in truth.items()}
