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

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imnet_data.bench.ceilings import dali_decode_row, jpeg_batches, pil_row
from imnet_data.bench.end_to_end import model_feeds, model_rows
from imnet_data.bench.host import host_rows, thread_counts
from imnet_data.bench.peers import imagefolder_row, plain_dali_row
from imnet_data.bench.rows import BenchReport, Row, cuda, loader_row


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
    common: dict[str, Any] = {"batch_size": batch_size, "backend": backend, "device": device, "image_size": image_size,
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
