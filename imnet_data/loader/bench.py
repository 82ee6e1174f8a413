"""``imnet-data bench DEST``: loader throughput against its ceiling and the usual alternative, in one run.

Rows (each on the same shards and machine): the loader's train and val pipelines (DALI on the GPU, or the given
backend/device); DALI decode alone (the ceiling: hardware JPEG decoder, then CUDA decoder; on CPU: DALI's CPU
decoder); PIL decode in N processes (what N cores allow); torchvision ImageFolder + DataLoader with the standard
transforms on an organized copy (``--imagefolder``). ``--model resnet50`` adds end to end: training steps fed by
the loader vs the same steps on one GPU-resident batch. Images/s, CPU cores busy, ratios.
"""
from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from imnet_data.loader import build_loader
from imnet_data.loader.base import BatchReader
from imnet_data.loader.shardset import ShardSet


@dataclass
class Row:
    name: str
    images_per_s: float
    cores_busy: float
    note: str = ""


@dataclass
class BenchReport:
    setting: dict
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"setting": self.setting, "rows": [vars(r) for r in self.rows], "ratios": self.ratios}

    def render(self) -> str:
        lines = [", ".join(f"{k}={v}" for k, v in self.setting.items()),
                 f"{'pipeline':<44} {'images/s':>10} {'cores busy':>10}  note"]
        lines += [f"{r.name:<44} {r.images_per_s:>10,.0f} {r.cores_busy:>10.1f}  {r.note}" for r in self.rows]
        lines += [f"ratio {k}: {v:.2f}" for k, v in self.ratios.items()]
        return "\n".join(lines)


def timed(images_per_step: int, steps: Iterable, warmup: int) -> tuple[float, float]:
    """Images/s and CPU cores busy (this process and its children) over ``steps`` after ``warmup`` steps."""
    it = iter(steps)
    for _ in range(warmup):
        next(it)
    sync()
    t0, c0, n = time.perf_counter(), cpu_seconds(), 0
    for _ in it:
        n += 1
    sync()
    wall = time.perf_counter() - t0
    return n * images_per_step / wall, (cpu_seconds() - c0) / wall


def cpu_seconds() -> float:
    """CPU seconds used by this process, its live descendants (DataLoader / pool workers, from /proc) and its
    finished children."""
    t = os.times()
    ticks = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks

    def mine(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False

    live = sum(v for pid, v in used.items() if pid != os.getpid() and mine(pid))
    return t.user + t.system + t.children_user + t.children_system + live


def sync() -> None:
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    except ImportError:
        pass


def limited(loader, batches: int) -> Iterable:
    """Up to ``batches`` batches of ``loader``, epoch after epoch."""
    done = 0
    while done < batches:
        for batch in loader:
            yield batch
            done += 1
            if done >= batches:
                return


def loader_row(name: str, source: Path, batches: int, warmup: int, **settings) -> Row:
    loader = build_loader(source, **settings)
    rate, busy = timed(settings["batch_size"], limited(loader, batches + warmup), warmup)
    return Row(name, rate, busy, f"{len(loader)} batches/epoch")


def jpeg_batches(source: Path, batch_size: int, count: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """``count`` batches of JPEG bytes from the shards (cycled), read once up front."""
    shards = ShardSet(source)
    located = shards.locate(0, 1)
    reader = BatchReader(shards, located, "raise")
    order = np.arange(batch_size * count) % len(located)
    return [reader.read(order[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def dali_decode_row(name: str, data: list, device_id: int | None, hw_load: float, threads: int,
                    batches: int) -> Row:
    """DALI decode alone (no crop/resize/normalise) of in-memory JPEG batches: the decoder's ceiling."""
    import nvidia.dali as dali

    fn, types = dali.fn, dali.types
    batch = len(data[0][0])
    cycle = itertools.cycle([images for images, _ in data])

    @dali.pipeline_def(batch_size=batch, num_threads=threads, device_id=device_id, prefetch_queue_depth=2)
    def pipe():
        jpegs = fn.external_source(source=lambda: next(cycle), batch=True, dtype=types.UINT8)
        extra = {"hw_decoder_load": hw_load} if device_id is not None else {}
        return fn.decoders.image(jpegs, device="mixed" if device_id is not None else "cpu",
                                 output_type=types.RGB, **extra)

    p = pipe()
    p.build()
    rate, busy = timed(batch, (p.run() for _ in range(batches + 3)), 3)
    return Row(name, rate, busy, f"hw_decoder_load={hw_load}" if device_id is not None else "")


def _pil_work(task: tuple[list[bytes], int | None]) -> int:
    """Decode ``blobs`` fully with PIL (``image_size`` None), or decode and apply the fallback loader's train
    transform (random resized crop + flip to ``image_size``); returns how many."""
    import io

    from PIL import Image

    from imnet_data.loader.base import LoaderOptions
    from imnet_data.loader.fallback import transform

    blobs, size = task
    options = LoaderOptions(image_size=size or 224)
    rng = np.random.default_rng(0)
    for blob in blobs:
        if size:
            transform(np.frombuffer(blob, np.uint8), options, rng)
        else:
            with Image.open(io.BytesIO(blob)) as img:
                img.convert("RGB").load()
    return len(blobs)


def pil_row(data: list, processes: int, image_size: int | None = None) -> Row:
    """PIL in ``processes`` worker processes on the same JPEGs: full decode (the CPU decode ceiling), or with
    ``image_size`` decode + the train transform (what a PIL pipeline on these cores can do at best)."""
    blobs = [bytes(x) for images, _ in data for x in images]
    blobs *= max(1, 3000 // len(blobs))         # a few seconds of work, so start-up noise does not count
    chunks = [(blobs[i::processes], image_size) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_pil_work, [(c[:8], image_size) for c, _ in chunks]))   # start the workers
        t0, c0 = time.perf_counter(), cpu_seconds()
        total = sum(pool.map(_pil_work, chunks))
        wall = time.perf_counter() - t0
    name = f"PIL decode{' + train transform' if image_size else ''}, {processes} processes"
    return Row(name, total / wall, (cpu_seconds() - c0) / wall, "no loader: the work alone")


def imagefolder_row(folder: Path, batch_size: int, workers: int, batches: int, image_size: int) -> Row:
    """torchvision ImageFolder + DataLoader with the standard train transforms (the usual alternative)."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406),
                                                                         (0.229, 0.224, 0.225))])
    data = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder / "train"), tf), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, pin_memory=torch.cuda.is_available(),
                                       drop_last=True, persistent_workers=workers > 0)
    cuda = torch.cuda.is_available()
    steps = ((x.cuda(non_blocking=True) if cuda else x, y) for x, y in limited(data, batches + 2))
    rate, busy = timed(batch_size, steps, 2)
    return Row(f"torchvision ImageFolder, {workers} workers", rate, busy, "train transforms")


def model_rows(model_name: str, source: Path, batch_size: int, steps: int, **settings) -> list[Row]:
    """End to end: SGD steps of a torchvision model (bf16 autocast, channels_last) fed by the loader vs fed
    from one GPU-resident batch."""
    import torch
    import torchvision

    if not torch.cuda.is_available():
        raise RuntimeError("--model needs a CUDA GPU")
    model = getattr(torchvision.models, model_name)().cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y.clamp(min=0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    loader = build_loader(source, batch_size=batch_size, device="cuda", layout="channels_last", **settings)
    fed = (step(x, y) for x, y in limited(loader, steps + 10))
    rate_fed, busy_fed = timed(batch_size, fed, 10)
    x, y = next(iter(loader))
    resident = (step(x, y) for _ in range(steps + 10))
    rate_res, busy_res = timed(batch_size, resident, 10)
    return [Row(f"{model_name} fed by the loader", rate_fed, busy_fed),
            Row(f"{model_name} on a GPU-resident batch", rate_res, busy_res, "the model's ceiling")]


def bench(dest: Path, *, backend: str = "dali", device: str | None = None, batch_size: int = 256,
          image_size: int = 224, batches: int = 50, num_threads: int | None = None,
          imagefolder: Path | None = None, workers: int | None = None, model: str | None = None,
          model_steps: int = 100, progress: Callable[[str], None] = lambda s: None) -> BenchReport:
    """Run every row that this machine can run (see the module doc) and the ratios between them."""
    import torch

    cores = len(os.sched_getaffinity(0))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = num_threads or cores
    dest = Path(dest)
    common = {"batch_size": batch_size, "backend": backend, "device": device, "image_size": image_size,
              "num_threads": threads}
    report = BenchReport({"backend": backend, "device": device, "batch": batch_size, "size": image_size,
                          "threads": threads, "cores": cores})
    rows = {}
    for split in ("train", "val"):
        if (dest / split / "manifest.json").is_file():
            progress(f"loader {split}")
            rows[split] = loader_row(f"loader {split} ({backend}, {device})", dest / split, batches, 3,
                                     split=split, **common)
    if not rows:
        raise ValueError(f"{dest}: no train/ or val/ with manifest.json; not a shard output folder")
    data = jpeg_batches(dest / ("train" if "train" in rows else "val"), batch_size, min(batches, 20))
    progress("DALI decode alone")
    if device == "cuda":
        dev = torch.cuda.current_device()
        rows["hw"] = dali_decode_row("DALI decode alone, hardware decoder", data, dev, 1.0, threads, batches)
        rows["cuda"] = dali_decode_row("DALI decode alone, CUDA decoder", data, dev, 0.0, threads, batches)
    else:
        rows["cpu_decode"] = dali_decode_row("DALI decode alone (CPU)", data, None, 0.0, threads, batches)
    progress("PIL decode")
    rows["pil"] = pil_row(data, cores)
    rows["pil_transform"] = pil_row(data, cores, image_size)
    if imagefolder:
        progress("ImageFolder")
        rows["imagefolder"] = imagefolder_row(imagefolder, batch_size, workers or cores, batches, image_size)
    report.rows = list(rows.values())
    ceiling = max((rows[k].images_per_s for k in ("hw", "cuda", "cpu_decode") if k in rows), default=0)
    if "train" in rows:
        report.ratios["train / decode-alone ceiling"] = rows["train"].images_per_s / ceiling
        report.ratios["train / PIL decode on all cores"] = rows["train"].images_per_s / rows["pil"].images_per_s
        report.ratios["train / PIL decode + train transform on all cores"] = (
            rows["train"].images_per_s / rows["pil_transform"].images_per_s)
        if "imagefolder" in rows:
            report.ratios["train / ImageFolder"] = rows["train"].images_per_s / rows["imagefolder"].images_per_s
    if model:
        progress(f"end to end {model}")
        fed, resident = model_rows(model, dest / "train", batch_size, model_steps, backend=backend,
                                   image_size=image_size, num_threads=threads)
        report.rows += [fed, resident]
        report.ratios[f"{model} fed / resident"] = fed.images_per_s / resident.images_per_s
    return report
