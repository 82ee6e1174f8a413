"""The Hugging Face hub copies as sources (``--layout hf``, ``hf-parquet``): their fakes made from the official
fake's images, every label against the truth, shards and organized folders byte-identical to the official
archives', the unlabelled test split, the hub cache's snapshot of symlinks, a partial conversion, and bad
parquet files refused naming file, row group and row."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from imnet_data import catalog
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.fake.hub import make_hf, make_hf_parquet
from imnet_data.sources import open_source
from tests.helpers import run_cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

OPTIONS = FakeOptions(classes=4, train_per_class=5, val_images=6, seed=3, with_quirks=True)
SHARD = ("--shard-size", "20kB", "--quiet", "--jobs", "2")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FakeResult]:
    root = tmp_path_factory.mktemp("hub")
    return {"ilsvrc2012": make_fake(root / "official", OPTIONS, quiet=True),
            "hf": make_hf(root / "hf", OPTIONS, quiet=True),
            "hf-parquet": make_hf_parquet(root / "parquet", OPTIONS, quiet=True)}


@pytest.fixture(scope="module")
def sharded(fakes: dict[str, FakeResult]) -> dict[str, Path]:
    out = {}
    for layout, fake in fakes.items():
        dest = fake.out.parent / f"shards-{layout}"
        done = run_cli("shard", str(fake.out), str(dest), *SHARD)
        assert done.returncode == 0, done.stderr
        out[layout] = dest
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_hubs_label_order_is_the_catalogs_sorted_wnid_index() -> None:
    lines = (Path(__file__).parent / "hf_imagenet1k_classes.txt").read_text().splitlines()
    hub = [line for line in lines if line and not line.startswith("#")]
    assert hub == list(catalog.ilsvrc2012().wnids)


def test_the_hub_fakes_hold_the_official_fakes_images(fakes: dict[str, FakeResult]) -> None:
    official = fakes["ilsvrc2012"].truth
    for layout in ("hf", "hf-parquet"):
        truth = fakes[layout].truth
        assert truth["train"] == official["train"] and truth["val"] == official["val"]
        assert len(truth["test"]) == OPTIONS.val_images
        assert truth["hub_names"]["train"]["n02105855_2933.JPEG"] == "n02105855_2933_n02105855.JPEG"
        assert truth["quirks"] == official["quirks"]


@pytest.mark.parametrize("layout", ["hf", "hf-parquet"])
def test_every_label_and_byte_read_in_place_is_the_truths(fakes: dict[str, FakeResult], layout: str) -> None:
    fake = fakes[layout]
    source = open_source(fake.out)
    assert source.layout == layout and source.splits() == ["train", "val", "test"]
    for split in ("train", "val", "test"):
        found = {s.name: (s.wnid, hashlib.sha256(s.data).hexdigest()) for u in source.units(split)
                 for s in source.read(u)}
        expected = {name: (t.get("wnid"), t["sha256"]) for name, t in fake.truth[split].items()}
        assert found == expected
        listed = {e.name: (e.wnid, e.size) for u in source.units(split) for e in source.locate(u)}
        assert listed == {name: (wnid, len(next(s.data for u in source.units(split) for s in source.read(u)
                                                 if s.name == name))) for name, (wnid, _) in found.items()}


@pytest.mark.parametrize("layout", ["hf", "hf-parquet"])
def test_validate_checks_the_hub_copy(fakes: dict[str, FakeResult], layout: str) -> None:
    done = run_cli("validate", str(fakes[layout].out), "--expect", "self", "--deep", "--json", "--quiet")
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout
    assert report["layout"] == layout
    assert report["splits"]["test"]["images"] == OPTIONS.val_images
    assert {p["kind"] for p in report["problems"]} >= {"cmyk", "not_jpeg"}    # the quirks, as known
    official = json.loads(run_cli("validate", str(fakes[layout].out), "--json", "--quiet").stdout)
    found = {(p["kind"], p["where"].rsplit("/", 1)[-1].rsplit(":", 1)[-1]) for p in official["problems"]}
    assert ("label", "ILSVRC2012_val_00000001.JPEG") in found   # the fake's val labels are not the real ones
    assert any(p["kind"] == "count" and "100,000" in p["detail"] for p in official["problems"])


def test_shards_from_the_hub_copies_are_byte_identical_to_the_official_archives(sharded: dict[str, Path]) -> None:
    official = sharded["ilsvrc2012"]
    for layout in ("hf", "hf-parquet"):
        for split in ("train", "val"):
            ours, theirs = files(official / split), files(sharded[layout] / split)
            assert ours.keys() == theirs.keys()
            for name in ours:
                if name in ("manifest.json", "plan.json.gz"):
                    continue
                assert ours[name] == theirs[name], name
            # manifests and plans differ in their source (layout, archive names) alone
            for name, load in (("manifest.json", json.loads),
                               ("plan.json.gz", lambda b: json.loads(gzip.decompress(b)))):
                a, b = load(ours[name]), load(theirs[name])
                assert a.pop("source")["layout"] == "ilsvrc2012" and b.pop("source")["layout"] == layout
                assert a == b


def test_the_test_split_is_shardable_and_unlabelled(sharded: dict[str, Path]) -> None:
    for layout in ("hf", "hf-parquet"):
        test = sharded[layout] / "test"
        manifest = json.loads((test / "manifest.json").read_text())
        assert manifest["labelled"] is False and manifest["num_samples"] == OPTIONS.val_images
        assert all(s["histogram"] == [] for s in manifest["shards"])
        names = [n for t in sorted(test.glob("*.tar")) for n in tarfile.open(t).getnames()]
        assert not [n for n in names if n.endswith(".cls")] and len(names) == 2 * OPTIONS.val_images
        done = run_cli("verify", str(sharded[layout]), "--deep", "--quiet")
        assert done.returncode == 0, done.stdout
    assert files(sharded["hf"] / "test") == files(sharded["hf-parquet"] / "test") | {
        k: v for k, v in files(sharded["hf"] / "test").items() if k in ("manifest.json", "plan.json.gz")}


def test_organize_from_the_hub_copy_writes_the_official_tree(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    trees = {}
    for layout in ("ilsvrc2012", "hf"):
        done = run_cli("organize", str(fakes[layout].out), str(tmp_path / layout), "--quiet")
        assert done.returncode == 0, done.stderr
        trees[layout] = files(tmp_path / layout)
    official = {k: v for k, v in trees["ilsvrc2012"].items() if k.startswith(("train/", "val/"))}
    assert official == {k: v for k, v in trees["hf"].items() if k.startswith(("train/", "val/"))}
    assert sorted(k for k in trees["hf"] if k.startswith("test/")) == [
        f"test/ILSVRC2012_test_{i:08d}.JPEG" for i in range(1, OPTIONS.val_images + 1)]


def test_the_hub_caches_snapshot_of_symlinks_is_read_in_place(fakes: dict[str, FakeResult], sharded: dict[str, Path],
                                                              tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "datasets--ILSVRC--imagenet-1k"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    data = repo / "snapshots" / revision / "data"
    data.mkdir(parents=True)
    for path in sorted((fakes["hf"].out / "data").iterdir()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(path, blob)
        (data / path.name).symlink_to(os.path.relpath(blob, data))
    dest = tmp_path / "shards"
    done = run_cli("shard", str(repo), str(dest), "--splits", "val", *SHARD)
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in files(dest / "val").items() if k.endswith((".tar", ".idx"))} == \
        {k: v for k, v in files(sharded["hf"] / "val").items() if k.endswith((".tar", ".idx"))}


def test_a_partial_conversion_is_never_called_complete(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    branch = tmp_path / "convert" / "default"
    for hub in ("train", "validation"):
        (branch / f"partial-{hub}").mkdir(parents=True)
        shutil.copyfile(next((fakes["hf-parquet"].out / "data").glob(f"{hub}-00000-*.parquet")),
                        branch / f"partial-{hub}" / "0000.parquet")
    done = run_cli("validate", str(tmp_path / "convert"), "--expect", "self", "--json", "--quiet")
    report = json.loads(done.stdout)
    assert report["layout"] == "hf-parquet"
    assert [p["severity"] for p in report["problems"] if p["kind"] == "partial"] == ["warning"]
    done = run_cli("validate", str(tmp_path / "convert"), "--json", "--quiet")
    assert done.returncode == 1
    assert [p["severity"] for p in json.loads(done.stdout)["problems"] if p["kind"] == "partial"] == ["error"]


def test_a_folder_with_both_forms_is_refused_naming_both(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    shutil.copytree(fakes["hf"].out / "data", tmp_path / "data")
    shutil.copy(next((fakes["hf-parquet"].out / "data").glob("validation-*")), tmp_path / "data")
    done = run_cli("validate", str(tmp_path), "--quiet")
    assert done.returncode == 2
    assert "--layout hf:" in done.stderr and "--layout hf-parquet:" in done.stderr


def test_a_killed_run_resumes_byte_identical(fakes: dict[str, FakeResult], sharded: dict[str, Path],
                                            tmp_path: Path) -> None:
    dest = tmp_path / "shards"
    shutil.copytree(sharded["hf-parquet"] / "train", dest / "train")
    victim = sorted((dest / "train").glob("*.tar"))[1]
    victim.with_suffix(".idx").unlink()
    victim.rename(victim.with_name(victim.name + ".12-abcdef01.partial"))   # what a kill leaves
    (dest / "train" / "manifest.json").unlink()
    done = run_cli("shard", str(fakes["hf-parquet"].out), str(dest), "--splits", "train", *SHARD)
    assert done.returncode == 0, done.stderr
    assert "kept 5" in done.stdout
    assert files(dest / "train") == files(sharded["hf-parquet"] / "train")


# ---- bad parquet files: refused naming file, row group and row; nothing written outside DEST ---------------------

def rows_table(fake: FakeResult, **changes: object) -> pa.Table:
    table = pq.read_table(next((fake.out / "data").glob("validation-*")))
    for name, value in changes.items():
        table = table.set_column(table.schema.get_field_index(name), name, value)
    return table


def relabel(fake: FakeResult, row: int, label: int) -> pa.Array:
    labels = rows_table(fake).column("label").to_pylist()
    labels[row] = label
    return pa.array(labels)


def bad_copy(fake: FakeResult, root: Path, write) -> Path:
    src = root / "src"
    (src / "data").mkdir(parents=True)
    write(src / "data" / "validation-00000-of-00001.parquet")
    return src


BAD = {
    "not parquet": (lambda f, p: p.write_bytes(b"PAR1 this is not a parquet file"), "not a readable parquet file"),
    "truncated": (lambda f, p: p.write_bytes(next((f.out / "data").glob("validation-*")).read_bytes()[:-300]),
                  "not a readable parquet file"),
    "label as text": (lambda f, p: pq.write_table(rows_table(f, label=pa.array(["a"] * 6)), p),
                      "column label: expected an integer"),
    "no label": (lambda f, p: pq.write_table(rows_table(f).drop_columns(["label"]), p), "no label column"),
    "image as text": (lambda f, p: pq.write_table(rows_table(f, image=pa.array(["x"] * 6)), p),
                      "column image: expected a struct"),
    "label out of range": (lambda f, p: pq.write_table(rows_table(f, label=relabel(f, 2, 1000)), p),
                           "row group 0, row 2 (ILSVRC2012_val_00000003_"),
    "label against name": (lambda f, p: pq.write_table(rows_table(f, label=pa.array([7] * 6)), p),
                           "row group 0, row 0 (ILSVRC2012_val_00000001_"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_parquet_is_refused_naming_file_row_group_and_row(fakes: dict[str, FakeResult], tmp_path: Path,
                                                              case: str) -> None:
    write, message = BAD[case]
    src = bad_copy(fakes["hf-parquet"], tmp_path, lambda p: write(fakes["hf-parquet"], p))
    before = sorted(tmp_path.rglob("*"))
    done = run_cli("shard", str(src), str(tmp_path / "dest"), "--layout", "hf-parquet", *SHARD)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr and "validation-00000-of-00001.parquet" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert [p for p in sorted(tmp_path.rglob("*")) if p not in before and "dest" not in p.parts] == []
    validated = run_cli("validate", str(src), "--layout", "hf-parquet", "--expect", "self", "--quiet")
    assert validated.returncode == 1 and message in validated.stdout


def test_an_image_that_is_no_image_is_named_with_its_row(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    table = rows_table(fakes["hf-parquet"])
    images = table.column("image").to_pylist()
    images[4]["bytes"] = b"<html>not an image</html>"
    src = bad_copy(fakes["hf-parquet"], tmp_path, lambda p: pq.write_table(
        table.set_column(0, "image", pa.array(images, type=table.schema.field("image").type)), p))
    done = run_cli("shard", str(src), str(tmp_path / "dest"), *SHARD)
    assert done.returncode == 1
    assert "row group 0, row 4 (ILSVRC2012_val_00000005.JPEG): not a readable image" in done.stderr


def test_a_row_group_declaring_too_many_bytes_is_refused_unread(fakes: dict[str, FakeResult],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from imnet_data.sources import hf_parquet
    from imnet_data.sources.base import SourceError

    monkeypatch.setattr(hf_parquet, "MAX_ROW_GROUP", 1000)   # the fake's row groups declare ~20 kB
    with pytest.raises(SourceError, match=r"train-00000-of-00002.parquet: row group 0 declares [\d,]+ bytes"):
        open_source(fakes["hf-parquet"].out).units("train")


def test_a_class_with_no_rows_is_named(fakes: dict[str, FakeResult], tmp_path: Path) -> None:
    table = rows_table(fakes["hf-parquet"])
    keep = [i for i, label in enumerate(table.column("label").to_pylist()) if label != table.column("label")[0].as_py()]
    src = bad_copy(fakes["hf-parquet"], tmp_path, lambda p: pq.write_table(table.take(keep), p))
    done = run_cli("validate", str(src), "--json", "--quiet")
    wnid = catalog.ilsvrc2012()[table.column("label")[0].as_py()].wnid
    assert any(p["kind"] == "missing_class" and wnid in p["detail"] for p in json.loads(done.stdout)["problems"])
