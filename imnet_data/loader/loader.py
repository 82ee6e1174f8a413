"""The loader object both backends return: exact length, epochs (with a new image size if asked), mid-epoch
resume, batches as torch tensors, and the ReaL labels of each batch when asked (``return_real``)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from imnet_data.catalog import real_labels_of
from imnet_data.loader.base import BatchReader, LoaderOptions, Schedule
from imnet_data.loader.shardset import ShardSet

REAL_WIDTH = 10        # ReaL keeps at most 9 labels per image; rows are padded with -1
USE_LABEL = -2         # a real-labels row for a sample ReaL does not cover: its own label


class Loader:
    """Iterate to get ``(images, labels)`` batches for one epoch; ``set_epoch`` before each epoch (or let the
    loader advance by itself: every full pass moves to the next epoch).

    Subclasses (the backends) implement :meth:`_run`, turning a list of batches' sample positions into tensors.
    """

    backend = "?"

    def __init__(self, shards: ShardSet, options: LoaderOptions) -> None:
        options.check()
        self.shards, self.options = shards, options
        self.located = shards.locate(options.rank, options.world_size)
        self.schedule = Schedule(options, shards.total, len(self.located))
        self.reader = BatchReader(shards, self.located, options.on_error)
        self.real = real_table(shards, self.located.keys) if options.return_real else None
        self.epoch, self.step = 0, 0

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank (see the remainder policy)."""
        return self.schedule.batches

    @property
    def num_samples(self) -> int:
        """Samples of this rank's share (before drop/pad)."""
        return len(self.located)

    @property
    def skipped(self) -> list[str]:
        """Corrupt samples skipped so far with ``on_error="skip"`` (shard and key of each)."""
        return self.reader.skipped

    def set_epoch(self, epoch: int, image_size: int | None = None) -> None:
        """Start ``epoch`` at its first batch next time the loader is iterated; ``image_size``: from now on
        make images of that size (a progressive-resolution schedule; the val resize follows it unless
        ``resize_size`` was set)."""
        self.epoch, self.step = epoch, 0
        if image_size is not None and image_size != self.options.image_size:
            self.options = dataclasses.replace(self.options, image_size=image_size)
            self._reconfigure()

    def _reconfigure(self) -> None:
        """The options changed (the image size): the backend builds its pipeline anew."""
        raise NotImplementedError

    def batch_keys(self, step: int) -> list[str | None]:
        """The sample keys of batch ``step`` of the current epoch (None for a pad slot)."""
        keys = self.located.keys
        return [keys[p] if p >= 0 else None
                for p in self.schedule.batch(self.schedule.order(self.epoch), step).tolist()]

    def state_dict(self) -> dict:
        """Where the loader is: resume with :meth:`load_state_dict` (same shards, options and world size)."""
        return {"epoch": self.epoch, "step": self.step, "seed": self.options.seed,
                "world_size": self.options.world_size, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        """Resume where :meth:`state_dict` was taken; ValueError when it comes from a loader with another
        seed, world size or data."""
        if (state["seed"], state["world_size"], state["batches"]) != (self.options.seed, self.options.world_size,
                                                                      len(self)):
            raise ValueError("state_dict comes from a loader with another seed, world size or data; cannot resume")
        self.epoch, self.step = state["epoch"], state["step"]

    def positions(self) -> list[np.ndarray]:
        """The sample positions of the batches still to come in the current epoch."""
        order = self.schedule.order(self.epoch)
        return [self.schedule.batch(order, s) for s in range(self.step, len(self))]

    def __iter__(self) -> Iterator[tuple]:
        batches = self.positions()
        # batches first, not strict: the pass ends at the schedule's last batch, ``_run`` is not resumed past it
        for positions, batch in zip(batches, self._run(batches), strict=False):
            self.step += 1
            yield batch if self.real is None else (*batch, self._real(self.real, positions, batch[1]))
        self.epoch, self.step = self.epoch + 1, 0

    def _real(self, table: np.ndarray, positions: np.ndarray, labels):
        """The batch's ReaL labels from ``table`` (:func:`real_table`), ``[B, REAL_WIDTH]`` int64 on the labels'
        device, padded with -1 (a pad slot: all -1; a sample ReaL does not cover: its own label)."""
        import torch

        rows = torch.from_numpy(table[np.where(positions >= 0, positions, -1 - positions)]).to(labels.device,
                                                                                                 non_blocking=True)
        own = rows[:, 0] == USE_LABEL
        rows[:, 0] = torch.where(own, labels, rows[:, 0])
        rows[labels < 0] = -1
        return rows

    def _run(self, batches: list[np.ndarray]) -> Iterator[tuple]:
        raise NotImplementedError


def real_table(shards: ShardSet, keys: tuple[str, ...]) -> np.ndarray:
    """``[samples, REAL_WIDTH]`` int64: each sample's ReaL labels (ILSVRC2012 val keys of an ImageNet-1k label
    space), or :data:`USE_LABEL` for the others; padded with -1."""
    table = np.full((len(keys), REAL_WIDTH), -1, np.int64)
    imagenet = (shards.manifest or {}).get("label_space", "imagenet-1k") == "imagenet-1k"
    for i, key in enumerate(keys):
        real = real_labels_of(key) if imagenet else None
        if real is None:
            table[i, 0] = USE_LABEL
        else:
            table[i, :len(real)] = real
    return table
