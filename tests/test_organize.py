"""Tests of ``imnet-data organize`` on real bytes: fake downloads (and hostile ones built here) organized into
ImageFolder layout, checked file by file against the archives and the devkit read independently in the test."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import scipy.io
from PIL import Image

from imnet_data import imageio, tario
from imnet_data.catalog import UnknownClassError
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.organize import REPORT, STATE, OrganizeReport, marker_path, organize, parse_classes
from imnet_data.placing import Folders, spread_subfolders
from imnet_data.sources import Sample, SourceError, Unit
from imnet_data.sources.safety import UnsafeArchiveError
from tests.helpers import ROOT, run_cli

DEVKIT = "ILSVRC2012_devkit_t12/data/"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def source_images(fake: FakeResult) -> dict[str, dict[str, tuple[str, bytes]]]:
    """split -> file name -> (wnid, bytes), read from the archives here; val labels from the devkit."""
    outer = tar_members(fake.archives["train"].read_bytes())
    train = {n: (inner[:-4], d) for inner, data in outer.items() for n, d in tar_members(data).items()}
    labels = val_labels(fake.archives["devkit"])
    val = {n: (labels[n], d) for n, d in tar_members(fake.archives["val"].read_bytes()).items()}
    return {"train": train, "val": val}


def val_labels(devkit: Path) -> dict[str, str]:
    """Val file name -> WNID: the devkit ground truth (ILSVRC2012_IDs) mapped through its own meta.mat."""
    files = tar_members(devkit.read_bytes())
    synsets = scipy.io.loadmat(io.BytesIO(files[DEVKIT + "meta.mat"]), squeeze_me=True)["synsets"]
    wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    ids = files[DEVKIT + "ILSVRC2012_validation_ground_truth.txt"].split()
    return {f"ILSVRC2012_val_{i:08d}.JPEG": wnid[int(x)] for i, x in enumerate(ids, 1)}


def output(dest: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under DEST/train and DEST/val."""
    return {str(p.relative_to(dest)): p.read_bytes() for split in ("train", "val")
            for p in sorted((dest / split).rglob("*")) if p.is_file()}


def archive_digests(fake: FakeResult) -> dict[str, str]:
    return {role: sha256(p.read_bytes()) for role, p in fake.archives.items()}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    options = FakeOptions(classes=5, train_per_class=6, val_images=25, seed=1, with_quirks=True, with_faults=True)
    return make_fake(tmp_path_factory.mktemp("src"), options, quiet=True)


@pytest.fixture(scope="module")
def images(fake: FakeResult) -> dict[str, dict[str, tuple[str, bytes]]]:
    return source_images(fake)


@pytest.fixture(scope="module")
def plain(fake: FakeResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OrganizeReport, dict]:
    before = archive_digests(fake)
    dest = tmp_path_factory.mktemp("plain") / "out"
    report = organize(fake.out, dest, jobs=2, quiet=True)
    return dest, report, before


@pytest.fixture(scope="module")
def fixed(fake: FakeResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OrganizeReport]:
    dest = tmp_path_factory.mktemp("fixed") / "out"
    return dest, organize(fake.out, dest, fix=True, quality=90, jobs=1, quiet=True)


def test_every_file_lands_in_its_true_class_with_its_bytes(plain, images, fake: FakeResult) -> None:
    dest, report, _ = plain
    expected = {f"{split}/{wnid}/{name}": data for split, files in images.items()
                for name, (wnid, data) in files.items()}
    assert output(dest) == expected
    assert {n: w for n, (w, _) in images["val"].items()} == {n: t["wnid"] for n, t in fake.truth["val"].items()}
    assert report.counts == {"train": 30, "val": 25}
    assert report.bytes == {s: sum(len(d) for _, d in images[s].values()) for s in ("train", "val")}
    assert report.changed == [] and report.skipped == [] and report.resumed == []


def test_source_is_untouched(plain, fake: FakeResult) -> None:
    _, _, before = plain
    assert archive_digests(fake) == before
    assert sorted(p.name for p in fake.out.iterdir()) == sorted(p.name for p in fake.archives.values())


def test_report_file_is_written_and_a_rerun_resumes_every_unit(plain, fake: FakeResult) -> None:
    dest, report, _ = plain
    first = (dest / REPORT).read_bytes()
    assert json.loads(first) == report.record() and report.record()["counts"] == report.counts
    marker = dest / STATE / "train" / f"{fake.truth['classes'][0]['wnid']}.json"
    stamp = marker.stat().st_mtime_ns
    again = organize(fake.out, dest, jobs=1, quiet=True)
    assert len(again.resumed) == 5 + 1 and again.counts == report.counts  # 5 class tars + 1 val slice
    assert (dest / REPORT).read_bytes() == first and marker.stat().st_mtime_ns == stamp


def test_no_fsync_per_unit(fake: FakeResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit's marker is renamed into place without an fsync (its files' sizes are checked on resume anyway):
    an fsync per unit waited for the disk, 1,005 of them at ImageNet's count. Only the report and the class
    index are fsynced."""
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    report = organize(fake.out, tmp_path / "out", jobs=1, quiet=True)
    assert report.counts == {"train": 30, "val": 25}
    assert len(synced) == 2 and all(STATE not in path for path in synced), synced
    assert len(list((tmp_path / "out" / STATE).rglob("*.json"))) == 5 + 1


def test_fix_reencodes_quirks_and_skips_undecodable(fixed, images, fake: FakeResult) -> None:
    dest, report = fixed
    quirks = {f"{q['split']}/{images[q['split']][q['name']][0]}/{q['name']}": q for q in fake.truth["quirks"]}
    faults = {f"{f['split']}/{images[f['split']][f['name']][0]}/{f['name']}": f for f in fake.truth["faults"]
              if f["kind"] != "duplicate"}
    assert {c["path"]: c["kind"] for c in report.changed} == {p: q["kind"] for p, q in quirks.items()}
    assert {s["path"] for s in report.skipped} == set(faults) and all(s["reason"] for s in report.skipped)
    on_disk = output(dest)
    for path in quirks:
        with Image.open(dest / path) as img:
            assert (img.format, img.mode) == ("JPEG", "RGB"), path
    for change in json.loads((dest / REPORT).read_text())["changed"]:
        split, wnid, name = change["path"].split("/")
        assert change["old_sha256"] == sha256(images[split][name][1])
        assert change["new_sha256"] == sha256(on_disk[change["path"]])
    assert not set(faults) & set(on_disk)
    untouched = {p for p in on_disk if p not in quirks}
    assert all(on_disk[p] == images[p.split("/")[0]][p.split("/")[2]][1] for p in untouched)
    assert report.counts == {"train": 30 - 3, "val": 25}


def test_imageio_classifies_the_quirks_and_faults(images, fake: FakeResult) -> None:
    expect = {"cmyk": "cmyk", "gray": "gray", "png": "png", "truncated": "undecodable", "empty": "undecodable",
              "not_image": "undecodable", "duplicate": "jpeg", "jpeg": "jpeg"}
    for split in ("train", "val"):
        for name, entry in fake.truth[split].items():
            assert imageio.classify(images[split][name][1]) == expect[entry["kind"]], name
    cmyk = next(q["name"] for q in fake.truth["quirks"] if q["kind"] == "cmyk")
    assert imageio.classify(imageio.to_rgb_jpeg(images["train"][cmyk][1])) == "jpeg"
    with pytest.raises(ValueError, match="cannot decode"):
        imageio.to_rgb_jpeg(b"<html>not found</html>")


def test_classes_subset(fake: FakeResult, images, tmp_path: Path) -> None:
    wnids = sorted(c["wnid"] for c in fake.truth["classes"])[1:3]
    listing = tmp_path / "wnids.txt"
    listing.write_text("# two classes\n" + "\n".join(wnids) + "\n")
    result = run_cli("organize", str(fake.out), str(tmp_path / "out"), "--classes", str(listing), "-q", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == wnids
    assert sorted(p.name for p in (tmp_path / "out" / "val").iterdir()) == wnids
    assert report["counts"] == {s: sum(w in wnids for w, _ in images[s].values()) for s in ("train", "val")}
    assert report["classes"] == wnids and report["missing_classes"] == []


def test_parse_classes() -> None:
    assert parse_classes("n01440764, n02102040") == {"n01440764", "n02102040"}
    assert len(parse_classes("imagenet-r")) == 200
    with pytest.raises(UnknownClassError, match="train files, not classes"):
        parse_classes("1percent")
    with pytest.raises(UnknownClassError, match="not a WNID list"):
        parse_classes("n0144,tench")


def test_val_without_devkit_names_the_file_and_the_devkit(fake: FakeResult, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.link(fake.archives["val"], src / fake.archives["val"].name)
    with pytest.raises(SourceError, match=r"ILSVRC2012_val_00000001\.JPEG: no class label.*devkit"):
        organize(src, tmp_path / "out", jobs=1, quiet=True)


def test_a_second_run_in_one_process_reads_the_download_as_it_is_now(fake: FakeResult, tmp_path: Path) -> None:
    """Workers open the download once per process and run (jobs=1: this process): a second run after the
    devkit is gone does not label val with the devkit the first run parsed; it stops, naming the devkit."""
    src = tmp_path / "src"
    src.mkdir()
    for role in ("val", "devkit"):
        os.link(fake.archives[role], src / fake.archives[role].name)
    assert organize(src, tmp_path / "first", jobs=1, quiet=True).counts == {"val": 25}
    (src / fake.archives["devkit"].name).unlink()
    with pytest.raises(SourceError, match=r"ILSVRC2012_val_00000001\.JPEG: no class label.*devkit"):
        organize(src, tmp_path / "second", jobs=1, quiet=True)


def hostile_train(folder: Path, member: tarfile.TarInfo) -> Path:
    """A train archive whose second class tar holds ``member`` (after one good class)."""
    folder.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(member, io.BytesIO(b"evil") if member.isfile() else None)
    inner = [("n01440764.tar", tario.tar_bytes([("n01440764_1.JPEG", b"ok")])), ("n01443537.tar", buf.getvalue())]
    (folder / "ILSVRC2012_img_train.tar").write_bytes(tario.tar_bytes(inner))
    return folder


@pytest.mark.parametrize("kind", ["traversal", "symlink"])
def test_hostile_archive_is_refused_and_nothing_lands_outside(kind: str, tmp_path: Path) -> None:
    member = tarfile.TarInfo("../../evil" if kind == "traversal" else "n01443537_1.JPEG")
    if kind == "traversal":
        member.size = 4
    else:
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    src = hostile_train(tmp_path / "src", member)
    with pytest.raises(UnsafeArchiveError, match="n01443537.tar"):
        organize(src, tmp_path / "out", jobs=1, quiet=True)
    result = run_cli("organize", str(src), str(tmp_path / "out2"), "-q")
    assert result.returncode == 1 and "n01443537.tar" in result.stderr and member.name in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out2", "src"]
    everything = [p for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()]
    assert not [p for p in everything if "evil" in p.name or p.is_symlink()]
    assert not (tmp_path.parent / "evil").exists()


def test_class_folder_resolving_outside_dest_is_refused(fake: FakeResult, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / sorted(c["wnid"] for c in fake.truth["classes"])[0]).symlink_to(outside)
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        organize(fake.out, tmp_path / "out", splits=["train"], jobs=1, quiet=True)
    assert list(outside.iterdir()) == []


def lsattr(path: Path) -> str:
    """The flag letters ``lsattr -d`` (e2fsprogs, not our ioctl) prints for ``path``."""
    return subprocess.run(["lsattr", "-d", str(path)], check=True, capture_output=True, text=True).stdout.split()[0]


def test_the_split_folders_spread_their_class_folders_over_the_disk(plain, fake: FakeResult, tmp_path: Path) -> None:
    """``DEST/<split>`` and its staging folder carry ext4's TOPDIR flag (``chattr +T``), so the class folders made
    in them go to the block groups with the fewest folders, not all beside a just-deleted output (see
    :func:`spread_subfolders`); the flag is not passed on to the class folders, nor set on DEST. Where the
    filesystem has no such flags (tmpfs), organize runs without it."""
    if shutil.which("lsattr") is None or not spread_subfolders(str(tmp_path / "probe")):
        pytest.skip(f"no lsattr, or {tmp_path}'s filesystem takes no chattr +T")
    assert "T" in lsattr(tmp_path / "probe")
    dest, wnid = plain[0], fake.truth["classes"][0]["wnid"]
    for folder in (dest / "train", dest / "val", dest / STATE / "train", dest / STATE / "val"):
        assert "T" in lsattr(folder), folder
    for folder in (dest, dest / "train" / wnid, dest / "val" / wnid):
        assert "T" not in lsattr(folder), folder


def test_a_class_unit_writes_in_a_staging_folder_renamed_once(tmp_path: Path) -> None:
    """A class unit into a new class folder writes its files under their own names in a staging folder beside
    its marker, out of the class folder until :meth:`Folders.finish`; where the class folder appeared meanwhile
    (another run of the unit, say), the unit's files are moved in one by one, each replacing its own."""
    dest, wnid = tmp_path / "out", "n01440764"
    final = dest / "train" / wnid
    for appears in (False, True):
        unit = Unit("train", wnid)
        folders = Folders(str(dest), unit, marker_path(str(dest), unit))
        for name in (f"{wnid}_1.JPEG", f"{wnid}_2.JPEG"):
            folders.write(Sample("train", name[:-5], wnid, name, name.encode(), f"t.tar:{name}"), name, name.encode())
        staged = list((dest / STATE / "train").iterdir())
        assert [p.name.startswith(f"{wnid}.") and p.name.endswith(".partial") for p in staged] == [True]
        assert sorted(p.name for p in staged[0].iterdir()) == [f"{wnid}_1.JPEG", f"{wnid}_2.JPEG"]
        assert not final.exists()
        if appears:
            final.mkdir(parents=True)
            (final / f"{wnid}_2.JPEG").write_bytes(b"old")
            (final / f"{wnid}_3.JPEG").write_bytes(b"another's")
        folders.finish()
        assert list((dest / STATE / "train").iterdir()) == []
        assert {p.name: p.read_bytes() for p in final.iterdir()} == {
            f"{wnid}_1.JPEG": f"{wnid}_1.JPEG".encode(), f"{wnid}_2.JPEG": f"{wnid}_2.JPEG".encode(),
            **({f"{wnid}_3.JPEG": b"another's"} if appears else {})}
        shutil.rmtree(final)


def test_killed_run_resumes_without_redoing_finished_units(tmp_path: Path) -> None:
    big = make_fake(tmp_path / "src", FakeOptions(classes=40, train_per_class=100, val_images=0, seed=2),
                    quiet=True)
    truth = {name: entry["sha256"] for name, entry in big.truth["train"].items()}
    dest, markers = tmp_path / "out", tmp_path / "out" / STATE / "train"
    cmd = [sys.executable, "-m", "imnet_data", "organize", str(big.out), str(dest), "--jobs", "1", "-q",
           "--splits", "train"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and len(list(markers.glob("*.json")) if markers.is_dir() else []) < 2:
        time.sleep(0.002)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.stem for p in markers.glob("*.json"))
    assert 2 <= len(finished) < 40
    files = [p for p in (dest / "train").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert all(sha256(p.read_bytes()) == truth[p.name] for p in files)  # nothing partial under a final name
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for w in finished for p in (dest / "train" / w).iterdir()}
    (dest / "train" / finished[0] / ".n0_1.JPEG.partial").write_bytes(b"half")  # as if killed mid-write
    result = run_cli("organize", str(big.out), str(dest), "--jobs", "1", "-q", "--json", "--splits", "train")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["train"] == 4000 and report["resumed"] == [f"train/{w}" for w in finished]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept} == kept
    final = {p.name: sha256(p.read_bytes()) for p in (dest / "train").rglob("*") if p.is_file()}
    assert final == truth  # complete, and no temp files left
