"""The two orders a loader reads a split in, epoch by epoch: plain data from (seed, epoch, rank, world size).

Positions are global sample numbers (shard after shard in manifest order, see :mod:`imnet_data.loader.index`);
``-1 - i`` marks a pad slot repeating sample ``i`` (label -1). Both orders give every rank exactly ``batches``
batches of an epoch (the remainder policy, see :mod:`imnet_data.loader.base`).

``order="global"`` (the default): each epoch is one permutation of the whole split, the same for every world
size. The shards are shuffled (seed + epoch), taken ``shuffle_window`` at a time, and the samples of each window
shuffled among themselves (:func:`window_order`): a rank reads a few shards at once, each front to back in random
steps, never the whole split at random (a streamed window is a few shards in the cache). Global batch ``g`` is
``batch_size * world_size`` consecutive samples of the permutation; rank ``r`` takes the ``r``-th ``batch_size``
of them. Read rank after rank, batch after batch, the samples are the permutation, whatever the world size; pads
come only at the end. A position in the epoch is a sample count (``origin``): a loader of another world size
resumes there and every sample of the epoch is still seen once.

``order="local"``: today's DALI ``stick_to_shard`` behaviour: rank ``r`` reads a fixed contiguous range of the
split (:mod:`imnet_data.assign`, the rule ``stage`` uses to copy a node only its ranks' shards), in a new order
every epoch (seed + epoch + rank). It cannot resume on another world size.
"""
from __future__ import annotations

import numpy as np

from imnet_data.assign import rank_range

ORDERS = ("global", "local")


def window_order(counts: np.ndarray, seed: int, epoch: int, window: int) -> np.ndarray:
    """The global sample numbers of one epoch: shards in a seeded random order, cut into windows of ``window``
    shards, each window's samples shuffled among themselves (int64; ~70 ms for 1.28M samples on a shared 2-core
    machine)."""
    rng = np.random.default_rng([seed, epoch])
    first = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    shards = rng.permutation(len(counts))
    out, at = np.empty(int(first[-1]), np.int64), 0
    for w in range(0, len(shards), window):
        ids = np.concatenate([np.arange(first[s], first[s + 1]) for s in shards[w:w + window]])
        rng.shuffle(ids)
        out[at:at + len(ids)] = ids
        at += len(ids)
    return out


class Schedule:
    """What both orders share: the options, the split's sample counts, the batch of an epoch's positions, and
    the passes' positions kept (an epoch's batches and each step's keys read the same array)."""

    def __init__(self, options, counts: np.ndarray) -> None:
        self.options, self.counts, self.total = options, counts, int(counts.sum())
        self._kept: dict[tuple[int, int], np.ndarray] = {}
        if self.batches(0) == 0:
            raise ValueError(f"{self.total} samples over {options.world_size} ranks make no full batch of "
                             f"{options.batch_size} (use a smaller batch or remainder='pad')")

    def order(self, epoch: int, origin: int = 0, keep: bool = True) -> np.ndarray:
        """This rank's positions for the whole pass of ``epoch`` that starts ``origin`` samples into it
        (read-only; the last two passes asked for are kept: the current one and the next epoch's; ``keep=False``:
        one not kept, unless it was already)."""
        key = (epoch, origin)
        if key not in self._kept:
            positions = self._order(epoch, origin)
            positions.flags.writeable = False
            if not keep:
                return positions
            self._kept = {k: v for k, v in self._kept.items() if k[0] in (epoch - 1, epoch + 1)}
            self._kept[key] = positions
        return self._kept[key]

    def batch(self, order: np.ndarray, step: int) -> np.ndarray:
        """The sample positions of batch ``step`` in the pass's ``order``."""
        b = self.options.batch_size
        return order[step * b:(step + 1) * b]

    @property
    def span(self) -> int:
        """Samples of the split consumed by one step of every rank."""
        return self.options.batch_size * self.options.world_size

    @property
    def mine(self) -> int:
        """Samples this rank reads in a whole epoch (before drop or pad)."""
        raise NotImplementedError

    def batches(self, origin: int = 0) -> int:
        """Batches of a pass starting ``origin`` samples into an epoch."""
        raise NotImplementedError

    def _order(self, epoch: int, origin: int) -> np.ndarray:
        raise NotImplementedError


class LocalSchedule(Schedule):
    """``order="local"``: the rank's fixed range, shuffled per epoch (train) or in order (val)."""

    def __init__(self, options, counts: np.ndarray) -> None:
        self.first, self.last = rank_range(int(counts.sum()), options.rank, options.world_size)
        super().__init__(options, counts)

    @property
    def mine(self) -> int:
        """Samples of this rank's range."""
        return self.last - self.first

    def batches(self, origin: int = 0) -> int:
        """Batches of an epoch: the same on every rank (a local pass always starts at the epoch's start)."""
        o, w = self.options, self.options.world_size
        per_rank = {"drop": self.total // w, "pad": -(-self.total // w), "partial": self.mine}[o.policy]
        return per_rank // o.batch_size if o.policy == "drop" else -(-per_rank // o.batch_size)

    def _order(self, epoch: int, origin: int) -> np.ndarray:
        o = self.options
        base = (np.random.default_rng([o.seed, epoch, o.rank]).permutation(self.mine) if o.training
                else np.arange(self.mine)) + self.first
        want = self.mine if o.policy == "partial" else self.batches() * o.batch_size
        if want <= self.mine:
            return base[:want]
        extra = np.resize(base, want - self.mine) if self.mine else np.full(want - self.mine, self.first, np.int64)
        return np.concatenate([base, -1 - extra])


class GlobalSchedule(Schedule):
    """``order="global"``: one permutation of the split per epoch, the rank's share of each global batch."""

    def sequence(self, epoch: int) -> np.ndarray:
        """The epoch's permutation (training), else the split in manifest order."""
        o = self.options
        if not o.training:
            return np.arange(self.total, dtype=np.int64)
        return window_order(self.counts, o.seed, epoch, o.shuffle_window)

    def batches(self, origin: int = 0) -> int:
        """Global batches left after ``origin`` samples (partial: those holding a sample of this rank)."""
        left, b, span = self.total - origin, self.options.batch_size, self.span
        policy = self.options.policy
        if policy == "drop":
            return left // span
        if policy == "pad":
            return -(-left // span)
        return left // span + (left % span > self.options.rank * b)      # partial: global batches with a share

    @property
    def mine(self) -> int:
        """Samples this rank reads in a whole epoch (before drop or pad)."""
        b, span, r = self.options.batch_size, self.span, self.options.rank
        return self.total // span * b + min(b, max(0, self.total % span - r * b))

    def _order(self, epoch: int, origin: int) -> np.ndarray:
        o, span = self.options, self.span
        seq = self.sequence(epoch)
        rest, n = seq[origin:], self.batches(origin)
        if o.policy == "pad" and n * span > len(rest):
            rest = np.concatenate([rest, -1 - np.resize(seq, n * span - len(rest))])
        slots = (np.arange(n)[:, None] * span + o.rank * o.batch_size + np.arange(o.batch_size)[None, :]).ravel()
        return rest[slots[slots < len(rest)]]


def make_schedule(options, counts: np.ndarray) -> Schedule:
    """The schedule of ``options.order``."""
    return (GlobalSchedule if options.order == "global" else LocalSchedule)(options, counts)
