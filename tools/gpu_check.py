"""The whole GPU measurement of the loader in ONE command, sized for the lent H200 (16 cores) in about 6 minutes:

    python tools/gpu_check.py --out "$OUT"            # on the GPU machine (see ../shared/device/README.md)
    python tools/gpu_check.py --out /tmp/gc --cpu-dry-run   # anywhere: the same flow, DALI's CPU operators, tiny

Phases (each timed; a failed phase is recorded and the rest still run):
1. data: ``imnet-data fake --profile imagenet`` (20,000 train, 5,000 val, ~110 KB mean, drawn on all cores),
   ``imnet-data shard`` and ``imnet-data organize`` (the ImageFolder copy);
2. ``pytest -m gpu`` (the tests that need a GPU);
3. rows, all in this process on the same shards, those the targets need first: the loader's train and val
   pipelines (batch 256, 224 px, bf16 and float32); plain DALI (``readers.webdataset`` + DALI's defaults +
   ``DALIGenericIterator``); torchvision ImageFolder + DataLoader(16 workers); end to end ResNet-50 and ResNet-18
   (bf16 autocast, channels_last, SGD) on a GPU-resident batch vs fed by the loader vs fed by plain DALI. Then,
   until ``--budget`` seconds from the start (the rest listed as skipped): DALI decode alone on the hardware and
   on the CUDA decoder (the ceiling); sweeps of ``hw_decoder_load`` and of ``num_threads``/``prefetch``; the host
   path alone vs DALI's reader (``bench --host-only``), per thread count.
Each row: images/s, CPU cores busy, GPU memory in use and, from ``nvidia-smi dmon``, the SM and JPEG-engine
utilisation during the row (what is saturated). Writes ``OUT/results.json`` (after every phase, so a cut-off run
still leaves what it measured) and ``OUT/results.md`` (the table, the ratios and the targets).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from imnet_data.bench.ceilings import dali_decode_row, jpeg_batches
from imnet_data.bench.end_to_end import model_feeds, model_rows
from imnet_data.bench.host import host_rows, thread_counts
from imnet_data.bench.peers import imagefolder_row, plain_dali_row
from imnet_data.bench.rows import Row, loader_row

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Size:
    """How big each part of the run is."""

    classes: int
    per_class: int
    val: int
    batch: int
    image: int
    seconds: float        # timed seconds per row (after warm-up)
    batches: int          # most batches per row
    steps: int            # most training steps per model row
    workers: int
    threads: tuple[int, ...]
    prefetch: tuple[int, ...]
    models: tuple[str, ...] = ("resnet50", "resnet18")
    hw_loads: tuple[float, ...] = (0.0, 0.5, 0.65, 0.8, 1.0)


FULL = Size(classes=100, per_class=200, val=5000, batch=256, image=224, seconds=3.0, batches=400, steps=200,
            workers=16, threads=(4, 8, 12, 16), prefetch=(1, 2, 3, 4))
DRY = Size(classes=4, per_class=10, val=16, batch=8, image=64, seconds=0.3, batches=3, steps=2, workers=2,
           threads=(1, 2), prefetch=(1, 3))
TARGETS = [  # (what, the ratio or figure in results, at least)
    ("train pipeline img/s", "train bf16", 22000),
    ("train / plain DALI", "train bf16 / plain DALI", 1.15),
    ("train / ImageFolder", "train bf16 / ImageFolder", 10.0),
    ("val pipeline img/s", "val bf16", 20000),
    ("ResNet-50 fed by the loader / resident", "resnet50 fed by the loader / resident", 0.97),
    ("ResNet-18 fed by the loader / resident", "resnet18 fed by the loader / resident", 0.90),
]


@dataclass
class Run:
    """What the run has measured so far; written to ``out`` after every phase."""

    out: Path
    dry: bool
    phases: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    ratios: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)   # rows left out: the time budget was spent

    def phase(self, name: str, work: Callable[[], object]) -> object:
        """Run one phase, record its seconds and outcome (a failure keeps its traceback and moves on)."""
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            detail = work()
            ok = True
        except Exception:  # noqa: BLE001 -- a measuring script reports every failure and goes on
            detail, ok = traceback.format_exc(limit=6), False
            print(detail, file=sys.stderr, flush=True)
        self.phases[name] = {"ok": ok, "seconds": round(time.perf_counter() - t0, 1), "detail": detail}
        self.save()
        return detail if ok else None

    def add(self, group: str, row: Row, started: float, dmon: Dmon) -> None:
        entry = {"group": group, **vars(row), **dmon.between(started, time.time())}
        self.rows.append(entry)
        print(f"   {row.name:<58} {row.images_per_s:>10,.0f} img/s  {row.cores_busy:5.1f} cores  "
              f"{entry.get('sm_pct', '')}", flush=True)

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {"dry_run": self.dry, "environment": self.environment, "phases": self.phases, "rows": self.rows,
                "skipped": self.skipped, "ratios": self.ratios, "targets": self.targets()}
        tmp = self.out / "results.json.partial"
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.out / "results.json")
        (self.out / "results.md").write_text(markdown(data))

    def targets(self) -> list[dict]:
        found = {**{r["name"]: r["images_per_s"] for r in self.rows}, **self.ratios}
        out = []
        for what, key, least in TARGETS:
            value = found.get(key)
            out.append({"target": what, "at_least": least, "measured": value,
                        "met": None if value is None or self.dry else value >= least})
        return out


class Dmon:
    """``nvidia-smi dmon -s u`` in the background: per-second SM and JPEG-engine utilisation, averaged over
    each row's time window. Silent where there is no nvidia-smi (the dry run)."""

    def __init__(self, path: Path) -> None:
        self.path, self.proc = path, None
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-o", "T"], stdout=path.open("w"),
                                         stderr=subprocess.DEVNULL)
        except OSError:
            pass

    def between(self, start: float, end: float) -> dict:
        if self.proc is None or not self.path.is_file():
            return {}
        header, samples = None, []
        for line in self.path.read_text().splitlines():
            parts = line.lstrip("#").split()
            if line.startswith("#") and "sm" in parts:
                header = parts
            elif header and not line.startswith("#") and len(parts) == len(header):
                hms = [int(x) for x in parts[0].split(":")]
                local = time.localtime(start)
                at = time.mktime((*local[:3], *hms, *local[6:]))
                if start - 0.5 <= at <= end + 0.5:
                    samples.append(dict(zip(header, parts, strict=True)))
        out = {}
        for column, key in (("sm", "sm_pct"), ("jpg", "jpeg_engine_pct"), ("dec", "video_dec_pct")):
            values = [float(s[column]) for s in samples if s.get(column, "-").replace(".", "").isdigit()]
            if values:
                out[key] = round(sum(values) / len(values))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()


def imnet(*args: str) -> None:
    """Run ``imnet-data ARGS`` as a user would (this repository's copy), quietly; raise on failure."""
    subprocess.run([sys.executable, "-m", "imnet_data", *args, "--quiet"], check=True, cwd=ROOT)


def make_data(work: Path, size: Size) -> dict:
    src, shards, organized = work / "src", work / "shards", work / "organized"
    if not (shards / "train" / "manifest.json").is_file():
        imnet("fake", str(src), "--profile", "imagenet", "--classes", str(size.classes), "--train-per-class",
              str(size.per_class), "--val-images", str(size.val))
        imnet("shard", str(src), str(shards), "--shard-size", "256MB")
    if not (organized / "train").is_dir():
        imnet("organize", str(src), str(organized))
    found = {}
    for split in ("train", "val"):
        manifest = json.loads((shards / split / "manifest.json").read_text())
        found[split] = {"samples": manifest["num_samples"], "shards": len(manifest["shards"]),
                        "mean_sample_kb": round(manifest["num_bytes"] / manifest["num_samples"] / 1024, 1)}
    return found


def run_gpu_tests() -> dict:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                           str(ROOT / "tests")], cwd=ROOT, capture_output=True, text=True, check=False)
    tail = proc.stdout.strip().splitlines()[-12:]
    if proc.returncode not in (0, 5):   # 5: nothing selected
        raise RuntimeError("pytest -m gpu failed:\n" + "\n".join(tail) + proc.stderr[-2000:])
    return {"returncode": proc.returncode, "summary": tail}


def release() -> None:
    """Give back what the previous row held, so GPU memory is read per row."""
    gc.collect()
    try:
        import torch
        from nvidia.dali import backend as dali_backend
        dali_backend.ReleaseUnusedMemory()
        torch.cuda.empty_cache()
    except (ImportError, AttributeError, RuntimeError):
        pass


def measure(run: Run, work: Path, size: Size, dmon: Dmon, deadline: float) -> None:
    """Every row, those the targets need first (loader, plain DALI, ImageFolder, end to end); the ceilings,
    sweeps and host rows after, each skipped (and listed in ``run.skipped``) once ``deadline`` (monotonic) has
    passed, so a slow machine still returns the targets inside the device's time."""
    import torch

    torch.backends.cudnn.benchmark = True
    cuda = torch.cuda.is_available() and not run.dry
    device, device_id = ("cuda", torch.cuda.current_device()) if cuda else ("cpu", None)
    cores = len(os.sched_getaffinity(0))
    threads = min(16, cores)
    shards = work / "shards"
    base = {"batch_size": size.batch, "image_size": size.image, "device": device, "num_threads": threads}

    def row(group: str, name: str, make: Callable[[], Iterable[Row]], optional: bool = True) -> None:
        """The rows ``make`` measures (each timed as it is asked for), or, past the deadline, one skip entry."""
        if optional and time.monotonic() > deadline:
            run.skipped.append(f"{group}: {name}")
            return
        release()
        started = time.time()
        for r in make():
            run.add(group, r, started, dmon)
            started = time.time()
        compute_ratios(run, size)
        run.save()

    def loader(name: str, split: str, group: str = "loader", optional: bool = True, **settings) -> None:
        row(group, name, lambda: [loader_row(name, shards / split, size.batches, 5, size.seconds, split=split,
                                             **{**base, **settings})], optional)

    def host(t: int) -> list[Row]:
        rows, ratios = host_rows(shards / "train", size.batch, [t], size.batches, size.seconds)
        run.ratios.update(ratios)
        return rows

    def end_to_end(model: str) -> Iterable[Row]:
        return model_rows(model, model_feeds(shards / "train", size.batch, threads, device_id, size.image,
                                             dtype="bfloat16", layout="channels_last"),
                          size.batch, size.steps, size.seconds)

    def decode_alone(name: str, load: float) -> list[Row]:
        return [dali_decode_row(name, data, device_id, load, threads, size.batches, size.seconds)]

    for split in ("train", "val"):
        loader(f"{split} bf16", split, dtype="bfloat16", layout="channels_last", optional=False)
        loader(f"{split} float32", split, dtype="float32", optional=False)
    row("peer", "plain DALI", lambda: [plain_dali_row("plain DALI", shards / "train", size.batch, threads,
                                                      device_id, size.batches, size.seconds,
                                                      image_size=size.image)], optional=False)
    name = f"torchvision ImageFolder, {size.workers} workers"
    row("peer", name, lambda: [imagefolder_row(work / "organized", size.batch, size.workers, size.batches,
                                               size.image, size.seconds)], optional=False)
    for model in size.models:
        row("end to end", model, partial(end_to_end, model), optional=False)
    data = jpeg_batches(shards / "train", size.batch, 8)
    decoders = ((1.0, "DALI decode alone, hardware decoder"), (0.0, "DALI decode alone, CUDA decoder")) if cuda \
        else ((0.0, "DALI decode alone (CPU)"),)
    for load, name in decoders:
        row("ceiling", name, partial(decode_alone, name, load))
    for load in size.hw_loads:
        loader(f"train bf16, hw_decoder_load={load}", "train", dtype="bfloat16", layout="channels_last",
               hw_decoder_load=load, group="sweep hw_decoder_load")
    for t in size.threads:
        loader(f"train bf16, num_threads={t}", "train", dtype="bfloat16", layout="channels_last", num_threads=t,
               group="sweep num_threads")
    for depth in size.prefetch:
        loader(f"train bf16, prefetch={depth}", "train", dtype="bfloat16", layout="channels_last",
               prefetch=depth, group="sweep prefetch")
    for t in thread_counts(threads):
        row("host path", f"{t} threads", partial(host, t))


def compute_ratios(run: Run, size: Size) -> None:
    """The ratios the targets and the note use, from the rows measured so far (names as the rows give them)."""
    rates = {r["name"]: r["images_per_s"] for r in run.rows}
    pairs = {"train bf16 / plain DALI": ("train bf16", "plain DALI"),
             "train float32 / plain DALI": ("train float32", "plain DALI"),
             "train bf16 / ImageFolder": ("train bf16", f"torchvision ImageFolder, {size.workers} workers"),
             "train bf16 / hardware decode alone": ("train bf16", "DALI decode alone, hardware decoder"),
             "plain DALI / hardware decode alone": ("plain DALI", "DALI decode alone, hardware decoder")}
    for model in size.models:
        for feed in ("the loader", "plain DALI"):
            pairs[f"{model} fed by {feed} / resident"] = (f"{model} fed by {feed}", f"{model} on one resident batch")
    for key, (top, bottom) in pairs.items():
        if rates.get(top) and rates.get(bottom):
            run.ratios[key] = rates[top] / rates[bottom]


def markdown(data: dict) -> str:
    env = data["environment"]
    lines = [f"# imnet-data GPU check{' (CPU dry run)' if data['dry_run'] else ''}", "",
             ", ".join(f"{k}: {v}" for k, v in env.items()), "",
             "| phase | ok | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if p['ok'] else 'FAILED'} | {p['seconds']} |" for name, p in data["phases"].items()]
    lines += ["", "| group | pipeline | images/s | CPU cores busy | GPU MB | SM % | JPEG engine % | note |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in data["rows"]:
        mem = "" if r.get("gpu_memory_mb") is None else f"{r['gpu_memory_mb']:,.0f}"
        lines.append(f"| {r['group']} | {r['name']} | {r['images_per_s']:,.0f} | {r['cores_busy']:.1f} | {mem} | "
                     f"{r.get('sm_pct', '')} | {r.get('jpeg_engine_pct', '')} | {r['note']} |")
    if data["skipped"]:
        lines += ["", f"Skipped ({len(data['skipped'])} rows, the time budget spent): " + "; ".join(data["skipped"])]
    lines += ["", "| ratio | value |", "|---|---:|"] + [f"| {k} | {v:.2f} |" for k, v in data["ratios"].items()]
    lines += ["", "| target | at least | measured | met |", "|---|---:|---:|---|"]
    for t in data["targets"]:
        value = "" if t["measured"] is None else f"{t['measured']:,.2f}"
        met = {True: "yes", False: "NO", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['at_least']:,} | {value} | {met} |")
    return "\n".join(lines) + "\n"


def environment(dry: bool) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cores": len(os.sched_getaffinity(0))}
    try:
        from nvidia import dali
        env["dali"] = dali.__version__
    except ImportError:
        env["dali"] = "missing"
    env["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() and not dry else "none (CPU)"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where results.json and results.md go ($OUT)")
    parser.add_argument("--work", type=Path, help="data folder (default: OUT/../imnet-gpu-check-work, reused)")
    parser.add_argument("--budget", type=float, default=480.0, metavar="S",
                        help="seconds from the start after which the optional rows (ceilings, sweeps, host path) "
                             "are skipped, so the run ends inside the device's 10-minute command limit "
                             "(default 480; the target rows always run, first)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="the same flow with DALI's CPU operators and tiny sizes (no GPU needed)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    size = DRY if args.cpu_dry_run else FULL
    work = args.work or args.out.resolve().parent / "imnet-gpu-check-work"
    run = Run(args.out, args.cpu_dry_run)
    run.environment = environment(args.cpu_dry_run)
    run.phase("data", lambda: make_data(work, size))
    run.phase("pytest -m gpu", run_gpu_tests)
    dmon = Dmon(work / "dmon.txt")
    try:
        run.phase("measure", lambda: measure(run, work, size, dmon, deadline))
    finally:
        dmon.stop()
    run.save()
    print((args.out / "results.md").read_text())
    return 0 if all(p["ok"] for p in run.phases.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
