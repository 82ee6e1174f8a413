"""Tests of ``imnet-data shard`` on real bytes: fake downloads sharded, then read back with the plain
``webdataset`` library and DALI's own reader and index tool, and compared with the archives read here."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from imnet_data import catalog, tario
from imnet_data.fake import FakeOptions, make_fake
from imnet_data.fake.imagenet21k import make_fake_imagenet21k
from imnet_data.fake.tiny_imagenet import make_fake_tiny_imagenet
from imnet_data.shards import ShardOptions, merge, shard
from imnet_data.shards.schema import check_sample_json
from imnet_data.shards.writer import HANDOFF, JSON, HashingWriter, pack, sample_json
from imnet_data.sources.base import printable
from tests.helpers import ROOT, run_cli
from tests.test_organize import source_images

WNIDS = catalog.ilsvrc2012().wnids


def files(dest: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``dest`` (the whole output, records included)."""
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


def read_back(folder: Path) -> list[dict]:
    """Every sample of the split folder's shards, in shard order, read with the plain webdataset library."""
    manifest = json.loads((folder / "manifest.json").read_text())
    urls = [str(folder / s["name"]) for s in manifest["shards"]]
    return list(wds.WebDataset(urls, shardshuffle=False))


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    """A fake download with the quirks (CMYK, PNG) and bbox archives, and its shards (6 per shard)."""
    root = tmp_path_factory.mktemp("shard")
    result = make_fake(root / "src", FakeOptions(classes=12, train_per_class=5, val_images=30, with_quirks=True,
                                                 bbox=True, seed=3), quiet=True)
    report = shard(result.out, root / "dest", ShardOptions(samples_per_shard=7), jobs=2, quiet=True)
    return result, root / "dest", report


def test_every_sample_reads_back_with_its_label_and_bytes(fake) -> None:
    result, dest, report = fake
    images = source_images(result)
    for split in ("train", "val"):
        samples = read_back(dest / split)
        manifest = json.loads((dest / split / "manifest.json").read_text())
        fixed = dict(manifest["fixed"])
        assert len(samples) == len(images[split]) == manifest["num_samples"]
        assert sorted(s["__key__"] for s in samples) == sorted(n[:-5] for n in images[split])
        for s in samples:
            wnid, data = images[split][s["__key__"] + ".JPEG"]
            meta = json.loads(s["json"])
            assert int(s["cls"]) == WNIDS.index(wnid) == meta["label"]
            assert (meta["wnid"], meta["file"], meta["class"]) == (wnid, s["__key__"] + ".JPEG",
                                                                    catalog.ilsvrc2012().by_wnid(wnid).name)
            if s["__key__"] in fixed:
                with Image.open(io.BytesIO(s["jpg"])) as img:
                    assert (img.format, img.mode) == ("JPEG", "RGB")
            else:
                assert s["jpg"] == data
            with Image.open(io.BytesIO(s["jpg"])) as img:
                assert img.size == (meta["width"], meta["height"])
        assert sorted(fixed.values()) == sorted(k for k in ("cmyk", "png")
                                                if any(result.truth[split][n].get("kind") == k for n in images[split]))
    assert sum(1 for s in read_back(dest / "train") if json.loads(s["json"])["boxes"]) > 0
    assert [s.split for s in report.splits] == ["train", "val"]


def test_every_sample_json_has_every_field_of_its_one_type(fake) -> None:
    _, dest, _ = fake
    for split in ("train", "val"):
        for s in read_back(dest / split):
            meta = check_sample_json(json.loads(s["json"]), s["__key__"])
            real = catalog.real_labels_of(meta["key"])
            assert meta["real_labels"] == (list(real) if split == "val" else [meta["label"]])
            for group in zip(*[iter(meta["boxes"].split())] * 5, strict=True):
                assert group[0] == meta["wnid"] and all(int(v) >= 0 for v in group[1:])
            assert meta["fixed"] in ("", "cmyk", "png") and meta["original_size"] == [meta["width"], meta["height"]]


def test_sample_json_is_what_the_json_encoder_writes(fake) -> None:
    """``.json`` members come from a template (``writer.sample_json``), not the encoder: the same bytes for every
    sample, and for field values no fake has (non-ASCII, quotes, backslashes, control and non-UTF-8 bytes)."""
    _, dest, _ = fake
    for split in ("train", "val"):
        for s in read_back(dest / split):
            assert s["json"] == JSON(json.loads(s["json"])).encode()
    odd = printable("\u00e9t\u00e9 \"x\" \\ \n\t\x7f\udcff\u4e2d.JPEG")
    meta = {"key": "k_1", "label": 7, "wnid": "n01440764", "class": odd, "file": odd, "format": "PNG",
            "mode": "CMYK", "fixed": "cmyk", "width": 1, "height": 65535, "original_size": [3, 4],
            "boxes": "n01440764 0 1 2 3 n01440764 4 5 6 7", "real_labels": []}
    assert sample_json(meta) == JSON(meta).encode()
    assert sample_json(meta | {"real_labels": [1, 2, 999]}) == JSON(meta | {"real_labels": [1, 2, 999]}).encode()


def test_train_is_shuffled_across_the_split_and_val_keeps_file_order(fake) -> None:
    _, dest, _ = fake
    train = json.loads((dest / "train" / "manifest.json").read_text())
    assert all(len(s["histogram"]) >= 3 for s in train["shards"][:-1])    # a class mix in every full shard
    keys = [s["__key__"] for s in read_back(dest / "val")]
    assert keys == sorted(keys)
    assert train["pattern"] == "imagenet-1k-train-{000000..000008}.tar"
    assert sum(train["class_counts"]) == train["num_samples"] == 60


def test_manifest_wids_and_info_describe_the_shards(fake) -> None:
    _, dest, _ = fake
    folder = dest / "train"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["options"]["seed"] == 0 and manifest["options"]["shuffle"] is True
    assert manifest["source"]["layout"] == "ilsvrc2012"
    assert [a["name"] for a in manifest["source"]["archives"]] == ["ILSVRC2012_img_train.tar"]
    assert len(manifest["classes"]) == 1000 and manifest["classes"][0] == {"index": 0, "wnid": "n01440764",
                                                                            "name": "tench"}
    for s in manifest["shards"]:
        data = (folder / s["name"]).read_bytes()
        assert len(data) == s["bytes"] and __import__("hashlib").sha256(data).hexdigest() == s["sha256"]
    wids = json.loads((folder / "wids.json").read_text())
    assert wids["wids_version"] == 1
    assert [(x["url"], x["nsamples"]) for x in wids["shardlist"]] == [(s["name"], s["samples"])
                                                                      for s in manifest["shards"]]
    info = json.loads((dest / "_info.json").read_text())
    assert info["splits"]["train"]["filenames"][0] == "train/" + manifest["shards"][0]["name"]
    assert sum(info["splits"]["val"]["shard_lengths"]) == info["splits"]["val"]["num_samples"] == 30
    with gzip.open(folder / "plan.json.gz", "rt") as f:
        plan = json.load(f)
    assert [len(s["keys"]) for s in plan["shards"]] == [s["samples"] for s in manifest["shards"]]


def test_index_files_equal_dalis_wds2idx(fake, tmp_path: Path) -> None:
    tool = shutil.which("wds2idx") or str(Path(sys.executable).parent / "wds2idx")
    if not Path(tool).exists():
        pytest.skip("DALI's wds2idx is not installed (pip install nvidia-dali-cuda130)")
    _, dest, _ = fake
    for tar in sorted((dest / "train").glob("*.tar")) + sorted((dest / "val").glob("*.tar")):
        subprocess.run([tool, str(tar), str(tmp_path / "ref.idx")], check=True, capture_output=True)
        assert tar.with_suffix(".idx").read_bytes() == (tmp_path / "ref.idx").read_bytes(), tar.name


def test_dali_reader_reads_the_shards_with_their_indexes(fake) -> None:
    dali = pytest.importorskip("nvidia.dali", reason="DALI not installed (pip install nvidia-dali-cuda130)")
    from nvidia.dali import fn, types

    _, dest, _ = fake
    folder = dest / "val"
    tars = sorted(str(p) for p in folder.glob("*.tar"))

    @dali.pipeline_def(batch_size=30, num_threads=1, device_id=None)
    def pipe():
        jpg, cls = fn.readers.webdataset(paths=tars, index_paths=[t[:-4] + ".idx" for t in tars],
                                         ext=["jpg", "cls"], missing_component_behavior="error")
        return fn.decoders.image(jpg, device="cpu", output_type=types.RGB), cls

    p = pipe()
    p.build()
    images, labels = p.run()
    got = sorted(int(bytes(labels.at(i)).decode()) for i in range(30))
    want = sorted(int(s["cls"]) for s in read_back(folder))
    assert got == want and images.at(0).shape[2] == 3


def test_same_source_and_options_give_identical_bytes(fake, tmp_path: Path) -> None:
    result, dest, _ = fake
    shard(result.out, tmp_path / "again", ShardOptions(samples_per_shard=7), jobs=1, quiet=True)
    assert files(tmp_path / "again") == files(dest)
    shard(result.out, tmp_path / "seed1", ShardOptions(samples_per_shard=7, seed=1), splits=["train"], quiet=True)
    assert files(tmp_path / "seed1")["train/manifest.json"] != files(dest)["train/manifest.json"]


def test_n_nodes_then_merge_equal_one_node(fake, tmp_path: Path) -> None:
    result, dest, _ = fake
    out = tmp_path / "nodes"
    for rank in range(3):
        env = {"SLURM_ARRAY_TASK_ID": str(rank), "SLURM_ARRAY_TASK_COUNT": "3"}
        args = ["shard", str(result.out), str(out), "--samples-per-shard", "7", "-q", "--json"]
        proc = run_cli(*args, env=env) if rank else run_cli(*args, "--node-rank", "0", "--num-nodes", "3")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["num_nodes"] == 3 and report["splits"][0]["manifest"] is None
        if rank == 1:
            early = run_cli("shard", "--merge", str(out))
            assert early.returncode == 1 and "missing or incomplete" in early.stderr
    assert not (out / "train" / "manifest.json").exists()
    proc = run_cli("shard", "--merge", str(out), "--verify")
    assert proc.returncode == 0, proc.stderr
    assert files(out) == files(dest)


# Runs the CLI as ``python -m imnet_data`` does, noting every file this process opens (Python's audit hook).
OPENS = """import atexit, os, runpy, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(os.fsdecode(args[0])) if event == "open" and isinstance(
    args[0], (str, bytes, os.PathLike)) else None)
atexit.register(lambda: open(os.environ["OPENS_TO"], "w").write("\\n".join(opened)))
sys.argv = ["imnet-data", *sys.argv[1:]]
runpy.run_module("imnet_data", run_name="__main__")
"""


def test_one_node_writes_the_manifest_from_the_plan_and_records_it_holds(fake, tmp_path: Path) -> None:
    """A single-node run has the plan and every shard record in hand: it opens plan.json.gz and each record
    once (the resume check, before writing them) and never reads them back to write the manifest, which is
    the same bytes as before."""
    result, dest, _ = fake
    out, log = tmp_path / "one", tmp_path / "opens.txt"
    proc = subprocess.run([sys.executable, "-c", OPENS, "shard", str(result.out), str(out), "--samples-per-shard",
                           "7", "--jobs", "1", "-q"], capture_output=True, text=True, env={**os.environ,
                          "OPENS_TO": str(log)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert files(out) == files(dest)
    opened = log.read_text().splitlines()
    for split in ("train", "val"):
        manifest = json.loads((out / split / "manifest.json").read_text())
        for name in ["plan.json.gz"] + [f".imnet-shard/{s['name']}.json" for s in manifest["shards"]]:
            assert opened.count(str(out / split / name)) == 1, name

def test_killed_run_resumes_and_ends_identical(tmp_path: Path) -> None:
    src = make_fake(tmp_path / "src", FakeOptions(classes=30, train_per_class=100, val_images=0, seed=5),
                    quiet=True)
    dest = tmp_path / "dest"
    cmd = [sys.executable, "-m", "imnet_data", "shard", str(src.out), str(dest), "--samples-per-shard", "60",
           "--splits", "train", "--jobs", "1", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = dest / "train" / ".imnet-shard"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(records.glob("*.tar.json"))) < 3:
        time.sleep(0.02)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name[:-5] for p in records.glob("*.tar.json"))
    assert 3 <= len(done) < 50 and not (dest / "train" / "manifest.json").exists()
    kept = {n: os.stat(dest / "train" / n).st_mtime_ns for n in done}
    (dest / "train" / "imagenet-1k-train-000049.tar.partial").write_bytes(b"half")   # as if killed mid-write
    proc = run_cli("shard", str(src.out), str(dest), "--samples-per-shard", "60", "-q", "--json", "--splits", "train")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["splits"][0]
    assert report["kept"] == len(done) and len(report["written"]) == 50 - len(done)
    assert {n: os.stat(dest / "train" / n).st_mtime_ns for n in done} == kept
    assert not list((dest / "train").glob("*.partial"))
    shard(src.out, tmp_path / "fresh", ShardOptions(samples_per_shard=60), quiet=True)
    assert files(dest) == files(tmp_path / "fresh")


def test_a_local_run_removes_the_tokens_of_killed_drivers(fake, tmp_path: Path) -> None:
    """A Ray driver killed with SIGKILL leaves its probe token, ``.imnet-probe-HOST-PID-ID``, in DEST; the next
    run from this machine removes it, a local one too. A live driver's token, and another machine's, stay."""
    result, _, _ = fake
    dest = tmp_path / "dest"
    dest.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()                                                          # a pid that no longer runs
    host = socket.gethostname()
    stale, live, other = (dest / f".imnet-probe-{name}-{pid}-{c * 32}" for name, pid, c in
                          ((host, gone.pid, "a"), (host, os.getpid(), "b"), (f"not-{host}", gone.pid, "c")))
    for token in (stale, live, other):
        token.write_text("x")
    done = run_cli("shard", str(result.out), str(dest), "--samples-per-shard", "7", "-q")
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and live.exists() and other.exists()


def test_a_different_plan_needs_overwrite(fake, tmp_path: Path) -> None:
    result, _, _ = fake
    out = tmp_path / "d"
    assert run_cli("shard", str(result.out), str(out), "--samples-per-shard", "7", "-q").returncode == 0
    proc = run_cli("shard", str(result.out), str(out), "--samples-per-shard", "9", "-q")
    assert proc.returncode == 1 and "different plan" in proc.stderr and "options" in proc.stderr
    proc = run_cli("shard", str(result.out), str(out), "--samples-per-shard", "9", "-q", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "train").glob("*.tar"))) == 7 and len(list((out / "train").glob("*.idx"))) == 7


def test_a_different_plan_names_each_difference_with_both_values(fake, tmp_path: Path) -> None:
    result, _, _ = fake
    out = tmp_path / "d"
    run = ["shard", str(result.out), str(out), "--splits", "train", "-q"]
    assert run_cli(*run).returncode == 0
    before = files(out)
    proc = run_cli(*run, "--seed", "1")
    assert proc.returncode == 1 and "(differs in options: seed 0 -> 1); use --overwrite" in proc.stderr, proc.stderr
    images = source_images(result)["train"]
    wnids = sorted({w for w, _ in images.values()})[:4]
    listed = tmp_path / "files.txt"
    listed.write_text("\n".join(n for n, (w, _) in sorted(images.items()) if w in wnids) + "\n")
    proc = run_cli(*run, "--shard-size", "500MB", "--classes", ",".join(wnids), "--subset", str(listed))
    assert proc.returncode == 1, proc.stderr
    digest = hashlib.sha256(listed.read_bytes()).hexdigest()[:8]
    assert (f"differs in options: classes null -> [{wnids[0]}, {wnids[1]}, {wnids[2]}, ... 4 in all], "
            f"shard_size 1000000000 -> 500000000, subset null -> files.txt@{digest}); use") in proc.stderr, proc.stderr
    assert files(out) == before


def test_a_size_without_a_unit_is_refused(fake, tmp_path: Path) -> None:
    result, _, _ = fake
    for bare in ("10", "0.5"):
        proc = run_cli("shard", str(result.out), str(tmp_path / "bare"), "--shard-size", bare)
        assert proc.returncode == 2 and f"--shard-size: '{bare}' has no unit: write {bare}B, {bare}kB, {bare}MB" \
            in proc.stderr, proc.stderr
    assert not (tmp_path / "bare").exists()
    proc = run_cli("shard", str(result.out), str(tmp_path / "kb"), "--shard-size", "20kB", "--splits", "train", "-q")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "kb" / "train" / "manifest.json").read_text())
    assert manifest["options"]["shard_size"] == 20_000 and len(manifest["shards"]) > 1
    staged = run_cli("stage", str(tmp_path / "kb" / "train"), str(tmp_path / "st"), "--max-rate", "1000000")
    assert staged.returncode == 2 and "--max-rate: '1000000' has no unit" in staged.stderr, staged.stderr
    assert run_cli("stage", str(tmp_path / "kb" / "train"), str(tmp_path / "st"), "--max-rate", "1GiB",
                   "-q").returncode == 0


def test_val_without_labels_names_the_val_tar_or_folder_and_the_devkit(fake, tmp_path: Path) -> None:
    result, _, _ = fake
    official, flat = tmp_path / "official", tmp_path / "flat"
    official.mkdir()
    for role in ("train", "val"):
        os.link(result.archives[role], official / result.archives[role].name)
    (flat / "val").mkdir(parents=True)
    with tarfile.open(result.archives["val"]) as tar:
        tar.extractall(flat / "val", filter="data")
    devkit = "the devkit ILSVRC2012_devkit_t12.tar.gz (or its extracted ILSVRC2012_devkit_t12/) beside it in"
    for src, where, says in (
            (official, "ILSVRC2012_img_val.tar:", f"the val tar ILSVRC2012_img_val.tar needs {devkit} {official}"),
            (flat, "val/", f"a flat val folder needs {devkit} {flat}, or val/<wnid>/ class folders")):
        proc = run_cli("shard", str(src), str(tmp_path / f"{src.name}-out"), "--splits", "val", "-q")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{src}/{where}ILSVRC2012_val_00000001.JPEG: no label: {says}\n" in proc.stderr, proc.stderr
        proc = run_cli("organize", str(src), str(tmp_path / f"{src.name}-org"), "--splits", "val", "--jobs", "1", "-q")
        assert proc.returncode == 1 and f"JPEG: no class label for this val image: {says}\n" in proc.stderr, proc.stderr


def test_classes_subset_resize_and_shard_size(fake, tmp_path: Path) -> None:
    result, _, _ = fake
    wnids = sorted({w for w, _ in source_images(result)["train"].values()})[:2]
    out = tmp_path / "sub"
    listed = tmp_path / "files.txt"
    names = sorted(n for n, (w, _) in source_images(result)["train"].items() if w == wnids[0])[:3]
    listed.write_text("\n".join(names) + "\n")
    proc = run_cli("shard", str(result.out), str(out), "--classes", ",".join(wnids), "--subset", str(listed),
                   "--short-side", "24", "--quality", "80", "-q")
    assert proc.returncode == 0, proc.stderr
    train = read_back(out / "train")
    assert sorted(s["__key__"] + ".JPEG" for s in train) == names
    val = read_back(out / "val")
    assert val and {json.loads(s["json"])["wnid"] for s in val} <= set(wnids)
    for s in train + val:
        meta = json.loads(s["json"])
        with Image.open(io.BytesIO(s["jpg"])) as img:
            assert min(img.size) <= 24 and img.size == (meta["width"], meta["height"])
        if meta["original_size"] != [meta["width"], meta["height"]]:   # resized: it was larger
            assert min(meta["original_size"]) > 24
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert manifest["options"]["short_side"] == 24 and manifest["options"]["subset"]["file"] == "files.txt"
    sized = shard(result.out, tmp_path / "sized", ShardOptions(shard_size=20_000), splits=["train"], quiet=True)
    counts = [s["samples"] for s in json.loads((tmp_path / "sized/train/manifest.json").read_text())["shards"]]
    assert sized.splits[0].shards == len(counts) > 1 and max(counts) - min(counts) <= 1


def test_every_layout_shards(tmp_path: Path) -> None:
    zipped = make_fake_tiny_imagenet(tmp_path / "tiny", classes=3, train_per_class=4, val_images=6)
    shard(zipped, tmp_path / "t", ShardOptions(), quiet=True)
    tiny = read_back(tmp_path / "t" / "train")
    space = sorted(catalog.subset("tiny-imagenet")[1])
    assert len(tiny) == 12 and all(space[int(s["cls"])] == json.loads(s["json"])["wnid"] for s in tiny)
    assert (tmp_path / "t" / "val" / "tiny-imagenet-200-val-000000.tar").is_file()
    fall11 = make_fake_imagenet21k(tmp_path / "21k", classes=3, per_class=4)
    shard(fall11.parent, tmp_path / "w", ShardOptions(), quiet=True)
    manifest = json.loads((tmp_path / "w" / "train" / "manifest.json").read_text())
    assert manifest["num_samples"] == 12 and manifest["label_space"] == "imagenet-21k"
    assert [c["wnid"] for c in manifest["classes"]] == catalog.imagenet21k("fall11")   # published, not found
    gz = make_fake_imagenet21k(tmp_path / "21kgz", classes=2, per_class=2, compressed=True)
    shard(gz.parent, tmp_path / "g", ShardOptions(), quiet=True)   # in place, through its gzip index ([21k])
    assert json.loads((tmp_path / "g" / "train" / "manifest.json").read_text())["num_samples"] == 4
    kaggle = make_fake(tmp_path / "k", FakeOptions(classes=3, train_per_class=2, val_images=4, kaggle=True),
                       quiet=True)
    shard(kaggle.archives["kaggle"], tmp_path / "kd", ShardOptions(), quiet=True)
    images = source_images(kaggle)
    for split in ("train", "val"):
        got = {s["__key__"] + ".JPEG": (WNIDS[int(s["cls"])], s["jpg"]) for s in read_back(tmp_path / "kd" / split)}
        assert got == images[split]


def test_merge_of_a_folder_without_plan_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a shard output folder"):
        merge(tmp_path)


def test_jpeg_header_fast_path_agrees_with_pil(fake) -> None:
    from imnet_data.imageio import jpeg_header

    result, _, _ = fake
    seen = set()
    for split in ("train", "val"):
        for _, data in source_images(result)[split].values():
            with Image.open(io.BytesIO(data)) as img:
                want = (img.mode, img.size) if img.format in ("JPEG", "MPO") else None
            assert jpeg_header(data) == want
            seen.add(want[0] if want else "not jpeg")
    assert seen == {"RGB", "L", "CMYK", "not jpeg"}
    assert jpeg_header(b"\xff\xd8\xff\xda\x00\x02") is None and jpeg_header(b"GIF89a") is None


def test_a_samples_members_are_what_tarfile_writes() -> None:
    """:func:`~imnet_data.shards.writer.pack` builds the tar headers itself: byte for byte what Python's tarfile
    writes (fixed fields: :func:`imnet_data.tario.add_bytes`), at any offset, for empty and block-sized members."""
    parts = [("cls", b"7"), ("jpg", bytes(range(256)) * 4), ("json", b""), ("txt", b"x" * 513)]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for ext, data in parts:
            tario.add_bytes(tar, f"n01440764_10026.{ext}", data)
    chunk, (key, fields) = pack("n01440764_10026", parts, 3 * tario.BLOCK)
    assert chunk == out.getvalue()[:len(chunk)] and out.getvalue()[len(chunk):].strip(b"\0") == b""
    assert key == "n01440764_10026" and [f[0] for f in fields] == ["cls", "jpg", "json", "txt"]
    for (_, offset, size), (_, data) in zip(fields, parts, strict=True):
        assert chunk[offset - 3 * tario.BLOCK:][:size] == data
    with pytest.raises(ValueError, match="too long"):
        pack("k" * 96, parts, 0)


def test_the_hashing_writer_writes_and_hashes_every_byte_in_order(tmp_path: Path) -> None:
    """Small writes gathered in the buffer, writes of a buffer's size and larger ones written at once: the file
    and its sha256 are those of the bytes in order."""
    pieces = [os.urandom(n) for n in (1, 511, HANDOFF - 512, HANDOFF, 3, HANDOFF + 7, *[4000] * 3000, 2 * HANDOFF)]
    with open(tmp_path / "out", "wb") as f, HashingWriter(f) as out:
        for piece in pieces:
            out.write(piece)
    whole = b"".join(pieces)
    assert (tmp_path / "out").read_bytes() == whole
    assert out.sha256.hexdigest() == hashlib.sha256(whole).hexdigest() and out.pos == len(whole)


def test_the_hashing_writer_raises_a_write_error(tmp_path: Path) -> None:
    """A write that fails (here: into a file opened read-only) is raised, by the write that reaches the file or
    on leaving."""
    (tmp_path / "ro").write_bytes(b"")
    for sizes in ([HANDOFF, 1], [1]):
        with open(tmp_path / "ro", "rb") as f, pytest.raises(OSError):
            with HashingWriter(f) as out:
                for n in sizes:
                    out.write(b"x" * n)
