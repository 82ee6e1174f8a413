"""The store extension point: a store defined here (objects in a dict, ``memory://``), registered with one entry
in ``imnet_data.stores.SCHEMES``, is opened by ``open_store`` and is then a ``shard`` DEST, a ``--merge``
target and a ``stage`` source like a bucket, with the bytes a folder run writes; a read-only one, or one taking
no uploads, is refused as a DEST by the protocol it lacks, not by its class. And the built-in stores answer the
protocols as they should."""
from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from imnet_data.errors import UsageError
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.shards import ShardOptions, merge, shard
from imnet_data.stage import stage
from imnet_data.stores import SCHEMES, FolderStore, HttpStore, S3Store, open_store
from imnet_data.stores.base import ReadableStore, Reader, Stat, UploadStore, WritableStore
from imnet_data.stores.errors import Policy, StoreError

OPTIONS = ShardOptions(samples_per_shard=20)


class MemoryStore:
    """Objects in a dict (shared by every store of one bucket), names below a prefix: the protocol of an
    :class:`UploadStore`, nothing more."""

    def __init__(self, objects: dict[str, bytes], prefix: str) -> None:
        self.objects, self.prefix = objects, prefix.strip("/")

    def __str__(self) -> str:
        return f"memory://{self.prefix}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url(self, name: str) -> str:
        return f"memory://{self.key(name)}"

    def child(self, name: str) -> MemoryStore:
        return MemoryStore(self.objects, self.key(name))

    def local_folder(self) -> None:
        """Not a folder: shards are written into a work folder and put here."""

    def read(self, name: str) -> bytes | None:
        return self.objects.get(self.key(name))

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Reader]]:
        data = self.objects.get(self.key(name))
        if data is None:
            raise StoreError(f"{self.url(name)}: not there")
        body = io.BytesIO(data)
        body.seek(start)
        yield start, body.readinto

    def stat(self, name: str) -> Stat | None:
        data = self.objects.get(self.key(name))
        return None if data is None else Stat(len(data), hashlib.sha256(data).hexdigest())

    def write(self, name: str, data: bytes) -> None:
        self.objects[self.key(name)] = bytes(data)

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.objects[self.key(name)]).hexdigest()

    def names(self) -> list[str]:
        base = self.key("")
        return sorted(k[len(base):] for k in self.objects if k.startswith(base))

    def delete(self, name: str) -> None:
        self.objects.pop(self.key(name), None)

    def put(self, name: str, path: Path, sha256: str) -> None:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"{path}: not the recorded file")
        self.objects[self.key(name)] = data


class ReadOnlyStore:
    """A memory store seen through the reading half of the protocol only (as an HTTP server serves it)."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner

    def __str__(self) -> str:
        return str(self.inner)

    def url(self, name: str) -> str:
        return self.inner.url(name)

    def child(self, name: str) -> ReadOnlyStore:
        return ReadOnlyStore(self.inner.child(name))

    def local_folder(self) -> None:
        """Not a folder."""

    def read(self, name: str) -> bytes | None:
        return self.inner.read(name)

    def open(self, name: str, start: int) -> contextlib.AbstractContextManager[tuple[int, Reader]]:
        return self.inner.open(name, start)


class NoUploadStore(ReadOnlyStore):
    """A memory store that can be written but takes no uploads (no ``put``): a ``--merge`` target, not a DEST
    that shards are written into."""

    def child(self, name: str) -> NoUploadStore:
        return NoUploadStore(self.inner.child(name))

    def stat(self, name: str) -> Stat | None:
        return self.inner.stat(name)

    def write(self, name: str, data: bytes) -> None:
        self.inner.write(name, data)

    def sha256(self, name: str) -> str:
        return self.inner.sha256(name)

    def names(self) -> list[str]:
        return self.inner.names()

    def delete(self, name: str) -> None:
        self.inner.delete(name)


BUCKET: dict[str, bytes] = {}


@contextlib.contextmanager
def memory_store(url: str, jobs: int, timeout: tuple[float, float], policy: Policy) -> Iterator[MemoryStore]:
    """The registry entry of ``memory://prefix``."""
    yield MemoryStore(BUCKET, url.removeprefix("memory://"))


@contextlib.contextmanager
def read_only_store(url: str, jobs: int, timeout: tuple[float, float], policy: Policy) -> Iterator[ReadOnlyStore]:
    """The registry entry of ``memory-ro://prefix``: the same objects, read-only."""
    yield ReadOnlyStore(MemoryStore(BUCKET, url.removeprefix("memory-ro://")))


@contextlib.contextmanager
def no_upload_store(url: str, jobs: int, timeout: tuple[float, float], policy: Policy) -> Iterator[NoUploadStore]:
    """The registry entry of ``memory-wo://prefix``: the same objects, writable, no uploads."""
    yield NoUploadStore(MemoryStore(BUCKET, url.removeprefix("memory-wo://")))


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("stores") / "src", FakeOptions(classes=10, train_per_class=20,
                                                                             val_images=20), quiet=True)


@pytest.fixture(scope="module")
def folder_run(fake: FakeResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same download sharded into a folder: the bytes every store must end up holding."""
    dest = tmp_path_factory.mktemp("folder") / "shards"
    assert shard(fake.out, dest, OPTIONS, quiet=True).ok
    return dest


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """``memory://``, ``memory-ro://`` and ``memory-wo://`` registered (one entry each), over an empty bucket."""
    BUCKET.clear()
    monkeypatch.setitem(SCHEMES, "memory", memory_store)
    monkeypatch.setitem(SCHEMES, "memory-ro", read_only_store)
    monkeypatch.setitem(SCHEMES, "memory-wo", no_upload_store)
    return BUCKET


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_registered_store_is_a_shard_dest_merge_target_and_stage_source(
        fake: FakeResult, folder_run: Path, registered: dict[str, bytes], tmp_path: Path) -> None:
    with open_store("memory://sets/a") as store:
        assert isinstance(store, MemoryStore) and isinstance(store, UploadStore)

    report = shard(fake.out, "memory://sets/a", OPTIONS, work=tmp_path / "work", quiet=True)
    assert report.ok and [s.manifest for s in report.splits] == [
        f"memory://sets/a/{split}/manifest.json" for split in ("train", "val")]
    assert not (tmp_path / "work").exists()                    # every shard put into the store, then removed
    held = {k.removeprefix("sets/a/"): v for k, v in registered.items()}
    assert held == files(folder_run)                           # the bytes of a folder run, file for file

    again = shard(fake.out, "memory://sets/a", OPTIONS, work=tmp_path / "work", quiet=True)
    assert [(s.written, s.kept) for s in again.splits] == [([], 10), ([], 1)]   # resumed through stat()

    manifests = merge("memory://sets/a")
    assert [m["split"] for m in manifests] == ["train", "val"]
    assert {k.removeprefix("sets/a/"): v for k, v in registered.items()} == files(folder_run)

    staged = stage("memory://sets/a", tmp_path / "node", quiet=True)
    assert staged.ok and len(staged.fetched) == 11 and staged.source == "memory://sets/a"
    for split in ("train", "val"):
        want = files(folder_run / split)
        got = files(tmp_path / "node" / split)
        shipped = [n for n in want if n.endswith((".tar", ".idx")) or n in ("manifest.json", "wids.json")]
        assert len(shipped) > 2 and all(got[n] == want[n] for n in shipped)


def test_a_store_is_refused_by_the_protocol_it_lacks(fake: FakeResult, registered: dict[str, bytes],
                                                     tmp_path: Path) -> None:
    assert shard(fake.out, "memory://sets/b", OPTIONS, work=tmp_path / "work", quiet=True).ok
    with open_store("memory-ro://sets/b") as store:
        assert isinstance(store, ReadableStore) and not isinstance(store, WritableStore)
    with open_store("memory-wo://sets/b") as store:
        assert isinstance(store, WritableStore) and not isinstance(store, UploadStore)
    before = dict(registered)
    with pytest.raises(UsageError, match="memory-ro://sets/b: .*read-only"):
        shard(fake.out, "memory-ro://sets/b", OPTIONS, overwrite=True, work=tmp_path / "work2", quiet=True)
    with pytest.raises(UsageError, match="read-only"):
        merge("memory-ro://sets/b")
    with pytest.raises(UsageError, match="memory-wo://sets/c: neither a local folder nor a store that takes uploads"):
        shard(fake.out, "memory-wo://sets/c", OPTIONS, work=tmp_path / "work3", quiet=True)
    assert registered == before                                # refused before anything was written
    assert not (tmp_path / "work2").exists() and not (tmp_path / "work3").exists()
    assert [m["split"] for m in merge("memory-wo://sets/b")] == ["train", "val"]   # writable is enough to merge
    assert registered == before                                # the same manifests, rewritten
    assert stage("memory-ro://sets/b/val", tmp_path / "node", quiet=True).ok


def test_built_in_stores_answer_the_protocols(tmp_path: Path) -> None:
    http = HttpStore("http://127.0.0.1:9/", requests.Session(), (1.0, 1.0))
    folder, bucket = FolderStore(tmp_path), S3Store("s3", "bucket", "prefix", s3=None)
    assert isinstance(http, ReadableStore) and not isinstance(http, WritableStore) and http.local_folder() is None
    assert isinstance(folder, WritableStore) and not isinstance(folder, UploadStore)
    assert folder.local_folder() == tmp_path and folder.child("x").local_folder() == tmp_path / "x"
    assert isinstance(bucket, UploadStore) and bucket.local_folder() is None
    with open_store(tmp_path) as store:
        assert isinstance(store, FolderStore) and store.local_folder() == tmp_path
