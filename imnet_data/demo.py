"""``imnet-data demo``: make a fake download with the tool itself and run every stage that exists on it.

The demo is the product's smoke test for a new user: one command, no ImageNet needed, a short report. Each
stage is a function of the shared context; later stages (validate, organize, shard, load) append themselves.
"""
from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds

from imnet_data import catalog, fake, organize, shards, validate, wordnet
from imnet_data.report import Report

DEMO_OPTIONS = fake.FakeOptions(classes=10, train_per_class=8, val_images=40, seed=0,
                                with_quirks=True, with_faults=True, bbox=True, kaggle=True)


@dataclass
class Stage:
    """One stage's outcome."""

    name: str
    ok: bool
    summary: str
    seconds: float


@dataclass
class DemoReport(Report):
    """What the demo did, stage by stage."""

    workdir: Path
    stages: list[Stage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every stage passed."""
        return all(s.ok for s in self.stages)

    def as_dict(self) -> dict:
        """``ok``, the work folder and each stage's outcome (seconds rounded to 0.01)."""
        return {"workdir": str(self.workdir), "ok": self.ok,
                "stages": [{"name": s.name, "ok": s.ok, "summary": s.summary, "seconds": round(s.seconds, 2)}
                           for s in self.stages]}

    def render(self) -> str:
        """One line per stage with its summary indented below, then the verdict."""
        lines = [f"imnet-data demo in {self.workdir}"]
        for s in self.stages:
            lines.append(f"[{'ok' if s.ok else 'FAILED'}] {s.name} ({s.seconds:.1f} s)")
            lines += [f"     {line}" for line in s.summary.splitlines()]
        lines.append("all stages ok" if self.ok else "some stages FAILED")
        return "\n".join(lines)


@dataclass
class Context:
    """State the stages share: the work folder and what earlier stages produced."""

    workdir: Path
    quiet: bool
    download: fake.FakeResult | None = None


def stage_fake(ctx: Context) -> tuple[bool, str]:
    """Write the fake ILSVRC2012 download (quirks, faults, bbox, Kaggle layout) and its truth file."""
    ctx.download = fake.make_fake(ctx.workdir / "download", DEMO_OPTIONS, quiet=ctx.quiet)
    fake.write_truth(ctx.download, ctx.workdir / "truth.json")
    truth = ctx.download.truth
    sizes = sum(p.stat().st_size for p in ctx.download.archives.values() if p.is_file())
    kinds: dict[str, int] = {}
    for split in ("train", "val"):
        for entry in truth[split].values():
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    return True, (f"{ctx.workdir / 'download'}: {len(ctx.download.archives)} archives/folders, {sizes / 1e6:.1f} MB; "
                  f"{len(truth['classes'])} classes, {len(truth['train'])} train + {len(truth['val'])} val files\n"
                  f"file kinds: {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}")


def stage_catalog(ctx: Context) -> tuple[bool, str]:
    """Name the fake's classes from the catalog and group them with WordNet."""
    assert ctx.download is not None
    cat = catalog.ilsvrc2012()
    wnids = [c["wnid"] for c in ctx.download.truth["classes"]]
    tree = wordnet.hierarchy()
    groups = tree.group_at_depth(wnids, 6)
    lines = [f"{cat.by_wnid(w).index:>4} {w} {cat.by_wnid(w).name:<24} in {catalog.synset_words(groups[w])}"
             for w in wnids]
    return True, f"WordNet backend: {tree.backend}; class, name and group at depth 6:\n" + "\n".join(lines)


def stage_validate(ctx: Context) -> tuple[bool, str]:
    """Validate the fake deeply against its own devkit: the quirks are known, the planted faults are damage."""
    assert ctx.download is not None
    report = validate.validate(ctx.download.out, expect="self", deep=True, quiet=ctx.quiet)
    report.save(ctx.workdir / "validate-report.json")
    tally = report.tally()
    found = {kind for kinds in tally.values() for kind in kinds}
    planted = {"truncated", "empty", "not_image", "duplicate"}
    caught = all(any(p in k for k in found) for p in planted)
    summary = "; ".join(f"{sev}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                        for sev, kinds in sorted(tally.items()))
    return caught and not report.ok, (f"{summary}\nplanted faults {'all' if caught else 'NOT all'} found, so the "
                                      f"verdict is 'damaged' (exit 1), as it should be; report: validate-report.json")


def stage_organize(ctx: Context) -> tuple[bool, str]:
    """Organize the fake into train/<wnid>/ and val/<wnid>/ with --fix (quirks re-encoded, faults skipped)."""
    assert ctx.download is not None
    report = organize.organize(ctx.download.out, ctx.workdir / "organized", fix=True, quiet=ctx.quiet)
    truth = ctx.download.truth
    decodable = {name: e["wnid"] for name, e in truth["val"].items()
                 if e["kind"] not in ("truncated", "empty", "not_image")}
    placed = sum((ctx.workdir / "organized" / "val" / wnid / name).is_file() for name, wnid in decodable.items())
    return placed == len(decodable), (
        f"{ctx.workdir / 'organized'}: " + ", ".join(f"{s} {n} files" for s, n in report.counts.items())
        + f"; {len(report.changed)} re-encoded, {len(report.skipped)} skipped as undecodable; "
        f"val images in their true class folder: {placed} of {len(decodable)}")


def stage_shard(ctx: Context) -> tuple[bool, str]:
    """Shard the organized copy (faults gone, quirks fixed) into WebDataset tars; every val label checked."""
    assert ctx.download is not None
    dest = ctx.workdir / "shards"
    report = shards.shard(ctx.workdir / "organized", dest, shards.ShardOptions(samples_per_shard=32),
                          quiet=ctx.quiet)
    manifest = shards.read_manifest(dest / "val")
    truth = {Path(name).stem: e["wnid"] for name, e in ctx.download.truth["val"].items()}
    wnids = [c["wnid"] for c in manifest["classes"]]
    right = sum(wnids[int(s["cls"])] == truth[s["__key__"]]
                for s in wds.WebDataset([str(dest / "val" / x["name"]) for x in manifest["shards"]],
                                        shardshuffle=False))
    return right == manifest["num_samples"] > 0, (
        "; ".join(f"{s.split}: {s.samples} samples in {s.shards} shards ({s.split}/{s.pattern})"
                  for s in report.splits)
        + f"\nread back with webdataset: {right} of {manifest['num_samples']} val labels match the devkit")


def stage_load(ctx: Context) -> tuple[bool, str]:
    """Load the val shards as training batches would (DALI CPU-only, or the torch fallback without DALI) and
    check every label against the devkit; says what to install when neither torch nor DALI is present."""
    assert ctx.download is not None
    if importlib.util.find_spec("torch") is None:
        return True, "skipped: the loader yields torch tensors; pip install torch (and 'imnet-data[dali]')"
    from imnet_data.loader import build_loader

    backend = "dali" if importlib.util.find_spec("nvidia.dali") else "torch"
    loader = build_loader(ctx.workdir / "shards" / "val", batch_size=16, backend=backend, device="cpu",
                          num_threads=2, remainder="partial")
    truth = {Path(name).stem: e["wnid"] for name, e in ctx.download.truth["val"].items()}
    keys = [k for batch in loader.positions() for k in loader.keys(batch) if k is not None]
    wnids = [c["wnid"] for c in shards.read_manifest(ctx.workdir / "shards" / "val")["classes"]]
    labels, shape = [], None
    for images, batch_labels in loader:
        labels += batch_labels.tolist()
        shape = tuple(images.shape)
    right = sum(wnids[label] == truth[key] for key, label in zip(keys, labels, strict=True))
    return right == len(keys) > 0, (f"backend {backend} (CPU): {len(loader)} batches of {shape} "
                                    f"{images.dtype}; labels right: {right} of {len(keys)}")


STAGES: list[tuple[str, Callable[[Context], tuple[bool, str]]]] = [
    ("fake download", stage_fake),
    ("catalog", stage_catalog),
    ("validate --deep", stage_validate),
    ("organize --fix", stage_organize),
    ("shard", stage_shard),
    ("load", stage_load),
]


def run(workdir: Path | None = None, *, quiet: bool = False) -> DemoReport:
    """Run every stage in a fresh (or given) work folder; a failing stage is reported and stops the demo."""
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="imnet-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(workdir=workdir, quiet=quiet)
    report = DemoReport(workdir=workdir)
    for name, fn in STAGES:
        start = time.perf_counter()
        try:
            ok, summary = fn(ctx)
        except Exception as e:  # the report names the stage and the error instead of a traceback
            ok, summary = False, f"{type(e).__name__}: {e}"
        report.stages.append(Stage(name, ok, summary, time.perf_counter() - start))
        if not ok:
            break
    return report
