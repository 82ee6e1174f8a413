"""``imnet-data shard``: plan, then write the shards this node owns, then (one node, or ``--merge``) the manifest.

Resume is a re-run: the plan is recomputed and must equal the stored one; shards whose file, index and record
match the plan are kept, the rest (re)written. Multi-node: node K of N writes the shards ``i % N == K`` of the
same plan; ``merge`` checks all of them and writes the manifest, giving the bytes one node would have.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from imnet_data.errors import UsageError
from imnet_data.parallel import map_units
from imnet_data.paths import check_apart
from imnet_data.shards.manifest import MANIFEST, class_names, complete, finalize
from imnet_data.shards.peers import WIDS
from imnet_data.shards.plan import PLAN, ShardOptions, SplitPlan, make_plan, read_plan, write_plan
from imnet_data.shards.writer import RECORDS, ShardJob, write_shard
from imnet_data.sources import open_source


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


@dataclass
class ShardReport:
    dest: str
    node_rank: int
    num_nodes: int
    splits: list[SplitReport]
    not_found: list[str] = field(default_factory=list)   # expected splits the download lacks (no splits named)

    @property
    def ok(self) -> bool:
        return not self.not_found

    def as_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def render(self) -> str:
        lines = [f"shards in {self.dest}" + (f" (node {self.node_rank} of {self.num_nodes})"
                                            if self.num_nodes > 1 else "")]
        for s in self.splits:
            rate = s.bytes_written / s.seconds / 1e6 if s.seconds else 0.0
            lines.append(f"  {s.split}: {s.samples:,} samples in {s.shards} shards {s.split}/{s.pattern}; "
                         f"written {len(s.written)} ({s.bytes_written / 1e6:,.1f} MB, {s.seconds:.1f} s, "
                         f"{rate:,.0f} MB/s), kept {s.kept}"
                         + (f", left to other nodes {s.other_nodes}" if s.other_nodes else ""))
            lines.append(f"    manifest: {s.manifest}" if s.manifest else
                         f"    manifest: not written yet; when all nodes are done: imnet-data shard --merge {self.dest}")
        lines += [f"  NOT FOUND: {n} (name the splits to do with --splits)" for n in self.not_found]
        return "\n".join(lines)


def shard(src: Path, dest: Path, options: ShardOptions = ShardOptions(), *, layout: str | None = None,
          splits: Iterable[str] | None = None, jobs: int | None = None, node_rank: int = 0, num_nodes: int = 1,
          overwrite: bool = False, quiet: bool = False) -> ShardReport:
    """Shard the download at ``src`` into ``dest/<split>/`` (see the module doc); returns what was done."""
    source = open_source(Path(src), layout)
    check_apart(src, dest)
    dest = Path(dest)
    reports = []
    for split in list(splits or source.splits()):
        plan = make_plan(source, split, options, jobs, quiet)
        folder = dest / split
        prepare(folder, plan, overwrite)
        reports.append(run_split(folder, plan, options, jobs, node_rank, num_nodes, quiet))
    return ShardReport(str(dest), node_rank, num_nodes, reports, [] if splits else source.not_found())


def prepare(folder: Path, plan: SplitPlan, overwrite: bool) -> None:
    """Make ``folder`` hold this plan: new, the same plan (resume), or with ``overwrite`` an old one removed.
    A different stored plan without ``overwrite`` raises, saying what differs."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = read_plan(folder)
    if stored is not None:
        same = {k: v for k, v in stored.items() if k != "shards"} == plan.header() and \
            [s["digest"] for s in stored["shards"]] == [s.digest for s in plan.shards]
        if same:
            sweep_partials(folder)
            return
        if not overwrite:
            differs = [k for k in ("options", "source", "name", "classes") if stored.get(k) != plan.header()[k]]
            raise ValueError(f"{folder}: holds shards of a different plan (differs in: "
                             f"{', '.join(differs) or 'sample order'}); use --overwrite or another DEST")
        clear(folder)
    write_plan(plan, folder)


def sweep_partials(folder: Path) -> None:
    """Remove the temp files a killed run left (``*.partial``: never a finished file)."""
    for path in list(folder.glob("*.partial")) + list((folder / RECORDS).glob("*.partial")):
        path.unlink(missing_ok=True)


def clear(folder: Path) -> None:
    """Remove what an earlier plan wrote in ``folder`` (shards, indexes, records, plan, manifest)."""
    for pattern in ("*.tar", "*.idx", "*.partial", PLAN, MANIFEST, WIDS):
        for path in folder.glob(pattern):
            path.unlink()
    shutil.rmtree(folder / RECORDS, ignore_errors=True)


def run_split(folder: Path, plan: SplitPlan, options: ShardOptions, jobs: int | None, node_rank: int,
              num_nodes: int, quiet: bool) -> SplitReport:
    """Write this node's missing shards of ``plan``; with one node, finish with the manifest."""
    report = SplitReport(plan.split, plan.pattern, len(plan.shards), plan.num_samples)
    mine = [s for s in plan.shards if s.index % num_nodes == node_rank]
    report.other_nodes = len(plan.shards) - len(mine)
    todo = [s for s in mine if complete(folder, s.name, s.digest) is None]
    report.kept = len(mine) - len(todo)
    names = tuple(class_names(plan.label_space, list(plan.classes)))
    work = [ShardJob(str(folder), s, options, names, plan.label_space) for s in todo]
    start = time.perf_counter()
    for record in map_units(write_shard, work, jobs=jobs, desc=f"shard {plan.split}", quiet=quiet,
                            weights=[sum(p.entry.size for p in s.samples) for s in todo]):
        report.written.append(record["name"])
        report.bytes_written += record["bytes"]
    report.seconds = time.perf_counter() - start
    if num_nodes == 1:
        finalize(folder)
        report.manifest = str(folder / MANIFEST)
    return report


def merge(dest: Path, splits: Iterable[str] | None = None, check_sha256: bool = False) -> list[dict]:
    """After all nodes: check every split's shards against the plan and write the manifests."""
    dest = Path(dest)
    folders = [dest / s for s in splits] if splits else sorted(p.parent for p in dest.glob(f"*/{PLAN}"))
    if not folders:
        raise UsageError(f"{dest}: no <split>/{PLAN} found; not a shard output folder")
    return [finalize(folder, check_sha256) for folder in folders]
