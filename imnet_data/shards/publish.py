"""Shards onto an object store, checked and resumable: ``imnet-data upload DEST s3://bucket/prefix`` for shards
already on disk, and the publishing step of ``imnet-data shard SRC s3://...`` (each shard uploaded as soon as
it is written, then removed from the local work folder).

An object counts as present when the store reports the file's size and the sha256 it was uploaded with (its
metadata; with ``verify``, the object's bytes are read back and hashed too); anything else is uploaded
(multipart when large) and checked after it lands (:meth:`~imnet_data.stores.base.UploadStore.put`). The order makes
every partial state harmless: a shard's tar and index before its record, every shard of a split before its
``wids.json`` and, last, its ``manifest.json``, then the root's ``_info.json`` and dataset card. So a reader
never meets a manifest naming an object that is not complete, and a re-run uploads only what is missing.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.parallel import default_jobs
from imnet_data.shards.manifest import MANIFEST, read_manifest
from imnet_data.shards.peers import WIDS, update_info
from imnet_data.shards.planfile import PLAN, read_plan
from imnet_data.shards.target import header, prepare
from imnet_data.shards.verify import split_folders
from imnet_data.shards.writer import record_name
from imnet_data.stores import FolderStore, UploadStore, drop_other, open_store
from imnet_data.stores.base import Stat, TransferReport, file_sha256
from imnet_data.stores.errors import T, reason_or, retrying


@dataclass
class Uploader:
    """Uploads files into a store, skipping the ones already there; counts what it sent (thread-safe)."""

    retries: int = 5
    backoff: float = 0.2
    verify: bool = False
    sent: int = 0
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def present(self, store: UploadStore, name: str, size: int, sha256: str) -> bool:
        """The object is there with the file's size and sha256 (read back too, with ``verify``)."""
        if store.stat(name) != Stat(size, sha256):     # the store's requests are retried by :meth:`retry`
            return False
        return not self.verify or self.retry(store.url(name), lambda: store.sha256(name)) == sha256

    def send(self, store: UploadStore, name: str, path: Path, sha256: str | None = None) -> bool:
        """Upload ``path`` as ``name`` unless present (``sha256``: the recorded one; else computed); whether it
        was sent. StoreError when it cannot be, naming the object and the last error."""
        sha256 = sha256 or file_sha256(path)
        size = path.stat().st_size
        if self.present(store, name, size, sha256):
            return False
        self.retry(store.url(name), lambda: store.put(name, path, sha256))   # landed, but not the file
        self.count(sent=size)
        return True

    def retry(self, label: str, attempt: Callable[[], T]) -> T:
        """``attempt`` under this uploader's policy, each retry counted: the policy of the store it writes to
        (every request: a refused part is sent again, not the whole file), and of whole uploads."""
        return retrying(label, attempt, self.retries, self.backoff, lambda: self.count(retried=1))

    def count(self, sent: int = 0, retried: int = 0) -> None:
        """Add ``sent`` bytes and ``retried`` retries to the totals (from any thread)."""
        with self.lock:
            self.sent, self.retried = self.sent + sent, self.retried + retried

    def send_shard(self, store: UploadStore, folder: Path, shard: dict) -> bool:
        """A shard (its record or manifest entry), its index and, last, its record file when there is one, from
        a split folder; whether anything was sent."""
        sent = [self.send(store, shard["name"], folder / shard["name"], shard["sha256"]),
                self.send(store, shard["index"]["name"], folder / shard["index"]["name"], shard["index"]["sha256"])]
        if (folder / record_name(shard["name"])).is_file():
            sent.append(self.send(store, record_name(shard["name"]), folder / record_name(shard["name"])))
        return any(sent)


class Publisher:
    """The uploads of ``shard SRC s3://...``: each written shard goes up in a thread pool while the next ones
    are written, and leaves the work folder once it is up. At most ``2 * jobs`` wait, so the work folder holds
    a bounded number of shards; failures are collected (the shard stays in the work folder for the next run)."""

    def __init__(self, uploader: Uploader, store: UploadStore, folder: Path, jobs: int) -> None:
        self.uploader, self.store, self.folder, self.jobs = uploader, store, folder, max(jobs, 1)
        self.pool = ThreadPoolExecutor(self.jobs)
        self.pending: dict[Future, str] = {}
        self.failed: list[dict] = []

    def __call__(self, record: dict) -> None:
        """Queue a written shard's upload; waits while ``2 * jobs`` are pending."""
        while len(self.pending) >= 2 * self.jobs:
            self.collect(wait(self.pending, return_when=FIRST_COMPLETED).done)
        self.pending[self.pool.submit(self.publish, record)] = record["name"]

    def publish(self, record: dict) -> None:
        """Upload a shard, its index and record, then remove them from the work folder."""
        self.uploader.send_shard(self.store, self.folder, record)
        for name in (record["name"], record["index"]["name"], record_name(record["name"])):
            (self.folder / name).unlink(missing_ok=True)

    def collect(self, done: Iterable[Future]) -> None:
        """Note the finished uploads; each failed one's reason goes to ``failed``."""
        for future in list(done):
            name = self.pending.pop(future)
            if isinstance(outcome := reason_or(future.result), str):
                self.failed.append({"shard": name, "reason": outcome})

    def close(self) -> list[dict]:
        """Wait for every upload; the failed ones."""
        self.collect(wait(self.pending).done)
        self.pool.shutdown()
        return self.failed


@dataclass
class UploadReport(TransferReport):
    """What :func:`upload` did (``ok`` when nothing failed); ``bytes`` counts what was sent this run."""

    source: str
    dest: str
    splits: list[str]
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)   # {"shard", "reason"}
    manifests: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    retries: int = 0

    def render(self) -> str:
        """Shards sent, already there and failed, the throughput, the manifests, each failure."""
        lines = [f"uploaded {', '.join(self.splits)} from {self.source} to {self.dest}: {len(self.uploaded)} shards "
                 f"sent, {len(self.skipped)} already there, {len(self.failed)} failed",
                 f"  {self.throughput()}; {self.retries} retries"]
        lines += [f"  manifest: {m}" for m in self.manifests]
        lines += [f"  FAILED {f['shard']}: {f['reason']}" for f in self.failed]
        if self.failed:
            lines.append("  no manifest written for a split with failures; run the same command again")
        return "\n".join(lines)


def upload(dest: str | Path, url: str, *, splits: list[str] | None = None, jobs: int = 4, verify: bool = False,
           overwrite: bool = False, retries: int = 5, backoff: float = 0.2,
           timeout: tuple[float, float] = (10.0, 60.0)) -> UploadReport:
    """Upload the shard output folder ``dest`` (or one split folder) to the object-store prefix ``url``,
    ``<prefix>/<split>/`` per split (see the module doc), ``jobs`` at once (0: one per core). A prefix holding
    another plan's shards is refused (ValueError) unless ``overwrite``; failed shards are reported, not raised."""
    start, jobs = time.monotonic(), default_jobs(jobs)
    folders = split_folders(Path(dest), splits)
    up = Uploader(retries, backoff, verify)
    with open_store(url, jobs, timeout, up.retry) as root:
        if not isinstance(root, UploadStore):
            raise UsageError(f"{url}: upload writes to an object store (s3:// or gs://); to copy to a folder, "
                             "use 'imnet-data stage'")
        manifests = [(folder, read_manifest(folder)) for folder in folders]
        report = UploadReport(str(dest), str(root), [m["split"] for _, m in manifests])
        with ThreadPoolExecutor(max(jobs, 1)) as pool:
            for folder, manifest in manifests:
                upload_split(up, pool, folder, manifest, root, overwrite, report)
    report.bytes, report.retries, report.seconds = up.sent, up.retried, time.monotonic() - start
    return report


def upload_split(up: Uploader, pool: ThreadPoolExecutor, folder: Path, manifest: dict, root: UploadStore,
                 overwrite: bool, report: UploadReport) -> None:
    """One split: its plan, its shards in parallel, then (none failed) wids.json, the manifest, the root tables."""
    store = root.child(manifest["split"])
    plan = read_plan(FolderStore(folder))
    if plan is not None:
        prepare(store, header(plan), [s.get("digest") for s in plan["shards"]], (folder / PLAN).read_bytes,
                overwrite)
    drop_other(store, MANIFEST, (folder / MANIFEST).read_bytes())
    shards, failed = manifest["shards"], False
    for shard, outcome in zip(shards, pool.map(lambda s: reason_or(lambda: up.send_shard(store, folder, s)),
                                               shards), strict=True):
        label = f"{manifest['split']}/{shard['name']}"
        if isinstance(outcome, str):
            report.failed.append({"shard": label, "reason": outcome})
            failed = True
        else:
            (report.uploaded if outcome else report.skipped).append(label)
    if failed:
        return
    for name in (WIDS, MANIFEST):
        if (folder / name).is_file():
            up.send(store, name, folder / name)
    update_info(root, manifest)
    report.manifests.append(store.url(MANIFEST))

