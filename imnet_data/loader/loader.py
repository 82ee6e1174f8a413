"""The loader object both backends return: exact length, epochs, mid-epoch resume, batches as torch tensors."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from imnet_data.loader.base import BatchReader, LoaderOptions, Schedule
from imnet_data.loader.shardset import ShardSet


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

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at its first batch next time the loader is iterated."""
        self.epoch, self.step = epoch, 0

    def state_dict(self) -> dict:
        """Where the loader is: resume with :meth:`load_state_dict` (same shards, options and world size)."""
        return {"epoch": self.epoch, "step": self.step, "seed": self.options.seed,
                "world_size": self.options.world_size, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["world_size"], state["batches"]) != (self.options.seed, self.options.world_size,
                                                                      len(self)):
            raise ValueError("state_dict comes from a loader with another seed, world size or data; cannot resume")
        self.epoch, self.step = state["epoch"], state["step"]

    def positions(self) -> list[np.ndarray]:
        """The sample positions of the batches still to come in the current epoch."""
        order = self.schedule.order(self.epoch)
        return [self.schedule.batch(order, s) for s in range(self.step, len(self))]

    def __iter__(self) -> Iterator[tuple]:
        for batch in self._run(self.positions()):
            self.step += 1
            yield batch
        self.epoch, self.step = self.epoch + 1, 0

    def _run(self, batches: list[np.ndarray]) -> Iterator[tuple]:
        raise NotImplementedError
