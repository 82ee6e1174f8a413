"""Scoring a model on the evaluation sets every paper reports, in one call.

The sets are prepared with ``shard`` (ImageNet val with ReaL, ImageNetV2, ImageNet-A, -R, -Sketch, ImageNet-C)::

    from imnet_data.evaluate import evaluate, load_model
    model = load_model("timm:resnet50", Path("resnet50.pth"))
    report = evaluate("/data/eval", model)       # report.markdown(), report.as_dict()

The package: :mod:`.sets` (which prepared splits are under a folder), :mod:`.model` (the model, its weights and
val preprocessing), :mod:`.score` (one split through the loader), :mod:`.corruption` (ImageNet-C's mCE),
:mod:`.report` (the table and JSON). ``tools/evaluate_imagenet.py`` is its command line.
"""
from __future__ import annotations

import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from imnet_data import __version__
from imnet_data.evaluate.corruption import summarize
from imnet_data.evaluate.model import Model, ModelError, load_model
from imnet_data.evaluate.report import EvalReport
from imnet_data.evaluate.score import Run, Score, score_split
from imnet_data.evaluate.sets import EvalSplit, find_splits


def evaluate(root: str | Path, model: Model, run: Run = Run(), *, sets: Iterable[str] | None = None,
             corruptions: Iterable[str] | None = None, severities: Iterable[int] | None = None,
             progress: bool = False) -> EvalReport:
    """Score ``model`` on every prepared split under ``root`` (or ``sets``; ImageNet-C: ``corruptions`` at
    ``severities``), one split after another in a fixed order, so the same inputs give the same report;
    ``progress``: a line on stderr as each split starts."""
    import torch

    start = time.perf_counter()
    splits, skipped = find_splits(Path(root), sets, corruptions, severities)
    module = model.module
    if isinstance(module, torch.nn.Module):
        module.eval().to(run.device)
        if run.dtype in ("float16", "bfloat16"):
            module.to(getattr(torch, run.dtype))
    report = EvalReport({**model.settings(), **asdict(run), "tool_version": __version__, "torch": torch.__version__,
                         "python": platform.python_version()}, skipped=skipped)
    for split in splits:
        if progress:
            print(f"scoring {split.label} ({split.samples:,} images) ...", file=sys.stderr, flush=True)
        report.results.append((split, score_split(model, split, run)))
    c: dict[tuple[str, int], float] = {(sp.corruption, sp.severity): sc.top1 / sc.images for sp, sc in report.results
         if sp.corruption and sp.severity and sc.images}
    if c:
        clean = next((1 - sc.top1 / sc.images for sp, sc in report.results if sp.real and sc.images), None)
        report.imagenet_c = summarize(c, clean)
    report.seconds = time.perf_counter() - start
    return report


__all__ = ["EvalReport", "EvalSplit", "Model", "ModelError", "Run", "Score", "evaluate", "find_splits",
           "load_model"]
