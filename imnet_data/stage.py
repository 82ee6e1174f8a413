"""``imnet-data stage SOURCE DEST``: copy shards (and their DALI indexes) onto a node's local disk, checked.

SOURCE is a folder (local or network filesystem) or an ``http(s)://`` base URL: a split folder holding
``manifest.json``, or the shard root holding ``<split>/manifest.json`` (every split, or ``splits``; over HTTP the
root's ``_info.json`` names them). The manifest (the source's, or ``manifest=``) is the authority. DEST mirrors the
shard root: ``DEST/<split>/`` gets the selected shards and their ``.idx``, then ``wids.json`` and, last, the
unchanged ``manifest.json`` (and ``DEST/_info.json``), so ``build_loader(DEST/<split>)`` reads it directly. When
only some shards are staged (``ranks``/``world_size``: the shards those ranks read, by the loader's own rule in
:mod:`imnet_data.loader.assign`), the loader of those ranks still works: it checks only the shards it reads;
``DEST/<split>/.imnet-stage.json`` records which shards this run made present.

Each file streams to ``<name>.partial`` with its sha256 computed on the fly and is renamed to its final name
only when size and sha256 match the manifest (not fsynced, like curl and rsync, unless ``fsync``: after a
machine crash, a re-run, with ``verify`` to be thorough, repairs what the disk lost). Connection errors,
timeouts, 5xx and checksum mismatches are retried with exponential backoff; a partial download is resumed with
an HTTP Range request (its bytes are hashed again first; a server that ignores Range makes it start over);
401/403/404/410 fail at once. Present files with the right size (and sha256, with ``verify``) are skipped, so a
re-run finishes what was interrupted. A lock file per split folder serializes concurrent runs on one node (e.g.
every local rank calling :func:`stage`).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import itertools
import json
import os
import queue
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter

from imnet_data.progress import progress
from imnet_data.shards.manifest import INFO, MANIFEST, WIDS, file_sha256, update_info, write_json
from imnet_data.shards.verify import split_folders
from imnet_data.tario import atomic_file

CHUNK = 256 << 10         # bytes per read, hash and write: reused buffers that stay in the CPU cache
RING = 8                  # buffers in flight between the reading thread and its hashing helper
BACKOFF_CAP = 30.0        # seconds: the longest wait between two attempts
PERMANENT = {401, 403, 404, 410}
TRANSIENT = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError,
             TimeoutError)
RECORD = ".imnet-stage.json"
T = TypeVar("T")


class StageError(RuntimeError):
    """A file that cannot be staged (a permanent error, or retries spent), or a run refused (free space)."""


class Retry(Exception):
    """One attempt failed in a way worth retrying; ``restart``: the partial bytes are useless, delete them."""

    def __init__(self, message: str, restart: bool = False) -> None:
        super().__init__(message)
        self.restart = restart


@dataclass(frozen=True)
class FileJob:
    """One file to stage: its name in the source folder, the manifest's size and sha256, where it goes."""

    name: str
    bytes: int
    sha256: str
    dest: Path

    @property
    def partial(self) -> Path:
        return self.dest.with_name(self.dest.name + ".partial")


@dataclass(frozen=True)
class ShardJob:
    """A shard and its index, staged together from one source folder."""

    label: str                  # <split>/<shard name>
    source: "FileSource | HttpSource"
    files: tuple[FileJob, ...]


@dataclass
class StageReport:
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

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"ok": self.ok, "mb_per_s": round(self.mb_per_s, 1), **asdict(self)}

    def render(self) -> str:
        lines = [f"staged {', '.join(self.splits)} ({self.selection}) from {self.source} into {self.dest}: "
                 f"{len(self.fetched)} shards fetched, {len(self.skipped)} skipped, {len(self.failed)} failed",
                 f"  {self.bytes / 1e6:,.1f} MB in {self.seconds:.1f} s ({self.mb_per_s:,.0f} MB/s); "
                 f"{self.resumed} resumed, {self.retries} retries"]
        if any(self.linked.values()):
            lines.append(f"  linked instead of copied: {self.linked['hardlink']} hard links, "
                         f"{self.linked['symlink']} symlinks (another filesystem)")
        lines += [f"  FAILED {f['shard']}: {f['reason']}" for f in self.failed]
        return "\n".join(lines)


# ---- sources -------------------------------------------------------------------------------------------------

class FileSource:
    """A folder on a local or network filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def child(self, name: str) -> "FileSource":
        return FileSource(self.root / name)

    def url(self, name: str) -> str:
        return str(self.root / name)

    def read(self, name: str) -> bytes | None:
        """A small file's bytes (None when absent)."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(offset, readinto)``: file ``name`` from byte ``start``."""
        try:
            f = open(self.root / name, "rb")
        except (FileNotFoundError, PermissionError) as e:
            raise StageError(f"{self.root / name}: {e.strerror}") from e
        with f:
            f.seek(start)
            yield start, f.readinto


class HttpSource:
    """A base URL served over HTTP(S), read with a pooled :class:`requests.Session`."""

    def __init__(self, base: str, session: requests.Session, timeout: tuple[float, float]) -> None:
        self.base, self.session, self.timeout = base.rstrip("/") + "/", session, timeout

    def __str__(self) -> str:
        return self.base

    def child(self, name: str) -> "HttpSource":
        return HttpSource(self.base + quote(name), self.session, self.timeout)

    def url(self, name: str) -> str:
        return self.base + quote(name)

    def get(self, name: str, headers: dict | None = None) -> requests.Response:
        """A streamed GET of ``name``: StageError for a permanent status, Retry for 5xx and the like."""
        url = self.url(name)
        r = self.session.get(url, headers={"Accept-Encoding": "identity", **(headers or {})}, stream=True,
                             timeout=self.timeout)
        if r.status_code in PERMANENT:
            r.close()
            raise StageError(f"{url}: HTTP {r.status_code} {r.reason}")
        if r.status_code not in (200, 206):
            r.close()
            raise Retry(f"{url}: HTTP {r.status_code} {r.reason}", restart=r.status_code == 416)
        return r

    def read(self, name: str) -> bytes | None:
        """A small file's bytes (None when absent or refused); transient errors are raised."""
        try:
            with self.get(name) as r:
                return r.content
        except StageError:
            return None

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(offset, readinto)``: from ``start`` when the server honours the Range request (206), else from 0.

        An identity-encoded body is read straight from the ``http.client`` response under urllib3's (into the
        caller's buffer: ~20% faster than urllib3's ``readinto``, which copies); lengths are checked by the caller,
        and a body read to its end hands its connection back to the pool.
        """
        with self.get(name, {"Range": f"bytes={start}-"} if start else None) as r:
            offset = 0
            if r.status_code == 206:
                m = re.match(r"bytes (\d+)-", r.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != start:
                    raise Retry(f"{r.url}: unexpected Content-Range {r.headers.get('Content-Range')!r}", True)
                offset = start
            raw = getattr(r.raw, "_fp", None)
            plain = r.headers.get("Content-Encoding", "identity") == "identity" and hasattr(raw, "readinto")
            yield offset, raw.readinto if plain else r.raw.readinto
            if plain and raw.length == 0:   # read to its end: the connection goes back to the pool (keep-alive)
                r.raw.release_conn()


Source = FileSource | HttpSource


@contextlib.contextmanager
def open_source(source: str | os.PathLike, jobs: int, timeout: tuple[float, float]) -> Iterator[Source]:
    """The source behind a path or URL (an HTTP session pooled for ``jobs`` connections, closed after)."""
    text = os.fspath(source)
    if not re.match(r"https?://", text):
        yield FileSource(Path(text))
        return
    with requests.Session() as session:
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(jobs, 1), max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        yield HttpSource(text, session, timeout)


# ---- attempts and transfers ----------------------------------------------------------------------------------

def retrying(label: str, attempt: Callable[[], T], retries: int, backoff: float,
             on_retry: Callable[[], None] = lambda: None) -> T:
    """Run ``attempt`` until it succeeds, at most ``retries`` more times after transient failures, waiting
    ``backoff * 2**n`` seconds (capped) in between; then StageError naming ``label`` and the last error."""
    for n in range(retries + 1):
        try:
            return attempt()
        except (Retry, *TRANSIENT) as e:
            last = e
            if n < retries:
                on_retry()
                time.sleep(min(backoff * 2 ** n, BACKOFF_CAP))
    raise StageError(f"{label}: failed after {retries + 1} attempts; last: {type(last).__name__}: {last}")


class RateLimit:
    """A limit on the bytes per second all transfers together move (a shared schedule: each chunk books its
    time slot, and its reader sleeps until then)."""

    def __init__(self, rate: float) -> None:
        self.rate, self.lock, self.next = rate, threading.Lock(), time.monotonic()

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + n / self.rate
            wait = slot - now
        if wait > 0:
            time.sleep(wait)


@dataclass
class Transfer:
    """What every worker thread shares: the settings, the rate limit, the progress bar and the counters."""

    verify: bool = False
    link: bool = False
    retries: int = 5
    backoff: float = 0.2
    max_rate: float | None = None
    fsync: bool = False
    bar: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    moved: int = 0
    resumed: int = 0
    retried: int = 0

    def __post_init__(self) -> None:
        self.limit = RateLimit(self.max_rate) if self.max_rate else None
        self.chunk = CHUNK if not self.max_rate else int(min(CHUNK, max(self.max_rate / 20, 1 << 12)))

    def count(self, moved: int = 0, resumed: int = 0, retried: int = 0) -> None:
        with self.lock:
            self.moved, self.resumed, self.retried = self.moved + moved, self.resumed + resumed, self.retried + retried
            if moved and self.bar is not None:
                self.bar.update(moved)

    def tick(self, n: int) -> None:
        """``n`` more bytes arrived: obey the rate limit, count them."""
        if self.limit:
            self.limit.take(n)
        self.count(moved=n)

    def present(self, job: FileJob) -> bool:
        """The file is at its final name with the manifest's size (and sha256, with ``verify``)."""
        try:
            if job.dest.stat().st_size != job.bytes:
                return False
        except FileNotFoundError:
            return False
        return not self.verify or file_sha256(job.dest) == job.sha256

    def read(self, source: Source, name: str) -> bytes | None:
        """A small file (a manifest) of the source, with retries; None when absent."""
        return retrying(source.url(name), lambda: source.read(name), self.retries, self.backoff)

    def fetch(self, source: Source, job: FileJob) -> None:
        """Stream one file to its ``.partial`` (resuming one left by an earlier attempt), check it, rename it."""
        retrying(source.url(job.name), lambda: self.attempt(source, job), self.retries, self.backoff,
                 lambda: self.count(retried=1))

    def attempt(self, source: Source, job: FileJob) -> None:
        """One try; a Retry with ``restart`` deletes the partial file (its bytes are wrong)."""
        try:
            self.transfer(source, job)
        except Retry as e:
            if e.restart:
                job.partial.unlink(missing_ok=True)
            raise

    def transfer(self, source: Source, job: FileJob) -> None:
        h, have = hashlib.sha256(), partial_size(job)
        if have:
            hash_file(h, job.partial)
        if have < job.bytes:
            with source.open(job.name, have) as (offset, readinto):
                if offset != have:          # the server sent the whole file: start over
                    h, have = hashlib.sha256(), 0
                self.count(resumed=bool(have))
                with open(job.partial, "ab" if have else "wb") as f:
                    try:
                        have += copy_hashed(readinto, f, h, self.chunk, job.bytes - have, self.tick)
                    except OverflowError:
                        raise Retry(f"more than the manifest's {job.bytes:,} bytes", restart=True) from None
                    if self.fsync:
                        os.fsync(f.fileno())
        if have != job.bytes:
            raise Retry(f"got {have:,} of {job.bytes:,} bytes")
        if h.hexdigest() != job.sha256:
            raise Retry(f"sha256 {h.hexdigest()[:12]}... differs from the manifest's {job.sha256[:12]}...", True)
        os.replace(job.partial, job.dest)

    def link_file(self, source: FileSource, job: FileJob) -> str:
        """Hard-link (or, across filesystems, symlink) the source file after checking it; the kind made."""
        src = source.root / job.name
        if not src.is_file():
            raise StageError(f"{src}: not found")
        if src.stat().st_size != job.bytes:
            raise StageError(f"{src}: {src.stat().st_size:,} bytes, the manifest says {job.bytes:,}")
        if self.verify and file_sha256(src) != job.sha256:
            raise StageError(f"{src}: sha256 differs from the manifest")
        job.partial.unlink(missing_ok=True)
        try:
            os.link(src, job.partial)
            kind = "hardlink"
        except OSError:
            os.symlink(src.resolve(), job.partial)
            kind = "symlink"
        os.replace(job.partial, job.dest)
        return kind

    def stage_shard(self, shard: ShardJob) -> tuple[bool, dict]:
        """Stage a shard's files: ``(transferred anything, link kinds made)``; StageError/OSError on failure."""
        did, kinds = False, {"hardlink": 0, "symlink": 0}
        for job in shard.files:
            if self.present(job):
                continue
            did = True
            if self.link:
                kinds[self.link_file(shard.source, job)] += 1  # type: ignore[arg-type]
            else:
                self.fetch(shard.source, job)
        return did, kinds


def copy_hashed(readinto: Callable[[memoryview], int], out: BinaryIO, h: "hashlib._Hash", chunk: int,
                room: int, tick: Callable[[int], None]) -> int:
    """Copy to ``out`` until end of input, updating ``h``; returns the bytes copied (OverflowError past ``room``).

    Blocks are read into a ring of buffers and written here, while a helper thread hashes them (hashlib releases
    the GIL): hashing overlaps the next read and write, ~1.4x faster than doing all three in turn.
    """
    free: queue.SimpleQueue = queue.SimpleQueue()
    full: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(RING):
        free.put(memoryview(bytearray(chunk)))

    def hash_blocks() -> None:
        while (item := full.get()) is not None:
            h.update(item[0][:item[1]])
            free.put(item[0])

    helper = threading.Thread(target=hash_blocks, daemon=True)
    helper.start()
    done = 0
    try:
        while n := readinto(buf := free.get()):
            done += n
            if done > room:
                raise OverflowError
            out.write(buf[:n])
            full.put((buf, n))
            tick(n)
    finally:
        full.put(None)
        helper.join()
    return done


def partial_size(job: FileJob) -> int:
    """Bytes of a usable ``.partial`` (one longer than the file is deleted)."""
    try:
        size = job.partial.stat().st_size
    except FileNotFoundError:
        return 0
    if size > job.bytes:
        job.partial.unlink()
        return 0
    return size


def hash_file(h: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)


# ---- planning ------------------------------------------------------------------------------------------------

@dataclass
class SplitPlan:
    """One split to stage: its source folder, manifest (parsed and verbatim) and the selected shard numbers."""

    source: Source
    raw: bytes
    manifest: dict
    folder: Path
    shards: list[int]

    @property
    def split(self) -> str:
        return self.manifest["split"]


def parse_manifest(raw: bytes, where: str) -> dict:
    """A manifest's content; ValueError naming ``where`` when it is not an imnet-data manifest or names files
    outside its folder."""
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{where}: not a JSON manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != "imnet-data-shards":
        raise ValueError(f"{where}: not an imnet-data shard manifest")
    names = [manifest["split"]] + [n for s in manifest["shards"] for n in (s["name"], s.get("index", {}).get("name"))
                                   if n is not None]
    bad = [n for n in names if not n or n in (".", "..") or "/" in n or "\\" in n]
    if bad:
        raise ValueError(f"{where}: unsafe file name {bad[0]!r} in the manifest")
    return manifest


def find_manifests(t: Transfer, src: Source, splits: list[str] | None, manifest: str | None,
                   timeout: tuple[float, float]) -> list[tuple[Source, bytes, str]]:
    """``(split source, manifest bytes, where)`` for each split to stage."""
    if manifest is not None:
        with open_source(os.path.dirname(manifest.rstrip("/")) or ".", 1, timeout) as parent:
            raw = t.read(parent, os.path.basename(manifest.rstrip("/")))
        if raw is None:
            raise ValueError(f"{manifest}: manifest not found")
        return [(src, raw, manifest)]
    raw = t.read(src, MANIFEST)
    if raw is not None:
        return [(src, raw, src.url(MANIFEST))]
    if isinstance(src, FileSource):
        folders = split_folders(src.root, splits)
        names = [f.name for f in folders]
    elif splits:
        names = splits
    else:
        info = t.read(src, INFO)
        if info is None:
            raise ValueError(f"{src}: no {MANIFEST}, no {INFO}; give a split URL or --splits")
        names = sorted(json.loads(info).get("splits", {}))
    found = []
    for name in names:
        sub = src.child(name)
        raw = t.read(sub, MANIFEST)
        if raw is None:
            raise ValueError(f"{sub.url(MANIFEST)}: manifest not found")
        found.append((sub, raw, sub.url(MANIFEST)))
    return found


def select(counts: list[int], ranks: list[int] | None, world_size: int | None) -> list[int]:
    """The shard numbers to stage: all, or those ``ranks`` of ``world_size`` read (the loader's assignment)."""
    if ranks is None:
        return list(range(len(counts)))
    if not world_size:
        raise ValueError("a rank list needs the world size")
    from imnet_data.loader.assign import shards_for_ranks  # imports the loader package (torch): only when needed

    return shards_for_ranks(counts, ranks, world_size)


def node_selection(node_rank: int, num_nodes: int, world_size: int | None = None) -> tuple[list[int] | None,
                                                                                         int | None]:
    """``(ranks, world_size)`` of node ``node_rank`` of ``num_nodes`` for :func:`stage` (``(None, None)``: all,
    for a single node). Without the world size, the node's share is its ``1/num_nodes`` of the samples, which
    is the union of its ranks' shares whatever the world size (ranks fill nodes in order)."""
    if num_nodes == 1:
        return None, None
    if world_size:
        from imnet_data.loader.assign import node_ranks

        return node_ranks(node_rank, num_nodes, world_size), world_size
    return [node_rank], num_nodes


def parse_ranks(text: str) -> list[int]:
    """``"0-7,12"`` -> ``[0, ..., 7, 12]``."""
    ranks: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            raise ValueError(f"bad rank list {text!r} (expected e.g. 0-7,12)")
        ranks.update(range(int(a), int(b or a) + 1))
    return sorted(ranks)


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
    """The bytes still to transfer; StageError when DEST's filesystem has less free space than that."""
    needed = sum(f.bytes - partial_size(f) for j in jobs for f in j.files
                 if not (f.dest.is_file() and f.dest.stat().st_size == f.bytes))
    if link:
        return 0
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise StageError(f"{dest}: not enough free space: {needed / 1e9:,.2f} GB to stage, "
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
    update_info(dest, plan.manifest)
    staged = [plan.manifest["shards"][i]["name"] for i in plan.shards]
    write_json(plan.folder / RECORD, {"source": str(plan.source), "selection": selection, "shards": staged,
                                      "complete": len(staged) == len(plan.manifest["shards"])})


def plan_splits(t: Transfer, src: Source, dest: Path, splits: list[str] | None, manifest: str | None,
                ranks: list[int] | None, world_size: int | None, timeout: tuple[float, float]) -> list[SplitPlan]:
    """Read the manifests and select the shards of every split to stage."""
    plans = []
    for sub, raw, where in find_manifests(t, src, splits, manifest, timeout):
        m = parse_manifest(raw, where)
        plans.append(SplitPlan(sub, raw, m, dest / m["split"],
                               select([s["samples"] for s in m["shards"]], ranks, world_size)))
    if isinstance(src, FileSource) and any(p.folder.resolve() == Path(str(p.source)).resolve() for p in plans):
        raise ValueError(f"{dest}: is the source itself")
    return plans


# ---- the job -------------------------------------------------------------------------------------------------

def stage(source: str | os.PathLike, dest: str | os.PathLike, *, splits: list[str] | None = None,
          manifest: str | None = None, ranks: list[int] | None = None, world_size: int | None = None,
          jobs: int = 4, verify: bool = False, link: bool = False, max_rate: float | None = None,
          retries: int = 5, backoff: float = 0.2, timeout: tuple[float, float] = (10.0, 60.0),
          fsync: bool = False, quiet: bool = False) -> StageReport:
    """Stage the shards at ``source`` into ``dest/<split>/`` (see the module doc) and return what was done.

    ``ranks``/``world_size``: only the shards those ranks read (e.g. ``ranks=[rank], world_size=world`` in a
    training script, before building the loader; :func:`node_selection` for a node); ``jobs`` parallel transfers;
    ``verify``: also check the sha256 of files already present (and of linked sources); ``link``: hard-link (or
    symlink) a filesystem source's files instead of copying; ``max_rate``: bytes/s over all transfers; ``retries``
    and ``backoff`` (seconds, doubling); ``timeout``: (connect, read) seconds for HTTP; ``fsync``: each file
    before its rename. Raises StageError (free space) or ValueError (no manifest) before transferring anything;
    failed shards are reported, not raised.
    """
    start, dest = time.monotonic(), Path(dest)
    selection = "all shards" if ranks is None else f"shards of ranks {format_ranks(ranks)} of {world_size}"
    with open_source(source, jobs, timeout) as src, contextlib.ExitStack() as held:
        if link and not isinstance(src, FileSource):
            raise ValueError("link (--link) needs a filesystem source")
        t = Transfer(verify, link, retries, backoff, max_rate, fsync)
        plans = plan_splits(t, src, dest, splits, manifest, ranks, world_size, timeout)
        for plan in plans:
            plan.folder.mkdir(parents=True, exist_ok=True)
            held.enter_context(locked(plan.folder))
            if (plan.folder / MANIFEST).is_file() and (plan.folder / MANIFEST).read_bytes() != plan.raw:
                (plan.folder / MANIFEST).unlink()   # another shard set was here: not complete until the end
        work = [j for p in plans for j in shard_jobs(p)]
        needed = check_space(dest, work, link)
        report = StageReport(str(source), str(dest), [p.split for p in plans], selection)
        with progress(total=needed, desc="stage", unit="B", unit_scale=True, quiet=quiet) as t.bar:
            with ThreadPoolExecutor(max(jobs, 1)) as pool:
                for job, outcome in zip(work, pool.map(lambda j: attempt_shard(t, j), work)):
                    if isinstance(outcome, str):
                        report.failed.append({"shard": job.label, "reason": outcome})
                        continue
                    (report.fetched if outcome[0] else report.skipped).append(job.label)
                    for kind, n in outcome[1].items():
                        report.linked[kind] += n
        failed = {f["shard"].split("/", 1)[0] for f in report.failed}
        for plan in plans:
            if plan.split not in failed:
                finish(t, plan, dest, selection)
    report.bytes, report.resumed, report.retries = t.moved, t.resumed, t.retried
    report.seconds = time.monotonic() - start
    return report


def attempt_shard(t: Transfer, job: ShardJob) -> tuple[bool, dict] | str:
    """A worker's result: ``stage_shard``'s, or the reason it failed."""
    try:
        return t.stage_shard(job)
    except (StageError, OSError) as e:
        return str(e)


def format_ranks(ranks: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    runs = [[r for _, r in g] for _, g in itertools.groupby(enumerate(sorted(ranks)), lambda x: x[1] - x[0])]
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
