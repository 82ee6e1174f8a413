"""Tests of ``imnet_data.fake``: open the real bytes it writes (tarfile, PIL, scipy, ElementTree) and check them
against the real download's formats and against the truth document."""
from __future__ import annotations

import collections
import hashlib
import io
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image, UnidentifiedImageError

from imnet_data.catalog import UnknownClassError, ilsvrc2012, known_quirks
from imnet_data.fake import FakeOptions, FakeResult, make_fake, photos, render, write_truth

REAL_META = Path("/work/shared/imagenet-reference/devkit/meta.mat")
FULL = FakeOptions(classes=8, train_per_class=6, val_images=30, seed=3, with_quirks=True, with_faults=True,
                   bbox=True, kaggle=True)
ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar",
            "devkit": "ILSVRC2012_devkit_t12.tar.gz", "bbox_train": "ILSVRC2012_bbox_train_v2.tar.gz",
            "bbox_val": "ILSVRC2012_bbox_val_v3.tgz"}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("full"), FULL, quiet=True)


def members(path: Path) -> dict[str, bytes]:
    """Name -> bytes of every regular file of a (possibly gzipped) tar, in archive order."""
    with tarfile.open(path) as tar:
        assert all(m.isfile() for m in tar.getmembers())
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def train_images(path: Path) -> dict[str, bytes]:
    """File name -> bytes of every image inside the inner tars of a train archive."""
    out = {}
    for inner in members(path).values():
        with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
            out.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    return out


def images(result: FakeResult) -> dict[str, bytes]:
    return {**train_images(result.archives["train"]), **members(result.archives["val"])}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_mat(result: FakeResult, **kwargs: bool) -> np.ndarray:
    data = members(result.archives["devkit"])["ILSVRC2012_devkit_t12/data/meta.mat"]
    return scipy.io.loadmat(io.BytesIO(data), **kwargs)["synsets"]


def boxes_of(xml: bytes) -> tuple[ET.Element, list[tuple[str, int, int, int, int]]]:
    root = ET.fromstring(xml)
    return root, [(o.findtext("name"), *(int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
                  for o in root.iter("object")]


def test_writes_only_the_archives(full: FakeResult, tmp_path: Path) -> None:
    assert sorted(p.name for p in full.out.iterdir()) == sorted([*ARCHIVES.values(), "kaggle"])
    assert {k: p.name for k, p in full.archives.items()} == {**ARCHIVES, "kaggle": "kaggle"}
    plain = make_fake(tmp_path, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ARCHIVES[k] for k in ("train", "val", "devkit"))
    assert len(plain.truth["train"]) == 60 and len(plain.truth["val"]) == 20 and len(plain.truth["classes"]) == 10


def test_train_archive_nests_one_sorted_tar_per_class(full: FakeResult) -> None:
    wnids = [c["wnid"] for c in full.truth["classes"]]
    outer = members(full.archives["train"])
    assert list(outer) == [f"{w}.tar" for w in sorted(wnids)]
    for name, inner in outer.items():
        with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
            names = tar.getnames()
        assert names == sorted(names) and len(names) == FULL.train_per_class
        for file in names:
            wnid, number = re.fullmatch(r"(n\d{8})_(\d+)\.JPEG", file).groups()
            assert f"{wnid}.tar" == name and 1 <= int(number) <= 30000
    train = train_images(full.archives["train"])
    assert {n: sha256(d) for n, d in train.items()} == {n: e["sha256"] for n, e in full.truth["train"].items()}


def test_val_archive_is_flat_and_numbered(full: FakeResult) -> None:
    val = members(full.archives["val"])
    assert list(val) == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, FULL.val_images + 1)]
    assert {n: sha256(d) for n, d in val.items()} == {n: e["sha256"] for n, e in full.truth["val"].items()}
    per_class = collections.Counter(e["wnid"] for e in full.truth["val"].values())
    assert len(per_class) == 8 and max(per_class.values()) - min(per_class.values()) <= 1


def test_every_file_is_what_its_kind_claims(full: FakeResult) -> None:
    data = images(full)
    truth = {**full.truth["train"], **full.truth["val"]}
    modes = {"jpeg": ("JPEG", "RGB"), "cmyk": ("JPEG", "CMYK"), "gray": ("JPEG", "L"), "png": ("PNG", "RGB"),
             "duplicate": ("JPEG", "RGB")}
    for name, entry in truth.items():
        raw = data[name]
        if entry["kind"] in modes:
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
                assert (image.format, image.mode) == modes[entry["kind"]], name
                assert all(40 <= side <= 96 for side in image.size)
        elif entry["kind"] == "truncated":
            assert raw[:2] == b"\xff\xd8" and not raw.endswith(b"\xff\xd9")
            with Image.open(io.BytesIO(raw)) as image, pytest.raises(OSError):
                image.load()
        elif entry["kind"] == "empty":
            assert raw == b""
        else:
            assert entry["kind"] == "not_image" and raw.startswith(b"<!DOCTYPE html")
            with pytest.raises(UnidentifiedImageError):
                Image.open(io.BytesIO(raw))


def test_quirks_sit_at_the_real_names(full: FakeResult) -> None:
    wnids = {c["wnid"] for c in full.truth["classes"]}
    real = known_quirks()
    kinds = {(q["split"], q["name"]): q["kind"] for q in full.truth["quirks"]}
    assert "n02105855" in wnids and kinds[("train", "n02105855_2933.JPEG")] == "png"
    cmyk = {("train", n) for n in real["cmyk"] if n.split("_")[0] in wnids}
    assert cmyk and {k for k, v in kinds.items() if v == "cmyk"} == cmyk
    assert {split for (split, _), kind in kinds.items() if kind == "gray"} == {"train", "val"}
    assert all(full.truth[split][name]["kind"] == kind for (split, name), kind in kinds.items())


def test_faults_are_recorded_and_duplicates_repeat_bytes(full: FakeResult) -> None:
    faults = full.truth["faults"]
    assert {f["kind"] for f in faults} == {"truncated", "empty", "not_image", "duplicate"}
    data = images(full)
    duplicates = [f for f in faults if f["kind"] == "duplicate"]
    assert {(f["split"], f["duplicate_of"]["split"]) for f in duplicates} == {("train", "train"), ("val", "train")}
    for f in duplicates:
        original = f["duplicate_of"]["name"]
        assert data[f["name"]] == data[original] and full.truth[f["split"]][f["name"]]["kind"] == "duplicate"
        assert full.truth[f["split"]][f["name"]]["wnid"] == full.truth["train"][original]["wnid"]


def test_meta_mat_has_the_real_layout(full: FakeResult) -> None:
    real, fake = scipy.io.loadmat(REAL_META)["synsets"], meta_mat(full)
    assert fake.shape == real.shape == (1860, 1) and fake.dtype.names == real.dtype.names
    counts = collections.Counter(e["wnid"] for e in full.truth["train"].values())
    for r, f in zip(real[:, 0], fake[:, 0], strict=True):
        for field in real.dtype.names:
            if field != "num_train_images":
                assert f[field].dtype == r[field].dtype and np.array_equal(f[field], r[field]), field
        leaf_count = counts.get(str(f["WNID"][0]), 0) if int(f["num_children"][0, 0]) == 0 else 0
        assert int(f["num_train_images"][0, 0]) == leaf_count
    squeezed = meta_mat(full, squeeze_me=True)
    assert len(squeezed) == 1860 and sum(int(s["num_children"]) == 0 for s in squeezed) == 1000


def test_val_ground_truth_maps_through_meta_mat(full: FakeResult) -> None:
    """ILSVRC2012_ID per line -> WNID via the fake's own meta.mat -> the truth, and -> the drawn content."""
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in meta_mat(full, squeeze_me=True)}
    text = members(full.archives["devkit"])["ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"]
    labels = [id_to_wnid[int(line)] for line in text.decode().splitlines()]
    names = sorted(full.truth["val"])
    assert labels == [full.truth["val"][n]["wnid"] for n in names]
    assert [ilsvrc2012().by_wnid(w).ilsvrc2012_id for w in labels] == [int(x) for x in text.split()]
    assert content_classes(full) == {n: w for n, w in zip(names, labels, strict=True)
                                     if full.truth["val"][n]["kind"] in ("jpeg", "duplicate")}


def content_classes(result: FakeResult) -> dict[str, str]:
    """Classify each plain val image by the mean colour inside its first box, nearest to the class means of the
    boxed plain train images (class from the inner tar name): the tiny profile draws each class in its colours."""
    data = images(result)

    def colour(path: str, xml: bytes) -> tuple[str, np.ndarray]:
        name = path.split("/")[1][:-len(".xml")] + ".JPEG"
        _, x0, y0, x1, y1 = boxes_of(xml)[1][0]
        with Image.open(io.BytesIO(data[name])) as image:
            return name, np.asarray(image.convert("RGB"), dtype=float)[y0:y1 + 1, x0:x1 + 1].mean(axis=(0, 1))

    def plain(split: str) -> dict[str, np.ndarray]:
        found = dict(colour(p, x) for p, x in members(result.archives[f"bbox_{split}"]).items())
        return {n: c for n, c in found.items() if result.truth[split][n]["kind"] in ("jpeg", "duplicate")}

    by_class = collections.defaultdict(list)
    for name, c in plain("train").items():
        by_class[name.split("_")[0]].append(c)
    means = {w: np.mean(cs, axis=0) for w, cs in by_class.items()}
    return {n: min(means, key=lambda w: np.linalg.norm(means[w] - c)) for n, c in plain("val").items()}


def test_bbox_archives_are_voc_xml_inside_the_images(full: FakeResult) -> None:
    data = images(full)
    train, val = members(full.archives["bbox_train"]), members(full.archives["bbox_val"])
    assert list(val) == [f"val/ILSVRC2012_val_{i:08d}.xml" for i in range(1, FULL.val_images + 1)]
    decodable = [n for n, e in full.truth["train"].items() if e["kind"] not in
                 ("truncated", "empty", "not_image", "duplicate")]
    assert len(train) == sum((c + 1) // 2 for c in collections.Counter(n[:9] for n in decodable).values())
    for path, xml in {**train, **val}.items():
        folder, stem = re.fullmatch(r"(val|n\d{8})/(\w+)\.xml", path).groups()
        root, objects = boxes_of(xml)
        name = f"{stem}.JPEG"
        split = "val" if folder == "val" else "train"
        assert (root.findtext("folder"), root.findtext("filename")) == (folder, stem)
        assert root.findtext("source/database") == "ILSVRC_2012" and root.findtext("segmented") == "0"
        size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
        if full.truth[split][name]["kind"] in ("jpeg", "cmyk", "png", "gray", "duplicate"):
            with Image.open(io.BytesIO(data[name])) as image:
                assert image.size == size
        assert objects and all(w == full.truth[split][name]["wnid"] for w, *_ in objects)
        assert all(0 <= x0 < x1 < size[0] and 0 <= y0 < y1 < size[1] for _, x0, y0, x1, y1 in objects)


def test_kaggle_layout_matches_the_archives(full: FakeResult) -> None:
    root = full.archives["kaggle"]
    data = images(full)
    cls_loc = root / "ILSVRC" / "Data" / "CLS-LOC"
    for name, entry in full.truth["train"].items():
        assert (cls_loc / "train" / entry["wnid"] / name).read_bytes() == data[name]
    for name in full.truth["val"]:
        assert (cls_loc / "val" / name).read_bytes() == data[name]
    xmls = {f"train/{p}" if not p.startswith("val/") else p: x
            for p, x in (members(full.archives["bbox_train"]) | members(full.archives["bbox_val"])).items()}
    annotations = root / "ILSVRC" / "Annotations" / "CLS-LOC"
    assert {p.relative_to(annotations).as_posix(): p.read_bytes() for p in annotations.rglob("*.xml")} == xmls
    sets = root / "ILSVRC" / "ImageSets" / "CLS-LOC"
    stems = sorted(f"{e['wnid']}/{n[:-5]}" for n, e in full.truth["train"].items())
    assert (sets / "train_cls.txt").read_text().splitlines() == [f"{s} {i}" for i, s in enumerate(stems, 1)]
    assert (sets / "val.txt").read_text().splitlines() == [f"{n[:-5]} {i}" for i, n in enumerate(
        sorted(full.truth["val"]), 1)]
    for csv, split in (("LOC_train_solution.csv", "train"), ("LOC_val_solution.csv", "val")):
        lines = (root / csv).read_text().splitlines()
        assert lines[0] == "ImageId,PredictionString"
        solution = {line.split(",")[0]: line.split(",")[1] for line in lines[1:]}
        expected = {p.split("/")[-1][:-4]: "".join(" ".join(map(str, o)) + " " for o in boxes_of(x)[1])
                    for p, x in xmls.items() if p.startswith(f"{split}/")}
        assert solution == expected
    mapping = (root / "LOC_synset_mapping.txt").read_text().splitlines()
    assert len(mapping) == 1000 and mapping == sorted(mapping) and mapping[0] == "n01440764 tench, Tinca tinca"
    assert (root / "LOC_sample_submission.csv").read_text().startswith("ImageId,PredictionString\n")


def test_same_options_give_identical_bytes(full: FakeResult, tmp_path: Path) -> None:
    again = make_fake(tmp_path / "again", FULL, quiet=True)

    def digests(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): sha256(p.read_bytes()) for p in root.rglob("*") if p.is_file()}

    assert digests(again.out) == digests(full.out)
    write_truth(full, tmp_path / "a.json")
    write_truth(again, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    other = make_fake(tmp_path / "other", FakeOptions(seed=1), quiet=True)
    assert other.truth["classes"] != full.truth["classes"]


def test_worker_processes_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = FakeOptions(classes=20, train_per_class=25, val_images=0)
    pooled = make_fake(tmp_path / "pooled", options, quiet=True)
    monkeypatch.setattr(render, "_PARALLEL_FROM", 10**9)  # force one process
    single = make_fake(tmp_path / "single", options, quiet=True)
    assert pooled.truth == single.truth


def test_unknown_wnid_is_refused_with_suggestions() -> None:
    with pytest.raises(UnknownClassError, match=r"'n01440765' is not an ILSVRC2012 class WNID.*n01440764"):
        FakeOptions(classes=("n01443537", "n01440765"))


def test_explicit_classes_are_faked_exactly(tmp_path: Path) -> None:
    result = make_fake(tmp_path, FakeOptions(classes=("n01443537", "n01440764"), train_per_class=2, val_images=5),
                       quiet=True)
    assert [c["wnid"] for c in result.truth["classes"]] == ["n01440764", "n01443537"]
    assert [c["index"] for c in result.truth["classes"]] == [0, 1]


def test_imagenet_profile_looks_like_the_real_set(tmp_path: Path) -> None:
    pytest.importorskip("skimage", reason="the imagenet profile cuts scikit-image's sample photographs")
    result = make_fake(tmp_path, FakeOptions(classes=3, train_per_class=20, val_images=10, profile="imagenet"),
                       quiet=True)
    sizes, dims = [], collections.Counter[tuple[int, int]]()
    for data in images(result).values():
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            sizes.append(len(data))
            dims[image.size] += 1
    assert 80_000 <= np.mean(sizes) <= 140_000
    assert dims.most_common(1)[0][0] == (500, 375) and all(max(d) == 500 for d in dims)


def test_imagenet_profile_without_scikit_image_says_what_to_install(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if not installed
    photos.photos.cache_clear()
    with pytest.raises(ImportError, match=re.escape("pip install 'imnet-data[photos]'")):
        make_fake(tmp_path / "out", FakeOptions(profile="imagenet"), quiet=True)
    photos.photos.cache_clear()
    assert not (tmp_path / "out").exists()


def test_torchvision_imagenet_accepts_the_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchvision",
                        reason="torchvision is not installed (optional: pip install torch==2.14.1 torchvision==0.29.1)")
    from torchvision.datasets import ImageNet, imagenet

    monkeypatch.setattr(imagenet, "_verify_archive", lambda *args, **kwargs: None)  # fake md5s differ, only that
    result = make_fake(tmp_path, FakeOptions(classes=5, train_per_class=4, val_images=12, with_quirks=True,
                                             with_faults=True), quiet=True)
    for split in ("train", "val"):
        dataset = ImageNet(str(tmp_path), split=split)
        seen = {Path(path).name: dataset.wnids[target] for path, target in dataset.samples}
        assert seen == {name: entry["wnid"] for name, entry in result.truth[split].items()}
        assert all(dataset.classes[dataset.wnid_to_idx[w]] == ilsvrc2012().by_wnid(w).names for w in seen.values())


def test_fake_layouts_registry_names_the_default_and_the_cli_takes_it(tmp_path: Path) -> None:
    """``fake --layout`` takes its choices from FAKE_LAYOUTS; the default layout writes what plain ``fake`` does."""
    from imnet_data.fake.layouts import DEFAULT, FAKE_LAYOUTS
    from tests.helpers import run_cli

    assert DEFAULT == "ilsvrc2012" and all(layout.load() for layout in FAKE_LAYOUTS.values())
    plain = run_cli("fake", str(tmp_path / "plain"), "--classes", "3", "-q")
    named = run_cli("fake", str(tmp_path / "named"), "--classes", "3", "--layout", DEFAULT, "-q")
    assert plain.returncode == named.returncode == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "plain").iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "named").iterdir()}
    refused = run_cli("fake", str(tmp_path / "x"), "--layout", "no-such-layout")
    assert refused.returncode == 2 and "ilsvrc2012" in refused.stderr and not (tmp_path / "x").exists()
