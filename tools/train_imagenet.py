"""The reference ImageNet training script: imnet-data's loader feeding a torchvision model under torchrun DDP.

Copy it and change what you need. What it does: DDP over NCCL (GPU) or gloo (CPU), the loader on every rank
(``--order global``, the default: each rank takes its share of every global batch of one permutation of the
split; ``--order local``: each rank reads its own contiguous share, see the README), bf16 autocast and
channels_last on GPU, SGD with nesterov momentum, a cosine or step schedule with linear warmup, label smoothing;
a checkpoint (model, optimizer, loader position) every ``--checkpoint-every`` steps and at the end of every
epoch, written atomically, from which ``--resume`` continues mid-epoch with exactly the samples not yet seen
(global order: on any number of ranks; ``--evaluate``: only validates the checkpoint's model); validation after
every epoch (the pad slots masked out) with top-1, top-5 and ReaL top-1; an optional progressive-resolution
schedule (FFCV's recipe: the train size grows from ``--min-res`` to ``--max-res`` over the epochs, val at
``--val-res``); a log line every ``--log-every`` steps (or ``--progress-every`` seconds, whichever comes first)
with images/s, the share of time spent waiting for data and the ETA of the epoch.

    torchrun --nproc_per_node 8 tools/train_imagenet.py --data /data/shards --arch resnet50 --epochs 90
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-endpoint head:29500 tools/train_imagenet.py --data /local/shards
    python tools/train_imagenet.py --data /data/shards --device cpu --backend torch --arch resnet18   # one CPU
    torchrun --nproc_per_node 8 tools/train_imagenet.py --data s3://bucket/shards --cache /nvme/imnet-cache

Needs torch and torchvision (pip install -e '.[train]'), imported after the arguments are parsed. ``--resume``
refuses a checkpoint it cannot use (truncated, not a checkpoint, another model) in one line naming it, exit 1,
and a run without ``--resume`` refuses to start over an existing checkpoint: a checkpoint is only ever replaced
by a complete newer one.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

from imnet_data import tario
from imnet_data.loader import ShardError, build_loader
from imnet_data.progress import duration

torch = dist = torchvision = None   # the [train] extra: import_train_extra() imports them after parse()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True,
                   help="shard root (holding train/ and val/): a folder, or a store URL (s3://, gs://, http(s)://) "
                        "whose shards are streamed through --cache")
    p.add_argument("--cache", default=None, help="a store URL's cache folder (default: $IMNET_DATA_CACHE, "
                                                 "else ~/.cache/imnet-data/<hash of the URL>)")
    p.add_argument("--cache-limit", default=None, help="the most the cache may hold, e.g. 200GB (default: 90%% "
                                                       "of the disk's free space)")
    p.add_argument("--arch", default="resnet50", help="a torchvision model name (default resnet50)")
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--batch-size", type=int, default=256, help="per rank (default 256)")
    p.add_argument("--lr", type=float, default=0.1, help="for a global batch of 256, scaled linearly")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-5)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--schedule", choices=["cosine", "step"], default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=5.0)
    p.add_argument("--min-res", type=int, default=224, help="train size in the first epoch (progressive)")
    p.add_argument("--max-res", type=int, default=224, help="train size in the last epochs (progressive)")
    p.add_argument("--val-res", type=int, default=224, help="val crop (resized to 256/224 of it first)")
    p.add_argument("--backend", choices=["dali", "torch"], default="dali")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when a GPU is visible, else cpu")
    p.add_argument("--threads", type=int, default=None, help="loader threads (default: the cores per rank)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", choices=["global", "local"], default="global",
                   help="global (default): one order for any number of ranks, resumable on another number; "
                        "local: each rank a fixed range of the shards (a node stages only its ranks' shards)")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoint.pt"))
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--evaluate", action="store_true", help="only validate the model of --checkpoint on val "
                   "(top-1, top-5, ReaL top-1) and exit")
    p.add_argument("--log-every", type=int, default=100, help="steps between two log lines (default 100)")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="also a log line when this many seconds passed since the last (default 30)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all (a smoke run)")
    p.add_argument("--record", type=Path, default=None,
                   help="folder: each rank appends the sample keys of every step it trains on (rank<N>.jsonl)")
    return p.parse_args(argv)


class Refused(Exception):
    """What this run will not do, in one line (exit 1)."""


def import_train_extra() -> None:
    """torch and torchvision (the [train] extra), as this module's globals: imported after the arguments are
    parsed, so --help works without them."""
    global torch, dist, torchvision
    try:
        import torch
        import torch.distributed as dist
        import torchvision
    except ImportError as e:
        raise Refused(f"needs {e.name}: pip install -e '.[train]'") from None


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut at ``limit`` characters (torch's run over many lines)."""
    text = " ".join(str(error).split()) or "no detail"
    return text if len(text) <= limit else text[:limit] + "..."


CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "loader": dict, "epoch": int, "done": int}


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """The checkpoint at ``path`` (tensors and plain types only: ``weights_only``), or Refused naming the file
    and what is wrong with it."""
    try:
        with warnings.catch_warnings():     # torch warns of an odd pickle protocol before it fails: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- truncated, empty, random bytes, a pickle of anything: one line
        raise Refused(f"{path}: not a readable checkpoint ({type(e).__name__}: {one_line(e)})") from None
    if not isinstance(state, dict):
        raise Refused(f"{path}: not a checkpoint of this script (holds a {type(state).__name__}, not a dict)")
    wrong = [f"{k} (missing)" if k not in state else f"{k} ({type(state[k]).__name__}, not {t.__name__})"
             for k, t in CHECKPOINT_KEYS.items() if not isinstance(state.get(k), t)]
    if wrong:
        raise Refused(f"{path}: not a checkpoint of this script: {', '.join(wrong)}")
    return state


def setup(args: argparse.Namespace) -> tuple[int, int, torch.device]:
    """DDP when torchrun started us (NCCL on GPU, gloo on CPU); the device this rank uses."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return rank, world, torch.device("cuda", torch.cuda.current_device())
    return rank, world, torch.device("cpu")


def train_size(args: argparse.Namespace, epoch: int) -> int:
    """The progressive-resolution schedule: linear from ``min_res`` to ``max_res`` over the epochs before the
    last few, in steps of 32 px (FFCV's ResNet recipe)."""
    span = max(1, args.epochs - 3)
    size = args.min_res + (args.max_res - args.min_res) * min(1.0, epoch / span)
    return int(round(size / 32) * 32) if args.max_res != args.min_res else args.min_res


def learning_rate(args: argparse.Namespace, world: int, epoch: float) -> float:
    """Warmup then cosine (or step: /10 at 30, 60, 80 of 90 epochs), scaled to the global batch; ``epoch``:
    epochs done, a fraction for the samples of the current one (a run resumed on other ranks keeps its place)."""
    base = args.lr * args.batch_size * world / 256
    if epoch < args.warmup_epochs:
        return base * (epoch + 1e-3) / args.warmup_epochs
    if args.schedule == "step":
        return base * 0.1 ** sum(epoch >= m * args.epochs / 90 for m in (30, 60, 80))
    progress = (epoch - args.warmup_epochs) / max(1e-9, args.epochs - args.warmup_epochs)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def save(path: Path, state: dict) -> None:
    """The checkpoint, atomically (a kill mid-write leaves the previous one), and its position beside it."""
    with tario.atomic_file(path) as f:
        torch.save(state, f)
    tario.write_json(path.with_suffix(".json"), {"epoch": state["epoch"], "loader": state["loader"]})


def validate(model: torch.nn.Module, loader, device: torch.device) -> dict[str, float]:
    """top-1, top-5 and ReaL top-1 over the whole val split: pad slots (label -1) masked, counts summed over
    ranks; ReaL counts only the images the raters kept labels for."""
    model.eval()
    totals = torch.zeros(5, device=device, dtype=torch.float64)   # samples, top1, top5, real samples, real top1
    for images, labels, real in loader:
        with torch.no_grad(), autocast(device):
            logits = model(images)
        keep = labels >= 0
        top5 = logits.topk(5, dim=1).indices
        hit1 = top5[:, 0] == labels
        hit5 = (top5 == labels[:, None]).any(1)
        rated = keep & (real[:, 0] >= 0)
        real_hit = (real == top5[:, :1]).any(1)
        totals += torch.stack([keep.sum(), (hit1 & keep).sum(), (hit5 & keep).sum(), rated.sum(),
                               (real_hit & rated).sum()]).double()
    if dist.is_initialized():
        dist.all_reduce(totals)
    model.train()
    n, top1, top5, rated, real = totals.tolist()
    return {"top1": top1 / max(n, 1), "top5": top5 / max(n, 1), "real_top1": real / max(rated, 1), "samples": n}


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return run(args)
    except Refused as e:
        print(f"train_imagenet.py: {e}", file=sys.stderr)
        return 1
    except ShardError as e:          # shards missing or refused, a fetch that failed (a full cache disk...)
        print(f"train_imagenet.py: {one_line(e, 1000)}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    """The run (see the module doc); Refused before any step when the checkpoint is unusable."""
    import_train_extra()
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.evaluate and not args.checkpoint.is_file():
        raise Refused(f"{args.checkpoint}: no such checkpoint to evaluate (name the file a run wrote with "
                      "--checkpoint)")
    if args.checkpoint.exists() and not (args.resume or args.evaluate):
        raise Refused(f"{args.checkpoint} exists: --resume to continue from it, or remove it (or name another "
                      "--checkpoint) to start over")
    rank, world, device = setup(args)
    torch.manual_seed(args.seed)
    gpu = device.type == "cuda"
    common = {"backend": args.backend, "device": args.device, "rank": rank, "world_size": world,
              "num_threads": args.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE",
                                                                                                  "1")))}
    if gpu:
        common.update(dtype="bfloat16", layout="channels_last")
    common.update(cache=args.cache, cache_limit=args.cache_limit)     # used when --data is a store URL
    state = load_checkpoint(args.checkpoint, device) if (args.resume or args.evaluate) and args.checkpoint.exists() \
        else None
    start_epoch, done = (state["epoch"], state["done"]) if state else (0, 0)
    train = build_loader(args.data, "train", args.batch_size, seed=args.seed, order=args.order,
                         image_size=train_size(args, start_epoch), **common)
    val = build_loader(args.data, "val", args.batch_size, image_size=args.val_res, return_real=True, **common)
    model = getattr(torchvision.models, args.arch)(num_classes=train.shards.num_classes or 1000).to(device)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if gpu else None) \
        if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True,
                                weight_decay=args.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    if state:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if not args.evaluate:   # the epoch and the step: the next batch is the first not seen
                train.load_state_dict(state["loader"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise Refused(f"{args.checkpoint}: does not fit this run ({args.arch}, these shards and ranks): "
                          f"{one_line(e)}") from None
        if rank == 0 and not args.evaluate:
            print(f"resumed epoch {start_epoch} at step {train.step} of {len(train)}, sample {train.position} "
                  f"({done} steps done, {state['loader']['world_size']} -> {world} ranks)", flush=True)
    if args.evaluate:
        metrics = validate(ddp, val, device)
        if rank == 0:
            print(f"{args.checkpoint} (epoch {start_epoch}, {done} steps): {val_line(metrics)}", flush=True)
        return finish(None)
    record = (args.record / f"rank{rank}.jsonl").open("a") if args.record else None
    for epoch in range(start_epoch, args.epochs):
        if not (state and epoch == start_epoch):   # a resumed epoch goes on where it stopped
            train.set_epoch(epoch, image_size=train_size(args, epoch))
        clock, waited, seen, steps = time.perf_counter(), 0.0, 0, 0
        batches = iter(train)
        while True:
            t0, at = time.perf_counter(), epoch + train.position / train.schedule.total
            batch = next(batches, None)
            waited += time.perf_counter() - t0
            if batch is None:
                break
            images, labels = batch
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(args, world, at)
            with autocast(device):
                loss = loss_fn(ddp(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done, seen, steps = done + 1, seen + len(labels), steps + 1
            if record:
                record.write(json.dumps({"epoch": epoch, "step": train.step - 1,
                                         "keys": train.batch_keys(train.step - 1)}) + "\n")
                record.flush()
            wall = time.perf_counter() - clock
            if rank == 0 and (done % args.log_every == 0 or wall >= args.progress_every):
                left = (len(train) - train.step) * wall / steps
                print(f"epoch {epoch} step {train.step}/{len(train)} loss {loss.item():.3f} "
                      f"{seen * world / wall:,.0f} img/s data wait {waited / wall:.0%} size {images.shape[-1]} "
                      f"ETA epoch {duration(left)}", flush=True)
                clock, waited, seen, steps = time.perf_counter(), 0.0, 0, 0
            if done % args.checkpoint_every == 0 and rank == 0:
                save(args.checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                       "loader": train.state_dict(), "epoch": epoch, "done": done})
            if args.max_steps is not None and done >= args.max_steps:
                break
        if args.max_steps is not None and done >= args.max_steps:
            break
        metrics = validate(ddp, val, device)
        if rank == 0:
            print(f"epoch {epoch} {val_line(metrics)}", flush=True)
            save(args.checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),   # the epoch's end
                                   "loader": train.state_dict(), "epoch": epoch + 1, "done": done})
    return finish(record)


def val_line(metrics: dict[str, float]) -> str:
    """What :func:`validate` measured, as the log prints it."""
    return (f"val top1 {metrics['top1']:.4f} top5 {metrics['top5']:.4f} ReaL top1 {metrics['real_top1']:.4f} "
            f"over {metrics['samples']:.0f} images")


def finish(record) -> int:
    """Close the record file and the process group; exit status 0."""
    if record:
        record.close()
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
