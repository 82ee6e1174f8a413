"""Benchmark every stage of the tool on a full-count miniature of the official ILSVRC2012 download, against
``tar -x`` of the same archives, in one run.

The download (made in ``--src`` on the first run, reused once its three archives exist) has the official
layout and the REAL file counts: ``ILSVRC2012_img_train.tar`` holds the 1000 ``<wnid>.tar`` (sorted by WNID)
with each class's real number of train images (1,281,167 in all), ``ILSVRC2012_img_val.tar`` the 50,000
``ILSVRC2012_val_%08d.JPEG`` labelled by the real devkit ground truth, and ``ILSVRC2012_devkit_t12.tar.gz`` the
fake's byte-compatible ``meta.mat`` (``imnet_data.fake.devkit``) with the real train counts. The images are
tiny (~3 KB, ~5 GB of archives in all) but valid and unique: a few dozen small noise JPEGs are encoded once and
every file is one of them with its own name in a COM segment right after the SOI marker. ``--scale F`` keeps a
fraction F of each class's train images (at least 1) and of each class's val images (at least 1). Generation
uses all cores (workers build the inner tars) and is not part of the measured figures.

Rows, each a subprocess of ``python -m imnet_data`` (this interpreter, this environment: set ``PYTHONPATH`` to
measure another checkout), outputs under ``--work`` (default: beside ``--src``), deleted and synced first:

    tar -x            outer train tar, then each inner tar into its class folder (``tar_extract`` of
                      ``imnet_data/bench/measure.py``), and the val tar: the baseline, the same images as
                      organize and shard
    tar -x outer      plain ``tar -xf`` of the outer train tar only (the inner tars land as files), for scale
    validate          ``validate SRC --expect self --skip-checksums`` (headers only)
    validate --deep   the same, decoding every image
    organize          ``organize SRC OUT`` (train and val)
    shard             ``shard SRC SHARDS`` (train and val, default options); SHARDS is kept for the rows below
    verify            ``verify SHARDS``
    stage             ``stage SHARDS OUT2 --all`` (folder to folder copy)
    loader 1/1, 0/8   ``build_loader(SHARDS/train, batch_size=256, backend="torch", device="cpu")`` for world
                      size 1 and for rank 0 of 8, constructed in a subprocess (no iteration): 's' is the
                      construction alone, the process's whole time (imports included) is in the notes

The archives are read once beforehand so every run reads them from the page cache, and before every run the
earlier runs' outputs are dropped from the page cache and the archives read again (``Outputs.uncache``: every
run starts with the same page cache); each run writes into a fresh folder after a sync (earlier outputs are moved
aside and deleted at the end, or when the disk runs short followed by a ``--settle`` wait: see ``Outputs``) and is
timed until it returns and until a following ``sync`` has put its writes on the disk; the best of ``--repeat``
runs is shown. ``tar -x``, organize and shard are measured in two
conditions: in a fresh area (as above), and, after every row, once more right after their own earlier output was
deleted (``shutil.rmtree``, eight class folders at once, a sync, then a ``--pause`` of 60 s: rows ``... , after a
delete``), as a user re-running a command after ``rm -rf`` of its output; that output alone is deleted then (the
other rows' outputs wait for the end), so every command's run follows the same kind of delete; each ratio is to
``tar -x`` in the same condition. images/s counts the images the row handles (train and val; train only for
``tar -x outer``; the rank's samples for a loader); the ratio is a row's images/s over the baseline's (with the same
images: ``tar -x`` seconds over the row's; higher is better). Peak RSS is that of the largest single process of the run
(``os.wait4`` rusage of the reaped process tree, read by a small spawning wrapper). Targets (issue 23, printed met
yes/NO): shard >= 1.0 and organize >= 0.9 of ``tar -x`` (with the sync) in both conditions, shard peak RSS <= 300
MB. A failed stage ends the benchmark with exit status 1 and the stage's stderr. Start it on a disk that saw no big
delete in the last 6 minutes (see ``Outputs``).

    python tools/bench_fullcount.py                               # full count (~5 GB in /tmp/imnet-fullcount)
    python tools/bench_fullcount.py --src /tmp/fc-small --scale 0.01 --only tar-x,organize,shard
    python tools/bench_fullcount.py --only tar-x,shard --conditions fresh  # one condition only
    PYTHONPATH=/tmp/wt python tools/bench_fullcount.py --repeat 3 --json fullcount.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from imnet_data import catalog, tario
from imnet_data.bench.measure import StageFailed, run_measured, timed_run, warm
from imnet_data.fake.devkit import write_devkit_of
from imnet_data.parallel import default_jobs
from imnet_data.sources.ilsvrc import TRAIN, VAL, index_tar

DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
VAL_PER_CLASS = 50
BASE_JPEGS = 48
SIDES = (32, 48)            # base JPEG width and height range, px
TARGETS = {"organize": 0.90, "shard": 1.00}     # of tar -x's images/s (with the sync), in both conditions
SHARD_RSS_TARGET_MB = 300
DELETED = "@deleted"        # a row's name suffix: the run right after deleting the command's earlier output
TWICE = ("tar-x", "organize", "shard")     # the rows measured in both conditions
CONDITIONS = {"fresh", "deleted"}
ROWS = ("tar-x", "tar-x-outer", "validate", "validate-deep", "organize", "shard", "verify", "stage",
        "loader-1", "loader-8")
LABELS = {"tar-x": "tar -x (train 2-level + val)", "tar-x-outer": "tar -x outer train tar only",
          "validate": "validate --expect self", "validate-deep": "validate --expect self --deep",
          "organize": "organize", "shard": "shard", "verify": "verify (shards)", "stage": "stage (folder copy)",
          "loader-1": "build_loader rank 0/1", "loader-8": "build_loader rank 0/8"}
LABELS |= {name + DELETED: LABELS[name] + ", after a delete" for name in TWICE}
LOADER_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from imnet_data.loader import build_loader
imported = time.perf_counter()
loader = build_loader(sys.argv[1], batch_size=256, backend="torch", device="cpu", rank=0, world_size=int(sys.argv[2]))
built = time.perf_counter()
print(json.dumps({"import_s": imported - start, "build_s": built - imported, "samples": loader.num_samples,
                  "batches": len(loader)}))
"""

# ``imnet_data.bench.measure.tar_extract`` in a small process of its own (so its tars' peak RSS is theirs, see
# ``run_measured``): outer train tar into OUT/train; with INNER=1 each inner tar into its class folder (deleting
# it), then the val tar into OUT/val. Arguments: TRAIN OUT VAL INNER.
TAR_EXTRACT = """
import os, subprocess, sys
train, out, val, inner = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
subprocess.run(["tar", "-xf", train, "-C", os.path.join(out, "train")], check=True)
if inner:
    for name in sorted(n for n in os.listdir(os.path.join(out, "train")) if n.endswith(".tar")):
        tar, folder = os.path.join(out, "train", name), os.path.join(out, "train", name[:-4])
        os.mkdir(folder)
        subprocess.run(["tar", "-xf", tar, "-C", folder], check=True)
        os.unlink(tar)
    os.mkdir(os.path.join(out, "val"))
    subprocess.run(["tar", "-xf", val, "-C", os.path.join(out, "val")], check=True)
"""

# Runs argv[2:] and writes the ru_maxrss (KiB) of its process tree to argv[1]; exits with its status.
# ---- the download --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The miniature: train count per class (sorted WNIDs) and the class of each val image, in file order."""

    train: dict[str, int]
    val: list[str]

    @property
    def images(self) -> int:
        return sum(self.train.values()) + len(self.val)


def layout(scale: float) -> Layout:
    """The real per-class train counts and val labels, scaled (at least one image per class in each split)."""
    cat = catalog.ilsvrc2012()
    train = {c.wnid: max(1, round(c.train_images * scale)) for c in sorted(cat, key=lambda c: c.wnid)}
    keep, seen, val = max(1, round(VAL_PER_CLASS * scale)), dict.fromkeys(train, 0), []
    for devkit_id in catalog.val_ground_truth():
        wnid = cat.by_ilsvrc2012_id(devkit_id).wnid
        if seen[wnid] < keep:
            seen[wnid] += 1
            val.append(wnid)
    return Layout(train, val)


def base_jpegs(count: int = BASE_JPEGS, seed: int = 0) -> list[bytes]:
    """Small RGB gradient+noise JPEGs (q90, 4:4:4), sides in ``SIDES``: ~3 KB on average."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(count):
        w, h = (int(rng.integers(SIDES[0], SIDES[1] + 1)) for _ in range(2))
        ramp = np.add.outer(np.linspace(0, 255, h), np.linspace(0, 127, w))[..., None] % 256
        noisy = ramp * rng.uniform(0.3, 0.7, 3) + rng.normal(0, rng.uniform(12, 60), (h, w, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90, subsampling=0)
        out.append(buf.getvalue())
    return out


def unique_jpeg(base: bytes, name: str) -> bytes:
    """``base`` with a COM segment holding ``name`` right after SOI: still a valid JPEG, bytes unique by name."""
    text = name.encode()
    return base[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + base[2:]


_BASES: list[bytes] = []


def _init_worker(bases: list[bytes]) -> None:
    _BASES[:] = bases


def inner_tar(job: tuple[int, str, int]) -> tuple[bytes, int]:
    """(``<wnid>.tar`` bytes, image bytes in it) for class number ``index`` with ``count`` images."""
    index, wnid, count = job
    names = sorted(f"{wnid}_{n}.JPEG" for n in range(1, count + 1))
    images = [unique_jpeg(_BASES[(index * 7919 + i) % len(_BASES)], name) for i, name in enumerate(names)]
    return tario.tar_bytes(zip(names, images, strict=True)), sum(map(len, images))


def write_train(path: Path, plan: Layout, bases: list[bytes], jobs: int) -> int:
    """The outer train tar (inner tars built by ``jobs`` workers), atomically; returns the image bytes."""
    total = 0
    work = [(i, wnid, n) for i, (wnid, n) in enumerate(plan.train.items())]
    with multiprocessing.Pool(jobs, _init_worker, (bases,)) as pool, tario.atomic_tar(path) as tar:
        for (_, wnid, _), (data, size) in zip(work, pool.imap(inner_tar, work), strict=True):
            tario.add_bytes(tar, f"{wnid}.tar", data)
            total += size
    return total


def write_val(path: Path, plan: Layout, bases: list[bytes]) -> int:
    """The flat val tar, atomically; returns the image bytes."""
    total = 0
    with tario.atomic_tar(path) as tar:
        for i, _ in enumerate(plan.val, 1):
            name = f"ILSVRC2012_val_{i:08d}.JPEG"
            data = unique_jpeg(bases[(i * 104729) % len(bases)], name)
            tario.add_bytes(tar, name, data)
            total += len(data)
    return total


def ensure_download(src: Path, plan: Layout, jobs: int) -> float | None:
    """Make the download in ``src`` unless its three archives exist; the seconds it took (None: reused)."""
    if all((src / name).is_file() for name in (TRAIN, VAL, DEVKIT)):
        return None
    src.mkdir(parents=True, exist_ok=True)
    print(f"making the download in {src}: {sum(plan.train.values()):,} train + {len(plan.val):,} val images")
    start = time.perf_counter()
    bases = base_jpegs()
    image_bytes = write_train(src / TRAIN, plan, bases, jobs) + write_val(src / VAL, plan, bases)
    write_devkit_of(src / DEVKIT, plan.train, plan.val)
    seconds = time.perf_counter() - start
    print(f"made in {seconds:.0f} s ({jobs} workers); mean JPEG {image_bytes / plan.images:,.0f} bytes")
    return seconds


@dataclass
class Download:
    """What the archives hold, from their headers."""

    train: int = 0
    val: int = 0
    image_bytes: int = 0
    archive_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return self.train + self.val


def survey(src: Path) -> Download:
    """Images and their bytes per split (headers only), archive sizes; also reads every archive once, so the
    runs find them in the page cache."""
    found = Download(archive_bytes={name: (src / name).stat().st_size for name in (TRAIN, VAL, DEVKIT)})
    for name in found.archive_bytes:
        warm(src / name)
    for inner in index_tar(src / TRAIN):
        members = index_tar(src / TRAIN, inner.offset_data, inner.size)
        found.train += len(members)
        found.image_bytes += sum(ti.size for ti in members)
    val = index_tar(src / VAL)
    found.val, found.image_bytes = len(val), found.image_bytes + sum(ti.size for ti in val)
    return found


# ---- measuring -----------------------------------------------------------------------------------------------

def tar_extract(src: Path, out: Path, inner: bool = True) -> int:
    """``TAR_EXTRACT`` of the download into ``out`` (``inner=False``: the outer train tar only); the peak RSS
    in KiB."""
    (out / "train").mkdir(parents=True)
    cmd = [sys.executable, "-I", "-S", "-c", TAR_EXTRACT, str(src / TRAIN), str(out), str(src / VAL), str(int(inner))]
    return run_measured(cmd)[0]


def remove_tree(path: Path, threads: int = 8) -> None:
    """``shutil.rmtree(path)``, its innermost folders (the class folders) by ``threads`` threads at once: on a
    disk mounted with ``discard`` and no journal (this machine's) each freed block is discarded synchronously
    within the unlink, ~650 files/s for one ``rm -rf``; eight at once deleted 133,118 files in 31 s, not 296."""
    leaves = [top for top, folders, _ in os.walk(path) if not folders]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(shutil.rmtree, leaves))
    shutil.rmtree(path)


def drop_cached(path: Path) -> None:
    """Drop the file's clean pages from the page cache (nothing where ``posix_fadvise`` is missing)."""
    if hasattr(os, "posix_fadvise") and path.is_file() and not path.is_symlink():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class Outputs:
    """The runs' output folders under ``work``. A cleared folder is moved into ``work/.trash`` and deleted at the
    end, or when the disk keeps under ``reserve`` bytes free; after such a delete the next run waits ``settle``
    seconds. Why: ext4 without a journal does not reuse an inode within 60 s of its deletion (360 s while its
    inode table block is dirty) and each file created meanwhile scans past every such inode of its block group,
    up to ~1 ms a file after deleting a million files: a run right after a big delete is several times slower.
    Whom it hits is decided by where the run's new folders land (the kernel puts them in the emptiest groups,
    often the ones just freed), not by how the run writes its files (``tools/bench_recent_delete.py``)."""

    def __init__(self, work: Path, reserve: int, settle: float, pause: float, sources: Sequence[Path] = ()) -> None:
        self.trash, self.reserve, self.settle, self.pause = work / ".trash", reserve, settle, pause
        self.sources, self.uncached = list(sources), set[tuple[int, int]]()
        self.deleted_at = -float("inf")
        self.last_delete = ""

    def uncache(self) -> None:
        """Drop every earlier output from the page cache (each file's pages, ``POSIX_FADV_DONTNEED``; written
        back first: the caller syncs) and read the download's ``sources`` once more (from the cache if still
        there), so that every run starts with the same page cache: the archives in it, nothing else of the
        benchmark's. The outputs kept for later rows (the trash, the outputs waiting for their run after a
        delete) filled it as the rows went on, and a run with the cache full is slower, whatever it runs
        (2026-12-07, 2 cores, 24 GB: ``shard`` of the full count 36.3 s with the archives alone cached, 47.1 s
        with 10 GB of other files cached too; ``tar -x`` of the train tar ~38 s, 56.0 s): the rows run later in
        the benchmark ran with more of it. A folder is dropped once (by its inode: it is renamed, not read)."""
        tops = [p for p in self.trash.parent.iterdir() if p != self.trash] if self.trash.parent.exists() else []
        tops += list(self.trash.iterdir()) if self.trash.exists() else []
        for top in tops:
            st = top.stat()
            key = (st.st_dev, st.st_ino)
            if key not in self.uncached:
                for folder, _, names in os.walk(top):
                    for name in names:
                        drop_cached(Path(folder) / name)
                self.uncached.add(key)
        for source in self.sources:
            warm(source)

    def clear(self, path: Path) -> None:
        """Move ``path`` (a folder) out of the way, if present."""
        if path.exists():
            self.trash.mkdir(parents=True, exist_ok=True)
            path.rename(self.trash / f"{len(list(self.trash.iterdir()))}-{path.name}")

    def empty(self) -> None:
        """Delete the moved folders."""
        if self.trash.exists():
            remove_tree(self.trash)
            self.deleted_at = time.monotonic()

    def prepare(self, path: Path) -> None:
        """Before a run into ``path``: the old output moved aside, room on the disk (emptying the trash if
        short), everything written, settled after a delete."""
        self.clear(path)
        if shutil.disk_usage(self.trash.parent).free < self.reserve:
            print(f"  (disk short: deleting earlier outputs, then waiting {self.settle:.0f} s)", flush=True)
            self.empty()
        os.sync()
        self.uncache()
        time.sleep(max(0.0, self.deleted_at + self.settle - time.monotonic()))

    def delete_then_pause(self, path: Path) -> None:
        """Before a run in the second condition: ``path`` (the same command's output of the run before) deleted,
        nothing else, the disk synced, then ``pause`` seconds, as a user re-running a command after ``rm -rf`` of
        its output would. The moved outputs stay in the trash: emptying it here too made organize's run follow the
        delete of ``tar -x``'s output of the row before as well, 133,118 inodes freed in the emptiest groups,
        where organize's new folders then went (each file scanned past ~2,300 of them), while ``tar -x``'s run
        followed the delete of its own output alone. It also waits first, until the run will start ``settle``
        seconds after any earlier delete: the inodes ``tar -x``'s run left free in the groups both commands use
        count as just deleted for 360 s once organize writes beside them."""
        self.uncache()
        waited = max(0.0, self.deleted_at + self.settle - self.pause - time.monotonic())
        time.sleep(waited)
        files = sum(len(names) for _, _, names in os.walk(path)) if path.exists() else 0
        start = time.monotonic()
        if path.exists():
            remove_tree(path)
        os.sync()
        self.deleted_at = time.monotonic()
        self.last_delete = (f"after deleting {files:,} files of the run before in {self.deleted_at - start:.0f} s "
                            f"and a {self.pause:.0f} s pause" + (f" ({waited:.0f} s wait before)" if waited else ""))
        print(f"  ({self.last_delete})", flush=True)
        time.sleep(self.pause)


@dataclass
class Row:
    """One measured row: the best (s, s+sync) over the runs, the largest peak RSS, images, notes."""

    images: int
    runs: list[tuple[float, float]] = field(default_factory=list)
    rss_kib: int = 0
    notes: str = ""

    @property
    def best(self) -> tuple[float, float]:
        return min(s for s, _ in self.runs), min(b for _, b in self.runs)


@dataclass
class Bench:
    """The measured rows over one download."""

    src: Path
    work: Path
    jobs: int
    found: Download
    outputs: Outputs
    rows: dict[str, Row] = field(default_factory=dict)

    @property
    def shards(self) -> Path:
        return self.work / "shards"

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "imnet_data", *args, "--quiet"]

    def measure(self, name: str, out: Path, run: Callable[[], int], images: int, repeat: int) -> Row:
        """Time ``run`` (returns the peak RSS in KiB) ``repeat`` times, ``out`` cleared first; a ``DELETED`` row
        right after ``out`` (the same command's earlier output) was deleted, then the pause."""
        row = self.rows.setdefault(name, Row(images))
        peaks: list[int] = []
        prepare = self.outputs.delete_then_pause if name.endswith(DELETED) else self.outputs.prepare
        for _ in range(repeat):
            row.runs.append(timed_run(lambda: peaks.append(run()), out, prepare))
        if name.endswith(DELETED):
            row.notes = self.outputs.last_delete
        row.rss_kib = max([row.rss_kib, *peaks])
        print(f"  {name:<14} {row.best[0]:8.2f} s  {row.best[1]:8.2f} s+sync  {row.rss_kib / 1024:7.0f} MB",
              flush=True)
        return row

    def command(self, *args: str) -> Callable[[], int]:
        return lambda: run_measured(self.cli(*args))[0]

    def loader(self, world_size: int, repeat: int) -> None:
        """Construction of the train loader for rank 0 of ``world_size``: 's' is the build alone."""
        name, row = f"loader-{world_size}", None
        cmd = [sys.executable, "-c", LOADER_SCRIPT, str(self.shards / "train"), str(world_size)]
        for _ in range(repeat):
            start = time.perf_counter()
            rss, out = run_measured(cmd)
            whole = time.perf_counter() - start
            facts = json.loads(out.strip().splitlines()[-1])
            row = self.rows.setdefault(name, Row(facts["samples"]))
            row.runs.append((facts["build_s"], facts["build_s"]))
            row.rss_kib = max(row.rss_kib, rss)
            row.notes = (f"process {whole:.1f} s (imports {facts['import_s']:.1f} s); "
                         f"{facts['batches']:,} batches")
        assert row is not None
        print(f"  {name:<14} {row.best[0]:8.2f} s  {row.rss_kib / 1024:7.0f} MB  {row.notes}", flush=True)


def run_rows(bench: Bench, only: list[str], repeat: int, conditions: set[str] = CONDITIONS) -> None:
    """Every selected row, in ``ROWS`` order; the shard output is made (untimed) when a later row needs it."""
    src, work, jobs, found = str(bench.src), bench.work, str(bench.jobs), bench.found
    scratch = work / "out"
    steps: dict[str, Callable[[], object]] = {
        "tar-x": lambda: bench.measure("tar-x", scratch, lambda: tar_extract(bench.src, scratch), found.images,
                                       repeat),
        "tar-x-outer": lambda: bench.measure("tar-x-outer", scratch,
                                             lambda: tar_extract(bench.src, scratch, inner=False), found.train,
                                             repeat),
        "validate": lambda: bench.measure("validate", scratch, bench.command(
            "validate", src, "--expect", "self", "--skip-checksums", "--jobs", jobs), found.images, repeat),
        "validate-deep": lambda: bench.measure("validate-deep", scratch, bench.command(
            "validate", src, "--expect", "self", "--skip-checksums", "--deep", "--jobs", jobs), found.images,
            repeat),
        "organize": lambda: bench.measure("organize", scratch, bench.command(
            "organize", src, str(scratch), "--jobs", jobs), found.images, repeat),
        "shard": lambda: bench.measure("shard", bench.shards, bench.command(
            "shard", src, str(bench.shards), "--jobs", jobs), found.images, repeat),
        "verify": lambda: bench.measure("verify", scratch, bench.command(
            "verify", str(bench.shards), "--jobs", jobs), found.images, repeat),
        "stage": lambda: bench.measure("stage", scratch, bench.command(
            "stage", str(bench.shards), str(scratch), "--all"), found.images, repeat),
        "loader-1": lambda: bench.loader(1, repeat),
        "loader-8": lambda: bench.loader(8, repeat)}
    needs_shards = {"verify", "stage", "loader-1", "loader-8"} & set(only)
    if needs_shards and "shard" not in only:
        print("  (writing the shards, untimed, for " + ", ".join(sorted(needs_shards)) + ")", flush=True)
        bench.outputs.clear(bench.shards)
        run_measured(bench.cli("shard", src, str(bench.shards), "--jobs", jobs))
    kept = {"tar-x": work / "out-tar-x", "organize": work / "out-organize", "shard": bench.shards}
    for name in ROWS:
        if name in only and (name not in TWICE or "fresh" in conditions):
            steps[name]()
            if name in TWICE and name != "shard":    # kept for its run after a delete; so are the shards
                bench.outputs.clear(kept[name])
                scratch.rename(kept[name])
            bench.outputs.clear(scratch)
    for name in (n for n in TWICE if n in only and "deleted" in conditions):   # then each right after deleting
        out = kept[name]                                                         # its earlier output
        commands: dict[str, Callable[[], int]] = {
            "tar-x": partial(tar_extract, bench.src, out),
            "organize": bench.command("organize", src, str(out), "--jobs", jobs),
            "shard": bench.command("shard", src, str(out), "--jobs", jobs)}
        command = commands[name]
        if not out.exists():
            print(f"  (running {name} untimed: its output is what the run after a delete deletes)", flush=True)
            command()
        bench.measure(name + DELETED, out, command, found.images, 1)
        bench.outputs.clear(out)
    bench.outputs.clear(bench.shards)


# ---- the table -----------------------------------------------------------------------------------------------

def figures(bench: Bench) -> dict[str, dict]:
    """Per row: seconds, images/s and ratio to ``tar -x`` (without and with the sync), peak RSS, notes."""
    out = {}
    for name, row in bench.rows.items():
        base = bench.rows.get("tar-x" + DELETED if name.endswith(DELETED) else "tar-x")
        s, synced = row.best
        rates = row.images / s, row.images / synced
        ratios = [rate / (base.images / b) if base else None
                  for rate, b in zip(rates, base.best if base else (1, 1), strict=True)]
        out[name] = {"label": LABELS[name], "images": row.images, "s": s, "s_sync": synced, "img_s": rates[0],
                     "img_s_sync": rates[1], "ratio": ratios[0], "ratio_sync": ratios[1],
                     "peak_rss_mb": row.rss_kib / 1024, "runs": row.runs, "notes": row.notes}
    return out


def met(ok: bool) -> str:
    return "met yes" if ok else "met NO"


def target(name: str, f: dict) -> str:
    """The row's target and whether it is met (on the ratio with the sync; shard also on peak RSS)."""
    marks = []
    command = name.removesuffix(DELETED)
    if command in TARGETS and f["ratio_sync"] is not None:
        marks.append(f"ratio>={TARGETS[command]:.2f} {met(f['ratio_sync'] >= TARGETS[command])}")
    if command == "shard":
        marks.append(f"RSS<={SHARD_RSS_TARGET_MB}MB {met(f['peak_rss_mb'] <= SHARD_RSS_TARGET_MB)}")
    return ", ".join(marks)


def report(bench: Bench, rows: dict[str, dict], generation: float | None) -> None:
    """Print the table."""
    found = bench.found
    print(f"\n{bench.src}: {found.train:,} train + {found.val:,} val images, mean JPEG "
          f"{found.image_bytes / max(1, found.images):,.0f} bytes; archives "
          + ", ".join(f"{n} {b / 1e9:.2f} GB" for n, b in found.archive_bytes.items())
          + f"; generation {'reused' if generation is None else f'{generation:.0f} s'}")
    print(f"outputs on {bench.work}, {os.cpu_count()} cores, --jobs {bench.jobs}; best of "
          f"{max(len(r.runs) for r in bench.rows.values())}")

    def ratio(r: float | None) -> str:
        return "-" if r is None else f"{r:.2f}"

    width = max(len(f["label"]) for f in rows.values())
    print(f"{'row':<{width}} {'s':>8} {'img/s':>8} {'ratio':>6}   {'s+sync':>8} {'img/s':>8} {'ratio':>6}   "
          f"{'peak RSS':>9}  target / notes")
    for name, f in rows.items():
        print(f"{f['label']:<{width}} {f['s']:>8.2f} {f['img_s']:>8.0f} {ratio(f['ratio']):>6}   {f['s_sync']:>8.2f} "
              f"{f['img_s_sync']:>8.0f} {ratio(f['ratio_sync']):>6}   {f['peak_rss_mb']:>6.0f} MB  "
              f"{'; '.join(x for x in (target(name, f), f['notes']) if x)}")
    print("ratio = images/s over tar -x's in the same condition (same images: tar -x seconds / row seconds); "
          "higher is better. Targets on s+sync, in both conditions (a fresh area; right after deleting the "
          f"command's earlier output, then a pause): organize >= {TARGETS['organize']:.2f}, shard >= "
          f"{TARGETS['shard']:.2f}, shard peak RSS <= {SHARD_RSS_TARGET_MB} MB.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path("/tmp/imnet-fullcount/src"),
                        help="the download, made there when its archives are missing (default "
                             "/tmp/imnet-fullcount/src)")
    parser.add_argument("--work", type=Path,
                        help="folder for the outputs (its out/, shards/, .trash/), on the disk to test (default: "
                             "work/ beside --src)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the real per-class counts of a new download (default 1.0)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each row; the best is shown")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows (default all: {','.join(ROWS)})")
    parser.add_argument("--jobs", type=int, default=0,
                        help="--jobs of organize, shard, validate, verify and of the generation (default all cores)")
    parser.add_argument("--settle", type=float, default=365,
                        help="seconds a run waits after earlier outputs were deleted (default 365: ext4 without a "
                             "journal may skip, one by one, the inodes deleted sooner, see Outputs)")
    parser.add_argument("--conditions", default="fresh,deleted",
                        help="for tar -x, organize and shard: fresh, deleted or both (default fresh,deleted)")
    parser.add_argument("--pause", type=float, default=60,
                        help="seconds between deleting a command's earlier output and its run after the delete "
                             "(default 60)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON to FILE")
    args = parser.parse_args()
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    if unknown := set(only) - set(ROWS):
        parser.error(f"unknown rows {', '.join(sorted(unknown))}; rows: {', '.join(ROWS)}")
    conditions = {c.strip() for c in args.conditions.split(",") if c.strip()}
    if not conditions or conditions - CONDITIONS:
        parser.error(f"--conditions: fresh, deleted or both, not {args.conditions!r}")
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    src = args.src.resolve()
    work = (args.work or src.parent / "work").resolve()
    jobs = default_jobs(args.jobs)
    plan = layout(args.scale)
    generation = ensure_download(src, plan, jobs)
    found = survey(src)
    if (found.train, found.val) != (sum(plan.train.values()), len(plan.val)):
        print(f"note: {src} holds {found.train:,} train + {found.val:,} val images, not the {args.scale} scale's "
              f"{sum(plan.train.values()):,} + {len(plan.val):,} (made with another --scale?)")
    made_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(work, 2 * sum(found.archive_bytes.values()) + (2 << 30), args.settle, args.pause,
                      [src / name for name in found.archive_bytes])
    bench = Bench(src, work, jobs, found, outputs)
    print(f"running {', '.join(only)} (outputs in {work})", flush=True)
    try:
        run_rows(bench, only, args.repeat, conditions)
    except StageFailed as e:
        print(f"FAILED: {e}\n{e.stderr}", file=sys.stderr)
        sys.exit(1)
    finally:
        for left in (work / "out", work / "out-tar-x", work / "out-organize", bench.shards):
            outputs.clear(left)
        outputs.empty()
        if made_work:
            with contextlib.suppress(OSError):
                work.rmdir()
    rows = figures(bench)
    report(bench, rows, generation)
    if args.json:
        args.json.write_text(json.dumps({"src": str(src), "work": str(work), "scale": args.scale, "jobs": jobs,
                                         "generation_s": generation, "train": found.train, "val": found.val,
                                         "mean_jpeg_bytes": found.image_bytes / max(1, found.images),
                                         "archive_bytes": found.archive_bytes, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
