"""``imnet-data bench DEST``: loader throughput against its ceiling and the usual alternatives, in one run.

Rows (each on the same shards and machine): the loader's train and val pipelines (DALI on the GPU, or the given
backend/device); plain DALI, the pipeline a user writes by hand from DALI's docs (``readers.webdataset`` +
``decoders.image_random_crop`` + ``resize`` + ``crop_mirror_normalize``, DALI's defaults, ``DALIGenericIterator``);
DALI decode alone (the ceiling: hardware JPEG decoder, then CUDA decoder; on CPU: DALI's CPU decoder); PIL decode
in N processes (what N cores allow); torchvision ImageFolder + DataLoader with the standard transforms on an
organized copy (``--imagefolder``). ``--model resnet50`` adds end to end: training steps fed by the loader and by
plain DALI vs the same steps on one GPU-resident batch. ``--host-only``: the host path alone (schedule, reads by
index, batches handed to DALI, each JPEG header parsed, no decode) vs DALI's own reader doing the same, per
thread count. Images/s, CPU cores busy, GPU memory in use, ratios.
"""
from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from imnet_data.loader import build_loader
from imnet_data.loader.base import MEAN, STD, BatchReader, LoaderOptions
from imnet_data.loader.shardset import ShardSet, index_path


@dataclass
class Row:
    name: str
    images_per_s: float
    cores_busy: float
    note: str = ""
    gpu_memory_mb: float | None = None


@dataclass
class BenchReport:
    setting: dict
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"setting": self.setting, "rows": [vars(r) for r in self.rows], "ratios": self.ratios}

    def render(self) -> str:
        lines = [", ".join(f"{k}={v}" for k, v in self.setting.items()),
                 f"{'pipeline':<52} {'images/s':>10} {'cores busy':>10} {'GPU MB':>8}  note"]
        lines += [f"{r.name:<52} {r.images_per_s:>10,.0f} {r.cores_busy:>10.1f} "
                  f"{'' if r.gpu_memory_mb is None else f'{r.gpu_memory_mb:,.0f}':>8}  {r.note}" for r in self.rows]
        lines += [f"ratio {k}: {v:.2f}" for k, v in self.ratios.items()]
        return "\n".join(lines)


def timed(images_per_step: int, steps: Iterable, warmup: int, seconds: float | None = None) -> tuple[float, float]:
    """Images/s and CPU cores busy (this process and its children) over ``steps`` after ``warmup`` steps,
    stopping early after ``seconds`` when given."""
    it = iter(steps)
    for _ in range(warmup):
        next(it)
    sync()
    t0, c0, n = time.perf_counter(), cpu_seconds(), 0
    for _ in it:
        n += 1
        if seconds is not None and time.perf_counter() - t0 > seconds:
            break
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


def cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def sync() -> None:
    if cuda():
        import torch
        torch.cuda.synchronize()


def gpu_memory_mb() -> float | None:
    """Memory in use on the current GPU by every allocator (DALI's and torch's), None without a GPU."""
    if not cuda():
        return None
    import torch
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def measured(name: str, batch_size: int, steps: Iterable, warmup: int, note: str = "",
             seconds: float | None = None) -> Row:
    """A row: ``steps`` timed (see :func:`timed`), GPU memory read at the end."""
    rate, busy = timed(batch_size, steps, warmup, seconds)
    return Row(name, rate, busy, note, gpu_memory_mb())


def limited(loader: Iterable, batches: int | None = None) -> Iterator:
    """Up to ``batches`` batches of ``loader`` (None: endless), epoch after epoch."""
    done = 0
    while batches is None or done < batches:
        for batch in loader:
            yield batch
            done += 1
            if done == batches:
                return


def loader_row(name: str, source: Path, batches: int, warmup: int, seconds: float | None = None,
               **settings) -> Row:
    loader = build_loader(source, **settings)
    return measured(name, settings["batch_size"], limited(loader, batches + warmup), warmup,
                    f"{len(loader)} batches/epoch", seconds)


# ---- plain DALI: the pipeline a user writes by hand ----------------------------------------------------------

def plain_dali(folder: Path, batch_size: int, threads: int, device_id: int | None, *, image_size: int = 224,
               decode: bool = True, hw_decoder_load: float | None = None, seed: int = 0):
    """DALI's documented WebDataset training pipeline over the split's shards (with their ``.idx``), DALI's
    defaults throughout; ``decode=False`` stops after parsing each JPEG header (the reader's host path).
    Yields ``(images, labels)`` torch tensors through ``DALIGenericIterator``."""
    import nvidia.dali as dali
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    fn, types = dali.fn, dali.types
    tars = [str(p) for p in ShardSet(folder).paths]
    gpu = device_id is not None

    @dali.pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id, seed=seed)
    def pipeline():
        jpegs, cls = fn.readers.webdataset(paths=tars, index_paths=[str(index_path(Path(t))) for t in tars],
                                           ext=["jpg", "cls"], random_shuffle=True, name="Reader")
        labels = fn.pad(cls)           # variable-length ASCII digits -> a dense batch the iterator accepts
        if not decode:
            return fn.peek_image_shape(jpegs), labels
        extra = {"hw_decoder_load": hw_decoder_load} if gpu and hw_decoder_load is not None else {}
        images = fn.decoders.image_random_crop(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB,
                                               **extra)
        images = fn.resize(images, resize_x=image_size, resize_y=image_size)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=[m * 255 for m in MEAN], std=[s * 255 for s in STD],
                                          mirror=fn.random.coin_flip())
        return images, (labels.gpu() if gpu else labels)

    iterator = DALIGenericIterator(pipeline(), ["images", "labels"], reader_name="Reader", auto_reset=True,
                                   last_batch_policy=LastBatchPolicy.DROP)
    for batch in limited(iterator):
        out = batch[0]
        yield out["images"], ascii_labels(out["labels"])


def ascii_labels(padded):
    """Class indices from a batch of zero-padded ASCII digit rows (what ``fn.pad`` makes of ``.cls``)."""
    import torch

    digits = padded.long() - 48
    count = (padded > 0).sum(1, keepdim=True)
    place = torch.arange(padded.shape[1], device=padded.device)
    weights = torch.where(place < count, 10 ** (count - 1 - place).clamp(min=0), 0)
    return (digits.clamp(min=0) * weights).sum(1)


def plain_dali_row(name: str, folder: Path, batch_size: int, threads: int, device_id: int | None, batches: int,
                   seconds: float | None = None, **settings) -> Row:
    return measured(name, batch_size, itertools.islice(plain_dali(folder, batch_size, threads, device_id,
                                                                  **settings), batches + 3), 3,
                    "readers.webdataset + DALI defaults", seconds)


# ---- the host path alone ---------------------------------------------------------------------------------------

def host_rows(folder: Path, batch_size: int, threads: list[int], batches: int,
              seconds: float | None = None) -> tuple[list[Row], dict[str, float]]:
    """Per thread count: the loader's host path (schedule, reads by index, the batch handed to DALI, each JPEG
    header parsed by DALI, no decode) vs ``readers.webdataset`` doing the same; both on DALI's CPU (a GPU does
    not take part in the host path)."""
    from imnet_data.loader.dali import DaliLoader

    shards = ShardSet(folder)
    rows, ratios = [], {}
    for t in threads:
        options = LoaderOptions(split=(shards.manifest or {}).get("split", "train"), batch_size=batch_size,
                                device="cpu", num_threads=t, train=True)
        ours = DaliLoader(shards, options, decode=False)
        mine = measured(f"loader host path, {t} threads", batch_size, limited(ours, batches + 3), 3,
                        "shuffled, read by index, handed to DALI, headers parsed", seconds)
        peer = measured(f"DALI readers.webdataset, {t} threads", batch_size,
                        itertools.islice(plain_dali(folder, batch_size, t, None, decode=False), batches + 3), 3,
                        "random_shuffle, headers parsed", seconds)
        rows += [mine, peer]
        ratios[f"host path / DALI reader, {t} threads"] = mine.images_per_s / peer.images_per_s
    return rows, ratios


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... up to ``cores``, and ``cores`` itself."""
    counts = [1 << k for k in range(cores.bit_length()) if 1 << k <= cores]
    return counts + ([cores] if counts[-1] != cores else [])


# ---- ceilings and the usual alternatives -----------------------------------------------------------------------

def jpeg_batches(source: Path, batch_size: int, count: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """``count`` batches of JPEG bytes from the shards (cycled), read once up front."""
    shards = ShardSet(source)
    reader = BatchReader(shards, shards.locate(0, 1), "raise")
    order = np.arange(batch_size * count) % len(reader)
    return [reader.read(order[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def dali_decode_row(name: str, data: list, device_id: int | None, hw_load: float, threads: int,
                    batches: int, seconds: float | None = None) -> Row:
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
    return measured(name, batch, (p.run() for _ in range(batches + 3)), 3,
                    f"hw_decoder_load={hw_load}" if device_id is not None else "", seconds)


def _pil_work(task: tuple[list[bytes], int | None]) -> int:
    """Decode ``blobs`` fully with PIL (``image_size`` None), or decode and apply the fallback loader's train
    transform (random resized crop + flip to ``image_size``); returns how many."""
    import io

    from PIL import Image

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


def imagefolder(folder: Path, batch_size: int, workers: int, image_size: int) -> Iterator:
    """torchvision ImageFolder + DataLoader with the standard train transforms (the usual alternative),
    batches on the GPU when there is one."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    data = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder / "train"), tf), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, pin_memory=cuda(), drop_last=True,
                                       persistent_workers=workers > 0)
    for x, y in limited(data):
        yield (x.cuda(non_blocking=True), y.cuda(non_blocking=True)) if cuda() else (x, y)


def imagefolder_row(folder: Path, batch_size: int, workers: int, batches: int, image_size: int,
                    seconds: float | None = None) -> Row:
    return measured(f"torchvision ImageFolder, {workers} workers", batch_size,
                    itertools.islice(imagefolder(folder, batch_size, workers, image_size), batches + 2), 2,
                    "train transforms", seconds)


# ---- end to end --------------------------------------------------------------------------------------------

def model_feeds(train: Path, batch_size: int, threads: int, device_id: int | None, image_size: int,
                **settings) -> dict[str, Iterator]:
    """What :func:`model_rows` trains on beside its resident batch: the loader (built with ``settings``) and
    plain DALI, endless, on the same shards."""
    loader = build_loader(train, batch_size=batch_size, image_size=image_size, num_threads=threads,
                          device="cpu" if device_id is None else "cuda", **settings)
    return {"the loader": limited(loader),
            "plain DALI": plain_dali(train, batch_size, threads, device_id, image_size=image_size)}


def model_rows(model_name: str, feeds: dict[str, Iterable], batch_size: int, steps: int,
               seconds: float | None = None) -> Iterator[Row]:
    """SGD steps of a torchvision model (bf16 autocast, channels_last) on one resident batch (the model's
    ceiling), then fed by each of ``feeds`` (name -> iterable of ``(images, labels)`` on the model's device);
    a row each, measured as it is asked for. On a CPU (the dry run) the same steps run with CPU autocast."""
    import torch
    import torchvision

    device = "cuda" if cuda() else "cpu"
    model = getattr(torchvision.models, model_name)().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)),
                                                     y.clamp(min=0) % 1000)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    x, y = next(iter(next(iter(feeds.values()))))
    yield measured(f"{model_name} on one resident batch", batch_size, (step(x, y) for _ in range(steps + 10)), 10,
                   "the model's ceiling", seconds)
    for name, feed in feeds.items():
        yield measured(f"{model_name} fed by {name}", batch_size,
                       (step(a, b) for a, b in itertools.islice(feed, steps + 10)), 10, "", seconds)


def bench(dest: Path, *, backend: str = "dali", device: str | None = None, batch_size: int = 256,
          image_size: int = 224, batches: int = 50, num_threads: int | None = None,
          imagefolder: Path | None = None, workers: int | None = None, model: str | None = None,
          model_steps: int = 100, host_only: bool = False,
          progress: Callable[[str], None] = lambda s: None) -> BenchReport:
    """Run every row that this machine can run (see the module doc) and the ratios between them."""
    cores = len(os.sched_getaffinity(0))
    device = device or ("cuda" if cuda() else "cpu")
    threads = num_threads or cores
    dest = Path(dest)
    splits = [s for s in ("train", "val") if (dest / s / "manifest.json").is_file()]
    if not splits:
        raise ValueError(f"{dest}: no train/ or val/ with manifest.json; not a shard output folder")
    report = BenchReport({"backend": backend, "device": device, "batch": batch_size, "size": image_size,
                          "threads": threads, "cores": cores})
    if host_only:
        progress("host path")
        report.rows, report.ratios = host_rows(dest / splits[0], batch_size,
                                               [num_threads] if num_threads else thread_counts(cores), batches)
        return report
    common = {"batch_size": batch_size, "backend": backend, "device": device, "image_size": image_size,
              "num_threads": threads}
    rows = {}
    for split in splits:
        progress(f"loader {split}")
        rows[split] = loader_row(f"loader {split} ({backend}, {device})", dest / split, batches, 3,
                                 split=split, **common)
    device_id = None
    if device == "cuda":
        import torch
        device_id = torch.cuda.current_device()
    if "train" in rows:
        progress("plain DALI")
        rows["plain"] = plain_dali_row(f"plain DALI train ({device})", dest / "train", batch_size, threads,
                                       device_id, batches, image_size=image_size)
    data = jpeg_batches(dest / splits[0], batch_size, min(batches, 20))
    progress("DALI decode alone")
    if device_id is not None:
        rows["hw"] = dali_decode_row("DALI decode alone, hardware decoder", data, device_id, 1.0, threads, batches)
        rows["cuda"] = dali_decode_row("DALI decode alone, CUDA decoder", data, device_id, 0.0, threads, batches)
    else:
        rows["cpu_decode"] = dali_decode_row("DALI decode alone (CPU)", data, None, 0.0, threads, batches)
    progress("PIL decode")
    rows["pil"] = pil_row(data, cores)
    rows["pil_transform"] = pil_row(data, cores, image_size)
    if imagefolder:
        progress("ImageFolder")
        rows["imagefolder"] = imagefolder_row(imagefolder, batch_size, workers or cores, batches, image_size)
    report.rows = list(rows.values())
    report.ratios = ratios(rows)
    if model:
        if device_id is None:
            raise RuntimeError("--model needs a CUDA GPU")
        progress(f"end to end {model}")
        feeds = model_feeds(dest / "train", batch_size, threads, device_id, image_size, backend=backend,
                            layout="channels_last")
        resident, fed, plain = list(model_rows(model, feeds, batch_size, model_steps))
        report.rows += [resident, fed, plain]
        report.ratios[f"{model} fed by the loader / resident"] = fed.images_per_s / resident.images_per_s
        report.ratios[f"{model} fed by plain DALI / resident"] = plain.images_per_s / resident.images_per_s
    return report


def ratios(rows: dict[str, Row]) -> dict[str, float]:
    """The train pipeline against each peer and ceiling present in ``rows``."""
    if "train" not in rows:
        return {}
    train = rows["train"].images_per_s
    ceiling = max((rows[k].images_per_s for k in ("hw", "cuda", "cpu_decode") if k in rows), default=0)
    out = {"train / plain DALI": train / rows["plain"].images_per_s} if "plain" in rows else {}
    if ceiling:
        out["train / decode-alone ceiling"] = train / ceiling
    out["train / PIL decode on all cores"] = train / rows["pil"].images_per_s
    out["train / PIL decode + train transform on all cores"] = train / rows["pil_transform"].images_per_s
    if "imagefolder" in rows:
        out["train / ImageFolder"] = train / rows["imagefolder"].images_per_s
    return out
