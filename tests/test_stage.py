"""Tests of ``stage`` against real servers on loopback: nginx (Debian's ``nginx-light``) serving a real shard set,
and a fault-injecting HTTP server (stdlib, threaded) that drops connections, answers 500 or 404, truncates,
corrupts or stalls bodies and honours Range requests, logging every request so resume can be asserted."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from imnet_data.assign import node_ranks, shards_for_ranks
from imnet_data.fake import FakeOptions, make_fake
from imnet_data.shards import ShardOptions, shard
from imnet_data.stage import StoreError, parse_ranks, stage
from imnet_data.stage.transfer import CHUNK, copy_hashed
from imnet_data.stores.base import file_sha256
from tests.helpers import FaultPlan, QuietHandler, run_cli, send_faulty
from tests.servers import nginx

FAST = {"retries": 3, "backoff": 0.01, "quiet": True}


class FaultServer(ThreadingHTTPServer, FaultPlan):
    """Serves the files under ``root`` (HTTP/1.1, keep-alive, Range) with faults planned per file and per request
    (:class:`~tests.helpers.FaultPlan`): those of :func:`~tests.helpers.send_faulty`, and ``500``, ``404``,
    ``norange`` (ignore a Range header: 200 with the whole file)."""

    daemon_threads = True

    def __init__(self, root: Path, stall: float = 2.0) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), FaultHandler)
        FaultPlan.__init__(self, stall)
        self.root = root


class FaultHandler(QuietHandler):
    server: FaultServer

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        fault = self.server.take("GET", path, rng, self.client_address)
        file = self.server.root / path
        if fault in ("404", "500") or not file.is_file():
            return send_faulty(self, 500 if fault == "500" else 404, [], b"", None, 0)
        data = file.read_bytes()
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        start = int(m.group(1)) if m and fault != "norange" else 0
        headers = [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")] if start else []
        send_faulty(self, 206 if start else 200, headers, data[start:], fault, self.server.stall)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real shard set: train 10 shards of 20 samples, val 1 shard."""
    root = tmp_path_factory.mktemp("stage")
    src = make_fake(root / "src", FakeOptions(classes=10, train_per_class=20, val_images=20), quiet=True)
    shard(src.out, root / "shards", ShardOptions(samples_per_shard=20), quiet=True)
    return root / "shards"


@pytest.fixture(scope="module")
def served(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nginx(shards, tmp_path_factory.mktemp("nginx")) as url:
        yield url


@pytest.fixture
def faulty(shards: Path) -> Iterator[FaultServer]:
    server = FaultServer(shards)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def names(folder: Path, numbers: list[int] | None = None) -> list[str]:
    entries = manifest(folder)["shards"]
    return [entries[i]["name"] for i in (range(len(entries)) if numbers is None else numbers)]


def assert_same(src: Path, dest: Path, numbers: list[int] | None = None) -> None:
    """``dest`` holds exactly the shards ``numbers`` (default all) of ``src``, byte-equal, with their indexes."""
    entries = manifest(src)["shards"]
    picked = [entries[i] for i in (range(len(entries)) if numbers is None else numbers)]
    assert sorted(p.name for p in dest.glob("*.tar")) == sorted(s["name"] for s in picked)
    for s in picked:
        assert file_sha256(dest / s["name"]) == s["sha256"]
        assert file_sha256(dest / s["index"]["name"]) == s["index"]["sha256"]
    assert not list(dest.glob("*.partial"))


# ---- real server, real shards --------------------------------------------------------------------------------

def test_full_stage_from_nginx_is_loader_ready(shards: Path, served: str, tmp_path: Path) -> None:
    report = stage(served, tmp_path / "local", jobs=4, quiet=True)
    assert report.ok and report.splits == ["train", "val"] and len(report.fetched) == 11 and not report.skipped
    for split in ("train", "val"):
        assert_same(shards / split, tmp_path / "local" / split)
        assert (tmp_path / "local" / split / "manifest.json").read_bytes() == \
            (shards / split / "manifest.json").read_bytes()
        assert (tmp_path / "local" / split / "wids.json").read_bytes() == (shards / split / "wids.json").read_bytes()
    assert report.bytes == sum(s["bytes"] + s["index"]["bytes"] for sp in ("train", "val")
                               for s in manifest(shards / sp)["shards"])
    info = json.loads((tmp_path / "local" / "_info.json").read_text())
    assert set(info["splits"]) == {"train", "val", "validation"} and info["splits"]["validation"]["alias_of"] == "val"
    assert (tmp_path / "local" / "_info.json").read_bytes() == (shards / "_info.json").read_bytes()
    assert (tmp_path / "local" / "README.md").read_bytes() == (shards / "README.md").read_bytes()
    again = stage(served, tmp_path / "local", verify=True, quiet=True)
    assert again.ok and len(again.skipped) == 11 and not again.fetched and again.bytes == 0
    pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
    pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install nvidia-dali-cuda130")
    from imnet_data.loader import build_loader

    loader = build_loader(tmp_path / "local" / "train", batch_size=8, backend="dali", device="cpu",
                          remainder="partial", num_threads=2)
    assert sum(len(labels) for _, labels in loader) == 200


def test_cli_json_and_exit_codes(shards: Path, served: str, tmp_path: Path) -> None:
    done = run_cli("stage", f"{served}/val/", str(tmp_path / "d"), "--json", "--quiet", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and out["fetched"] == [f"val/{n}" for n in names(shards / "val")] and out["mb_per_s"] >= 0
    assert_same(shards / "val", tmp_path / "d" / "val")
    missing = run_cli("stage", f"{served}/nothing/", str(tmp_path / "e"), "--quiet")
    assert missing.returncode == 1 and "manifest" in missing.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: --jobs 0 is one transfer")
def test_jobs_0_means_one_transfer_per_core(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    faulty.meet("GET train/imagenet-1k-train-000000.tar", "GET train/imagenet-1k-train-000001.tar")
    done = run_cli("stage", f"{faulty.url}/train", str(tmp_path / "d"), "--jobs", "0", "--quiet")
    assert done.returncode == 0, done.stderr
    assert not faulty.meeting.broken          # shards 0 and 1 were fetched at the same time
    assert_same(shards / "train", tmp_path / "d" / "train")


def test_filesystem_source_copy_and_link(shards: Path, tmp_path: Path) -> None:
    report = stage(shards, tmp_path / "copy", splits=["train"], quiet=True)
    assert report.ok and report.splits == ["train"] and not any(report.linked.values())
    assert_same(shards / "train", tmp_path / "copy" / "train")
    linked = stage(shards / "train", tmp_path / "link", link=True, verify=True, quiet=True)
    assert linked.ok and linked.linked == {"hardlink": 20, "symlink": 0} and linked.bytes == 0
    for n in names(shards / "train"):
        assert (tmp_path / "link" / "train" / n).stat().st_ino == (shards / "train" / n).stat().st_ino
    assert (tmp_path / "link" / "train" / "manifest.json").is_file()


def test_link_across_filesystems_makes_symlinks(shards: Path, tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) beside the test folder")
    other = Path(shutil.copytree(shards / "val", shm / f"imnet-stage-{os.getpid()}"))
    try:
        report = stage(other, tmp_path / "d", link=True, quiet=True)
        assert report.ok and report.linked == {"hardlink": 0, "symlink": 2}
        assert (tmp_path / "d" / "val" / names(shards / "val")[0]).is_symlink()
        assert_same(shards / "val", tmp_path / "d" / "val")
    finally:
        shutil.rmtree(other)


def test_splits_manifest_option_and_concurrent_runs(shards: Path, served: str, tmp_path: Path) -> None:
    report = stage(served, tmp_path / "a", splits=["val"], quiet=True)
    assert report.ok and report.splits == ["val"] and not (tmp_path / "a" / "train").exists()
    copy = tmp_path / "elsewhere.json"
    shutil.copy(shards / "train" / "manifest.json", copy)
    report = stage(f"{served}/train", tmp_path / "b", manifest=str(copy), quiet=True)
    assert report.ok and len(report.fetched) == 10
    results: list = []
    runs = [threading.Thread(target=lambda: results.append(stage(f"{served}/train", tmp_path / "c", quiet=True)))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert all(r.ok for r in results) and sorted(len(r.skipped) for r in results) == [0, 10]   # the lock
    assert_same(shards / "train", tmp_path / "c" / "train")


def test_link_needs_a_filesystem_source(served: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="filesystem"):
        stage(served, tmp_path / "d", link=True, quiet=True)


# ---- faults: retries, resume, checksums ----------------------------------------------------------------------

def test_interrupted_stage_resumes_with_range(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    train = names(shards / "train")
    victim = f"train/{train[3]}"
    faulty.plan(victim, "truncate")
    first = stage(f"{faulty.url}/train", tmp_path / "d", retries=0, quiet=True)
    assert [f["shard"] for f in first.failed] == [victim] and len(first.fetched) == 9
    partial = tmp_path / "d" / victim.replace(".tar", ".tar.partial")
    half = partial.stat().st_size
    assert 0 < half < (shards / victim).stat().st_size
    assert not (tmp_path / "d" / "train" / "manifest.json").exists()   # not complete: no manifest yet
    faulty.log.clear()
    second = stage(f"{faulty.url}/train", tmp_path / "d", quiet=True)
    assert second.ok and second.fetched == [victim] and second.resumed == 1
    assert faulty.requests(victim) == [f"bytes={half}-"]
    shard_requests = {p for p, _ in faulty.log if p.endswith((".tar", ".idx"))}
    index = victim.replace(".tar", ".idx")                            # not reached in the first run
    assert shard_requests == {victim, index} and faulty.requests(index) == [None]   # nothing complete again
    assert second.bytes == (shards / victim).stat().st_size - half + (shards / index).stat().st_size
    assert_same(shards / "train", tmp_path / "d" / "train")


def test_connections_are_kept_alive(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    report = stage(f"{faulty.url}/train", tmp_path / "d", jobs=2, **FAST)
    assert report.ok and len(faulty.log) == 22 and len(faulty.clients) <= 2     # manifest, 20 files, wids


@pytest.mark.parametrize("fault", ["drop", "truncate", "500", "corrupt"])
def test_transient_faults_are_retried(shards: Path, faulty: FaultServer, tmp_path: Path, fault: str) -> None:
    victim = f"val/{names(shards / 'val')[0]}"
    faulty.plan(victim, fault, fault)
    report = stage(f"{faulty.url}/val", tmp_path / "d", **FAST)
    assert report.ok and report.retries == 2 and len(faulty.requests(victim)) == 3
    assert_same(shards / "val", tmp_path / "d" / "val")
    if fault == "corrupt":                                  # a bad checksum throws the bytes away: no Range
        assert faulty.requests(victim) == [None, None, None]


def test_stalled_server_times_out_and_retries(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    victim = f"val/{names(shards / 'val')[0]}"
    faulty.plan(victim, "stall")
    start = time.monotonic()
    report = stage(f"{faulty.url}/val", tmp_path / "d", timeout=(2, 0.3), **FAST)
    assert report.ok and report.retries == 1 and time.monotonic() - start < faulty.stall
    assert_same(shards / "val", tmp_path / "d" / "val")


def test_permanent_corruption_fails_naming_the_shard(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    victim = names(shards / "val")[0]
    faulty.plan(f"val/{victim}", *["corrupt"] * 5)
    done = run_cli("stage", f"{faulty.url}/val", str(tmp_path / "d"), "--retries", "2", "--json", "--quiet")
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert [f["shard"] for f in out["failed"]] == [f"val/{victim}"] and "sha256" in out["failed"][0]["reason"]
    assert "3 attempts" in out["failed"][0]["reason"]
    assert not (tmp_path / "d" / "val" / victim).exists() and not list((tmp_path / "d" / "val").glob("*.partial"))
    assert not (tmp_path / "d" / "val" / "manifest.json").exists()


def test_not_found_fails_at_once(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    victim = f"train/{names(shards / 'train')[5]}"
    faulty.plan(victim, "404")
    report = stage(f"{faulty.url}/train", tmp_path / "d", **FAST)
    assert [f["shard"] for f in report.failed] == [victim] and "404" in report.failed[0]["reason"]
    assert len(faulty.requests(victim)) == 1 and report.retries == 0 and len(report.fetched) == 9
    assert "FAILED train/" in report.render()


def test_server_ignoring_range_and_bad_partial_restart(shards: Path, faulty: FaultServer, tmp_path: Path) -> None:
    val, train = names(shards / "val")[0], names(shards / "train")[0]
    for split, name, content in (("val", val, (shards / "val" / val).read_bytes()[:1000]),
                                 ("train", train, b"x" * 1000)):
        (tmp_path / "d" / split).mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / split / f"{name}.partial").write_bytes(content)
    faulty.plan(f"val/{val}", "norange")
    report = stage(faulty.url, tmp_path / "d", **FAST)
    assert report.ok
    assert faulty.requests(f"val/{val}") == ["bytes=1000-"]              # answered 200: written from zero
    assert faulty.requests(f"train/{train}") == ["bytes=1000-", None]    # garbage partial: checksum, restart
    assert_same(shards / "val", tmp_path / "d" / "val")
    assert_same(shards / "train", tmp_path / "d" / "train")


def test_damaged_local_file_refetched_with_verify(shards: Path, served: str, tmp_path: Path) -> None:
    stage(f"{served}/val", tmp_path / "d", quiet=True)
    target = tmp_path / "d" / "val" / names(shards / "val")[0]
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(data)
    assert stage(f"{served}/val", tmp_path / "d", quiet=True).skipped == [f"val/{target.name}"]   # size only
    report = stage(f"{served}/val", tmp_path / "d", verify=True, quiet=True)
    assert report.fetched == [f"val/{target.name}"]
    assert_same(shards / "val", tmp_path / "d" / "val")


# ---- selection, space, rate ----------------------------------------------------------------------------------

def test_rank_subsets_match_the_loader(shards: Path, served: str, tmp_path: Path) -> None:
    counts = [s["samples"] for s in manifest(shards / "train")["shards"]]
    cases = [(["--ranks", "0-1", "--world-size", "4"], shards_for_ranks(counts, [0, 1], 4), {}),
             (["--ranks", "2", "--world-size", "3"], shards_for_ranks(counts, [2], 3), {}),
             (["--node-rank", "1", "--num-nodes", "2"], shards_for_ranks(counts, node_ranks(1, 2, 6), 6), {}),
             ([], shards_for_ranks(counts, [1], 3), {"SLURM_PROCID": "1", "SLURM_NTASKS": "3"})]
    for n, (args, expected, env) in enumerate(cases):
        dest = tmp_path / str(n)
        done = run_cli("stage", f"{served}/train", str(dest), "--quiet", "--json", *args, env=env)
        assert done.returncode == 0, done.stderr
        assert 0 < len(expected) < len(counts)
        assert_same(shards / "train", dest / "train", expected)
        record = json.loads((dest / "train" / ".imnet-stage.json").read_text())
        assert record["shards"] == names(shards / "train", expected) and not record["complete"]
    assert shards_for_ranks(counts, [1], 2) == shards_for_ranks(counts, node_ranks(1, 2, 8), 8)
    torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
    from imnet_data.loader import ShardError, build_loader

    for rank in (0, 1):         # the subset staged for ranks 0-1 of 4 is enough for them, not for rank 2
        loader = build_loader(tmp_path / "0" / "train", batch_size=10, backend="torch", rank=rank, world_size=4,
                              device="cpu", num_threads=2, remainder="partial", order="local")
        assert sum(len(y) for _, y in loader) == 50 and isinstance(next(iter(loader))[1], torch.Tensor)
    with pytest.raises(ShardError, match="missing"):
        build_loader(tmp_path / "0" / "train", batch_size=10, backend="torch", rank=2, world_size=4,
                      device="cpu", order="local")


def test_rank_list_parsing() -> None:
    assert parse_ranks("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    with pytest.raises(ValueError):
        parse_ranks("a-b")


def test_refuses_without_free_space(shards: Path, tmp_path: Path) -> None:
    source = Path(shutil.copytree(shards / "val", tmp_path / "src" / "val"))
    m = manifest(source)
    m["shards"][0]["bytes"] = 2 ** 60                       # a manifest promising an exabyte shard
    (source / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="not enough free space"):
        stage(source, tmp_path / "d", quiet=True)
    assert not list((tmp_path / "d").rglob("*.tar*"))


def test_max_rate_limits_throughput(shards: Path, served: str, tmp_path: Path) -> None:
    rate = 2e6
    report = stage(f"{served}/train", tmp_path / "d", max_rate=rate, jobs=4, quiet=True)
    assert report.ok and report.bytes > 1e6
    assert report.seconds >= 0.9 * (report.bytes - 0.05 * rate) / rate


def test_copy_hashed_in_turn_or_aside_copies_and_hashes_alike(tmp_path: Path) -> None:
    """The loader's cache hashes in its fetch thread (``aside=False``: no helper thread, the CPU on that thread's
    clock), stage in a helper thread: the same bytes written, the same sha256, a copy past its room refused."""
    data = os.urandom(3 * CHUNK + 12345)
    for aside in (True, False):
        src, h, seen = io.BytesIO(data), hashlib.sha256(), []

        def readinto(buf: memoryview, src: io.BytesIO = src, seen: list = seen) -> int:
            seen.append(threading.active_count())
            return src.readinto(buf)

        before = threading.active_count()
        with open(tmp_path / "out", "wb") as out:
            assert copy_hashed(readinto, out, h, CHUNK, len(data), lambda n: None, aside) == len(data)
        assert (tmp_path / "out").read_bytes() == data and h.hexdigest() == hashlib.sha256(data).hexdigest()
        assert max(seen) == before + aside                      # a helper thread only when hashing aside
        with pytest.raises(OverflowError):
            copy_hashed(io.BytesIO(data).readinto, io.BytesIO(), hashlib.sha256(), CHUNK, len(data) - 1,
                        lambda n: None, aside)
