"""Shards streamed from a store into the loader's bounded cache, against moto's S3 server on loopback (and, for
503 SlowDown and a kill mid-download, the fault proxy of ``tests/test_s3.py`` in front of it; for 10,000 shards a
small HTTP server that serves one shard under every name): labels, the cache limit, hits of staged shards,
a corrupted object, a manifest changed under the job, a cache of other data, a full disk, resume after a kill."""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.shards import ShardOptions, shard
from imnet_data.shards.publish import upload
from imnet_data.stage import stage
from tests.helpers import ROOT, QuietHandler
from tests.servers import moto_server, nginx

boto3 = pytest.importorskip("boto3", reason="the object-store tests need boto3: pip install -e '.[test]'")
pytest.importorskip("moto.server", reason="the object-store tests need moto's server: pip install 'moto[server]'")
torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
from imnet_data.loader import ShardError, build_loader  # noqa: E402
from tests.test_s3 import S3Proxy  # noqa: E402

FAST = {"retries": 2, "backoff": 0.01}
COMMON = {"batch_size": 8, "device": "cpu", "num_threads": 1, "image_size": 16, "shuffle_window": 2, **FAST}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("stream") / "src",
                     FakeOptions(classes=6, train_per_class=40, val_images=12, seed=3), quiet=True)


@pytest.fixture(scope="module")
def local(fake: FakeResult) -> Path:
    dest = fake.out.parent / "local"
    shard(fake.out, dest, ShardOptions(samples_per_shard=10), quiet=True)
    return dest


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's environment for this store (nothing read from ~/.aws)."""
    for name, value in env(endpoint).items():
        monkeypatch.setenv(name, value)
    return endpoint


def env(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def bucket_with(local: Path, endpoint: str) -> str:
    """A new bucket holding the shard set: ``s3://bucket/imagenet``."""
    name = f"imnet-{uuid.uuid4().hex[:12]}"
    client(endpoint).create_bucket(Bucket=name)
    assert upload(local, f"s3://{name}/imagenet").ok
    return f"s3://{name}/imagenet"


def client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def truth(local: Path, split: str) -> dict[str, int]:
    import webdataset as wds

    folder = local / split
    names = [str(folder / s["name"]) for s in json.loads((folder / "manifest.json").read_text())["shards"]]
    return {s["__key__"]: int(s["cls"]) for s in wds.WebDataset(names, shardshuffle=False)}


def shard_bytes(local: Path, split: str = "train") -> list[int]:
    shards = json.loads((local / split / "manifest.json").read_text())["shards"]
    return [s["bytes"] + s["index"]["bytes"] for s in shards]


class Watch:
    """The most bytes the cache folder held (its files, partial ones included), sampled every 5 ms."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self.stop = folder, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for p in self.folder.glob("*.[ti][ad]*"):      # .tar, .idx and their .partial
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.005)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def epoch(loader, want: dict[str, int]) -> list[str]:
    """The keys of one epoch, each batch's labels checked against what the schedule says it holds."""
    keys = []
    for step, (_x, y) in enumerate(loader):
        batch = loader.batch_keys(step)
        assert y.tolist() == [want[k] if k else -1 for k in batch]
        keys += [k for k in batch if k]
    return keys


@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_streamed_epoch_every_label_within_the_cache_limit(local: Path, aws: str, tmp_path: Path,
                                                           backend: str) -> None:
    if backend == "dali":
        pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install nvidia-dali-cuda130")
    url, sizes = bucket_with(local, aws), shard_bytes(local)
    want = truth(local, "train")
    limit = 5 * max(sizes)          # 5 of 24 shards: batches of 4 in flight span 2 windows of 1 shard, and 1 more
    settings = {**COMMON, "batch_size": 4, "prefetch": 1, "shuffle_window": 1}
    loader = build_loader(f"{url}/train", backend=backend, cache=str(tmp_path / "cache"), cache_limit=limit,
                          read_ahead=2, remainder="pad", **settings)
    with Watch(tmp_path / "cache" / "train") as watch:
        keys = epoch(loader, want)
    assert sorted(keys) == sorted(want)                                  # every sample once
    stats = loader.stats()
    assert stats["fetched"] >= len(sizes) and stats["fetched_bytes"] >= sum(sizes) and stats["evicted"] > 0
    assert stats["hits"] == 0                                            # a cold cache: every shard fetched
    assert watch.peak <= limit + max(sizes), (watch.peak, limit)       # never above limit + one shard
    assert not list((tmp_path / "cache" / "train").glob("*.partial"))
    loader.close()


def test_staged_shards_are_used_without_a_fetch(local: Path, aws: str, tmp_path: Path) -> None:
    url = bucket_with(local, aws)
    want = truth(local, "val")
    assert stage(url, tmp_path / "node", splits=["val"], quiet=True).ok     # the cache folder is stage's layout
    loader = build_loader(url, "val", backend="torch", cache=str(tmp_path / "node"), **COMMON)
    assert sorted(epoch(loader, want)) == sorted(want)
    stats = loader.stats()
    assert stats["fetched_bytes"] == 0 and stats["hits"] == len(shard_bytes(local, "val"))
    loader.close()


def test_streamed_over_http_from_nginx(local: Path, tmp_path: Path) -> None:
    want = truth(local, "val")
    with nginx(local, tmp_path / "nginx") as url:
        loader = build_loader(url, "val", backend="torch", cache=str(tmp_path / "cache"), **COMMON)
        assert sorted(epoch(loader, want)) == sorted(want)
        stats = loader.stats()
        assert stats["fetched"] == len(shard_bytes(local, "val")) and stats["hits"] == 0
        assert stats["fetched_bytes"] == sum(shard_bytes(local, "val"))        # each byte counted once
        assert stats["fetch_cpu_s"] > 0          # the fetch threads' CPU (requests, reads, sha256, writes)
        loader.close()


def test_train_imagenet_trains_from_s3(local: Path, aws: str, tmp_path: Path) -> None:
    pytest.importorskip("torchvision", reason="the training script builds a torchvision model")
    url = bucket_with(local, aws)
    (tmp_path / "record").mkdir()
    cmd = [sys.executable, str(ROOT / "tools" / "train_imagenet.py"), "--data", url, "--cache", str(tmp_path / "c"),
           "--cache-limit", "50MB", "--arch", "resnet18", "--epochs", "1", "--batch-size", "8", "--backend", "torch",
           "--device", "cpu", "--threads", "0", "--min-res", "32", "--max-res", "32", "--max-steps", "4",
           "--checkpoint", str(tmp_path / "ck.pt"), "--record", str(tmp_path / "record")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    trained = [json.loads(line)["keys"] for line in (tmp_path / "record" / "rank0.jsonl").read_text().splitlines()]
    schedule = build_loader(local, "train", 8, backend="torch", device="cpu", image_size=32)
    assert trained == [schedule.batch_keys(s) for s in range(4)]
    assert (tmp_path / "c" / "train" / "manifest.json").read_bytes() == (local / "train" / "manifest.json").read_bytes()
    assert list((tmp_path / "c" / "train").glob("*.tar")) and not list((tmp_path / "c").glob("*/*.partial"))


def test_a_full_disk_during_a_fetch_is_one_clear_line(local: Path, aws: str, tmp_path: Path) -> None:
    pytest.importorskip("torchvision", reason="the training script builds a torchvision model")
    url, cache = bucket_with(local, aws), tmp_path / "cache"
    for split in ("train", "val"):           # the cache claimed already: from now on only shards are written
        (cache / split).mkdir(parents=True)
        (cache / split / "manifest.json").write_bytes((local / split / "manifest.json").read_bytes())
    room = 4096                              # bytes a file may have: every index fits, no shard does
    assert max(shard_bytes(local)) > min(shard_bytes(local)) > 2 * room
    cmd = [sys.executable, str(ROOT / "tools" / "train_imagenet.py"), "--data", url, "--cache", str(cache),
           "--arch", "resnet18", "--epochs", "1", "--batch-size", "8", "--backend", "torch", "--device", "cpu",
           "--threads", "0", "--min-res", "32", "--max-res", "32", "--max-steps", "2",
           "--checkpoint", str(tmp_path / "ck.pt")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"},     # writes past ``room`` fail: EFBIG
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (room, room)))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"train_imagenet\.py: {url}/train/\S+\.tar: cannot be written into the cache "
                        rf"{cache / 'train'}: the file size limit was reached \(ulimit -f\) \([\d.,]+ GB free "
                        r"there\): free space on that disk, lower cache_limit, or give cache= a folder on a larger "
                        r"disk \(the partial file is resumed\)", line), line
    partial = list((cache / "train").glob("*.tar.partial"))
    assert partial and all(p.stat().st_size <= room for p in partial)     # what it got, kept to resume
    assert not list((cache / "train").glob("*.tar"))                       # none complete, none mapped
    assert not (tmp_path / "ck.pt").exists()


def test_a_corrupted_object_is_refused_before_use(local: Path, aws: str, tmp_path: Path) -> None:
    url = bucket_with(local, aws)
    bucket, prefix = url[5:].split("/", 1)
    name = json.loads((local / "val" / "manifest.json").read_text())["shards"][1]["name"]
    body = bytearray((local / "val" / name).read_bytes())
    body[len(body) // 2] ^= 0xFF                                # same size, one byte flipped
    client(aws).put_object(Bucket=bucket, Key=f"{prefix}/val/{name}", Body=bytes(body))
    loader = build_loader(url, "val", backend="torch", cache=str(tmp_path / "cache"), order="local", **COMMON)
    with pytest.raises(ShardError, match=f"{url}/val/{name}: failed after 3 attempts; last: Retry: sha256 .* "
                                         "differs from the manifest's"):
        list(loader)
    assert not (tmp_path / "cache" / "val" / name).exists()     # never under its final name, never mapped
    loader.close()


def test_a_manifest_changed_under_the_job_is_refused_by_name(local: Path, fake: FakeResult, aws: str,
                                                             tmp_path: Path) -> None:
    url = bucket_with(local, aws)
    loader = build_loader(f"{url}/train", backend="torch", cache=str(tmp_path / "cache"), read_ahead=1,
                          fetch_jobs=1, cache_limit=14 * max(shard_bytes(local)), **COMMON)
    batches = iter(loader)
    next(batches)
    other = fake.out.parent / "other"                            # the same download sharded with another seed
    shard(fake.out, other, ShardOptions(samples_per_shard=10, seed=9), splits=["train"], quiet=True)
    assert upload(other, url, overwrite=True).ok
    with pytest.raises(ShardError, match=rf"{url}/train/manifest.json: the manifest changed under this job "
                                         r"\(sha256 [0-9a-f]{12}\.\.\. -> [0-9a-f]{12}\.\.\.\)"):
        list(batches)
    loader.close()


def test_a_cache_of_other_data_and_a_limit_the_disk_cannot_give_are_refused(local: Path, aws: str,
                                                                           tmp_path: Path) -> None:
    url = bucket_with(local, aws)
    cache = tmp_path / "cache"
    (cache / "train").mkdir(parents=True)
    (cache / "train" / "manifest.json").write_bytes(b'{"another": "job"}')
    with pytest.raises(ShardError, match=f"{cache / 'train'}: a cache of other data .* jobs with different data "
                                         "cannot share a cache folder"):
        build_loader(f"{url}/train", backend="torch", cache=str(cache), **COMMON)
    with pytest.raises(ShardError, match=r"cache_limit 1,000,000,000.00 GB, but its disk has .* GB free"):
        build_loader(f"{url}/train", backend="torch", cache=str(tmp_path / "c2"), cache_limit="1000000TB",
                     **COMMON)
    with pytest.raises(ShardError, match="cannot hold the 6 windows of 2 shards the batches in flight can span "
                                         "and one more"):
        build_loader(f"{url}/train", backend="torch", cache=str(tmp_path / "c3"), cache_limit="1kB", **COMMON)
    with pytest.raises(ShardError, match=f"{url}/nothing: no manifest.json"):
        build_loader(f"{url}/nothing", backend="torch", cache=str(tmp_path / "c4"), **COMMON)


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Proxy]:
    server = S3Proxy(aws, stall=30.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    yield server
    server.shutdown()
    server.server_close()


def test_slowdown_is_retried(local: Path, aws: str, proxy: S3Proxy, tmp_path: Path) -> None:
    url = bucket_with(local, aws)
    name = json.loads((local / "val" / "manifest.json").read_text())["shards"][0]["name"]
    path = f"{url[5:]}/val/{name}"
    proxy.plan(path, "slowdown", "500")
    loader = build_loader(url, "val", backend="torch", cache=str(tmp_path / "cache"), **COMMON)
    want = truth(local, "val")
    assert sorted(epoch(loader, want)) == sorted(want)
    assert len(proxy.requests(path)) == 3 and loader.stats()["retries"] == 2
    loader.close()


def test_the_first_shards_are_fetched_when_the_loader_is_built(local: Path, aws: str, tmp_path: Path) -> None:
    url, sizes = bucket_with(local, aws), shard_bytes(local)
    same = build_loader(local, "train", backend="torch", **COMMON)          # the same schedule, read locally
    where, first = shard_of(local, "train"), []                              # the shards in order of first need
    for step in range(len(same)):
        first += [s for s in dict.fromkeys(where[k] for k in same.batch_keys(step) if k) if s not in first]
    loader = build_loader(f"{url}/train", backend="torch", cache=str(tmp_path / "cache"), read_ahead=2,
                          cache_limit=14 * max(sizes), **COMMON)
    folder = tmp_path / "cache" / "train"
    deadline = time.monotonic() + 30
    while loader.stats()["fetched"] < 3 and time.monotonic() < deadline:    # not iterated: nothing asked for
        time.sleep(0.02)
    time.sleep(0.3)                                       # time to fetch more, were the window not honoured
    cached = sorted(p.name for p in folder.glob("*.tar"))
    assert cached == sorted(first[:3]), (cached, first[:3])   # the shard needed first and read_ahead=2 more
    assert not list(folder.glob("*.partial"))
    for name in cached:                                   # complete, and the manifest's bytes
        assert (folder / name).read_bytes() == (local / "train" / name).read_bytes()
    want = truth(local, "train")
    assert sorted(epoch(loader, want)) == sorted(want)
    assert loader.stats()["hits"] == 0 and loader.stats()["fetched"] == len(sizes)
    loader.close()


def shard_of(local: Path, split: str) -> dict[str, str]:
    """The shard file name of every sample key of a split."""
    import webdataset as wds

    folder = local / split
    names = [str(folder / s["name"]) for s in json.loads((folder / "manifest.json").read_text())["shards"]]
    return {s["__key__"]: Path(s["__url__"]).name for s in wds.WebDataset(names, shardshuffle=False)}


KILLED = """
import sys, time
from imnet_data.loader import build_loader
loader = build_loader(sys.argv[1], "val", batch_size=4, backend="torch", device="cpu", num_threads=0,
                      image_size=16, cache=sys.argv[2], order="local")
if sys.argv[3] == "built":
    time.sleep(600)              # killed while the loader's first fetch runs, before any batch is asked for
for _ in loader:
    pass
"""


@pytest.mark.parametrize("when", ["built", "iterating"])
def test_a_kill_mid_download_resumes(local: Path, aws: str, proxy: S3Proxy, tmp_path: Path, when: str) -> None:
    url = bucket_with(local, aws)
    name = json.loads((local / "val" / "manifest.json").read_text())["shards"][0]["name"]
    path, size = f"{url[5:]}/val/{name}", (local / "val" / name).stat().st_size
    proxy.plan(path, "stall")                    # half the body, then silence: the download hangs half-way
    partial = tmp_path / "cache" / "val" / f"{name}.partial"
    job = subprocess.Popen([sys.executable, "-c", KILLED, url, str(tmp_path / "cache"), when], cwd=ROOT,
                           env={**os.environ, **env(proxy.url)})
    deadline = time.monotonic() + 60
    while not (partial.is_file() and partial.stat().st_size >= size // 2) and time.monotonic() < deadline:
        assert job.poll() is None, "the job ended before it could be killed"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    half = partial.stat().st_size
    assert 0 < half < size and not (tmp_path / "cache" / "val" / name).exists()
    loader = build_loader(url, "val", backend="torch", cache=str(tmp_path / "cache"), order="local", **COMMON)
    want = truth(local, "val")
    assert sorted(epoch(loader, want)) == sorted(want)
    assert proxy.requests(path)[-1] == f"bytes={half}-"         # resumed where the killed job stopped
    assert not partial.exists()
    loader.close()


# ---- 10,000 shards: memory does not grow with the manifest -----------------------------------------------------

class ManyShards(ThreadingHTTPServer):
    """Serves a manifest of ``count`` shards, every one of them the same real shard (and index) bytes."""

    daemon_threads = True

    def __init__(self, folder: Path, count: int) -> None:
        super().__init__(("127.0.0.1", 0), ManyHandler)
        manifest = json.loads((folder / "manifest.json").read_text())
        one = manifest["shards"][0]
        self.tar, self.idx = (folder / one["name"]).read_bytes(), (folder / one["index"]["name"]).read_bytes()
        manifest["shards"] = [{**one, "name": f"many-{i:06d}.tar",
                               "index": {**one["index"], "name": f"many-{i:06d}.idx"}} for i in range(count)]
        manifest["num_samples"] = one["samples"] * count
        self.manifest = json.dumps(manifest).encode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ManyHandler(QuietHandler):
    server: ManyShards

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        body = {"manifest.json": self.server.manifest}.get(name) or (
            self.server.tar if name.endswith(".tar") else self.server.idx if name.endswith(".idx") else None)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.parametrize("count", [10_000])
def test_memory_does_not_grow_with_the_shard_count(local: Path, tmp_path: Path, count: int) -> None:
    import tracemalloc

    server = ManyShards(local / "train", count)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        loader = build_loader(server.url, "train", backend="torch", cache=str(tmp_path / "cache"),
                              cache_limit=16 * (len(server.tar) + len(server.idx)), **COMMON)
        held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        batches, rss, fds = iter(loader), [], []
        for step in range(60):
            next(batches)
            if step in (10, 59):
                rss.append(rss_mb())
                fds.append(len(os.listdir("/proc/self/fd")))
        assert held < 12e6, f"{held / 1e6:.1f} MB held for {count} shards"      # < 1.2 kB a shard listed
        assert rss[1] - rss[0] < 10, rss                # 50 more batches, ~45 more shards: no growth
        assert fds[1] - fds[0] < 8, fds                 # no descriptor kept per shard used
        assert loader.stats()["fetched"] >= 40 and len(list((tmp_path / "cache" / "train").glob("*.tar"))) <= 17
        loader.close()
    finally:
        server.shutdown()
        server.server_close()
