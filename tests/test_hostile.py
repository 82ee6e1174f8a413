"""Hostile and broken inputs, one test per kind: each run as a user would (the CLI in a subprocess), asserting
the exit code, the file and member the message names, no traceback, and that nothing outside DEST (or inside
SRC) changed. Inputs are real archives and images, crafted here byte by byte where a tool would not make them."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imnet_data import tario
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.fake.tiny_imagenet import make_fake_tiny_imagenet
from imnet_data.shards import ShardOptions, shard
from tests.helpers import ROOT, alive, descendants, run_cli

OPTIONS = FakeOptions(classes=3, train_per_class=4, val_images=6, seed=3)
GOOD_DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("hostile") / "src", OPTIONS, quiet=True)


def copy_download(fake: FakeResult, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for p in fake.out.iterdir():
        if p.is_file():
            (dest / p.name).write_bytes(p.read_bytes())
    return dest


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def clean(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def inner_tars(train: Path) -> dict[str, bytes]:
    with tarfile.open(train) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def gzipped_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---- 1. a class silently dropped -------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["random bytes", "a JPEG", "a gzip-compressed tar"])
def test_an_inner_tar_that_is_not_a_tar_is_named(fake: FakeResult, tmp_path: Path, what: str) -> None:
    src = copy_download(fake, tmp_path / "src")
    inner = inner_tars(src / "ILSVRC2012_img_train.tar")
    victim = sorted(inner)[1]
    inner[victim] = {"random bytes": np.random.default_rng(1).bytes(5000), "a JPEG": jpeg(),
                     "a gzip-compressed tar": gzipped_tar({f"{victim[:-4]}_1.JPEG": jpeg()})}[what]
    (src / "ILSVRC2012_img_train.tar").write_bytes(tario.tar_bytes(sorted(inner.items())))
    before = snapshot(src)
    for cmd in (["organize", str(src), str(tmp_path / "org")], ["shard", str(src), str(tmp_path / "sh")]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1 and f"{victim}: holds no files" in result.stderr, result.stderr
    checked = run_cli("validate", str(src), "--expect", "self", "--skip-checksums", "--json")
    assert checked.returncode == 1
    assert any(victim in p["where"] and "holds no files" in p["detail"] for p in json.loads(checked.stdout)["problems"])
    assert snapshot(src) == before


def test_an_empty_class_folder_is_named(fake: FakeResult, tmp_path: Path) -> None:
    organized = tmp_path / "organized"
    assert run_cli("organize", str(fake.out), str(organized), "-q").returncode == 0
    (organized / "train" / "n01440764").mkdir()
    result = run_cli("shard", str(organized), str(tmp_path / "sh"), "-q")
    clean(result)
    assert result.returncode == 1 and "train/n01440764: holds no files" in result.stderr


def test_a_tiny_class_listed_without_images_is_named(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path / "tiny", classes=3, train_per_class=2, val_images=3, as_zip=False)
    folder = root if (root / "wnids.txt").is_file() else root / "tiny-imagenet-200"
    wnid = (folder / "wnids.txt").read_text().split()[0]
    for image in (folder / "train" / wnid / "images").iterdir():
        image.unlink()
    result = run_cli("organize", str(root), str(tmp_path / "out"), "-q")
    clean(result)
    assert result.returncode == 1 and f"train/{wnid}/images: holds no images" in result.stderr



def test_a_tiny_zip_without_wnids_txt_is_named(tmp_path: Path) -> None:
    made = make_fake_tiny_imagenet(tmp_path / "tiny", classes=2, train_per_class=2, val_images=2, as_zip=True)
    zip_path = made if made.is_file() else next(made.rglob("*.zip"))
    with zipfile.ZipFile(zip_path) as zf:
        members = {zi.filename: zf.read(zi) for zi in zf.infolist() if not zi.filename.endswith("wnids.txt")}
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    for command in ("organize", "shard"):
        result = run_cli(command, str(zip_path), str(tmp_path / command), "-q")
        clean(result)
        assert result.returncode == 1 and f"{zip_path}:tiny-imagenet-200/wnids.txt: missing" in result.stderr

# ---- 2. bombs --------------------------------------------------------------------------------------------------

def devkit_with(fake: FakeResult, extra: dict[str, bytes]) -> bytes:
    """The fake's devkit with ``extra`` members added (a gzip of zeros expands a thousandfold)."""
    with tarfile.open(fake.archives["devkit"]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return gzipped_tar({**extra, **members})


@pytest.mark.parametrize("bomb, says", [({"ILSVRC2012_devkit_t12/big.bin": bytes(40 << 20)}, "over the"),
                                        ({f"ILSVRC2012_devkit_t12/part{i}.bin": bytes(8 << 20) for i in range(9)},
                                         "expands past")])
def test_a_devkit_bomb_is_refused_at_once(fake: FakeResult, tmp_path: Path, bomb: dict, says: str) -> None:
    src = copy_download(fake, tmp_path / "src")
    (src / GOOD_DEVKIT).write_bytes(devkit_with(fake, bomb))
    assert (src / GOOD_DEVKIT).stat().st_size < 1 << 20
    for cmd in (["validate", str(src), "--expect", "self", "--skip-checksums"],
                ["organize", str(src), str(tmp_path / "o")], ["shard", str(src), str(tmp_path / "s")]):
        start = time.monotonic()
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1, (cmd, result.stderr)
        assert says in result.stdout + result.stderr and GOOD_DEVKIT in result.stdout + result.stderr
        assert time.monotonic() - start < 30


def test_a_devkit_far_larger_than_the_real_one_is_refused_unread(fake: FakeResult, tmp_path: Path) -> None:
    src = copy_download(fake, tmp_path / "src")
    with open(src / GOOD_DEVKIT, "ab") as f:
        f.truncate(100 << 20)    # 100 MB of trailing zeros: the real devkit is 2.5 MB
    result = run_cli("organize", str(src), str(tmp_path / "o"), "-q")
    clean(result)
    assert result.returncode == 1 and "over the 67,108,864-byte cap for this kind of archive" in result.stderr


def overlapping_zip(path: Path) -> None:
    """A Tiny ImageNet zip whose second image's directory entry points at the first one's data: each entry is
    plain, the archive shares one compressed kernel between them (the overlapping zip bomb)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        for name in ("a.JPEG", "b.JPEG"):
            zf.writestr(f"tiny-imagenet-200/train/n01443537/images/{name}", jpeg(), zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    records = [i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02"]
    first = struct.unpack_from("<I", data, records[1] + 42)[0]
    struct.pack_into("<I", data, records[2] + 42, first)
    path.write_bytes(bytes(data))


def test_overlapping_zip_entries_are_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "tiny-imagenet-200.zip"
    overlapping_zip(zip_path)
    for cmd in (["organize", str(zip_path), str(tmp_path / "o")], ["validate", str(zip_path), "--expect", "self"]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1, (cmd, result.stderr)
        assert "overlap in the archive" in result.stdout + result.stderr
    assert not (tmp_path / "o" / "train").exists()


# ---- 3. member names ---------------------------------------------------------------------------------------------

WEIRD = ["two words.JPEG", "line\nbreak.JPEG", "carriage\rreturn.JPEG", "caf\u00e9.JPEG", b"raw\xffbyte.JPEG"]


def weird_folder(root: Path, names: list) -> Path:
    folder = root / "train" / "n01440764"
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        path = os.path.join(os.fsencode(folder), name if isinstance(name, bytes) else name.encode())
        with open(path, "wb") as f:
            f.write(jpeg(i))
    return root


def test_any_byte_in_a_name_gives_a_safe_key_and_a_sound_shard(tmp_path: Path) -> None:
    src = weird_folder(tmp_path / "src", WEIRD)
    result = run_cli("shard", str(src), str(tmp_path / "sh"), "-q", "--json")
    clean(result)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "sh" / "train"
    index = next(folder.glob("*.idx")).read_text()
    keys = sorted(line.split()[3].split(".")[0] for line in index.splitlines()[1:])
    assert keys == ["caf_", "carriage_return", "line_break", "raw_byte", "two_words"]
    assert run_cli("verify", str(tmp_path / "sh"), "--deep", "-q").returncode == 0
    import webdataset as wds
    files = sorted(json.loads(s["json"])["file"] for s in wds.WebDataset(str(next(folder.glob("*.tar"))),
                                                                         shardshuffle=False))
    assert files == sorted(["two words.JPEG", "line\nbreak.JPEG", "carriage\rreturn.JPEG", "caf\u00e9.JPEG",
                            "raw\\xffbyte.JPEG"])
    pytest.importorskip("torch")
    from imnet_data.loader import build_loader
    loader = build_loader(folder, batch_size=5, backend="torch", device="cpu", num_threads=0, image_size=16)
    assert sorted(next(iter(loader))[1].tolist()) == [0] * 5


def test_two_names_giving_one_key_are_refused_naming_both(tmp_path: Path) -> None:
    src = weird_folder(tmp_path / "src", ["a b.JPEG", "a_b.JPEG"])
    result = run_cli("shard", str(src), str(tmp_path / "sh"), "-q")
    clean(result)
    assert result.returncode == 1 and "a b.JPEG" in result.stderr and "a_b.JPEG" in result.stderr


def test_verify_checks_the_index_against_the_tar(fake: FakeResult, tmp_path: Path) -> None:
    shard(fake.out, tmp_path / "sh", ShardOptions(samples_per_shard=4), quiet=True)
    folder = tmp_path / "sh" / "val"
    idx = folder / "imagenet-1k-val-000000.idx"
    lines = idx.read_text().splitlines()
    fields = lines[1].split(" ")
    fields[1] = str(int(fields[1]) + 512)            # the .cls offset one block off: DALI would read garbage
    lines[1] = " ".join(fields)
    idx.write_text("\n".join(lines) + "\n")
    manifest = json.loads((folder / "manifest.json").read_text())   # the manifest agrees with the new index ...
    entry = manifest["shards"][0]["index"]
    entry["sha256"], entry["bytes"] = hashlib.sha256(idx.read_bytes()).hexdigest(), idx.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("verify", str(folder), "-q")                   # ... but not with the tar
    clean(result)
    assert result.returncode == 1 and f"the index {idx.name} does not match the tar's members" in result.stdout


# ---- 4. writes into the source -------------------------------------------------------------------------------------

def test_dest_inside_or_around_the_source_is_refused_before_writing(fake: FakeResult, tmp_path: Path) -> None:
    organized = tmp_path / "organized"
    assert run_cli("organize", str(fake.out), str(organized), "-q").returncode == 0
    shard(fake.out, tmp_path / "shards", ShardOptions(samples_per_shard=4), quiet=True)
    before, shards_before = snapshot(organized), snapshot(tmp_path / "shards")
    for cmd in (["organize", str(organized), str(organized / "train")],
                ["shard", str(organized), str(organized / "train" / "shards")],
                ["organize", str(organized / "train" / ".." ), str(organized / "x")],
                ["shard", str(organized), str(tmp_path)],
                ["validate", str(organized), "--expect", "self", "--report", str(organized / "r.json")],
                ["stage", str(tmp_path / "shards"), str(tmp_path / "shards" / "local")],
                ["preview", str(tmp_path / "shards" / "val"), "--out", str(tmp_path / "shards" / "val" / "p.png")]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 2 and ("inside the source" in result.stderr or "holds the source" in
                                           result.stderr), (cmd, result.stderr)
    assert snapshot(organized) == before and snapshot(tmp_path / "shards") == shards_before


# ---- 5. tracebacks instead of errors ----------------------------------------------------------------------------

def member_block(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", size: int | None = None) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if size is None else size
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    body = data + b"\0" * (-len(data) % 512) if size is None else b""
    return info.tobuf(format=tarfile.GNU_FORMAT) + body


@pytest.mark.parametrize("damage, says", [
    (lambda key: member_block(f"{key}.jpg", tarfile.SYMTYPE, b""), "is a link or special file"),
    (lambda key: member_block(f"{key}.jpg", size=100 << 30), "past the end of the file"),
    (lambda key: member_block(f"{key}.jpg", size=1 << 36), "past the end of the file"),   # a base-256 size field
    (lambda key: b"this is not a tar at all" * 100, "not a tar"),
])
def test_hostile_shard_tars_are_named_not_tracebacks(fake: FakeResult, tmp_path: Path, damage, says: str) -> None:
    shard(fake.out, tmp_path / "sh", ShardOptions(samples_per_shard=4), quiet=True)
    tar = tmp_path / "sh" / "val" / "imagenet-1k-val-000000.tar"
    key = json.loads((tmp_path / "sh" / "val" / "manifest.json").read_text())["shards"][0]["name"]
    tar.write_bytes(damage("ILSVRC2012_val_00000001") + b"\0" * 1024)
    del key
    for cmd in (["verify", str(tmp_path / "sh"), "--deep"], ["preview", str(tar), "--out", str(tmp_path / "p.png")]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1, (cmd, result.stderr)
        assert tar.name in result.stdout + result.stderr and says in result.stdout + result.stderr, result


def test_a_base256_member_in_a_download_is_named(fake: FakeResult, tmp_path: Path) -> None:
    src = copy_download(fake, tmp_path / "src")
    name = "ILSVRC2012_val_00000001.JPEG"
    (src / "ILSVRC2012_img_val.tar").write_bytes(member_block(name, size=1 << 36) + b"\0" * 1024)
    result = run_cli("validate", str(src), "--expect", "self", "--skip-checksums", "--json")
    clean(result)
    assert result.returncode == 1 and name in result.stdout


def flip_tail(data: bytes) -> bytes:
    """``data`` with every byte after the first 300 inverted (meta.mat: its compressed variables damaged)."""
    return data[:300] + bytes(b ^ 0xFF for b in data[300:])


@pytest.mark.parametrize("damage", [lambda m: m[:len(m) // 2], lambda m: bytes(len(m)), flip_tail],
                         ids=["truncated", "zeros", "flipped"])
def test_a_damaged_meta_mat_names_the_devkit(fake: FakeResult, tmp_path: Path, damage) -> None:
    src = copy_download(fake, tmp_path / "src")
    with tarfile.open(fake.archives["devkit"]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    meta = "ILSVRC2012_devkit_t12/data/meta.mat"
    (src / GOOD_DEVKIT).write_bytes(gzipped_tar({**members, meta: damage(members[meta])}))
    for cmd in (["shard", str(src), str(tmp_path / "s"), "--splits", "val"],
                ["validate", str(src), "--expect", "self", "--skip-checksums"]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1, (cmd, result.stderr)
        assert f"{src / GOOD_DEVKIT}: data/meta.mat is not a devkit meta.mat (" in result.stdout + result.stderr, \
            (cmd, result)


@pytest.mark.parametrize("kind, says, options", [
    ("not_image", "not a readable image (no known image format)", []),
    ("empty", "not a readable image (no known image format)", []),
    ("truncated", "cannot decode image for resizing: image file is truncated", ["--short-side", "16"])],
    ids=["not-image", "empty", "truncated"])
def test_an_image_shard_cannot_read_names_the_member_not_a_file_object(tmp_path: Path, kind: str, says: str,
                                                                      options: list[str]) -> None:
    broken = make_fake(tmp_path / "src", FakeOptions(classes=3, train_per_class=5, val_images=0, seed=3,
                                                     with_faults=True), quiet=True)
    (name,) = [f["name"] for f in broken.truth["faults"] if f["kind"] == kind]
    (tmp_path / "only.txt").write_text(name + "\n")
    result = run_cli("shard", str(broken.out), str(tmp_path / "s"), "--subset", str(tmp_path / "only.txt"),
                     "--splits", "train", "--jobs", "1", "-q", *options)
    clean(result)
    assert result.returncode == 1, result.stderr
    assert f"{broken.archives['train']}:{name}: {says}" in result.stderr, result.stderr
    assert "object at 0x" not in result.stderr


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.pop("shards"), "shards: expected a list"),
    (lambda m: m["shards"][0].pop("index"), "shards[0].index: expected an object"),
    (lambda m: m.update(shards="imagenet-1k-val-000000.tar"), "shards: expected a list"),
    (lambda m: m["shards"][0].update(sha256=None), "shards[0].sha256: expected a 64-digit hex string, got None"),
    (lambda m: m["shards"][0].update(samples="6"), "shards[0].samples: expected a whole number"),
    (lambda m: m["shards"][0].update(name="../../etc/passwd"), "shards[0].name: expected a string matching"),
    (lambda m: m.update(format_version=99), "format_version: expected 1"),
    (lambda m: m["shards"][0].update(histogram=[[5000, 1]]), "shards[0].histogram"),
])
def test_malformed_manifests_name_file_and_field_everywhere(fake: FakeResult, tmp_path: Path, edit, field) -> None:
    shard(fake.out, tmp_path / "sh", ShardOptions(samples_per_shard=4), quiet=True)
    folder = tmp_path / "sh" / "train"     # the split bench reads first
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for cmd in (["verify", str(folder)], ["stage", str(folder), str(tmp_path / "dest")],
                ["bench", str(tmp_path / "sh"), "--host-only", "--batches", "1", "--batch-size", "2"]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1, (cmd, result.stderr)
        assert f"{folder / 'manifest.json'}: {field}" in result.stdout + result.stderr, (cmd, result)
    assert not list((tmp_path / "dest").rglob("*.partial")) and not list((tmp_path / "dest").rglob("*.tar"))


def test_a_malformed_index_is_named_by_the_loader(fake: FakeResult, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from imnet_data.loader import ShardError, build_loader
    shard(fake.out, tmp_path / "sh", ShardOptions(samples_per_shard=4), quiet=True)
    idx = tmp_path / "sh" / "val" / "imagenet-1k-val-000000.idx"
    idx.write_text(idx.read_text().replace(" cls ", " cls x", 1) + "junk\n")
    with pytest.raises(ShardError, match=f"{idx}:"):
        build_loader(str(tmp_path / "sh" / "val" / "imagenet-1k-val-{000000..000001}.tar"), "val", batch_size=2,
                     backend="torch", device="cpu")


def random_line(lines: list[bytes], number: int) -> list[bytes]:
    """``lines`` with line ``number`` (1-based) replaced by random bytes holding no newline."""
    lines[number - 1] = random.Random(number).randbytes(60).replace(b"\n", b"")
    return lines


@pytest.mark.parametrize("damage, line", [
    (lambda lines: [random.Random(0).randbytes(4096)], 1),                # an .idx that is random bytes
    (lambda lines: random_line(lines, 3), 3),                              # one line of random bytes
    (lambda lines: lines[:1] + [b" ".join(lines[1].split(b" ")[:-1])] + lines[2:], 2),   # a field missing
])
def test_a_corrupt_index_is_named_with_its_line_everywhere(fake: FakeResult, tmp_path: Path, damage, line) -> None:
    pytest.importorskip("torch")
    from imnet_data.loader import ShardError, build_loader
    shard(fake.out, tmp_path / "sh", ShardOptions(samples_per_shard=4), quiet=True)
    folder = tmp_path / "sh" / "val"
    idx = folder / "imagenet-1k-val-000000.idx"
    idx.write_bytes(b"\n".join(damage(idx.read_bytes().split(b"\n"))))
    manifest = json.loads((folder / "manifest.json").read_text())   # the manifest agrees with the new index
    manifest["shards"][0]["index"].update(sha256=hashlib.sha256(idx.read_bytes()).hexdigest(),
                                          bytes=idx.stat().st_size)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=f"^{idx}:{line}: "):
        build_loader(folder, batch_size=2, backend="torch", device="cpu")
    result = run_cli("verify", str(folder), "-q")
    clean(result)
    assert result.returncode == 1 and f"the index {idx.name} not a DALI index (val/{idx.name}:{line}: " \
        in result.stdout, result.stdout


# ---- 6. unbounded reads from a server ---------------------------------------------------------------------------

class MetadataHandler(BaseHTTPRequestHandler):
    """``/endless/manifest.json``: a body that never ends; ``/nested/manifest.json``: JSON nested 100,000 deep;
    ``/forbidden/...``: 403."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/forbidden/"):
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()   # no length: the body runs until the server closes
        with contextlib.suppress(OSError):
            if self.path.startswith("/endless/"):
                chunk = b'{"format": "imnet-data-shards", "pad": "' + b"x" * (1 << 20)
                while True:
                    self.wfile.write(chunk)
            else:
                self.wfile.write(b"[" * 100_000 + b"]" * 100_000)


@pytest.fixture
def metadata_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetadataHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where, says", [("endless", "over the 268,435,456-byte cap for metadata"),
                                         ("nested", "JSON nested too deeply"),
                                         ("forbidden", "HTTP 403")])
def test_stage_caps_and_names_every_metadata_fetch(metadata_server: str, tmp_path: Path, where: str,
                                                   says: str) -> None:
    url = f"{metadata_server}/{where}"
    proc = subprocess.run([sys.executable, "-c", "import resource, sys, subprocess; r = subprocess.run(sys.argv[1:],"
                           " capture_output=True, text=True); print(r.returncode); print(r.stderr); "
                           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                           sys.executable, "-m", "imnet_data", "stage", url, str(tmp_path / "d"), "-q", "--retries",
                           "0"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    code, *message, rss = proc.stdout.strip().split("\n")
    assert code == "1" and says in "\n".join(message) and url in "\n".join(message), proc.stdout
    assert "Traceback" not in proc.stdout
    assert int(rss) < 1 << 20     # KiB: under 1 GiB whatever the server sends


# ---- 7. exit codes ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["organize", "SRC", "DEST", "--quality", "0"],
                                  ["shard", "SRC", "DEST", "--samples-per-shard", "0"],
                                  ["shard", "SRC", "DEST", "--shard-size", "0"],
                                  ["stage", "SRC", "DEST", "--ranks", "0-3"],
                                  ["stage", "SRC", "DEST", "--jobs", "-1"],
                                  ["fake", "DEST", "--train-per-class", "0"],
                                  ["validate", "DEST"],
                                  ["verify", "DEST"]])
def test_usage_errors_exit_2(fake: FakeResult, tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "dest").mkdir()
    result = run_cli(*[{"SRC": str(fake.out), "DEST": str(tmp_path / "dest")}.get(a, a) for a in args])
    clean(result)
    assert result.returncode == 2, result.stderr
    assert not list((tmp_path / "dest").iterdir())


def test_a_damaged_devkit_or_zip_is_a_problem_found_not_a_usage_error(fake: FakeResult, tmp_path: Path) -> None:
    src = copy_download(fake, tmp_path / "src")
    (src / GOOD_DEVKIT).write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    zip_path = tmp_path / "tiny-imagenet-200.zip"
    overlapping_zip(zip_path)
    for path in (src, zip_path):
        result = run_cli("validate", str(path), "--expect", "self", "--skip-checksums", "-q")
        clean(result)
        assert result.returncode == 1, result.stderr


# ---- 8. orphaned workers ------------------------------------------------------------------------------------------

def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    big = make_fake(tmp_path / "src", FakeOptions(classes=8, train_per_class=150, val_images=0, seed=1), quiet=True)
    proc = subprocess.Popen([sys.executable, "-m", "imnet_data", "validate", str(big.out), "--expect", "self",
                             "--deep", "--jobs", "2", "-q"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(descendants(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    workers = descendants(proc.pid)
    assert len(workers) >= 2 and proc.poll() is None, "no worker pool seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers)


# ---- 9. damage PIL does not see --------------------------------------------------------------------------------------

def corrupt_entropy(data: bytes) -> bytes:
    """The JPEG with bytes in the middle of its entropy-coded data scrambled (markers intact)."""
    damaged = bytearray(data)
    start = data.index(b"\xff\xda") + 40
    for i in range(start, start + 40):
        damaged[i] = 0x5A if damaged[i] != 0xFF else 0xFF
    return bytes(damaged)


def test_damage_pil_decodes_without_a_word_is_found(tmp_path: Path) -> None:
    bad = corrupt_entropy(jpeg(7, (96, 96)))
    Image.open(io.BytesIO(bad)).load()                       # PIL says nothing
    src = tmp_path / "src"
    folder = src / "train" / "n01440764"
    folder.mkdir(parents=True)
    (folder / "n01440764_1.JPEG").write_bytes(bad)
    (folder / "n01440764_2.JPEG").write_bytes(jpeg(8))
    result = run_cli("validate", str(src), "--expect", "self", "--deep", "--json")
    damaged = [p for p in json.loads(result.stdout)["problems"] if p["kind"] == "undecodable"]
    assert result.returncode == 1 and [p["where"].rsplit("/", 1)[-1] for p in damaged] == ["n01440764_1.JPEG"]
    assert "Corrupt JPEG data" in damaged[0]["detail"]
    fixed = run_cli("organize", str(src), str(tmp_path / "org"), "--fix", "--json", "-q")
    assert fixed.returncode == 0
    assert [s["path"] for s in json.loads(fixed.stdout)["skipped"]] == ["train/n01440764/n01440764_1.JPEG"]
    shard(src, tmp_path / "sh", ShardOptions(), quiet=True)
    deep = run_cli("verify", str(tmp_path / "sh"), "--deep", "-q")
    assert deep.returncode == 1 and "n01440764_1: .jpg does not decode" in deep.stdout


# ---- 10. a misnamed archive ------------------------------------------------------------------------------------------

def test_a_misnamed_train_tar_is_said_not_skipped(fake: FakeResult, tmp_path: Path) -> None:
    src = copy_download(fake, tmp_path / "src")
    (src / "ILSVRC2012_img_train.tar").rename(src / "ILSVRC2012_img_train (1).tar")
    for cmd in (["organize", str(src), str(tmp_path / "o")], ["shard", str(src), str(tmp_path / "s")]):
        result = run_cli(*cmd, "-q")
        clean(result)
        assert result.returncode == 1, result.stderr
        assert "no ILSVRC2012_img_train.tar" in result.stdout and "'ILSVRC2012_img_train (1).tar'" in result.stdout
    assert (tmp_path / "o" / "val").is_dir() and (tmp_path / "s" / "val" / "manifest.json").is_file()
    assert run_cli("organize", str(src), str(tmp_path / "o2"), "--splits", "val", "-q").returncode == 0
