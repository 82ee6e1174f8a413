"""Shards in object storage, against a real S3-protocol server on loopback: moto's standalone server
(``moto[server]``), started here in its own process with authentication on (an IAM user and key made at
start), and a fault-injecting proxy in front of it (stdlib, threaded) that drops connections, answers 503
SlowDown or 500, truncates, corrupts or stalls bodies, and logs every request so order and resume can be
asserted. shard -> bucket -> stage -> loader, upload, merge, resume, errors."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from imnet_data import catalog
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.shards import ShardOptions, shard
from imnet_data.shards.publish import Uploader, upload
from imnet_data.stage import stage
from imnet_data.stores.base import file_sha256
from tests.helpers import FaultPlan, QuietHandler, run_cli, send_faulty
from tests.servers import moto_server

boto3 = pytest.importorskip("boto3", reason="the object-store tests need boto3: pip install -e '.[test]'")
pytest.importorskip("moto.server", reason="the object-store tests need moto's server: pip install 'moto[server]'")

FAST = {"retries": 3, "backoff": 0.01}
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your '
            b'request rate.</Message><RequestId>0</RequestId></Error>')
INTERNAL = SLOWDOWN.replace(b"SlowDown", b"InternalError")


@dataclass
class S3Server:
    """A running moto server: its endpoint and the one IAM user's key."""

    endpoint: str
    key: str
    secret: str

    def env(self, endpoint: str | None = None, **changes: str) -> dict[str, str]:
        """The variables a user sets for this store (nothing read from ~/.aws)."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint or self.endpoint, "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **changes}

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=self.key,
                            aws_secret_access_key=self.secret)

    def bucket(self) -> str:
        name = f"imnet-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's server with authentication on: one IAM user allowed everything on S3, and its key."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log", auth=True) as endpoint:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="trainer")
        iam.put_user_policy(UserName="trainer", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture
def aws(s3server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The environment of a user of this store, for calls into the library."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3server.env().items():
        monkeypatch.setenv(name, value)
    return s3server


class S3Proxy(ThreadingHTTPServer, FaultPlan):
    """Forwards every request to the S3 server (signatures stay valid: the Host header is kept), with faults
    planned per object path (``bucket/key``) and request: those of :func:`~tests.helpers.send_faulty` on the
    answer's body, ``slowdown`` (503 SlowDown) and ``500`` (InternalError) instead of forwarding. Planned as
    ``"PUT bucket/key"`` they hit uploads."""

    daemon_threads = True

    def __init__(self, upstream: str, stall: float = 2.0) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), ProxyHandler)
        FaultPlan.__init__(self, stall)
        self.upstream = urlsplit(upstream)
        self.signed: list[bool] = []      # per request: whether it carried a signature


class ProxyHandler(QuietHandler):
    server: S3Proxy

    def forward(self) -> None:
        path = unquote(urlsplit(self.path).path).lstrip("/")
        fault = self.server.take(self.command, path, self.headers.get("Range"), self.client_address)
        self.server.signed.append("Authorization" in self.headers)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fault in ("slowdown", "500"):
            return send_faulty(self, 503 if fault == "slowdown" else 500, [("Content-Type", "application/xml")],
                               SLOWDOWN if fault == "slowdown" else INTERNAL, None, 0)
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        with contextlib.closing(up):
            up.request(self.command, self.path, body=body or None,
                       headers={k: v for k, v in self.headers.items() if k.lower() != "expect"})
            answer = up.getresponse()
            data = answer.read()
        headers = [(k, v) for k, v in answer.getheaders()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date")]
        if self.command == "HEAD":
            self.send_response(answer.status)
            for k, v in headers + [("Content-Length", answer.getheader("Content-Length", "0"))]:
                self.send_header(k, v)
            return self.end_headers()
        send_faulty(self, answer.status, headers, data, fault, self.server.stall)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward


@pytest.fixture
def proxy(s3server: S3Server, monkeypatch: pytest.MonkeyPatch, aws: S3Server) -> Iterator[S3Proxy]:
    """The fault proxy, set as the endpoint (``AWS_ENDPOINT_URL``) of the library calls."""
    server = S3Proxy(s3server.endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("s3") / "src",
                     FakeOptions(classes=10, train_per_class=20, val_images=20), quiet=True)


@pytest.fixture(scope="module")
def local(fake: FakeResult) -> Path:
    """The same download sharded into a folder: what every object-store run must reproduce byte for byte."""
    dest = fake.out.parent / "local"
    shard(fake.out, dest, ShardOptions(samples_per_shard=20), quiet=True)
    return dest


@pytest.fixture(scope="module")
def filled(fake: FakeResult, local: Path, s3server: S3Server) -> str:
    """A bucket holding the shard set (uploaded from the folder): ``s3://bucket/imagenet``."""
    bucket = s3server.bucket()
    with pytest.MonkeyPatch.context() as m:
        for name, value in s3server.env().items():
            m.setenv(name, value)
        assert upload(local, f"s3://{bucket}/imagenet").ok
    return f"s3://{bucket}/imagenet"


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def shard_names(folder: Path) -> list[str]:
    return [s["name"] for s in manifest(folder)["shards"]]


def same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert file_sha256(a / name) == file_sha256(b / name), name


def same_shards(reference: Path, dest: Path) -> None:
    """``dest`` holds the shard set of ``reference``: every tar, idx and manifest byte-equal."""
    for split in ("train", "val"):
        m = manifest(reference / split)
        same_files(reference / split, dest / split,
                   ["manifest.json", "wids.json"] + [n for s in m["shards"] for n in (s["name"], s["index"]["name"])])
    assert not list(dest.rglob("*.partial"))


def truth(fake: FakeResult, split: str) -> dict[str, int]:
    index = {c.wnid: c.index for c in catalog.ilsvrc2012()}
    return {name.rsplit(".", 1)[0]: index[entry["wnid"]] for name, entry in fake.truth[split].items()}


# ---- the whole way: download -> bucket -> node disk -> loader ------------------------------------------------

def test_shard_into_bucket_stage_and_load_every_label(fake: FakeResult, local: Path, s3server: S3Server,
                                                      tmp_path: Path) -> None:
    bucket, env = s3server.bucket(), s3server.env()
    done = run_cli("shard", str(fake.out), f"s3://{bucket}/imagenet", "--samples-per-shard", "20", "--work",
                   str(tmp_path / "work"), "--quiet", "--json", env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and [s["manifest"] for s in out["splits"]] == [
        f"s3://{bucket}/imagenet/{split}/manifest.json" for split in ("train", "val")]
    assert not (tmp_path / "work").exists()                    # every shard uploaded and gone from the work folder
    keys = s3server.keys(bucket)
    for split in ("train", "val"):
        for name in shard_names(local / split):
            assert f"imagenet/{split}/{name}" in keys and f"imagenet/{split}/.imnet-shard/{name}.json" in keys
    assert {"imagenet/_info.json", "imagenet/README.md", "imagenet/val/plan.json.gz"} <= set(keys)
    head = s3server.client().head_object(Bucket=bucket, Key=f"imagenet/val/{shard_names(local / 'val')[0]}")
    assert head["Metadata"]["sha256"] == manifest(local / "val")["shards"][0]["sha256"]

    staged = tmp_path / "node"
    done = run_cli("stage", f"s3://{bucket}/imagenet", str(staged), "--all", "--jobs", "3", "--quiet", "--json",
                   env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and len(report["fetched"]) == 11 and report["mb_per_s"] > 0
    same_shards(local, staged)                                  # the bytes a folder run writes
    secret = s3server.secret.encode()
    assert not any(secret in p.read_bytes() for p in staged.rglob("*") if p.is_file())
    assert secret not in done.stdout.encode() + done.stderr.encode()

    torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
    from imnet_data.loader import build_loader

    for split, remainder in (("val", "partial"), ("train", "drop")):
        want, seen = truth(fake, split), []
        loader = build_loader(staged, split, batch_size=8, backend="torch", device="cpu", num_threads=2,
                              remainder=remainder, image_size=64)
        for step, (_x, y) in enumerate(loader):
            keys = loader.batch_keys(step)
            assert isinstance(y, torch.Tensor) and y.tolist() == [want[k] for k in keys]
            seen += keys
        assert len(set(seen)) == len(seen) == (len(want) if split == "val" else len(want) // 8 * 8)


def test_rerun_skips_what_is_there_and_replaces_what_is_not(fake: FakeResult, local: Path, aws: S3Server,
                                                            tmp_path: Path) -> None:
    bucket = aws.bucket()
    url, options = f"s3://{bucket}/sub", ShardOptions(samples_per_shard=20)
    shard(fake.out, url, options, splits=["train"], work=tmp_path / "w", quiet=True)
    names = shard_names(local / "train")
    s3 = aws.client()
    s3.delete_object(Bucket=bucket, Key=f"sub/train/{names[2]}")
    wrong = (local / "train" / names[5]).read_bytes()[::-1]          # same size, other bytes, no sha256 metadata
    s3.put_object(Bucket=bucket, Key=f"sub/train/{names[5]}", Body=wrong)
    s3.delete_object(Bucket=bucket, Key="sub/train/manifest.json")
    report = shard(fake.out, url, options, splits=["train"], work=tmp_path / "w", quiet=True)
    (split,) = report.splits
    assert report.ok and split.written == [names[2], names[5]] and split.kept == len(names) - 2
    staged = stage(url, tmp_path / "node", quiet=True)
    assert staged.ok
    same_files(local / "train", tmp_path / "node" / "train", names + ["manifest.json"])


def test_shard_into_bucket_refuses_another_plan(fake: FakeResult, aws: S3Server, tmp_path: Path) -> None:
    url = f"s3://{aws.bucket()}/x"
    shard(fake.out, url, ShardOptions(samples_per_shard=20), splits=["val"], work=tmp_path / "w", quiet=True)
    with pytest.raises(ValueError, match="different plan.*options"):
        shard(fake.out, url, ShardOptions(samples_per_shard=7), splits=["val"], work=tmp_path / "w", quiet=True)
    report = shard(fake.out, url, ShardOptions(samples_per_shard=7), splits=["val"], work=tmp_path / "w",
                   overwrite=True, quiet=True)
    assert report.ok and len(report.splits[0].written) == 3
    assert len([k for k in aws.keys(url.split("/")[2]) if k.endswith(".tar")]) == 3   # the old 1 is gone


def test_every_request_of_a_shard_run_is_retried(fake: FakeResult, aws: S3Server, proxy: S3Proxy,
                                                  tmp_path: Path) -> None:
    """Not only the shards' uploads: a SlowDown on the plan's PUT, on a shard's HEAD and on the manifest's PUT
    is retried, and the run ends with its manifest."""
    bucket = aws.bucket()
    for request in ("PUT {}/s/val/plan.json.gz", "HEAD {}/s/val/imagenet-1k-val-000000.tar",
                    "PUT {}/s/val/manifest.json"):
        proxy.plan(request.format(bucket), "slowdown")
    report = shard(fake.out, f"s3://{bucket}/s", ShardOptions(samples_per_shard=7), splits=["val"],
                   work=tmp_path / "w", quiet=True)
    assert report.ok and report.splits[0].manifest == f"s3://{bucket}/s/val/manifest.json"
    for request in ("PUT {}/s/val/plan.json.gz", "HEAD {}/s/val/imagenet-1k-val-000000.tar",
                    "PUT {}/s/val/manifest.json"):
        method, path = request.format(bucket).split(" ")
        assert proxy.calls.count((method, path)) >= 2, request        # refused once, then sent again


def test_multi_node_shard_into_one_prefix_then_merge(fake: FakeResult, local: Path, aws: S3Server,
                                                     tmp_path: Path) -> None:
    bucket = aws.bucket()
    url = f"s3://{bucket}/mn"
    for rank in (0, 1):
        done = run_cli("shard", str(fake.out), url, "--samples-per-shard", "20", "--num-nodes", "2", "--node-rank",
                       str(rank), "--work", str(tmp_path / f"w{rank}"), "--quiet", "--json", env=aws.env())
        assert done.returncode == 0, done.stderr
        assert all(s["manifest"] is None for s in json.loads(done.stdout)["splits"])
    assert not [k for k in aws.keys(bucket) if k.endswith("manifest.json")]
    done = run_cli("shard", "--merge", url, "--json", env=aws.env())
    assert done.returncode == 0, done.stderr
    assert [m["split"] for m in json.loads(done.stdout)] == ["train", "val"]
    assert stage(url, tmp_path / "node", quiet=True).ok
    same_shards(local, tmp_path / "node")                       # two nodes, one bucket: one node's bytes


# ---- upload of shards on disk --------------------------------------------------------------------------------

def test_upload_writes_the_manifest_last_and_resumes(local: Path, aws: S3Server, proxy: S3Proxy,
                                                     tmp_path: Path) -> None:
    bucket = aws.bucket()
    url = f"s3://{bucket}/up"
    victim = shard_names(local / "train")[4]
    proxy.plan(f"PUT {bucket}/up/train/{victim}", *["500"] * 4)        # one shard cannot go up, this run
    first = upload(local, url, jobs=3, **FAST)
    assert not first.ok and [f["shard"] for f in first.failed] == [f"train/{victim}"]
    assert "4 attempts" in first.failed[0]["reason"] and f"{bucket}/up/train/{victim}" in first.failed[0]["reason"]
    keys = aws.keys(bucket)
    assert "up/train/manifest.json" not in keys and "up/val/manifest.json" in keys   # no manifest for train
    puts = [p for m, p in proxy.calls if m == "PUT"]
    val = [p for p in puts if p.startswith(f"{bucket}/up/val/")]
    assert val[-1] == f"{bucket}/up/val/manifest.json" and val[0] == f"{bucket}/up/val/plan.json.gz"
    assert puts.index(f"{bucket}/up/_info.json") > puts.index(f"{bucket}/up/val/manifest.json")

    proxy.calls.clear()
    second = upload(local, url, jobs=3, **FAST)
    assert second.ok and second.uploaded == [f"train/{victim}"] and len(second.skipped) == 10
    assert [p.rsplit("/", 1)[1] for m, p in proxy.calls if m == "PUT" and "/train/" in p] == [
        victim, victim.replace(".tar", ".idx"), f"{victim}.json", "wids.json", "manifest.json"]
    third = run_cli("upload", str(local), url, "--json", env=aws.env())
    assert third.returncode == 0 and json.loads(third.stdout)["bytes"] == 0      # all there: nothing sent
    staged = stage(url, tmp_path / "node", quiet=True)
    assert staged.ok
    same_shards(local, tmp_path / "node")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: --jobs 0 is one upload")
def test_upload_jobs_0_means_one_upload_per_core(local: Path, aws: S3Server, proxy: S3Proxy, tmp_path: Path) -> None:
    bucket = aws.bucket()
    proxy.meet(*(f"PUT {bucket}/j/train/{name}" for name in shard_names(local / "train")[:2]))
    done = run_cli("upload", str(local), f"s3://{bucket}/j", "--jobs", "0", "-q", env=aws.env(proxy.url))
    assert done.returncode == 0, done.stderr
    assert not proxy.meeting.broken           # shards 0 and 1 went up at the same time
    assert stage(f"s3://{bucket}/j", tmp_path / "node", quiet=True).ok
    same_shards(local, tmp_path / "node")


def test_upload_refuses_a_changed_shard_and_another_plan(fake: FakeResult, local: Path, aws: S3Server,
                                                         tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(local, tmp_path / "copy"))
    victim = copy / "val" / shard_names(copy / "val")[0]
    data = bytearray(victim.read_bytes())
    data[-2000] ^= 1                                       # damaged on disk after it was written
    victim.write_bytes(data)
    bucket = aws.bucket()
    report = upload(copy, f"s3://{bucket}/c", splits=["val"], **FAST)
    assert not report.ok and "changed after it was written" in report.failed[0]["reason"]
    assert f"c/val/{victim.name}" not in aws.keys(bucket)          # never under its name
    other = tmp_path / "other"
    shard(fake.out, other, ShardOptions(samples_per_shard=7), splits=["val"], quiet=True)
    assert upload(local, f"s3://{bucket}/d", splits=["val"]).ok
    with pytest.raises(ValueError, match="different plan"):
        upload(other, f"s3://{bucket}/d", splits=["val"])
    assert run_cli("upload", str(other), f"s3://{bucket}/d", "--splits", "val", env=aws.env()).returncode == 1
    assert upload(other, f"s3://{bucket}/d", splits=["val"], overwrite=True).ok


def test_large_files_go_up_in_parts_checked_and_a_failed_upload_leaves_nothing(aws: S3Server, proxy: S3Proxy,
                                                                                   tmp_path: Path) -> None:
    """From PART bytes a file goes up as a multipart upload (the default 1 GB shards always do): the object is
    the file, assembled from parts, with its sha256 as metadata. A throttled part is sent again (not the whole
    file). A part refused past the retries, or a file whose bytes are not its recorded sha256, aborts the
    upload: no object under the name, no upload left pending."""
    from imnet_data.stores.base import Stat
    from imnet_data.stores.errors import Retry, StoreError
    from imnet_data.stores.s3 import PART, s3_store

    bucket = aws.bucket()
    big = tmp_path / "big.tar"
    big.write_bytes(os.urandom(PART + (1 << 20)))
    digest = file_sha256(big)
    pending = lambda: aws.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])  # noqa: E731
    with s3_store(f"s3://{bucket}/p", 1, (10.0, 60.0)) as store:
        proxy.plan(f"PUT {bucket}/p/failed.tar", None, "500")               # part 2 refused
        with pytest.raises(Retry, match=f"s3://{bucket}/p/failed.tar: InternalError"):
            store.put("failed.tar", big, digest)
        with pytest.raises(StoreError, match=f"{big}: sha256 .* is not the recorded"):
            store.put("changed.tar", big, "0" * 64)
        assert aws.keys(bucket) == [] and pending() == []
    uploader = Uploader(retries=2, backoff=0.01)
    with s3_store(f"s3://{bucket}/p", 1, (10.0, 60.0), uploader.retry) as store:    # the uploader's policy
        proxy.plan(f"PUT {bucket}/p/big.tar", None, "slowdown")              # part 2 throttled once
        assert uploader.send(store, "big.tar", big, digest) and uploader.retried == 1
        assert store.stat("big.tar") == Stat(PART + (1 << 20), digest) and store.sha256("big.tar") == digest
    assert aws.client().head_object(Bucket=bucket, Key="p/big.tar")["ETag"].strip('"').endswith("-2")  # 2 parts
    assert [p for m, p in proxy.calls if m == "PUT"].count(f"{bucket}/p/big.tar") == 3   # the part again, no more
    assert aws.keys(bucket) == ["p/big.tar"] and pending() == []


# ---- faults while staging: retries, resume, checksums --------------------------------------------------------

def victim_of(filled: str, local: Path) -> tuple[str, int]:
    """The object path of val's shard and its size."""
    name = shard_names(local / "val")[0]
    return f"{filled[5:]}/val/{name}", (local / "val" / name).stat().st_size


@pytest.mark.parametrize("fault", ["drop", "truncate", "slowdown", "500", "corrupt"])
def test_transient_faults_are_retried_and_resumed(local: Path, filled: str, proxy: S3Proxy, tmp_path: Path,
                                                  fault: str) -> None:
    victim, size = victim_of(filled, local)
    proxy.plan(victim, fault, fault)
    report = stage(f"{filled}/val", tmp_path / "d", jobs=2, quiet=True, **FAST)
    assert report.ok and report.retries == 2
    assert len(proxy.clients) <= 2 + 2                    # kept alive: a connection per thread, and per break
    ranges = proxy.requests(victim)
    if fault == "truncate":                               # resumed where the body broke off
        assert ranges[0] is None and ranges[1] == f"bytes={size // 2}-" and report.resumed == 2
    elif fault == "drop":                                 # a reset may lose some of what was sent: resumed or anew
        assert ranges[0] is None and len(ranges) == 3
    else:                                                 # nothing kept (no body, or a bad checksum)
        assert ranges == [None, None, None]
    same_files(local / "val", tmp_path / "d" / "val", shard_names(local / "val") + ["manifest.json"])


def test_stalled_body_times_out_and_resumes(local: Path, filled: str, proxy: S3Proxy, tmp_path: Path) -> None:
    """A stalled read times out and resumes after the last whole block written (``--max-rate`` 1 MB/s makes the
    blocks 50 kB, smaller than the half body the proxy sends before it stalls)."""
    victim, size = victim_of(filled, local)
    assert size // 2 > 50_000
    proxy.plan(victim, "stall")
    start = time.monotonic()
    report = stage(f"{filled}/val", tmp_path / "d", timeout=(2, 0.3), max_rate=1e6, quiet=True, **FAST)
    assert report.ok and report.retries == 1 and report.resumed == 1 and time.monotonic() - start < proxy.stall
    assert proxy.requests(victim) == [None, "bytes=50000-"]
    same_files(local / "val", tmp_path / "d" / "val", shard_names(local / "val"))


def test_corrupted_object_never_lands(local: Path, filled: str, proxy: S3Proxy, aws: S3Server,
                                      tmp_path: Path) -> None:
    victim, _ = victim_of(filled, local)
    proxy.plan(victim, *["corrupt"] * 5)
    done = run_cli("stage", f"{filled}/val", str(tmp_path / "d"), "--retries", "2", "--json", "--quiet",
                   env=aws.env(proxy.url))
    assert done.returncode == 1
    failed = json.loads(done.stdout)["failed"]
    assert len(failed) == 1 and "sha256" in failed[0]["reason"] and victim in failed[0]["reason"]
    name = victim.rsplit("/", 1)[1]
    assert not (tmp_path / "d" / "val" / name).exists() and not list((tmp_path / "d").rglob("*.partial"))
    assert not (tmp_path / "d" / "val" / "manifest.json").exists()


# ---- permanent errors: at once, naming the object or bucket --------------------------------------------------

def test_missing_object_and_bucket_fail_at_once(local: Path, fake: FakeResult, aws: S3Server, proxy: S3Proxy,
                                                tmp_path: Path) -> None:
    bucket = aws.bucket()
    url = f"s3://{bucket}/m"
    assert upload(local, url, splits=["val"]).ok
    name = shard_names(local / "val")[0]
    aws.client().delete_object(Bucket=bucket, Key=f"m/val/{name}")
    report = stage(url, tmp_path / "d", quiet=True, **FAST)
    assert [f["shard"] for f in report.failed] == [f"val/{name}"]
    assert "NoSuchKey" in report.failed[0]["reason"] and f"s3://{bucket}/m/val/{name}" in report.failed[0]["reason"]
    assert len(proxy.requests(f"{bucket}/m/val/{name}")) == 1 and report.retries == 0
    done = run_cli("stage", "s3://no-such-bucket-here/x", str(tmp_path / "e"), "--all", env=aws.env())
    assert done.returncode == 1 and "NoSuchBucket" in done.stderr and "'no-such-bucket-here'" in done.stderr
    assert "Traceback" not in done.stderr


def test_wrong_or_no_credentials_name_the_bucket(filled: str, aws: S3Server, tmp_path: Path) -> None:
    bucket = filled.split("/")[2]
    for env in (aws.env(AWS_SECRET_ACCESS_KEY="not-the-secret"), aws.env(AWS_ACCESS_KEY_ID="AKIANOSUCHKEY0000000")):
        done = run_cli("stage", filled, str(tmp_path / "d"), "--all", env=env)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert f"bucket '{bucket}'" in done.stderr and "refused" in done.stderr and "credentials" in done.stderr
        assert "not-the-secret" not in done.stderr and aws.secret not in done.stderr
    assert not list((tmp_path / "d").rglob("*.tar"))


def test_no_credentials_means_unsigned_requests(filled: str, aws: S3Server, proxy: S3Proxy) -> None:
    """Without credentials (a public bucket), requests go unsigned, as the AWS CLI's --no-sign-request (moto
    answers those with a 500 when authentication is on; a public bucket on S3 would serve them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    done = subprocess.run([sys.executable, "-m", "imnet_data", "stage", filled, "unused", "--all", "--retries", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr and filled in done.stderr
    assert proxy.signed and not any(proxy.signed)


def test_manifest_less_prefix_is_refused(aws: S3Server, tmp_path: Path) -> None:
    bucket = aws.bucket()
    aws.client().put_object(Bucket=bucket, Key="junk/val/a.tar", Body=b"x" * 1024)
    done = run_cli("stage", f"s3://{bucket}/junk", str(tmp_path / "d"), "--all", env=aws.env())
    assert done.returncode == 1 and "no manifest.json" in done.stderr and f"s3://{bucket}/junk" in done.stderr
    done = run_cli("stage", f"s3://{bucket}/junk/val", str(tmp_path / "d"), "--all", env=aws.env())
    assert done.returncode == 1 and "no manifest.json" in done.stderr
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").rglob("*.tar"))


def test_gs_urls_use_the_configured_endpoint(local: Path, filled: str, aws: S3Server, tmp_path: Path) -> None:
    report = stage("gs://" + filled[5:] + "/val", tmp_path / "d", quiet=True)   # GCS interop: the S3 protocol
    assert report.ok and report.source.startswith("gs://")
    same_files(local / "val", tmp_path / "d" / "val", shard_names(local / "val"))


def test_usage_errors(fake: FakeResult, local: Path) -> None:
    for args in (("upload", str(local), "http://example.invalid/x"), ("upload", str(local), "s3://"),
                 ("shard", str(fake.out), "http://example.invalid/x")):
        done = run_cli(*args)
        assert done.returncode == 2, (args, done.stderr)
