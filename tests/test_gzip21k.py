"""ImageNet-21k's ``winter21_whole.tar.gz`` read in place, one unit per class tar, through a gzip index
(:mod:`imnet_data.sources.gzindex`): the same shards as from the uncompressed tar, the index kept in DEST and
reused, and its bad inputs (a truncated gzip, a stale index, an empty class tar) named, exit 1."""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import sys
import tarfile
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from imnet_data import catalog, tario, variants
from imnet_data.bench.rss import run_tree
from imnet_data.fake.imagenet21k import make_fake_imagenet21k
from imnet_data.fake.scale import make_scaled_imagenet21k
from imnet_data.parallel import map_units
from imnet_data.shards import build
from imnet_data.shards.options import ShardOptions
from imnet_data.sources import SourceRef, Unit, open_source
from imnet_data.sources.gzindex import FOLDER, RUN, runs
from imnet_data.sources.safety import UnsafeArchiveError
from imnet_data.variants import Variant, variant
from tests.helpers import run_cli


def shard(src: Path, dest: Path) -> tuple[int, str]:
    """``shard SRC DEST`` on two workers: exit code and stderr."""
    done = run_cli("shard", str(src), str(dest), "--jobs", "2", "--quiet")
    return done.returncode, done.stderr


def written(dest: Path) -> list[Path]:
    """Every file under ``dest`` but the gzip index folder."""
    return sorted(p for p in dest.rglob("*") if p.is_file() and FOLDER not in p.parts)


def test_gzipped_archive_shards_as_the_plain_tar_and_keeps_its_index(tmp_path: Path) -> None:
    gz = make_fake_imagenet21k(tmp_path / "gz", classes=4, per_class=3, seed=2, compressed=True)
    plain = make_fake_imagenet21k(tmp_path / "plain", classes=4, per_class=3, seed=2)
    assert shard(gz.parent, tmp_path / "out-gz")[0] == 0 and shard(plain.parent, tmp_path / "out-plain")[0] == 0
    ours, theirs = written(tmp_path / "out-gz"), written(tmp_path / "out-plain")
    assert [p.relative_to(tmp_path / "out-gz") for p in ours] == [p.relative_to(tmp_path / "out-plain")
                                                                   for p in theirs]
    tars = [p for p in ours if p.suffix in (".tar", ".idx")]
    assert tars and all(p.read_bytes() == (tmp_path / "out-plain" / p.relative_to(tmp_path / "out-gz")).read_bytes()
                        for p in tars)
    manifests = [json.loads((tmp_path / out / "train" / "manifest.json").read_text()) for out in ("out-gz",
                                                                                              "out-plain")]
    for m in manifests:   # the one difference: which archive was read
        m["source"].pop("archives")
    assert manifests[0] == manifests[1]
    index = next((tmp_path / "out-gz" / FOLDER).iterdir())
    before = index.stat().st_mtime_ns
    assert shard(gz.parent, tmp_path / "out-gz")[0] == 0   # the re-run finds everything done and the index built
    assert index.stat().st_mtime_ns == before


def test_archive_changed_since_indexed_is_refused(tmp_path: Path) -> None:
    gz = make_fake_imagenet21k(tmp_path / "src", classes=2, per_class=2, compressed=True)
    assert shard(gz.parent, tmp_path / "out")[0] == 0
    make_fake_imagenet21k(tmp_path / "src", classes=3, per_class=2, compressed=True)   # the download replaced
    code, err = shard(gz.parent, tmp_path / "out")
    assert code == 1 and "stale gzip index" in err and str(gz) in err and FOLDER in err
    assert "Traceback" not in err


def test_truncated_gzip_is_named_and_nothing_written(tmp_path: Path) -> None:
    whole = make_fake_imagenet21k(tmp_path / "whole", classes=4, per_class=3, compressed=True)
    cut = tmp_path / "src" / whole.name
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    code, err = shard(cut.parent, tmp_path / "out")
    assert code == 1 and str(cut) in err and "truncated" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_empty_class_tar_in_the_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "src" / "winter21_whole.tar.gz"
    path.parent.mkdir()
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(jpeg, "JPEG")
    with tario.atomic_tar(path, compress=True) as tar:
        tario.add_bytes(tar, "n01440764.tar", tario.tar_bytes([("n01440764_1.JPEG", jpeg.getvalue())]))
        tario.add_bytes(tar, "n01443537.tar", tario.tar_bytes([]))
    code, err = shard(path.parent, tmp_path / "out")
    assert code == 1 and f"{path}:n01443537.tar: holds no files" in err and "Traceback" not in err
    assert not [p for p in written(tmp_path / "out") if p.suffix == ".tar"]


def test_member_past_the_expansion_cap_is_refused_before_decompressing(tmp_path: Path) -> None:
    bomb = tarfile.TarInfo("n01440764.tar")
    bomb.size = 5 << 40   # 5 TiB declared: indexing it would decompress for hours
    path = tmp_path / "winter21_whole.tar.gz"
    path.write_bytes(gzip.compress(bomb.tobuf(tarfile.GNU_FORMAT) + bytes(4096)))
    with pytest.raises(UnsafeArchiveError, match=f"{path}: member 'n01440764.tar' ends past the .* cap"):
        open_source(path).units("train")


def test_without_the_extra_the_archive_is_one_stream(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gz = make_fake_imagenet21k(tmp_path, classes=3, per_class=2, compressed=True)
    source = open_source(gz)
    units = source.gzip_units(gz, None)   # type: ignore[attr-defined]  # rapidgzip missing: no library given
    assert [u.ref[0] for u in units] == ["stream"]
    assert source.gzip_units(gz, None) == units   # type: ignore[attr-defined]
    assert capsys.readouterr().err.count("install imnet-data[21k]") == 1   # one note, however often asked
    streamed = {s.name: s.data for s in source.read(units[0])}
    indexed = {s.name: s.data for u in source.units("train") for s in source.read(u)}
    assert len(streamed) == 6 and streamed == indexed
    assert os.path.isfile(units[0].ref[1])


def test_validate_leaves_no_index_outside_a_dest(tmp_path: Path) -> None:
    gz = make_fake_imagenet21k(tmp_path / "src", classes=3, per_class=2, compressed=True)
    temp = tmp_path / "temp"
    temp.mkdir()
    done = run_cli("validate", str(gz.parent), "--expect", "self", "--jobs", "2", "--quiet",
                   env={"TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    assert not any(temp.iterdir())   # the run's index folder is gone with it
    assert sorted(p.name for p in (tmp_path / "src").rglob("*")) == [gz.name]   # nor beside the source


class FewClasses(Variant):
    """A variant's published rules over three of its classes (a real one needs ~500,000 images)."""

    def wnids(self) -> tuple[str, ...]:
        return tuple(catalog.imagenet21k("imagenet12k")[:3])

    def val_wnids(self) -> frozenset[str]:
        return frozenset(self.wnids())


def test_a_variant_shards_from_the_gzipped_archive_as_from_the_plain_tar(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant's val is held out of train: the gzipped archive (streamed) gives the same train and val shards
    as the plain tar (read in place). It failed with "ImageNet-21k has only a train split, not 'val'"."""
    twelve = variant("imagenet-12k")
    few = FewClasses(**{**dataclasses.asdict(twelve), "count": 3, "val_per_class": 2})
    monkeypatch.setattr(variants, "variants", lambda: {twelve.name: few})
    outs = []
    for release in ("winter21", "fall11"):
        src = make_scaled_imagenet21k(tmp_path / release, 30, release=release, wnids=list(few.wnids()), floor=10,
                                      jobs=1).parent
        build.shard(src, tmp_path / f"out-{release}", ShardOptions(variant=twelve.name), jobs=1, quiet=True)
        outs.append(tmp_path / f"out-{release}")
    for split, images in (("val", 6), ("train", 24)):
        tars = [sorted((out / split).glob("*.tar")) for out in outs]
        assert [p.name for p in tars[0]] == [p.name for p in tars[1]]
        assert [p.read_bytes() for p in tars[0]] == [p.read_bytes() for p in tars[1]]
        assert sum(len(tarfile.open(p).getnames()) for p in tars[0]) == 3 * images   # .cls, .jpg, .json


def test_indexing_a_highly_compressible_gzip_holds_little_memory(tmp_path: Path) -> None:
    """The fake compresses 44x (real JPEGs ~1x). At rapidgzip's 32 MiB chunk each thread held ~1.4 GB of tar while
    the index was built (1,993 MB peak for these 1.3M images; 14.9 GB at winter21's full count); the chunk now
    shrinks with the measured ratio (:func:`~imnet_data.sources.gzindex.chunk_size`): ~650 MB."""
    archive = make_scaled_imagenet21k(tmp_path / "w21", 1_315_128, release="winter21", jobs=2)
    build_index = ("import sys, rapidgzip; from pathlib import Path; from imnet_data.sources import gzindex; "
                   "gzindex.load_index(Path(sys.argv[1]), Path(sys.argv[2]), rapidgzip)")
    run = run_tree([sys.executable, "-c", build_index, str(archive), str(tmp_path / "index")],
                   {**os.environ, "HOME": str(tmp_path)}, cwd=tmp_path)
    assert run.driver < 1000 << 20, run
    assert list((tmp_path / "index" / FOLDER).glob("*.gzindex"))


def worker_and_images(ref: SourceRef, unit: Unit) -> tuple[int, str, list[tuple[str, bytes]]]:
    """The process that read ``unit`` (a worker of the pool), its name, and its images."""
    return os.getpid(), unit.name, [(s.name, s.data) for s in ref.open().read(unit)]


def test_neighbouring_class_tars_are_read_by_one_worker_in_runs(tmp_path: Path) -> None:
    """A worker decodes whole chunks from the seek point before a unit: handed out one by one, neighbouring class
    tars went to alternate workers and each decoded nearly every chunk. The gzip's units come in runs of tar
    neighbours, each run read by one worker in unit order; the images read are the same as one by one."""
    gz = make_fake_imagenet21k(tmp_path / "src", classes=12, per_class=2, compressed=True)
    source = open_source(gz.parent)
    units = source.units("train")
    runs = source.runs(units, 2)
    assert runs is not None and runs == sorted(runs) and len(set(runs)) == 2
    ref = SourceRef.of(source)
    together = list(map_units(partial(worker_and_images, ref), units, jobs=2, quiet=True, runs=runs))
    alone = list(map_units(partial(worker_and_images, ref), units, jobs=2, quiet=True))
    assert [(name, images) for _, name, images in together] == [(name, images) for _, name, images in alone]
    assert [name for _, name, _ in together] == [u.name for u in units]
    for run in set(runs):
        assert len({pid for (pid, _, _), r in zip(together, runs, strict=True) if r == run}) == 1


def test_runs_cut_where_class_tars_are_apart_and_at_the_run_cap() -> None:
    """Units that do not follow each other in the tar share nothing: never one run. A large archive is cut into
    runs of at most about ``RUN`` bytes (a cut costs one chunk decoded twice), a small one into ``jobs`` runs."""
    step = 57 << 20   # winter21's average class tar
    spans = [(512 + i * (step + 512), step) for i in range(400)]
    numbers = runs(spans, 2)
    assert numbers == sorted(numbers) and len(set(numbers)) == -(-400 * step // RUN)
    sizes = [numbers.count(n) * step for n in set(numbers)]
    assert max(sizes) <= RUN + step and min(sizes) >= RUN - 2 * step
    assert runs(spans[:4], 2) == [0, 0, 1, 1] and runs(spans[:4], 8) == [0, 1, 2, 3]
    apart = [spans[0], spans[2], spans[3]]   # the second class tar not read: the first shares nothing with the third
    assert runs(apart, 1) == [0, 1, 1]


def test_class_tar_with_extended_headers_in_the_gzip_is_read_by_tarfile(tmp_path: Path) -> None:
    """Class tars of plain headers are parsed from memory; one with a pax header (not what ImageNet's hold) is left
    to tarfile, with the same images."""
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(jpeg, "JPEG")
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("n01440764_1.JPEG")
        info.size, info.pax_headers = len(jpeg.getvalue()), {"comment": "pax"}
        tar.addfile(info, io.BytesIO(jpeg.getvalue()))
    path = tmp_path / "src" / "winter21_whole.tar.gz"
    path.parent.mkdir()
    with tario.atomic_tar(path, compress=True) as tar:
        tario.add_bytes(tar, "n01440764.tar", inner.getvalue())
        tario.add_bytes(tar, "n01443537.tar", tario.tar_bytes([("n01443537_7.JPEG", jpeg.getvalue())]))
    source = open_source(path.parent)
    assert [[(s.name, s.data) for s in source.read(u)] for u in source.units("train")] == [
        [("n01440764_1.JPEG", jpeg.getvalue())], [("n01443537_7.JPEG", jpeg.getvalue())]]
