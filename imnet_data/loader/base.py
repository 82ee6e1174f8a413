"""What every backend shares: the settings, the per-epoch batch schedule, and reading a batch of JPEG bytes.

The schedule is plain data computed from (seed, epoch, rank): the rank's samples (fixed, see
:mod:`imnet_data.assign`) in a per-epoch permutation (train) or in order (val), cut into exactly ``len(loader)``
batches on every rank:

* ``remainder="drop"`` (train default): every rank yields ``(total // world) // batch`` full batches; the samples
  past that are left out this epoch (a different few each epoch, as the order changes).
* ``remainder="pad"`` (val default): every rank yields ``ceil(ceil(total / world) / batch)`` full batches; the slots
  past a rank's own samples repeat its first samples with label ``-1`` (mask them out: ``labels >= 0``), so every
  sample is seen exactly once across ranks and no rank waits in a collective.
* ``remainder="partial"``: each rank yields its samples once, the last batch smaller (ranks may differ by one
  batch: not for code that synchronises every step).

Mid-epoch resume: ``state_dict()`` holds epoch and step; after ``load_state_dict`` the next iteration starts at
that step of that epoch's order, so a resumed run sees exactly the batches it had not seen.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imnet_data.loader.mapping import PROBLEMS, MappedShards, gather, label_of
from imnet_data.loader.shardset import Located, ShardError, ShardSet

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
REMAINDERS = ("drop", "pad", "partial")
LAYOUTS = ("NCHW", "NHWC", "channels_last")
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class LoaderOptions:
    """Every setting of a loader (both backends honour all of them)."""

    split: str = "train"
    batch_size: int = 256
    image_size: int = 224
    resize_size: int | None = None          # val: shorter side before the centre crop (default size * 256/224)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    train: bool | None = None               # augment and shuffle; default: split == "train"
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    device: str = "cuda"
    dtype: str = "float32"                  # float32, float16, bfloat16 (uint8: raw pixels, no normalisation)
    layout: str = "NCHW"                    # NHWC: [B,H,W,3]; channels_last: [B,3,H,W] in channels_last memory
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    num_threads: int | None = None          # DALI: CPU threads (default 4); torch: DataLoader workers (default:
                                            # the rank's share of the cores, see fallback.default_workers)
    prefetch: int = 2
    remainder: str | None = None            # drop (train default), pad (val default), partial
    on_error: str = "raise"                 # or "skip": replace a corrupt sample by the next good one, counted
    hw_decoder_load: float = 0.65           # DALI: share of JPEGs for the hardware decoder (A100/H100/H200)
    return_real: bool = False               # also yield the ReaL labels: (images, labels, real)
    interpolation: str = "bilinear"         # the val resize: bilinear or bicubic (antialiased, as PIL's)

    @property
    def training(self) -> bool:
        """Whether batches are augmented and shuffled: ``train`` when given, else the split is train."""
        return self.train if self.train is not None else self.split == "train"

    @property
    def policy(self) -> str:
        """The remainder policy in force: ``remainder``, else drop when training and pad otherwise."""
        return self.remainder or ("drop" if self.training else "pad")

    @property
    def val_resize(self) -> int:
        """The val resize before the center crop: ``resize_size``, else ``image_size`` * 256 / 224."""
        return self.resize_size or round(self.image_size * 256 / 224)

    def check(self) -> None:
        """ValueError naming the bad setting."""
        if self.policy not in REMAINDERS:
            raise ValueError(f"remainder must be one of {REMAINDERS}, got {self.policy!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.dtype not in ("float32", "float16", "bfloat16", "uint8"):
            raise ValueError(f"dtype must be float32, float16, bfloat16 or uint8, got {self.dtype!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.batch_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"bad batch size {self.batch_size} or rank {self.rank} of {self.world_size}")


@dataclass
class Schedule:
    """The batches of one rank, epoch by epoch (plain data: the same inputs give the same order)."""

    options: LoaderOptions
    total: int            # samples of the split, all ranks
    mine: int             # samples of this rank
    batches: int = field(init=False)
    _last: tuple[int, np.ndarray] | None = field(default=None, init=False, repr=False)   # the last epoch's order

    def __post_init__(self) -> None:
        o, w = self.options, self.options.world_size
        per_rank = {"drop": self.total // w, "pad": -(-self.total // w), "partial": self.mine}[o.policy]
        self.batches = per_rank // o.batch_size if o.policy == "drop" else -(-per_rank // o.batch_size)
        if self.batches == 0:
            raise ValueError(f"{self.total} samples over {w} ranks make no full batch of {o.batch_size} "
                             "(use a smaller batch or remainder='pad')")

    def order(self, epoch: int) -> np.ndarray:
        """Positions into the rank's samples for the whole epoch; ``-1 - i`` marks a pad slot repeating ``i``.
        Kept for the epoch (read-only): an epoch's batches and each step's keys read the same order."""
        if self._last is None or self._last[0] != epoch:
            order = self._order(epoch)
            order.flags.writeable = False
            self._last = (epoch, order)
        return self._last[1]

    def _order(self, epoch: int) -> np.ndarray:
        o = self.options
        base = (np.random.default_rng([o.seed, epoch, o.rank]).permutation(self.mine) if o.training
                else np.arange(self.mine))
        want = self.mine if o.policy == "partial" else self.batches * o.batch_size
        if want <= self.mine:
            return base[:want]
        extra = np.resize(base, want - self.mine) if self.mine else np.zeros(want - self.mine, np.int64)
        return np.concatenate([base, -1 - extra])

    def batch(self, order: np.ndarray, step: int) -> np.ndarray:
        """The sample positions of batch ``step`` in the epoch's ``order``."""
        b = self.options.batch_size
        return order[step * b:(step + 1) * b]


class BatchReader:
    """Reads batches of samples by position: JPEG bytes as zero-copy views of the mapped shards and int64
    labels (see :mod:`imnet_data.loader.mapping`); several threads may read batches at once (the gathers
    release the GIL). Picklable: DataLoader workers map the shards themselves."""

    def __init__(self, shards: ShardSet, located: Located, on_error: str) -> None:
        self.files = MappedShards([str(p) for p in shards.paths], located, shards.num_classes)
        self.on_error = on_error
        self.skipped: list[str] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state, _lock=threading.Lock())

    def __len__(self) -> int:
        return len(self.files.keys)

    def read(self, positions: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """JPEG arrays and int64 labels (``-1`` for pad slots) of ``positions`` (see :meth:`Schedule.order`); a
        label outside the label space raises ShardError naming shard and key (:func:`label_of`)."""
        rows = np.where(positions >= 0, positions, -1 - positions)
        images, labels, problems = gather(self.files, rows)
        odd = (problems > 0) | (labels < 0) | (labels >= self.files.limit)
        for j in np.flatnonzero(odd).tolist():   # the rare odd one goes the slow way
            images[j], labels[j] = self.good_sample(int(rows[j]))
        labels[positions < 0] = -1
        return images, labels

    def sample(self, i: int) -> tuple[np.ndarray, int, str | None]:
        """Sample ``i``'s JPEG view, label, and what is wrong with its bytes (None when they look whole); a label
        outside the label space raises ShardError whatever ``on_error`` says (the shard set is wrong, not a
        sample damaged)."""
        images, labels, problems = gather(self.files, np.array([i]))
        label = int(labels[0]) if 0 <= labels[0] < self.files.limit else label_of(self.files, i)
        return images[0], label, PROBLEMS.get(int(problems[0]))

    def good_sample(self, i: int, decode: Callable[[np.ndarray], Any] | None = None) -> tuple[Any, int]:
        """Sample ``i`` (its bytes, or ``decode(bytes)``) and label. A corrupt one (damaged markers, or ``decode``
        failing) raises ShardError naming shard and key or, with ``on_error="skip"``, is replaced by the next good
        sample of the rank and recorded once in ``skipped``."""
        n = len(self)
        for attempt in range(n):
            j = (i + attempt) % n
            data, label, problem = self.sample(j)
            if problem is None:
                try:
                    return (decode(data) if decode else data), label
                except Exception as e:  # noqa: BLE001 -- PIL raises OSError, ValueError, SyntaxError... on bad data
                    problem = f"cannot decode the JPEG ({type(e).__name__}: {e})"
            message = f"{self.files.path_of(j)}: sample {self.files.keys[j]}: {problem}"
            if self.on_error == "raise":
                raise ShardError(message + " (on_error='skip' skips and counts such samples)")
            self.note_skipped([message])
        raise ShardError(f"no readable sample among the rank's {n} samples")

    def note_skipped(self, messages: list[str]) -> None:
        """Record skipped samples, each once (a pad slot, or a worker's report, may repeat one)."""
        with self._lock:
            self.skipped += [m for m in dict.fromkeys(messages) if m not in self.skipped]


def distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Rank and world size: given, else from torch.distributed when initialised, else RANK/WORLD_SIZE, else 0/1."""
    if rank is not None and world_size is not None:
        return rank, world_size
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
