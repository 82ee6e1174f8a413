"""Benchmark ``validate --deep`` against the single-core PIL decode rate on the very same images.

Builds (or reuses) a fake download with the ``imagenet`` profile (real-photo JPEGs ~500x375), reads every image's
bytes out of its archives, times ``Image.open(BytesIO(b)).load()`` on one core, then times
``validate(deep=True, checksums=False, jobs=N)`` and prints images/s for both, cores x single, and their ratio:
the parallel efficiency, whose target is >= 0.8. Each rate is the best of ``--repeat`` interleaved runs, and the
ratio is also given as the median over runs of the ratio within a run (shared machines are noisy). For context it
also measures the machine's own ceiling: N independent processes each decoding all the images at once (what N
cores really deliver, with no coordination at all).

usage: python tools/bench_validate.py [--src DIR] [--classes 16] [--train-per-class 60] [--val-images 160]
                                      [--jobs N] [--repeat 3]
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.parallel import default_jobs
from imnet_data.sources import open_source
from imnet_data.validate import validate

TARGET = 0.8
_IMAGES: list[bytes] = []   # what forked ceiling workers decode, inherited rather than pickled


def image_bytes(path: Path) -> list[bytes]:
    """Every image of the download, read out of the archives (the untimed part)."""
    src = open_source(path)
    return [s.data for split in src.splits() for unit in src.units(split) for s in src.read(unit)]


def single_core_rate(images: list[bytes]) -> float:
    """Images per second of a full PIL decode in this process."""
    start = time.perf_counter()
    for data in images:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    return len(images) / (time.perf_counter() - start)


def _decode_inherited(_: int) -> float:
    return single_core_rate(_IMAGES)


def machine_ceiling(images: list[bytes], jobs: int) -> float:
    """Images per second of ``jobs`` independent processes each decoding all ``images`` at the same time."""
    _IMAGES[:] = images
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        start = time.perf_counter()
        pool.map(_decode_inherited, range(jobs), chunksize=1)
        return jobs * len(images) / (time.perf_counter() - start)


def validate_rate(src: Path, images: int, jobs: int) -> float:
    """Images per second of ``validate --deep --skip-checksums --jobs N`` (the whole call, start-up included)."""
    start = time.perf_counter()
    report = validate(src, expect="self", checksums=False, deep=True, jobs=jobs, quiet=True)
    seconds = time.perf_counter() - start
    decoded = sum(t["images"] for t in report.splits.values())
    assert decoded == images, f"validate saw {decoded} images, the archives hold {images}"
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, help="fake download to reuse, or where to build it (default: temporary)")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--val-images", type=int, default=160)
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default 0: all cores)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        src = args.src or Path(tmp)
        if not (src / "ILSVRC2012_img_train.tar").is_file():
            print(f"building the fake download in {src} ...")
            make_fake(src, FakeOptions(classes=args.classes, train_per_class=args.train_per_class,
                                       val_images=args.val_images, profile="imagenet"), quiet=True)
        images, jobs = image_bytes(src), default_jobs(args.jobs)
        runs = [(single_core_rate(images), validate_rate(src, len(images), jobs), machine_ceiling(images, jobs))
                for _ in range(args.repeat)]
    single, parallel, ceiling = (max(column) for column in zip(*runs, strict=True))
    ratio, paired = parallel / (jobs * single), statistics.median(p / (jobs * s) for s, p, _ in runs)
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    rows = [("images", f"{len(images):,} ({sum(map(len, images)) / 1e6:.1f} MB), best of {args.repeat} runs"),
            ("single-core PIL decode", f"{single:8.1f} images/s"),
            (f"validate --deep, {jobs} jobs", f"{parallel:8.1f} images/s"),
            (f"{jobs} x single-core", f"{jobs * single:8.1f} images/s"),
            ("ratio", f"{ratio:8.2f} (target >= {TARGET}): {verdict}"),
            ("ratio, median of runs", f"{paired:8.2f}"),
            (f"machine ceiling, {jobs} procs", f"{ceiling:8.1f} images/s ({ceiling / (jobs * single):.2f} of "
                                               f"{jobs} x single; validate reaches {parallel / ceiling:.2f} of it)")]
    print("\n".join(f"{label:<28}{value}" for label, value in rows))


if __name__ == "__main__":
    main()
