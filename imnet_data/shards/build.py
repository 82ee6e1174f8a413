"""``imnet-data shard``: plan, then write the shards this node owns, then (one node, or ``--merge``) the manifest.

Resume is a re-run: the plan is recomputed and must equal the stored one; shards whose file, index and record
match the plan are kept, the rest (re)written. Multi-node: node K of N writes the shards ``i % N == K`` of the
same plan; ``merge`` checks all of them and writes the manifest, giving the bytes one node would have.
DEST is a folder or an object-store prefix (any writable :mod:`imnet_data.stores` store): the plan, the resume
checks and the manifest go through the store's methods; into a bucket, shards are written into a local work
folder and published by :mod:`imnet_data.shards.publish`.
"""
from __future__ import annotations

import hashlib
import itertools
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.parallel import Lazy, check_visible, default_jobs, map_units
from imnet_data.paths import check_apart
from imnet_data.report import Report
from imnet_data.shards.manifest import MANIFEST, class_names, complete, finalize, write_manifest
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.plan import ShardPlan, SplitPlan, list_split, make_plan, source_split
from imnet_data.shards.planfile import PLAN, plan_bytes
from imnet_data.shards.publish import Publisher, Uploader
from imnet_data.shards.stream import listed, write_streamed
from imnet_data.shards.table import Table
from imnet_data.shards.target import prepare
from imnet_data.shards.writer import RECORDS, ShardJob, write_shard
from imnet_data.sources import Source, open_source
from imnet_data.stores import FolderStore, ReadableStore, UploadStore, WritableStore, open_store


@dataclass
class SplitReport:
    """What one split's run did."""

    split: str
    pattern: str
    shards: int
    samples: int
    written: list[str] = field(default_factory=list)
    kept: int = 0
    other_nodes: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    manifest: str | None = None
    failed: list[dict] = field(default_factory=list)   # {"shard", "reason"}: written, not uploaded
    left_out: dict = field(default_factory=dict)        # what the class selection left out: classes, images, why


@dataclass
class ShardReport(Report):
    """What :func:`shard` did: every split's report and the expected splits the download lacks."""

    dest: str
    node_rank: int
    num_nodes: int
    splits: list[SplitReport]
    not_found: list[str] = field(default_factory=list)   # expected splits the download lacks (no splits named)

    @property
    def ok(self) -> bool:
        """Every expected split was found and no shard failed."""
        return not self.not_found and not any(s.failed for s in self.splits)

    def render(self) -> str:
        """Per split: samples, shards, what was written, kept and left to other nodes, failures and the
        manifest."""
        lines = [f"shards in {self.dest}" + (f" (node {self.node_rank} of {self.num_nodes})"
                                            if self.num_nodes > 1 else "")]
        for s in self.splits:
            rate = s.bytes_written / s.seconds / 1e6 if s.seconds else 0.0
            lines.append(f"  {s.split}: {s.samples:,} samples in {s.shards} shards {s.split}/{s.pattern}; "
                         f"written {len(s.written)} ({s.bytes_written / 1e6:,.1f} MB, {s.seconds:.1f} s, "
                         f"{rate:,.0f} MB/s), kept {s.kept}"
                         + (f", left to other nodes {s.other_nodes}" if s.other_nodes else ""))
            if s.left_out.get("classes"):
                lines.append(f"    left out: {s.left_out['classes']:,} classes ({s.left_out['images']:,} images) "
                             f"{s.left_out['why']}")
            lines += [f"    FAILED {f['shard']}: {f['reason']}" for f in s.failed]
            lines.append(f"    manifest: {s.manifest}" if s.manifest else
                         "    manifest: not written: run the same command again" if s.failed else
                         "    manifest: not written yet; when all nodes are done: "
                         f"imnet-data shard --merge {self.dest}")
        lines += [f"  NOT FOUND: {n} (name the splits to do with --splits)" for n in self.not_found]
        return "\n".join(lines)


def shard(src: Path, dest: str | Path, options: ShardOptions = ShardOptions(), *, layout: str | None = None,
          splits: Iterable[str] | None = None, jobs: int | None = None, node_rank: int = 0, num_nodes: int = 1,
          overwrite: bool = False, work: Path | None = None, retries: int = 5, quiet: bool = False) -> ShardReport:
    """Shard the download at ``src`` into ``dest/<split>/`` (see the module doc); returns what was done.

    ``dest`` is a folder or an object-store prefix (``s3://bucket/prefix``, ``gs://...``): then each shard is
    written into ``work`` (default: a folder in the temp dir named after ``dest``), uploaded and checked while
    the next ones are written, and removed from ``work`` (see :mod:`imnet_data.shards.publish`); ``retries``
    per upload.
    """
    source = open_source(Path(src), layout)
    uploader = Uploader(retries)             # an object store's: every request retried under its policy
    with open_store(dest, default_jobs(jobs), policy=uploader.retry) as opened:
        root = writable(opened, dest, "shard into a folder or an s3:// / gs:// prefix")
        in_place = root.local_folder()
        uploads = None if in_place else uploadable(root, dest)
        scratch = in_place or Path(work or default_work(str(root)))
        check_apart(src, scratch)
        check_visible([src], [scratch])
        source.index_home = scratch
        reports = {}
        wanted = list(splits or default_splits(source, options))
        listings = Listings(source, options, wanted, jobs, quiet)
        for split in planning_order(wanted):
            sizes = None
            if source.streams:   # no random access: listed by streaming, written by scattering (shards.stream)
                plan, sizes = listed(source, split, options, jobs, quiet)
            else:
                plan = make_plan(source, split, options, jobs, quiet, *listings.take(split))
            store = root.child(split)
            prepare(store, plan.header(), [s.digest for s in plan.shards], partial(plan_bytes, plan), overwrite)
            folder = scratch / split
            folder.mkdir(parents=True, exist_ok=True)
            sweep_partials(folder)
            publish = Publisher(uploader, uploads.child(split), folder, default_jobs(jobs)) if uploads else None
            write = partial(write_streamed, source, folder, plan, sizes=sizes) if sizes is not None else None
            reports[split] = run_split(SplitTarget(store, root, folder, publish, write), plan, options, jobs,
                                       node_rank, num_nodes, quiet)
            del plan
        if uploads:
            remove_empty(scratch)
    return ShardReport(str(root), node_rank, num_nodes, [reports[s] for s in wanted],
                       [] if splits or options.variant else source.not_found())


def default_splits(source: Source, options: ShardOptions) -> list[str]:
    """The download's splits, or a 21k variant's train and val (held out of the download's train)."""
    return ["train", "val"] if options.variant else source.splits()


def planning_order(splits: list[str]) -> list[str]:
    """``splits`` in the order they are planned: val before train, so a variant's val, held out of the same
    listing, is planned while train's listing is still whole (train then consumes it)."""
    return sorted(splits, key=lambda s: s != "val")


class Listings:
    """The download's split listings, each listed once: where two splits of the shards are cut from one split
    of the download (a variant's train and val), the second takes what the first left."""

    def __init__(self, source: Source, options: ShardOptions, splits: list[str], jobs: int | None,
                 quiet: bool) -> None:
        self.source, self.options, self.jobs, self.quiet = source, options, jobs, quiet
        self.uses = {s: sum(source_split(w, options) == source_split(s, options) for w in splits) for s in splits}
        self.cache: dict[str, Table] = {}

    def take(self, split: str) -> tuple[Table, bool]:
        """The listing ``split`` is cut from, and whether another split still needs it (then the plan copies the
        rows it keeps instead of consuming it)."""
        base = source_split(split, self.options)
        table = self.cache.pop(base, None)
        if table is None:
            table = list_split(self.source, base, self.jobs, self.quiet)
        self.uses[split] = 0
        shared = any(n and source_split(s, self.options) == base for s, n in self.uses.items())
        if shared:
            self.cache[base] = table
        return table, shared


def writable(store: ReadableStore, dest: str | Path, hint: str) -> WritableStore:
    """``store`` where it can be written; UsageError naming ``dest`` for a read-only one (an http(s) URL)."""
    if not isinstance(store, WritableStore):
        raise UsageError(f"{dest}: an http(s) URL is read-only; {hint}")
    return store


def uploadable(store: WritableStore, dest: str | Path) -> UploadStore:
    """A DEST that is not a local folder, where shards are uploaded once written (into a work folder);
    UsageError for a store that takes no uploads."""
    if not isinstance(store, UploadStore):
        raise UsageError(f"{dest}: neither a local folder nor a store that takes uploads; shard into a folder or "
                         "an s3:// / gs:// prefix")
    return store


def default_work(url: str) -> Path:
    """The default local work folder of a remote DEST (one per DEST, so a re-run finds what it left)."""
    return Path(tempfile.gettempdir()) / f"imnet-data-work-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def remove_empty(folder: Path) -> None:
    """Remove the folders under ``folder`` (and it) that hold nothing: a remote DEST's work folder, all up."""
    for path in sorted(folder.rglob("*"), reverse=True) + [folder]:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def sweep_partials(folder: Path) -> None:
    """Remove the temp files a killed run left (``*.partial``: never a finished file)."""
    for path in list(folder.glob("*.partial")) + list((folder / RECORDS).glob("*.partial")):
        path.unlink(missing_ok=True)


@dataclass
class SplitTarget:
    """Where a split's shards go: ``store`` (its folder or prefix; ``root`` above it), written into ``folder``
    (the store's own folder, or a local work folder whose shards ``publish`` uploads into ``store``)."""

    store: WritableStore
    root: WritableStore
    folder: Path
    publish: Publisher | None = None
    write: Callable[..., Iterator[dict]] | None = None   # a streaming layout's writer of the shards to write


def run_split(target: SplitTarget, plan: SplitPlan, options: ShardOptions, jobs: int | None, node_rank: int,
              num_nodes: int, quiet: bool) -> SplitReport:
    """Write (and publish) this node's missing shards of ``plan``; with one node, finish with the manifest, from
    the plan and the records in hand (those of the shards kept and of the shards written)."""
    report = SplitReport(plan.split, plan.pattern, len(plan.shards), plan.num_samples)
    mine = [s for s in plan.shards if s.index % num_nodes == node_rank]
    report.other_nodes = len(plan.shards) - len(mine)
    records = {s.name: r for s in mine if (r := complete(target.store, s.name, s.digest))}
    todo = [s for s in mine if s.name not in records]
    report.kept = len(records)
    local = FolderStore(target.folder)
    ready = [r for s in todo if (r := complete(local, s.name, s.digest))] if target.publish else []  # not up
    names, written = tuple(class_names(plan.label_space, list(plan.classes))), {r["name"] for r in ready}
    shards = [s for s in todo if s.name not in written]
    n, publish = default_jobs(jobs), target.publish
    report.left_out = {"classes": plan.left_out.classes, "images": plan.left_out.images, "why": plan.left_out.why}
    start = time.perf_counter()
    written_now = target.write(todo=shards, options=options, jobs=jobs, quiet=quiet) \
        if target.write else map_units(write_shard, shard_jobs(str(target.folder), plan, shards, options, names),
                                       jobs=jobs, desc=f"shard {plan.split}", unit="shards", quiet=quiet,
                                       ahead=2 * n, weights=[plan.weight(s) for s in shards])
    try:
        for record in itertools.chain(ready, written_now):
            report.written.append(record["name"])
            report.bytes_written += record["bytes"]
            records[record["name"]] = record
            if publish:
                publish(record)
    finally:
        report.failed = publish.close() if publish else []
    report.seconds = time.perf_counter() - start
    if num_nodes == 1 and not report.failed:
        write_manifest(target.store, target.root, plan.header(), [records[s.name] for s in plan.shards])
        report.manifest = target.store.url(MANIFEST)
    return report


def shard_jobs(folder: str, plan: SplitPlan, shards: list[ShardPlan], options: ShardOptions,
               names: tuple[str, ...]) -> Lazy[ShardJob]:
    """The :class:`ShardJob` of each shard to write, made when a worker is about to get it (a job holds its
    shard's rows: made all at once they would copy the whole plan)."""
    return Lazy(len(shards), lambda i: ShardJob(folder, shards[i], plan.rows(shards[i]), options, names,
                                                plan.label_space))


def merge(dest: str | Path, splits: Iterable[str] | None = None, check_sha256: bool = False) -> list[dict]:
    """After all nodes: check every split's shards (in a folder or prefix) against the plan, write the manifests."""
    with open_store(dest) as opened:
        root = writable(opened, dest, "merge the folder or s3:// / gs:// prefix")
        names = list(splits or sorted(n.split("/")[0] for n in root.names() if n.count("/") == 1
                                      and n.endswith("/" + PLAN)))
        if not names:
            raise UsageError(f"{dest}: no <split>/{PLAN} found; not a shard output folder")
        return [finalize(root.child(name), root, check_sha256) for name in names]
