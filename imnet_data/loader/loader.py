"""The loader object both backends return: exact length, epochs (with a new image size if asked), mid-epoch
resume (global order: on another world size too), batches as torch tensors, and the ReaL labels of each batch
when asked (``return_real``)."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from imnet_data.assign import rank_pieces
from imnet_data.catalog import real_labels_of
from imnet_data.loader.base import BatchReader, LoaderOptions
from imnet_data.loader.index import SampleIndex
from imnet_data.loader.mapping import MappedShards
from imnet_data.loader.order import make_schedule
from imnet_data.loader.shardset import ShardSet

REAL_WIDTH = 10        # ReaL keeps at most 9 labels per image; rows are padded with -1
USE_LABEL = -2         # a real-labels row for a sample ReaL does not cover: its own label
SAME = ("split", "seed", "manifest", "order")   # what a state must share with the loader that resumes it


class Streamed(Protocol):
    """What the loader asks of a shard cache (:class:`imnet_data.loader.cache.ShardCache`)."""

    def __call__(self, shard: int) -> tuple[int, bool]:
        """A descriptor of the shard's complete file (and whether to keep it open while mapped)."""

    def plan(self, shards: np.ndarray) -> None:
        """The shards the loader will need, in the order it will need them."""

    def stats(self) -> dict:
        """What the cache did."""

    def close(self) -> None:
        """Stop fetching."""


class LocalFiles:
    """Opens a local shard for mapping (present with the manifest's size, else ShardError); picklable."""

    def __init__(self, shards: ShardSet) -> None:
        self.shards = shards

    def __call__(self, shard: int) -> tuple[int, bool]:
        """A descriptor of the shard, closed once mapped."""
        return os.open(self.shards.check(shard), os.O_RDONLY), False


class Loader:
    """Iterate to get ``(images, labels)`` batches for one epoch; ``set_epoch`` before each epoch (or let the
    loader advance by itself: every full pass moves to the next epoch).

    Subclasses (the backends) implement :meth:`_run`, turning a list of batches' sample positions into tensors.
    """

    backend = "?"

    def __init__(self, shards: ShardSet, options: LoaderOptions, cache: Streamed | None = None) -> None:
        options.check()
        self.shards, self.options, self.cache = shards, options, cache
        self.schedule = make_schedule(options, shards.counts)
        self.index = SampleIndex(shards.counts, shards.names)
        # shards left mapped with no batch holding them: a streamed one is let go at once (its flock pins it in the
        # cache); local order keeps the rank's shards (every batch draws from them all); global, two windows
        capacity = 0 if cache else None if options.order == "local" else 2 * options.shuffle_window + 2
        self.files = MappedShards(shards, self.index, shards.num_classes, cache or LocalFiles(shards), capacity)
        if cache is None:
            self._check_local()
        self.reader = BatchReader(self.files, options.on_error)
        self.epoch, self.step, self.origin = 0, 0, 0
        self.planned: tuple | None = None
        self._plan()        # a streamed set: the first shards are fetched while the backend sets itself up

    def _check_local(self) -> None:
        """Every shard this rank reads is present with the manifest's size and its index fits it (ShardError
        naming the first that is not): a bad shard set fails here, not hours into training."""
        o = self.options
        wanted = ([p.shard for p in rank_pieces(self.shards.counts.tolist(), o.rank, o.world_size)]
                  if o.order == "local" else range(len(self.shards.paths)))
        for s in wanted:
            self.index.load(s, self.shards.check(s), int(self.shards.sizes[s]))

    def __len__(self) -> int:
        """Batches of the current epoch, the same on every rank (see the remainder policy); an epoch resumed on
        another world size has the batches left of it."""
        return self.schedule.batches(self.origin)

    @property
    def num_samples(self) -> int:
        """Samples of this rank's share of an epoch (before drop/pad)."""
        return self.schedule.mine

    @property
    def position(self) -> int:
        """Samples of the current epoch consumed by all ranks together (global order: its place in the epoch's
        permutation)."""
        return self.origin + self.step * self.schedule.span

    @property
    def skipped(self) -> list[str]:
        """Corrupt samples skipped so far with ``on_error="skip"`` (shard and key of each)."""
        return self.reader.skipped

    def set_epoch(self, epoch: int, image_size: int | None = None) -> None:
        """Start ``epoch`` at its first batch next time the loader is iterated; ``image_size``: from now on
        make images of that size (a progressive-resolution schedule; the val resize follows it unless
        ``resize_size`` was set)."""
        self.epoch, self.step, self.origin = epoch, 0, 0
        self._plan()
        if image_size is not None and image_size != self.options.image_size:
            self.options = dataclasses.replace(self.options, image_size=image_size)
            self._reconfigure()

    def _reconfigure(self) -> None:
        """The options changed (the image size): the backend builds its pipeline anew."""
        raise NotImplementedError

    def keys(self, positions: np.ndarray) -> list[str | None]:
        """The sample keys at ``positions`` (None for a pad slot)."""
        return [self.files.key_of(p) if p >= 0 else None for p in positions.tolist()]

    def batch_keys(self, step: int) -> list[str | None]:
        """The sample keys of batch ``step`` of the current epoch (None for a pad slot)."""
        return self.keys(self.schedule.batch(self.schedule.order(self.epoch, self.origin), step))

    def state_dict(self) -> dict:
        """Where the loader is (the epoch, and the position in it: the step, and the samples all ranks consumed),
        and what fixes the order (split, seed, the manifest's sha256, order, world size, batch size)."""
        o = self.options
        return {"epoch": self.epoch, "step": self.step, "origin": self.origin, "position": self.position,
                "split": o.split, "seed": o.seed, "manifest": self.shards.digest, "order": o.order,
                "world_size": o.world_size, "batch_size": o.batch_size, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        """Resume where :meth:`state_dict` was taken. Global order: on any world size and batch size, at the
        same place of the epoch's permutation (a loader of another size continues from that sample on). Local
        order: the same world size and batches only. ValueError naming what differs (split, seed, data, order)."""
        mine = self.state_dict()
        state = {"order": "local", "split": mine["split"], "manifest": mine["manifest"], **state}  # older states
        differs = [f"{k} {state[k]!r} -> {mine[k]!r}" for k in SAME if state.get(k) != mine[k]]
        if differs:
            raise ValueError(f"state_dict comes from another loader: differs in {', '.join(differs)}; cannot resume")
        if self.options.order == "local":
            if (state["world_size"], state["batches"]) != (mine["world_size"], mine["batches"]):
                raise ValueError(f"state_dict comes from {state['world_size']} ranks of {state['batches']} batches, "
                                 f"this loader has {mine['world_size']} of {mine['batches']}: order='local' resumes "
                                 "on the same world size only (order='global' resumes on any)")
            self.epoch, self.step, self.origin = state["epoch"], state["step"], 0
            return
        span = self.schedule.span
        if state["world_size"] * state["batch_size"] == span:
            self.epoch, self.step, self.origin = state["epoch"], state["step"], state["origin"]
        else:
            self.epoch, self.step, self.origin = state["epoch"], 0, state["position"]
        if self.origin >= self.schedule.total or not len(self):
            self.epoch, self.step, self.origin = self.epoch + 1, 0, 0
        self._plan()

    def positions(self, keep: bool = True) -> list[np.ndarray]:
        """The sample positions of the batches still to come in the current epoch (``keep``: the epoch's order
        kept by the schedule)."""
        order = self.schedule.order(self.epoch, self.origin, keep)
        return [self.schedule.batch(order, s) for s in range(self.step, len(self))]

    def __iter__(self) -> Iterator[tuple]:
        batches = self.positions()
        self._plan(batches)
        self.planned = None         # a later pass from the same place (set_epoch back to it) plans again
        # batches first, not strict: the pass ends at the schedule's last batch, ``_run`` is not resumed past it
        for positions, batch in zip(batches, self._run(batches), strict=False):
            self.step += 1
            yield batch if not self.options.return_real else (*batch, self._real(positions, batch[1]))
        self.epoch, self.step, self.origin = self.epoch + 1, 0, 0

    def _plan(self, batches: list[np.ndarray] | None = None) -> None:
        """Tell a shard cache which shards the next pass needs, as soon as the loader knows where it starts
        (built, ``set_epoch``, ``load_state_dict``): its fetch threads get the first ones while the backend
        builds its pipeline and the training script sets up, not after. Once per starting place."""
        where = (self.epoch, self.step, self.origin)
        if self.cache is None or where == self.planned:
            return
        # planned ahead of a pass: the orders are not kept (the pass computes them again), so a loader built and
        # not yet iterated holds no array per sample beyond its index
        keep = batches is not None
        self.cache.plan(self._needs(batches if batches is not None else self.positions(keep=False), keep))
        self.planned = where

    def _needs(self, batches: list[np.ndarray], keep: bool = True) -> np.ndarray:
        """The shards of ``batches`` and then of the next epoch's first batches, in order of first need."""
        following = self.schedule.order(self.epoch + 1, keep=keep)[:self.options.batch_size * 64] \
            if self.options.training else np.zeros(0, np.int64)
        order = np.concatenate([*batches, following]) if batches else following
        shards = self.index.shard_of(np.where(order >= 0, order, -1 - order))
        _, first = np.unique(shards, return_index=True)
        return shards[np.sort(first)]

    def _real(self, positions: np.ndarray, labels):
        """The batch's ReaL labels, ``[B, REAL_WIDTH]`` int64 on the labels' device, padded with -1 (a pad slot:
        all -1; a sample ReaL does not cover, or a label space other than ImageNet-1k's: its own label)."""
        import torch

        imagenet = (self.shards.manifest or {}).get("label_space", "imagenet-1k") == "imagenet-1k"
        rows = np.full((len(positions), REAL_WIDTH), -1, np.int64)
        for j, key in enumerate(self.keys(np.where(positions >= 0, positions, -1 - positions))):
            real = real_labels_of(key) if imagenet and key else None
            if real is None:
                rows[j, 0] = USE_LABEL
            else:
                rows[j, :len(real)] = real
        table = torch.from_numpy(rows).to(labels.device, non_blocking=True)
        own = table[:, 0] == USE_LABEL
        table[:, 0] = torch.where(own, labels, table[:, 0])
        table[labels < 0] = -1
        return table

    def stats(self) -> dict:
        """What the shard cache did (bytes fetched, hits, waits...; empty for local shards)."""
        return self.cache.stats() if self.cache is not None else {}

    def close(self) -> None:
        """Stop fetching and unmap the shards (the loader is not used again)."""
        if self.cache is not None:
            self.cache.close()
        self.files.close()

    def _run(self, batches: list[np.ndarray]) -> Iterator[tuple]:
        raise NotImplementedError
