"""Benchmark the train loader on the CPU against FFCV 1.0.2's ``Loader`` (issue 24: this loader >= 1.2x FFCV),
both reading the same images re-encoded the same way, same run.

A fake download (``--classes`` x ``--per-class`` photographs of the ``imagenet`` profile, ~120 kB each, longer
side 500 px; ``--quick``: 1,200 of them) is written twice from its source JPEGs: as FFCV's ``.beton``
(``RGBImageField(write_mode="jpg", max_resolution=--max-side, jpeg_quality=--quality)``, by FFCV's
``DatasetWriter``) and as shards (``imnet-data shard --quality Q``, plus ``--max-size`` when ``--max-side`` is
below the fake's 500 px: shard's ``--max-size`` is FFCV's ``max_resolution``, the longer side); so both read
the same pixels at the same JPEG quality (each by its own encoder: OpenCV's, Pillow's; same libjpeg-turbo
settings, 4:2:0). Every loader reads one epoch of the train split in a process of its own (peak RSS of that
process, workers included), the files read once before into the page cache: batches of ``--batch``,
RandomResizedCrop ``--image-size`` + flip, float32 normalised, ``[B, 3, H, W]`` in channels_last memory (what
FFCV's ``ToTorchImage`` gives; this loader's ``layout="channels_last"``), ``--threads`` threads/workers each
(default: the cores). FFCV: ``RandomResizedCropRGBImageDecoder``, ``RandomHorizontalFlip``,
``NormalizeImage(float32)``, ``ToTensor``, ``ToTorchImage``, ``OrderOption.RANDOM``; its normalisation comes
before ``ToTensor`` because the order ``ToTensor, ToTorchImage, NormalizeImage`` hangs its ``Loader()`` on a
CPU (a jitted stage after a non-jitted one loops forever in ``Graph.group_operations``: libffcv/ffcv#396, #350;
on the CPU ``NormalizeImage`` is a numba kernel on the HWC array either way). This loader: ``--backends``
(DALI on the CPU and the torch backend). ``img/s``: from building the loader to the last batch (FFCV compiles
its pipeline with numba there); ``after 1st``: from the first batch on, the steady state the ratios use;
``CPU ms/img``: the process's CPU time (all threads, reaped workers) per image after the first batch, what a
loader costs whatever else the shared cores run.

FFCV is not a dependency of imnet-data. It builds from its sdist against system OpenCV and libturbojpeg
(Debian 12, Python 3.11; checked 2026-12-06)::

    apt-get install -y libopencv-dev libturbojpeg0-dev pkg-config
    pip install ffcv==1.0.2      # builds its C extension; pulls numba, llvmlite, opencv-python, fastargs, ...

Without it, FFCV's rows are skipped, named.

    python tools/bench_ffcv.py --quick                    # 1,200 images, a few minutes on 2 cores
    python tools/bench_ffcv.py --repeat 2                 # 12,000 images (~1.4 GB of source JPEGs)
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import tarfile
import time
from pathlib import Path

from imnet_data.bench.measure import StageFailed, run_measured, warm

FAKE_LONG_SIDE = 500          # every imagenet-profile fake image has its longer side 500 px (fake/geometry.py)
FFCV = "FFCV 1.0.2 Loader"
OURS = {"dali": "this loader, DALI CPU", "torch": "this loader, torch"}
TARGET = 1.2


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/imnet-bench/ffcv"), help="the fake and both formats")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--per-class", type=int, default=120, help="train images per class (default 120: 12,000)")
    p.add_argument("--quick", action="store_true", help="20 classes x 60 images (for a busy machine)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of both formats (default 90)")
    p.add_argument("--max-side", type=int, default=FAKE_LONG_SIDE,
                   help="longer side of both formats (default 500: the fake's own, re-encoded only)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads / workers of every loader")
    p.add_argument("--backends", default="dali,torch", help="this loader's backends (default dali,torch)")
    p.add_argument("--repeat", type=int, default=1, help="runs of every loader, interleaved")
    p.add_argument("--one", help=argparse.SUPPRESS)          # a loader's own process
    args = p.parse_args()
    if args.quick:
        args.classes, args.per_class = 20, 60
    return args


# ---- the data, written once into --work ------------------------------------------------------------------------

def folder(args: argparse.Namespace) -> Path:
    return args.work / f"{args.classes}x{args.per_class}-q{args.quality}-side{args.max_side}"


def prepare(args: argparse.Namespace) -> dict[str, int]:
    """The fake, its shards and its ``.beton`` (each made once); bytes on disk of each."""
    from imnet_data.fake import FakeOptions, make_fake
    from imnet_data.shards import ShardOptions, shard

    src = args.work / f"src-{args.classes}x{args.per_class}"
    data = folder(args)
    if not (src / "ILSVRC2012_img_train.tar").is_file():
        print(f"making {args.classes} x {args.per_class} imagenet-profile images in {src} (once)", flush=True)
        make_fake(src, FakeOptions(classes=args.classes, train_per_class=args.per_class, val_images=args.classes,
                                   profile="imagenet"), quiet=True)
    options = ShardOptions(quality=args.quality, max_size=args.max_side if args.max_side < FAKE_LONG_SIDE else None)
    if not (data / "shards" / "train" / "manifest.json").is_file():
        print(f"sharding into {data / 'shards'} ({options})", flush=True)
        shard(src, data / "shards", options, splits=["train"], quiet=True)
    try:
        beton = write_beton(src / "ILSVRC2012_img_train.tar", data / "train.beton", args)
    except ImportError as e:
        print(f"FFCV: not written ({e.name} not installed: see this script's docstring)", flush=True)
        beton = None
    sizes = {"source JPEGs (train archive)": (src / "ILSVRC2012_img_train.tar").stat().st_size,
             "shards (tar + idx + manifest)": sum(p.stat().st_size for p in (data / "shards" / "train").iterdir())}
    if beton:
        sizes["FFCV .beton"] = beton.stat().st_size
    return sizes


class SourceJPEGs:
    """The train archive's images as FFCV's writer wants them: ``(uint8 HxWx3 RGB, label)`` by index (the label:
    the class's ILSVRC-2012 index, as the shards'). Each read is a ``pread`` of one member: forked workers
    share nothing but the path."""

    def __init__(self, archive: Path) -> None:
        from imnet_data import catalog

        wnids = catalog.ilsvrc2012().wnids
        self.archive, self.items = archive, []
        with tarfile.open(archive) as outer:
            for inner in outer:
                with tarfile.open(fileobj=outer.extractfile(inner)) as tar:
                    label = wnids.index(inner.name.removesuffix(".tar"))
                    self.items += [(inner.offset_data + m.offset_data, m.size, label) for m in tar if m.isfile()]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        offset, size, label = self.items[i]
        with open(self.archive, "rb") as f:
            data = os.pread(f.fileno(), size, offset)
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB")), label


def write_beton(archive: Path, beton: Path, args: argparse.Namespace) -> Path:
    """FFCV's ``.beton`` of the train archive (written under a temporary name, then renamed)."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    if beton.is_file():
        return beton
    print(f"writing {beton} (FFCV's DatasetWriter, {args.threads} workers)", flush=True)
    partial = beton.with_suffix(".partial")
    fields = {"image": RGBImageField(write_mode="jpg", max_resolution=args.max_side, jpeg_quality=args.quality),
              "label": IntField()}
    DatasetWriter(str(partial), fields, num_workers=args.threads).from_indexed_dataset(SourceJPEGs(archive))
    partial.rename(beton)
    return beton


# ---- one loader, in its own process ----------------------------------------------------------------------------

def one(args: argparse.Namespace) -> dict:
    """One epoch of ``args.one``: images, seconds, seconds to the first batch, images/s and CPU seconds (all its
    threads, and its workers once reaped) after it."""
    start, first = time.perf_counter(), None
    images = rest = 0
    for batch in make(args):
        images += len(batch[1])
        if first is None:
            first, rest, cpu = time.perf_counter() - start, -len(batch[1]), cpu_seconds()
        rest += len(batch[1])
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "first_s": first, "steady": rest / (seconds - first),
            "cpu_ms": (cpu_seconds() - cpu) * 1e3 / rest}


def cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (a DataLoader's workers are, at the end of an epoch)."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF,
                                                                         resource.RUSAGE_CHILDREN)))


def make(args: argparse.Namespace):
    """The loader of ``args.one`` (``ffcv`` or one of this loader's backends)."""
    if args.one != "ffcv":
        from imnet_data.loader import build_loader

        return build_loader(folder(args) / "shards", "train", args.batch, backend=args.one, device="cpu",
                            num_threads=args.threads, image_size=args.image_size, layout="channels_last")
    import numpy as np
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage

    from imnet_data.loader.base import MEAN, STD

    image = [RandomResizedCropRGBImageDecoder((args.image_size, args.image_size)), RandomHorizontalFlip(),
             NormalizeImage(np.array(MEAN) * 255, np.array(STD) * 255, np.float32), ToTensor(), ToTorchImage()]
    return Loader(str(folder(args) / "train.beton"), batch_size=args.batch, num_workers=args.threads,
                  order=OrderOption.RANDOM, drop_last=True,
                  pipelines={"image": image, "label": [IntDecoder(), ToTensor(), Squeeze()]})


# ---- the driver ------------------------------------------------------------------------------------------------

def main() -> int:
    args = parse()
    if args.one:
        print(json.dumps(one(args)))
        return 0
    sizes = prepare(args)
    data = folder(args)
    methods = {FFCV: "ffcv"} if "FFCV .beton" in sizes else {}
    methods.update({OURS[b]: b for b in args.backends.split(",")})
    for path in [data / "train.beton", *sorted((data / "shards" / "train").glob("*.tar"))]:
        if path.is_file():
            warm(path)
    results: dict[str, list[tuple[float, dict]]] = {m: [] for m in (FFCV, *methods)}
    for _ in range(args.repeat):
        for method, name in methods.items():
            cmd = [sys.executable, __file__, "--one", name, *passed(args)]
            try:
                rss, out = run_measured(cmd)
            except StageFailed as e:       # a loader that fails is reported, the rest still measured
                print(f"{method}: failed: {e.stderr[-3000:]}", flush=True)
                continue
            results[method].append((rss / 1024, json.loads(out.strip().splitlines()[-1])))
    report(args, sizes, results)
    return 0


def passed(args: argparse.Namespace) -> list[str]:
    """The options a loader's process needs."""
    return ["--work", str(args.work), "--classes", str(args.classes), "--per-class", str(args.per_class),
            "--quality", str(args.quality), "--max-side", str(args.max_side), "--batch", str(args.batch),
            "--image-size", str(args.image_size), "--threads", str(args.threads)]


def report(args: argparse.Namespace, sizes: dict[str, int], results: dict[str, list[tuple[float, dict]]]) -> None:
    """Bytes on disk of each format; one line per loader and run: img/s, the ratio to FFCV's run of the same
    round and CPU ms per image (both after the first batch), peak RSS; then the target, met or not, per backend
    and run."""
    print(f"{os.cpu_count()} cores; batch {args.batch}, RandomResizedCrop {args.image_size} + flip, float32 "
          f"normalised, channels_last; {args.threads} threads/workers each; one epoch each, page cache warm")
    for name, size in sizes.items():
        print(f"  {name:<30} {size / 1e6:>8.0f} MB")
    print(f"{'loader':<24} {'run':>3} {'images':>7} {'img/s':>7} {'after 1st':>9} {'1st batch s':>11} "
          f"{'ours/FFCV':>9} {'CPU ms/img':>10} {'peak RSS MB':>11}")
    ffcv = [r["steady"] for _, r in results[FFCV]]
    verdicts = []
    for method, runs in results.items():
        if not runs:
            print(f"{method:<24} not measured (not installed, or failed: see above)")
        for i, (rss, r) in enumerate(runs):
            ratio = r["steady"] / ffcv[i] if method != FFCV and i < len(ffcv) else None
            cell = f"{ratio:.2f}" if ratio else ""
            print(f"{method:<24} {i + 1:>3} {r['images']:>7} {r['images'] / r['seconds']:>7.0f} {r['steady']:>9.0f} "
                  f"{r['first_s']:>11.2f} {cell:>9} {r['cpu_ms']:>10.2f} {rss:>11.0f}")
            if ratio:
                verdicts.append(f"{method}, run {i + 1}: {ratio:.2f}x {'yes' if ratio >= TARGET else 'NO'}")
    print(f"target (issue 24): this loader >= {TARGET}x FFCV (img/s after the 1st batch, same run):")
    for line in verdicts or ["not measured: FFCV did not run"]:
        print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
