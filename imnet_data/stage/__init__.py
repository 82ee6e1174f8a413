"""``imnet-data stage SOURCE DEST``: copy shards (and their DALI indexes) onto a node's local disk, checked.

SOURCE is a folder (local or network filesystem), an ``http(s)://`` base URL or an object-store prefix
(``s3://``, ``gs://``; :mod:`imnet_data.stores`): a split folder holding ``manifest.json``, or the shard root
holding ``<split>/manifest.json`` (every split, or ``splits``; remotely the root's ``_info.json`` names them).
The manifest (the source's, or ``manifest=``) is the authority. DEST mirrors the shard root: ``DEST/<split>/``
gets the selected shards and their ``.idx``, then ``wids.json`` and, last, the unchanged ``manifest.json`` (and
``DEST/_info.json``), so ``build_loader(DEST/<split>)`` reads it directly. When only some shards are staged
(``ranks``/``world_size``: the shards those ranks read, by the loader's own rule in :mod:`imnet_data.assign`),
the loader of those ranks still works: it checks only the shards it reads;
``DEST/<split>/.imnet-stage.json`` records which shards this run made present.

Each file streams to ``<name>.partial`` with its sha256 computed on the fly and is renamed to its final name
only when size and sha256 match the manifest (not fsynced, like curl and rsync, unless ``fsync``: after a
machine crash, a re-run, with ``verify`` to be thorough, repairs what the disk lost). Connection errors,
timeouts, 5xx, S3's SlowDown and checksum mismatches are retried with exponential backoff; a partial download is
resumed with a Range request (its bytes are hashed again first; a server that ignores Range makes it start over);
401/403/404/410 (NoSuchKey, NoSuchBucket, refused credentials) fail at once. Present files with the right size
(and sha256, with ``verify``) are skipped, so a re-run finishes what was interrupted. A lock file per split folder
serializes concurrent runs on one node (e.g. every local rank calling :func:`stage`).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.parallel import default_jobs
from imnet_data.paths import check_apart
from imnet_data.progress import progress
from imnet_data.shards.manifest import MANIFEST
from imnet_data.shards.peers import INFO, WIDS, splits_of, update_info
from imnet_data.shards.schema import check_info, load_json, parse_manifest
from imnet_data.shards.verify import split_folders
from imnet_data.stage.ranks import format_ranks, node_selection, parse_ranks, select
from imnet_data.stage.transfer import FileJob, RateLimit, ShardJob, Transfer, partial_size, retrying
from imnet_data.stores import FolderStore, ReadableStore, StoreError, drop_other, open_store
from imnet_data.stores.base import TransferReport
from imnet_data.stores.errors import reason_or
from imnet_data.tario import atomic_file, write_json

__all__ = ["stage", "StageReport", "StoreError", "Transfer", "FileJob", "ShardJob", "RateLimit", "retrying",
           "select", "node_selection", "parse_ranks", "format_ranks"]

RECORD = ".imnet-stage.json"


@dataclass
class StageReport(TransferReport):
    """What :func:`stage` did (``ok`` when nothing failed); ``bytes`` counts what was transferred this run."""

    source: str
    dest: str
    splits: list[str]
    selection: str
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)   # {"shard", "reason"}
    bytes: int = 0
    seconds: float = 0.0
    resumed: int = 0
    retries: int = 0
    linked: dict = field(default_factory=lambda: {"hardlink": 0, "symlink": 0})

    def render(self) -> str:
        """Shards fetched, skipped and failed, the throughput, resumed and retried, links, each failure."""
        lines = [f"staged {', '.join(self.splits)} ({self.selection}) from {self.source} into {self.dest}: "
                 f"{len(self.fetched)} shards fetched, {len(self.skipped)} skipped, {len(self.failed)} failed",
                 f"  {self.throughput()}; {self.resumed} resumed, {self.retries} retries"]
        if any(self.linked.values()):
            lines.append(f"  linked instead of copied: {self.linked['hardlink']} hard links, "
                         f"{self.linked['symlink']} symlinks (another filesystem)")
        lines += [f"  FAILED {f['shard']}: {f['reason']}" for f in self.failed]
        return "\n".join(lines)


# ---- planning ------------------------------------------------------------------------------------------------

@dataclass
class SplitPlan:
    """One split to stage: its source folder, manifest (parsed and verbatim) and the selected shard numbers."""

    source: ReadableStore
    raw: bytes
    manifest: dict
    folder: Path
    shards: list[int]

    @property
    def split(self) -> str:
        return self.manifest["split"]


def find_manifests(t: Transfer, src: ReadableStore, splits: list[str] | None, manifest: str | None,
                   timeout: tuple[float, float]) -> list[tuple[ReadableStore, bytes, str]]:
    """``(split source, manifest bytes, where)`` for each split to stage."""
    if manifest is not None:
        with open_store(os.path.dirname(manifest.rstrip("/")) or ".", 1, timeout) as parent:
            raw = t.read(parent, os.path.basename(manifest.rstrip("/")))
        if raw is None:
            raise ValueError(f"{manifest}: manifest not found")
        return [(src, raw, manifest)]
    raw = t.read(src, MANIFEST)
    if raw is not None:
        return [(src, raw, src.url(MANIFEST))]
    if (folder := src.local_folder()) is not None:
        names = [f.name for f in split_folders(folder, splits)]
    elif splits:
        names = splits
    else:
        info = t.read(src, INFO)
        if info is None:
            raise ValueError(f"{src}: no {MANIFEST}, no {INFO}; give a split URL or --splits")
        names = splits_of(check_info(load_json(info, src.url(INFO)), src.url(INFO)))
    found = []
    for name in names:
        sub = src.child(name)
        raw = t.read(sub, MANIFEST)
        if raw is None:
            raise ValueError(f"{sub.url(MANIFEST)}: manifest not found")
        found.append((sub, raw, sub.url(MANIFEST)))
    return found


def shard_jobs(plan: SplitPlan) -> list[ShardJob]:
    jobs = []
    for i in plan.shards:
        s = plan.manifest["shards"][i]
        files = [FileJob(s["name"], s["bytes"], s["sha256"], plan.folder / s["name"])]
        if s.get("index"):
            files.append(FileJob(s["index"]["name"], s["index"]["bytes"], s["index"]["sha256"],
                                 plan.folder / s["index"]["name"]))
        jobs.append(ShardJob(f"{plan.split}/{s['name']}", plan.source, tuple(files)))
    return jobs


def check_space(dest: Path, jobs: list[ShardJob], link: bool) -> int:
    """The bytes still to transfer; StoreError when DEST's filesystem has less free space than that."""
    needed = sum(f.bytes - partial_size(f) for j in jobs for f in j.files
                 if not (f.dest.is_file() and f.dest.stat().st_size == f.bytes))
    if link:
        return 0
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise StoreError(f"{dest}: not enough free space: {needed / 1e9:,.2f} GB to stage, "
                         f"{free / 1e9:,.2f} GB free")
    return needed


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the split folder's lock (another stage run into it waits)."""
    with open(folder / ".imnet-stage.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def write_verbatim(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def finish(t: Transfer, plan: SplitPlan, dest: Path, selection: str) -> None:
    """Write wids.json and, last, the manifest (unchanged) and DEST/_info.json; record the staged shards."""
    wids = t.read(plan.source, WIDS)
    if wids is not None:
        write_verbatim(plan.folder / WIDS, wids)
    write_verbatim(plan.folder / MANIFEST, plan.raw)
    update_info(FolderStore(dest), plan.manifest)
    staged = [plan.manifest["shards"][i]["name"] for i in plan.shards]
    write_json(plan.folder / RECORD, {"source": str(plan.source), "selection": selection, "shards": staged,
                                      "complete": len(staged) == len(plan.manifest["shards"])})


def plan_splits(t: Transfer, src: ReadableStore, dest: Path, splits: list[str] | None, manifest: str | None,
                ranks: list[int] | None, world_size: int | None, timeout: tuple[float, float]) -> list[SplitPlan]:
    """Read the manifests and select the shards of every split to stage."""
    plans = []
    for sub, raw, where in find_manifests(t, src, splits, manifest, timeout):
        m = parse_manifest(raw, where)
        plans.append(SplitPlan(sub, raw, m, dest / m["split"],
                               select([s["samples"] for s in m["shards"]], ranks, world_size)))
    return plans


# ---- the job -------------------------------------------------------------------------------------------------

def stage(source: str | os.PathLike, dest: str | os.PathLike, *, splits: list[str] | None = None,
          manifest: str | None = None, ranks: list[int] | None = None, world_size: int | None = None,
          jobs: int = 4, verify: bool = False, link: bool = False, max_rate: float | None = None,
          retries: int = 5, backoff: float = 0.2, timeout: tuple[float, float] = (10.0, 60.0),
          fsync: bool = False, quiet: bool = False) -> StageReport:
    """Stage the shards at ``source`` into ``dest/<split>/`` (see the module doc) and return what was done.

    ``ranks``/``world_size``: only the shards those ranks read (e.g. ``ranks=[rank], world_size=world`` in a
    training script, before building the loader; :func:`node_selection` for a node); ``jobs`` parallel transfers
    (0: one per core); ``verify``: also check the sha256 of files already present (and of linked sources);
    ``link``: hard-link (or symlink) a filesystem source's files instead of copying; ``max_rate``: bytes/s over
    all transfers; ``retries`` and ``backoff`` (seconds, doubling); ``timeout``: (connect, read) seconds for HTTP;
    ``fsync``: each file before its rename. Raises StoreError (free space) or ValueError (no manifest) before
    transferring anything; failed shards are reported, not raised.
    """
    start, dest, jobs = time.monotonic(), Path(dest), default_jobs(jobs)
    selection = "all shards" if ranks is None else f"shards of ranks {format_ranks(ranks)} of {world_size}"
    with open_store(source, jobs, timeout) as src, contextlib.ExitStack() as held:
        folder = src.local_folder()
        if link and folder is None:
            raise UsageError("link (--link) needs a filesystem source")
        if folder is not None:
            check_apart(folder, dest)
        t = Transfer(verify, link, retries, backoff, max_rate, fsync)
        plans = plan_splits(t, src, dest, splits, manifest, ranks, world_size, timeout)
        for plan in plans:
            plan.folder.mkdir(parents=True, exist_ok=True)
            held.enter_context(locked(plan.folder))
            drop_other(FolderStore(plan.folder), MANIFEST, plan.raw)
        work = [j for p in plans for j in shard_jobs(p)]
        needed = check_space(dest, work, link)
        report = StageReport(str(source), str(dest), [p.split for p in plans], selection)
        with progress(total=needed, desc="stage", unit="B", unit_scale=True, quiet=quiet) as t.bar:
            with ThreadPoolExecutor(max(jobs, 1)) as pool:
                try:
                    outcomes = pool.map(lambda j: reason_or(lambda: t.stage_shard(j)), work)
                    for job, outcome in zip(work, outcomes, strict=True):
                        if isinstance(outcome, str):
                            report.failed.append({"shard": job.label, "reason": outcome})
                            continue
                        (report.fetched if outcome[0] else report.skipped).append(job.label)
                        for kind, n in outcome[1].items():
                            report.linked[kind] += n
                except KeyboardInterrupt:
                    t.stop()     # the pool's exit waits for its threads: they end at their next block
                    raise
        failed = {f["shard"].split("/", 1)[0] for f in report.failed}
        for plan in plans:
            if plan.split not in failed:
                finish(t, plan, dest, selection)
    report.bytes, report.resumed, report.retries = t.moved, t.resumed, t.retried
    report.seconds = time.monotonic() - start
    return report

