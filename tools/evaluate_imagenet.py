#!/usr/bin/env python3
"""Score a model on every evaluation set prepared under a folder: ImageNet val (top-1, top-5, ReaL top-1),
ImageNetV2's three variants, ImageNet-A and -R (logits restricted to their 200 classes, as their authors score),
ImageNet-Sketch, ImageNet-C (top-1 per corruption and severity, mCE and relative mCE with AlexNet's published
errors). Prints a markdown table (or ``--json``), ``--out DIR`` writes ``results.md`` and ``results.json``.

Prepare the sets with ``imnet-data shard`` from their archives, one folder each under EVAL (see the README,
"Evaluation sets"). The model: a torchvision or timm architecture with its weights file (``--model timm:resnet50
--weights resnet50.pth``; nothing is downloaded), or an import path to a model or a function making one
(``--model mypkg.models:build``). Val preprocessing is the model's own (timm's pretrained config, torchvision's
weights transforms, a callable's ``data_config``) unless overridden.

    python tools/evaluate_imagenet.py /data/eval --model timm:resnet50 --weights resnet50.a1_in1k.pth
    python tools/evaluate_imagenet.py /data/eval --model torchvision:resnet50 --weights resnet50-0676ba61.pth \\
        --sets imagenet,imagenet-c --corruptions gaussian_noise,fog --severities 3,5 --limit 500 --out results/

Exit status: 0 done, 1 a set or the model failed (a weights file that does not fit the architecture, a damaged
shard), 2 a usage error (no prepared sets, an unknown model name, a bad option).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imnet_data import tario
from imnet_data.cli.shared import _corruptions, _csv, _int
from imnet_data.errors import UsageError
from imnet_data.loader.base import INTERPOLATIONS


def _crop_pct(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be in (0, 1]")
    return value


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("root", type=Path, metavar="EVAL", help="folder of prepared sets (<set>/<split>/manifest.json)")
    p.add_argument("--model", required=True, help="torchvision:NAME, timm:NAME (a bare NAME if only one has it), "
                                                  "or package.module:attribute")
    p.add_argument("--weights", type=Path, metavar="FILE", help="state dict (or a checkpoint holding one under "
                                                                "'state_dict' or 'model'); required for NAME")
    p.add_argument("--sets", type=_csv, metavar="LIST", help="only these sets: imagenet, imagenet-real, "
                   "imagenet-v2, imagenet-a, imagenet-r, imagenet-sketch, imagenet-c (default: all there)")
    _corruptions(p)
    p.add_argument("--limit", type=_int(1), metavar="N", help="score the first N images of each split (a quick check)")
    p.add_argument("--no-mask", action="store_true", help="score ImageNet-A and -R over all 1000 classes too "
                   "(default: the logits restricted to the set's 200, as its authors do)")
    p.add_argument("--image-size", type=_int(16), metavar="PX", help="input size (default: the model's)")
    p.add_argument("--crop-pct", type=_crop_pct, metavar="F", help="crop / resized shorter side (default: the model's)")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, help="val resize (default: the model's)")
    p.add_argument("--batch-size", type=_int(1), default=64, help="default 64")
    p.add_argument("--backend", choices=["dali", "torch"], help="loader backend (default: dali on a GPU, else torch)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when a GPU is visible, else cpu")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--workers", type=_int(0), metavar="N", help="loader threads / workers (default: the loader's)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write results.json and results.md there")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        import torch

        from imnet_data.evaluate import Run, evaluate, load_model
    except ImportError as e:
        print(f"evaluate_imagenet: error: {e}: pip install -e '.[eval]' (torch, torchvision, timm, DALI)",
              file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = Run(backend=args.backend or ("dali" if device == "cuda" else "torch"), device=device, dtype=args.dtype,
              batch_size=args.batch_size, workers=args.workers, limit=args.limit, masks=not args.no_mask)
    try:
        model = load_model(args.model, args.weights, image_size=args.image_size, crop_pct=args.crop_pct,
                           interpolation=args.interpolation)
        report = evaluate(args.root, model, run, sets=args.sets, corruptions=args.corruptions,
                          severities=args.severities, progress=not args.quiet and not args.json)
    except UsageError as e:
        print(f"evaluate_imagenet: error: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, ValueError, LookupError) as e:
        print(f"evaluate_imagenet: error: {e}", file=sys.stderr)
        return 1
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        tario.write_json(args.out / "results.json", report.as_dict())
        with tario.atomic_file(args.out / "results.md") as f:
            f.write((report.render() + "\n").encode())
    print(tario.json_bytes(report.as_dict()).decode() if args.json else report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
