"""The layout readers on real bytes: every layout is detected and read completely, and each label, byte string
and box is checked against truth computed here independently (tarfile, zipfile, scipy); hostile archives are
refused by name."""
from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import scipy.io

from imnet_data import catalog
from imnet_data.errors import UsageError
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.fake.imagenet21k import make_fake_imagenet21k
from imnet_data.fake.tiny_imagenet import make_fake_tiny_imagenet
from imnet_data.sources import READERS, Sample, Source, SourceError, SourceRef, folders, open_source
from imnet_data.sources.safety import UnsafeArchiveError

OPTIONS = FakeOptions(classes=4, train_per_class=4, val_images=12, seed=5, bbox=True, kaggle=True)
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("official"), OPTIONS, quiet=True)


def tar_members(source: Path | bytes) -> dict[str, bytes]:
    """Name -> bytes of every regular file of a (maybe gzipped) tar file or tar bytes."""
    with tarfile.open(source if isinstance(source, Path) else None,
                      fileobj=None if isinstance(source, Path) else io.BytesIO(source)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def nested_images(path: Path) -> dict[str, tuple[str, bytes]]:
    """Image name -> (WNID of its inner tar, bytes) of a tar of ``<wnid>.tar`` inner tars."""
    return {name: (inner[:-len(".tar")], data) for inner, tar in tar_members(path).items()
            for name, data in tar_members(tar).items()}


@pytest.fixture(scope="module")
def devkit_truth(fake: FakeResult) -> dict[str, str]:
    """Val file name -> WNID: the devkit ground truth (ILSVRC2012_IDs) mapped through its own meta.mat."""
    files = tar_members(fake.archives["devkit"])
    synsets = scipy.io.loadmat(io.BytesIO(files["ILSVRC2012_devkit_t12/data/meta.mat"]))["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"][0][0][0]): str(s["WNID"][0][0]) for s in synsets}
    lines = files["ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"].split()
    return {f"ILSVRC2012_val_{i:08d}.JPEG": id_to_wnid[int(x)] for i, x in enumerate(lines, 1)}


@pytest.fixture(scope="module")
def boxed(fake: FakeResult) -> set[str]:
    """Keys of the images that the bbox archives annotate."""
    return {Path(n).stem for role in ("bbox_train", "bbox_val") for n in tar_members(fake.archives[role])}


def read_all(source: Source) -> dict[str, list[Sample]]:
    """Every sample by split, read as a worker would (source and units through pickle); keys must be unique
    and ``list`` must agree with ``read``."""
    out: dict[str, list[Sample]] = {}
    for split in source.splits():
        out[split] = []
        units = source.units(split)
        worker = pickle.loads(pickle.dumps(source))  # as a worker gets it, after units() filled any caches
        for unit in units:
            samples = list(worker.read(pickle.loads(pickle.dumps(unit))))
            assert list(worker.list(unit)) == [(s.name, s.wnid, len(s.data)) for s in samples], unit.name
            out[split] += samples
        assert len({s.key for s in out[split]}) == len(out[split]), split
    return out


def check_official_images(samples: dict[str, list[Sample]], fake: FakeResult, devkit_truth: dict[str, str],
                          boxed: set[str] | None) -> None:
    """Labels, bytes and (where ``boxed`` is given) boxes of a read of the fake's images."""
    train = nested_images(fake.archives["train"])
    val = tar_members(fake.archives["val"])
    assert {s.name for s in samples["train"]} == set(train) and {s.name for s in samples["val"]} == set(val)
    for s in samples["train"]:
        assert (s.wnid, s.data) == train[s.name] and s.key == Path(s.name).stem
    for s in samples["val"]:
        assert s.wnid == devkit_truth[s.name] == fake.truth["val"][s.name]["wnid"] and s.data == val[s.name]
    for s in samples["train"] + samples["val"] if boxed is not None else []:
        assert bool(s.boxes) == (s.key in boxed) and all(b.wnid == s.wnid for b in s.boxes), s.name


def test_official_archives(fake: FakeResult, devkit_truth: dict[str, str], boxed: set[str]) -> None:
    source = open_source(fake.out)
    assert source.layout == "ilsvrc2012"
    check_official_images(read_all(source), fake, devkit_truth, boxed)


def extract_folders(fake: FakeResult, root: Path, *, train: bool, val: str, devkit: str) -> Path:
    """An extracted copy of the fake with Python's tarfile: ``val`` flat/foldered/none, ``devkit``
    archive/folder/none."""
    if train:
        for name, (wnid, data) in nested_images(fake.archives["train"]).items():
            write(root / "train" / wnid / name, data)
    for name, data in tar_members(fake.archives["val"]).items() if val != "none" else []:
        write(root / "val" / (fake.truth["val"][name]["wnid"] if val == "foldered" else "") / name, data)
    if devkit == "archive":
        shutil.copy(fake.archives["devkit"], root / DEVKIT)
    elif devkit == "folder":
        with tarfile.open(fake.archives["devkit"]) as tar:
            tar.extractall(root, filter="data")
    return root


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize("val,devkit", [("flat", "archive"), ("flat", "folder"), ("foldered", "none")])
def test_folders(fake: FakeResult, devkit_truth: dict[str, str], tmp_path: Path, val: str, devkit: str) -> None:
    source = open_source(extract_folders(fake, tmp_path, train=True, val=val, devkit=devkit))
    assert source.layout == "folders" and source.splits() == ["train", "val"]
    check_official_images(read_all(source), fake, devkit_truth, None)


def test_folders_flat_val_without_devkit_is_unlabelled_in_chunks(fake: FakeResult, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folders, "VAL_UNIT", 5)
    source = open_source(extract_folders(fake, tmp_path, train=False, val="flat", devkit="none"))
    assert source.splits() == ["val"]
    assert [u.name for u in source.units("val")] == ["val[0:5]", "val[5:10]", "val[10:12]"]
    samples = read_all(source)["val"]
    assert [s.name for s in samples] == sorted(fake.truth["val"]) and {s.wnid for s in samples} == {None}


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_folders_refuse_links_and_special_files(fake: FakeResult, tmp_path: Path, kind: str) -> None:
    root = extract_folders(fake, tmp_path, train=True, val="none", devkit="none")
    bad = next((root / "train").iterdir()) / "bad.JPEG"
    os.symlink("/etc/passwd", bad) if kind == "symlink" else os.mkfifo(bad)
    with pytest.raises(SourceError, match=f"{bad}: a symlink or special file"):
        open_source(root).units("train")


def test_kaggle(fake: FakeResult, devkit_truth: dict[str, str], boxed: set[str]) -> None:
    source = open_source(fake.archives["kaggle"])
    assert source.layout == "kaggle"
    samples = read_all(source)
    check_official_images(samples, fake, devkit_truth, boxed)
    assert all(s.boxes[0].wnid == s.wnid for s in samples["val"])


def test_kaggle_val_image_missing_from_the_solution(tmp_path: Path) -> None:
    image = tmp_path / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG"
    write(image, b"jpeg")
    write(tmp_path / "LOC_val_solution.csv", b"ImageId,PredictionString\n")
    with pytest.raises(SourceError, match=f"{image}: no row with boxes in .*LOC_val_solution.csv"):
        open_source(tmp_path).units("val")


@pytest.mark.parametrize("compressed", [False, True])
def test_imagenet21k_archive(tmp_path: Path, compressed: bool) -> None:
    path = make_fake_imagenet21k(tmp_path, classes=4, per_class=3, seed=2, compressed=compressed)
    truth = nested_images(path)
    assert len(truth) == 12 and sum(w not in catalog.ilsvrc2012().wnids for w, _ in truth.values()) == 6
    for where in (path, tmp_path):
        source = open_source(where)
        assert source.layout == "imagenet21k" and source.splits() == ["train"]
        assert len(source.units("train")) == 4   # gzipped too: one unit per class tar, through its gzip index
        assert {s.name: (s.wnid, s.data) for s in read_all(source)["train"]} == truth


def test_imagenet21k_extracted_folder(tmp_path: Path) -> None:
    path = make_fake_imagenet21k(tmp_path / "archive", classes=3, per_class=2)
    root = tmp_path / "extracted"
    for inner, data in tar_members(path).items():
        write(root / inner, data)
    first = sorted(root.iterdir())[0]
    for name, data in tar_members(first.read_bytes()).items():  # one class as a <wnid>/ folder
        write(root / first.stem / name, data)
    first.unlink()
    source = open_source(root)
    assert source.layout == "imagenet21k"
    assert {s.name: (s.wnid, s.data) for s in read_all(source)["train"]} == nested_images(path)


@pytest.mark.parametrize("as_zip", [True, False])
def test_tiny_imagenet(tmp_path: Path, as_zip: bool) -> None:
    path = make_fake_tiny_imagenet(tmp_path, classes=3, train_per_class=4, val_images=7, seed=1, as_zip=as_zip)
    files = zip_members(path) if as_zip else {p.relative_to(tmp_path).as_posix(): p.read_bytes()
                                              for p in path.rglob("*") if p.is_file()}
    boxes = {row[0]: tuple(map(int, row[1:])) for name, data in files.items() if name.endswith("_boxes.txt")
             for row in (line.split("\t") for line in data.decode().splitlines())}
    real_val = {name: (wnid, box) for name, wnid, box in catalog.tiny_imagenet_val_annotations()}
    for where in (path, tmp_path):
        source = open_source(where)
        assert source.layout == "tiny" and source.splits() == ["train", "val"]
        samples = read_all(source)
        assert len(samples["train"]) == 12 and len(samples["val"]) == 7
        for s in samples["train"]:
            assert s.data == files[f"tiny-imagenet-200/train/{s.wnid}/images/{s.name}"]
            assert s.name.startswith(s.wnid + "_") and [astuple(b) for b in s.boxes] == [boxes[s.name]]
        for s in samples["val"]:
            assert s.data == files[f"tiny-imagenet-200/val/images/{s.name}"]
            assert (s.wnid, [astuple(b) for b in s.boxes]) == (real_val[s.name][0], [real_val[s.name][1]])


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}


def astuple(box) -> tuple[int, int, int, int]:
    return box.xmin, box.ymin, box.xmax, box.ymax


def test_fakes_are_byte_identical(tmp_path: Path) -> None:
    for make in (lambda out: make_fake_tiny_imagenet(out, classes=2, train_per_class=2, val_images=2),
                 lambda out: make_fake_tiny_imagenet(out, classes=2, as_zip=False) / "wnids.txt",
                 lambda out: make_fake_imagenet21k(out, classes=2, per_class=2),
                 lambda out: make_fake_imagenet21k(out, classes=2, per_class=2, compressed=True)):
        assert make(tmp_path / "a").read_bytes() == make(tmp_path / "b").read_bytes()


# ---- hostile archives ------------------------------------------------------------------------------------------

def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", size: int | None = None) -> bytes:
    """One tar member's header (+ data) of any type; ``size`` may claim more bytes than follow."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if size is None else size
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    block = info.tobuf(format=tarfile.GNU_FORMAT)
    return block + (data + b"\0" * (-len(data) % 512) if kind == tarfile.REGTYPE and size is None else b"")


def tar_of(*members: bytes) -> bytes:
    return b"".join(members) + b"\0" * 1024


HOSTILE = {"../evil": ("n01440764/../../evil", tarfile.REGTYPE), "/abs": ("/abs/n01440764_1.JPEG", tarfile.REGTYPE),
           "symlink": ("n01440764_1.JPEG", tarfile.SYMTYPE), "hard link": ("n01440764_2.JPEG", tarfile.LNKTYPE),
           "device": ("n01440764_3.JPEG", tarfile.CHRTYPE), "FIFO": ("n01440764_4.JPEG", tarfile.FIFOTYPE),
           "oversized": ("n01440764_5.JPEG", tarfile.REGTYPE)}


def hostile(kind: str, name: str = "") -> bytes:
    """The tar member of a hostile ``kind`` (the oversized one claims 300 MiB that do not follow)."""
    name, type_ = name or HOSTILE[kind][0], HOSTILE[kind][1]
    return member(name, type_, b"" if type_ != tarfile.REGTYPE else b"x", (300 << 20) if kind == "oversized" else None)


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_member_inside_an_inner_class_tar(tmp_path: Path, kind: str) -> None:
    train = tmp_path / "ILSVRC2012_img_train.tar"
    train.write_bytes(tar_of(member("n01440764.tar", data=tar_of(hostile(kind)))))
    source = open_source(tmp_path)
    with pytest.raises(UnsafeArchiveError) as e:
        list(source.read(source.units("train")[0]))
    assert f"{train}:n01440764.tar: member {HOSTILE[kind][0]!r}" in str(e.value)


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_member_of_an_outer_tar(tmp_path: Path, kind: str) -> None:
    val = tmp_path / "ILSVRC2012_img_val.tar"
    name = "ILSVRC2012_val_00000001.JPEG" if kind == "oversized" else HOSTILE[kind][0]
    with open(val, "wb") as f:
        f.write(hostile(kind, name))
        if kind == "oversized":  # its claimed bytes really follow, as a sparse hole: not cut off, just too big
            f.seek(f.tell() + (300 << 20))
        f.write(bytes(1024))
    with pytest.raises(UnsafeArchiveError) as e:
        open_source(tmp_path).units("val")
    assert f"{val}: member {name!r}" in str(e.value)


def test_hostile_member_in_a_gzipped_21k_stream(tmp_path: Path) -> None:
    path = tmp_path / "winter21_whole.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        inner = tar_of(hostile("symlink"))
        info = tarfile.TarInfo("n01440764.tar")
        info.size = len(inner)
        tar.addfile(info, io.BytesIO(inner))
    with pytest.raises(UnsafeArchiveError, match=f"{path}:n01440764.tar: member 'n01440764_1.JPEG' is a symlink"):
        read_all(open_source(path))


def hostile_zip(path: Path, name: str, data: bytes, mode: int) -> None:
    """A zip with a plain ``wnids.txt`` and one member ``name`` with unix ``mode``."""
    with zipfile.ZipFile(path, "w") as zf:
        for member_name, member_data, member_mode in (("tiny-imagenet-200/wnids.txt", b"n01443537\n", 0o100644),
                                                      (name, data, mode)):
            info = zipfile.ZipInfo(member_name)
            info.create_system, info.external_attr = 3, member_mode << 16
            zf.writestr(info, member_data, zipfile.ZIP_DEFLATED)


@pytest.mark.parametrize("name,data,mode,says", [
    ("tiny-imagenet-200/train/n01443537/images/a.JPEG", b"/etc/passwd", 0o120777, "a link or special file"),
    ("tiny-imagenet-200/val/images/bomb.JPEG", bytes(10 << 20), 0o100644, "zip bomb"),
    ("tiny-imagenet-200/../evil", b"x", 0o100644, "climbs out"),
    ("/tiny-imagenet-200/abs", b"x", 0o100644, "absolute path")])
def test_hostile_zip_member(tmp_path: Path, name: str, data: bytes, mode: int, says: str) -> None:
    path = tmp_path / "tiny-imagenet-200.zip"
    hostile_zip(path, name, data, mode)
    with pytest.raises(UnsafeArchiveError, match=f"{path}: member '{name}'.*{says}"):
        open_source(path).units("train")


@pytest.mark.parametrize("which", ["official", "21k", "21k.gz"])
def test_truncated_outer_tar(fake: FakeResult, tmp_path: Path, which: str) -> None:
    source = (fake.archives["train"] if which == "official"
              else make_fake_imagenet21k(tmp_path / "src", compressed=which.endswith(".gz")))
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2 + 100])
    with pytest.raises(SourceError, match=str(path)):
        read_all(open_source(tmp_path))


def test_unknown_layout_names_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UsageError, match="not a known ImageNet layout") as e:   # not a download: exit 2
        open_source(tmp_path)
    assert all(name in str(e.value) for name in READERS)


def test_random_access_reads_keep_a_bounded_number_of_files_open(tmp_path: Path) -> None:
    """A folder layout is read one file per sample (a million in the real set): descriptors must be closed."""
    from imnet_data.sources.access import DESCRIPTORS, fetch

    before = len(os.listdir("/proc/self/fd"))
    for i in range(DESCRIPTORS.limit * 3):
        path = tmp_path / f"f{i}.JPEG"
        path.write_bytes(b"x" * i)
        assert fetch(("range", str(path), 0, i)) == b"x" * i
    assert len(os.listdir("/proc/self/fd")) <= before + DESCRIPTORS.limit


def units_of(ref: SourceRef, split: str) -> tuple[str, list[str]]:
    """In a worker: the pid and the names of ``split``'s units, through the reference."""
    return str(os.getpid()), [u.name for u in ref.open().units(split)]


def test_a_source_ref_is_small_and_opens_once_per_process_and_run(fake: FakeResult) -> None:
    """What workers receive instead of a reader: a few hundred bytes (no devkit, no index), opened once per
    process and run; this process keeps the reader it has, a new run opens its own, another process its own."""
    reader = open_source(fake.out)
    assert reader.devkit is not None                       # parsed: what a pickled reader would carry along
    ref = SourceRef.of(reader)
    assert ref.open() is reader and pickle.loads(pickle.dumps(ref)).open() is reader
    assert len(pickle.dumps(ref)) < 300 < len(pickle.dumps(reader))
    again = SourceRef(ref.root, ref.layout)
    assert again != ref and again.open() is not reader and again.open() is again.open()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pid, names = pool.apply(units_of, (ref, "train"))
    assert pid != str(os.getpid()) and names == [u.name for u in reader.units("train")]


@pytest.mark.parametrize("damage", ["checksum", "cut off"])
def test_a_damaged_header_inside_a_class_tar_is_named_not_the_end_of_it(tmp_path: Path, damage: str) -> None:
    """tarfile ends a listing silently at a damaged header after the first: the members after it were lost."""
    good = [member(f"n01440764_{i}.JPEG", data=b"x" * 600) for i in range(3)]
    inner = bytearray(tar_of(*good))
    at = len(good[0])                           # the second member's header
    if damage == "checksum":
        inner[at + 148] ^= 1
        inner_bytes = bytes(inner)
    else:                                       # the tar ends inside the second header
        inner_bytes = bytes(inner[:at + 300])
    train = tmp_path / "ILSVRC2012_img_train.tar"
    train.write_bytes(tar_of(member("n01440764.tar", data=inner_bytes)))
    source = open_source(tmp_path)
    with pytest.raises(SourceError, match=f"{train}:n01440764.tar: .*header at byte {at:,} is damaged or cut off"):
        list(source.read(source.units("train")[0]))
    with pytest.raises(SourceError, match=f"header at byte {at:,}"):
        list(source.locate(source.units("train")[0]))
