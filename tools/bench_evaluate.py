"""Benchmark scoring an evaluation set with ``imnet_data.evaluate`` against a plain torchvision evaluation of the
same model on the same images: ``ImageFolder`` (``Resize(256)``, ``CenterCrop(224)``, ``ToTensor``, ``Normalize``)
+ ``DataLoader`` with as many workers, the same batch size, device and ``inference_mode``.

Makes (or reuses, ``--work``) a fake ImageNet-Sketch (``--profile imagenet``: real-photo JPEGs of ImageNet's sizes,
needs '.[photos]'; ``tiny``: small images), shards it for this loader and organizes it into ``val/<wnid>/`` for
ImageFolder, then times both, the model included and (``data only``) the images alone, ``--repeat`` times
interleaved. Prints images/s of each (best run) and the ratio this / baseline (best, and the median of the
per-run ratios: shared machines are noisy). The model is a torchvision architecture with random weights
(``--model resnet18``); on a CPU the model, not the data, sets the pace.

usage: python tools/bench_evaluate.py [--images 512] [--profile imagenet] [--model resnet18] [--batch-size 32]
                                      [--workers N] [--device cpu|cuda] [--repeat 3] [--work DIR]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torchvision import transforms

from imnet_data.evaluate import Run, load_model
from imnet_data.evaluate.score import score_split
from imnet_data.evaluate.sets import find_splits
from imnet_data.fake import FakeOptions
from imnet_data.fake.evalsets import make_imagenet_sketch
from imnet_data.loader import build_loader
from imnet_data.organize import organize
from imnet_data.parallel import default_jobs
from imnet_data.shards import ShardOptions, shard


def prepare(work: Path, images: int, profile: str) -> tuple[Path, Path]:
    """The fake set's shards and organized folder (made once per ``work``)."""
    fake, shards, folder = work / "fake", work / "shards", work / "folder"
    if not (shards / "val" / "manifest.json").is_file():
        make_imagenet_sketch(fake, FakeOptions(classes=min(100, images), val_images=images, profile=profile),
                             quiet=True)
        shard(fake, shards, ShardOptions(samples_per_shard=256), quiet=True)
        organize(fake, folder, quiet=True)
    return shards, folder / "val"


def baseline(folder: Path, model: torch.nn.Module | None, batch: int, workers: int, device: str) -> tuple[int, float]:
    """Images and seconds of ImageFolder + DataLoader (with ``model``, or the images alone)."""
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    loader = torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(str(folder), transform=tf),
                                         batch_size=batch, num_workers=workers, shuffle=False)
    count, start = 0, time.perf_counter()
    with torch.inference_mode():
        for images, _ in loader:
            if model is not None:
                model(images.to(device))
            count += len(images)
    return count, time.perf_counter() - start


def ours(shards: Path, spec: str, weights: Path, run: Run, with_model: bool) -> tuple[int, float]:
    """Images and seconds of this scorer (with the model), or of its loader alone."""
    model = load_model(spec, weights)
    (split,), _ = find_splits(shards)
    if with_model:
        model.module.eval().to(run.device)
        score = score_split(model, split, run)
        return score.images, score.seconds
    pre = model.preprocess
    start, count = time.perf_counter(), 0
    for images, _ in build_loader(split.folder, split.split, run.batch_size, backend=run.backend, device=run.device,
                                  image_size=pre.image_size, resize_size=pre.resize_size, train=False,
                                  remainder="partial", num_threads=run.workers, rank=0, world_size=1):
        count += len(images)
    return count, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--profile", choices=["tiny", "imagenet"], default="imagenet")
    p.add_argument("--model", default="resnet18", help="a torchvision architecture (random weights)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=default_jobs(None))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", choices=["dali", "torch"], help="default: dali on a GPU, else torch")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", type=Path, help="where the fake, shards and folder go (kept; default: a temp folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    shards, folder = prepare(work, args.images, args.profile)
    torch.manual_seed(0)
    net = torchvision.models.get_model(args.model, weights=None).eval().to(args.device)
    weights = work / f"{args.model}.pth"
    torch.save(net.state_dict(), weights)
    run = Run(backend=args.backend or ("dali" if args.device == "cuda" else "torch"), device=args.device,
              batch_size=args.batch_size, workers=args.workers)
    spec = f"torchvision:{args.model}"
    cases: dict[str, tuple[Callable[[], tuple[int, float]], Callable[[], tuple[int, float]]]] = {
        f"{args.model}": (lambda: ours(shards, spec, weights, run, True),
                          lambda: baseline(folder, net, args.batch_size, args.workers, args.device)),
        "data only": (lambda: ours(shards, spec, weights, run, False),
                      lambda: baseline(folder, None, args.batch_size, args.workers, args.device))}
    print(f"{args.images} images ({args.profile} profile), batch {args.batch_size}, {args.workers} workers, "
          f"{args.device}, backend {run.backend}, {args.repeat} runs; work {work}")
    print(f"{'case':<12} {'imnet-data img/s':>17} {'ImageFolder img/s':>18} {'ratio (best)':>13} "
          f"{'ratio (median)':>15}")
    for name, (mine, theirs) in cases.items():
        rates: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            a, b = mine(), theirs()
            rates.append((a[0] / a[1], b[0] / b[1]))
        best_a, best_b = max(r[0] for r in rates), max(r[1] for r in rates)
        median = statistics.median(a / b for a, b in rates)
        print(f"{name:<12} {best_a:>17,.1f} {best_b:>18,.1f} {best_a / best_b:>13.2f} {median:>15.2f}")


if __name__ == "__main__":
    main()
