"""Scoring one prepared split with the project's loader: top-1 and top-5 in the 1k label space, over the set's
classes only where it has a mask (the logits restricted to them, as the authors of ImageNet-A and -R score), and
for ImageNet val the ReaL top-1 (Beyer et al. 2020: an image counts when the prediction is one of its ReaL labels;
the images the raters kept no label for are left out)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from imnet_data.evaluate.model import Model, ModelError
from imnet_data.evaluate.sets import EvalSplit
from imnet_data.loader import build_loader


@dataclass(frozen=True)
class Run:
    """How to run the model: loader backend, device, dtype, batch size, loader threads, and ``limit`` (score only
    the first N samples of each split, in shard order: a quick check)."""

    backend: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    workers: int | None = None
    limit: int | None = None
    masks: bool = True       # restrict the logits to a set's classes (ImageNet-A, -R); False: all 1000


@dataclass
class Score:
    """Counts of one split: images, top-1 and top-5 hits, and (ImageNet val) the images with ReaL labels and the
    top-1 hits among them."""

    images: int = 0
    top1: int = 0
    top5: int = 0
    real_images: int = 0
    real_top1: int = 0
    seconds: float = field(default=0.0, compare=False)

    def percent(self, hits: int, of: int | None = None) -> float | None:
        """``hits`` as a percentage of ``of`` (default: the images), None of nothing."""
        total = self.images if of is None else of
        return 100.0 * hits / total if total else None


def score_split(model: Model, split: EvalSplit, run: Run) -> Score:
    """Score ``model`` on ``split`` (see the module doc). ImageNet-C's images are already 224 x 224 centre crops:
    they are resized to the input size and not cropped again, as the set's authors evaluate them."""
    import torch

    pre = model.preprocess
    resize = pre.image_size if split.corruption else pre.resize_size
    loader = build_loader(split.folder, split.split, run.batch_size, backend=run.backend, rank=0, world_size=1,
                          device=run.device, dtype=run.dtype, image_size=pre.image_size, resize_size=resize,
                          interpolation=pre.interpolation, mean=pre.mean, std=pre.std, train=False,
                          remainder="partial", num_threads=run.workers, return_real=split.real)
    mask = torch.tensor(split.mask, device=run.device) if split.mask is not None and run.masks else None
    score, start = Score(), time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            images, labels = batch[0], batch[1]
            keep = len(labels) if run.limit is None else min(len(labels), run.limit - score.images)
            logits = model.module(images[:keep])
            _add(score, logits, labels[:keep].to(logits.device), mask,
                 batch[2][:keep].to(logits.device) if split.real else None)
            if run.limit is not None and score.images >= run.limit:
                break
    score.seconds = time.perf_counter() - start
    return score


def _add(score: Score, logits, labels, mask, real) -> None:
    """Count one batch: top-1 and top-5 (within ``mask`` when given) and the ReaL top-1."""
    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise ModelError(f"the model gives logits of shape {list(logits.shape)}; the sets are scored in the "
                         "ImageNet-1k label space ([batch, 1000])")
    logits = logits.float()
    if mask is not None:
        top = mask[logits[:, mask].topk(min(5, len(mask)), dim=1).indices]
    else:
        top = logits.topk(5, dim=1).indices
    score.images += len(labels)
    score.top1 += int((top[:, 0] == labels).sum())
    score.top5 += int((top == labels[:, None]).any(1).sum())
    if real is not None:
        rated = (real >= 0).any(1)
        score.real_images += int(rated.sum())
        score.real_top1 += int(((real == top[:, :1]).any(1) & rated).sum())
