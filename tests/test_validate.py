"""Tests of ``imnet-data validate`` on real bytes: fake downloads (clean, with the real set's quirks, with faults),
then damaged copies of them (a missing archive, devkit or class tar, an unexpected member, a cut-off archive)."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from imnet_data import tario
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.fake.imagenet21k import make_fake_imagenet21k
from imnet_data.fake.tiny_imagenet import make_fake_tiny_imagenet
from imnet_data.organize import organize
from imnet_data.sources.ilsvrc import IlsvrcArchives
from imnet_data.validate import Problem, ValidationReport, checksums as validate_module, validate
from tests.helpers import run_cli

TRAIN, VAL, DEVKIT = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"
QUIRK_KINDS = {"cmyk": "cmyk", "png": "not_jpeg", "gray": "grayscale"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("clean"), FakeOptions(classes=3, train_per_class=5, val_images=9,
                                                                   seed=1, kaggle=True), quiet=True)


@pytest.fixture(scope="module")
def quirks(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("quirks"), FakeOptions(classes=3, train_per_class=5, val_images=9,
                                                                    seed=2, with_quirks=True), quiet=True)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("faults"), FakeOptions(classes=3, train_per_class=6, val_images=9,
                                                                    seed=3, with_faults=True, kaggle=True), quiet=True)


@pytest.fixture
def copy(clean: FakeResult, tmp_path: Path) -> Path:
    """A private copy of the clean fake's archives, to damage."""
    out = tmp_path / "download"
    out.mkdir()
    for name in (TRAIN, VAL, DEVKIT):
        shutil.copy(clean.out / name, out / name)
    return out


def where(result: FakeResult, split: str, name: str) -> str:
    """How validate names a member of the fake: ``<archive>:<wnid>.tar:<name>`` in train."""
    if split == "train":
        return f"{result.out / TRAIN}:{name.split('_')[0]}.tar:{name}"
    return f"{result.out / VAL}:{name}"


def found(report: ValidationReport, severity: str | None = None) -> set[tuple[str, str]]:
    """``(kind, where)`` of the report's problems (of one severity)."""
    return {(p.kind, p.where) for p in report.problems if severity in (None, p.severity)}


def rewrite_train(path: Path, change: Callable[[str, bytes], bytes | None], extra: tuple = ()) -> None:
    """Rewrite the outer train tar: each inner tar through ``change`` (None drops it), then the ``extra``
    ``(name, bytes)`` members."""
    with tarfile.open(path) as tar:
        inner = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tario.atomic_tar(path) as tar:
        for name, data in [(n, change(n, d)) for n, d in inner] + list(extra):
            if data is not None:
                tario.add_bytes(tar, name, data)


def replace_first_images(inner: bytes, images: list[bytes]) -> tuple[bytes, list[str]]:
    """An inner tar whose first members hold ``images`` instead; also their names."""
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    names = [name for name, _ in members[:len(images)]]
    return tario.tar_bytes(list(zip(names, images, strict=True)) + members[len(images):]), names


def test_clean_fake_is_sound(clean: FakeResult) -> None:
    report = validate(clean.out, expect="self", deep=True, quiet=True)
    assert report.ok and report.problems == []
    truth = clean.truth
    assert report.splits["train"]["images"] == len(truth["train"]) and report.splits["val"]["images"] == 9
    assert report.splits["train"]["classes"] == 3
    assert set(report.checksums) == {TRAIN, VAL, DEVKIT}
    assert {c["actual"] for c in report.checksums.values()} == {"not applicable"}
    assert "verdict: SOUND" in report.render()


def test_quirks_are_known_at_their_files_and_still_sound(quirks: FakeResult) -> None:
    report = validate(quirks.out, expect="self", deep=True, quiet=True)
    expected = {(QUIRK_KINDS[q["kind"]], where(quirks, q["split"], q["name"])) for q in quirks.truth["quirks"]}
    assert {k for k, _ in expected} == {"cmyk", "not_jpeg", "grayscale"}
    assert found(report) == expected == found(report, "known")
    assert report.ok


def test_faults_are_reported_by_kind_archive_and_member(faults: FakeResult) -> None:
    report = validate(faults.out, expect="self", deep=True, jobs=2, quiet=True)
    assert not report.ok
    plain = [f for f in faults.truth["faults"] if f["kind"] != "duplicate"]
    assert {(p.kind, p.where) for p in report.problems if p.severity == "error"} == {
        (f["kind"], where(faults, f["split"], f["name"])) for f in plain}
    pairs = {frozenset((p.where, p.detail.split("byte-identical to ", 1)[1]))
             for p in report.problems if p.kind == "duplicate"}
    assert pairs == {frozenset((where(faults, f["split"], f["name"]),
                                where(faults, f["duplicate_of"]["split"], f["duplicate_of"]["name"])))
                     for f in faults.truth["faults"] if f["kind"] == "duplicate"}
    assert {f["split"] for f in faults.truth["faults"] if f["kind"] == "duplicate"} == {"train", "val"}
    assert all(p.severity == "warning" for p in report.problems if p.kind == "duplicate")


def test_count_pass_reads_no_image_bytes(faults: FakeResult, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: IlsvrcArchives, unit: object) -> None:
        raise AssertionError("the count pass read image bytes")

    monkeypatch.setattr(IlsvrcArchives, "read", refuse)
    report = validate(faults.out, expect="self", jobs=1, quiet=True)
    empty = [f for f in faults.truth["faults"] if f["kind"] == "empty"]
    assert found(report) == {("empty", where(faults, f["split"], f["name"])) for f in empty}
    assert report.splits["train"]["images"] == len(faults.truth["train"])


def test_unlisted_cmyk_and_tiny_images_are_warnings(copy: Path) -> None:
    cmyk, tiny = io.BytesIO(), io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 100, 200, 0)).save(cmyk, "JPEG")
    Image.new("RGB", (12, 40), (9, 9, 9)).save(tiny, "JPEG")
    names: list[str] = []

    def change(name: str, inner: bytes) -> bytes:
        if names:
            return inner
        new, replaced = replace_first_images(inner, [cmyk.getvalue(), tiny.getvalue()])
        names.extend(f"{copy / TRAIN}:{name}:{n}" for n in replaced)
        return new

    rewrite_train(copy / TRAIN, change)
    report = validate(copy, expect="self", deep=True, quiet=True)
    assert report.ok and found(report, "warning") == {("cmyk", names[0]), ("extreme_size", names[1])}


def test_missing_val_archive(copy: Path) -> None:
    (copy / VAL).unlink()
    report = validate(copy, expect="self", quiet=True)
    assert not report.ok and found(report) == {("missing", str(copy / VAL))}


def test_missing_devkit(copy: Path) -> None:
    (copy / DEVKIT).unlink()
    report = validate(copy, expect="self", quiet=True)
    assert not report.ok
    assert ("missing", str(copy / DEVKIT)) in found(report, "error")
    assert any(p.kind == "unlabelled" and p.where == str(copy / VAL) for p in report.problems)


def test_a_second_run_in_one_process_reads_the_download_as_it_is_now(copy: Path) -> None:
    """Each run opens its own reader, held once per process for that run: the devkit the first run parsed in
    this process (jobs=1) is not reused once the download has lost it."""
    assert validate(copy, expect="self", jobs=1, quiet=True).ok
    (copy / DEVKIT).unlink()
    report = validate(copy, expect="self", jobs=1, quiet=True)
    assert ("missing", str(copy / DEVKIT)) in found(report, "error")
    assert any(p.kind == "unlabelled" and p.where == str(copy / VAL) for p in report.problems)


def test_deleted_class_tar(copy: Path, clean: FakeResult) -> None:
    gone = clean.truth["classes"][1]["wnid"]
    rewrite_train(copy / TRAIN, lambda name, data: None if name == f"{gone}.tar" else data)
    report = validate(copy, expect="self", quiet=True)
    assert found(report) == {("missing_class", f"{copy / TRAIN}:{gone}.tar")}


def test_unexpected_member_and_cut_off_archive(copy: Path) -> None:
    rewrite_train(copy / TRAIN, lambda name, data: data, extra=[("README.txt", b"hello")])
    report = validate(copy, expect="self", quiet=True)
    [problem] = report.problems
    assert problem.kind == "structure" and problem.where == str(copy / TRAIN) and "README.txt" in problem.detail
    with open(copy / VAL, "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    report = validate(copy, expect="self", quiet=True)
    assert ("structure", str(copy / VAL)) in found(report) and "cut off" in str(report.problems)


def test_official_expectations_fail_a_fake_without_hashing_the_big_archives(
        clean: FakeResult, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real_md5 = validate_module.md5_file
    monkeypatch.setattr(validate_module, "md5_file", lambda path, quiet: hashed.append(path.name) or real_md5(path))
    report = validate(clean.out, quiet=True)
    assert hashed == [DEVKIT]   # the image archives have the wrong size: reported, not hashed
    assert report.checksums[TRAIN] == {"expected": "1d675b47d978889d74fa0da5fadfb00e", "actual": "not hashed"}
    kinds = {p.kind for p in report.problems}
    assert {"size", "checksum", "count", "missing_class", "missing"} <= kinds
    assert ("size", str(clean.out / TRAIN)) in found(report, "error")
    assert not any(p.kind == "devkit" for p in report.problems)   # the fake's meta.mat maps IDs like the real one


def test_kaggle_layout(clean: FakeResult, faults: FakeResult) -> None:
    report = validate(clean.out / "kaggle", expect="self", deep=True, quiet=True)
    assert report.layout == "kaggle" and report.ok and report.problems == []
    assert report.splits["val"]["images"] == 9
    report = validate(faults.out / "kaggle", expect="self", quiet=True)
    [empty] = [f for f in faults.truth["faults"] if f["kind"] == "empty"]
    wnid = empty["name"].split("_")[0]
    assert found(report) == {("empty", f"{faults.out}/kaggle/ILSVRC/Data/CLS-LOC/train/{wnid}/{empty['name']}")}


def test_folders_layout(clean: FakeResult, tmp_path: Path) -> None:
    organize(clean.out, tmp_path / "folders", quiet=True)
    report = validate(tmp_path / "folders", expect="self", deep=True, quiet=True)
    assert report.layout == "folders" and report.ok and report.problems == []
    assert {s: t["images"] for s, t in report.splits.items()} == {"train": len(clean.truth["train"]), "val": 9}


def test_tiny_and_imagenet21k_layouts(tmp_path: Path) -> None:
    make_fake_tiny_imagenet(tmp_path / "tiny", classes=2, train_per_class=3, val_images=4)
    assert validate(tmp_path / "tiny", expect="self", deep=True, quiet=True).problems == []
    official = validate(tmp_path / "tiny", quiet=True)
    kinds = {p.kind for p in official.problems}
    assert {"count", "missing_class", "missing"} <= kinds and "label" not in kinds   # real val names and labels
    make_fake_imagenet21k(tmp_path / "21k", classes=3, per_class=2)
    report = validate(tmp_path / "21k", expect="self", deep=True, quiet=True)
    assert report.layout == "imagenet21k" and report.ok and report.splits["train"]["classes"] == 3


def test_bad_expect_is_refused(clean: FakeResult) -> None:
    with pytest.raises(ValueError, match="expect"):
        validate(clean.out, expect="everything")


def test_render_caps_each_kind() -> None:
    report = ValidationReport("x", "ilsvrc2012", "self", False,
                              problems=[Problem("error", "empty", f"a:{i}", "zero-byte file") for i in range(9)])
    text = report.render(per_kind=2)
    assert "error empty (9)" in text and "a:1" in text and "a:2" not in text and "7 more" in text
    assert "NOT SOUND: 9 errors" in text


def test_cli_help_has_examples() -> None:
    result = run_cli("validate", "--help")
    assert result.returncode == 0 and "imnet-data validate" in result.stdout.split("examples:", 1)[1]
    assert "--expect" in result.stdout and "Exit status" in result.stdout


def test_cli_exit_codes_report_and_json(clean: FakeResult, faults: FakeResult, tmp_path: Path) -> None:
    ok = run_cli("validate", str(clean.out), "--expect", "self", "--deep", "--quiet")
    assert ok.returncode == 0 and "verdict: SOUND" in ok.stdout
    bad = run_cli("validate", str(faults.out), "--expect", "self", "--deep", "--jobs", "2", "--quiet",
                  "--report", str(tmp_path / "r.json"))
    assert bad.returncode == 1 and "NOT SOUND" in bad.stdout
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["ok"] is False and saved["tally"]["error"] == {"empty": 1, "not_image": 1, "truncated": 1}
    assert {p["kind"] for p in saved["problems"]} >= {"empty", "duplicate"}
    printed = run_cli("validate", str(faults.out), "--expect", "self", "--json", "-q")
    assert printed.returncode == 1 and json.loads(printed.stdout)["tally"]["error"] == {"empty": 1}
    missing = run_cli("validate", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert run_cli("validate", str(clean.out), "--layout", "nonsense").returncode == 2
