"""Where every sample of a split lies, filled one shard at a time as the loader opens shards.

Samples are numbered globally, shard after shard in manifest order (``first[s]`` is shard ``s``'s first
sample): the schedules (:mod:`imnet_data.loader.order`) deal in these numbers, and a number's shard is one
``searchsorted`` away. The byte offsets of a shard's samples come from its DALI index when the shard is first
opened (a streamed shard's index arrives with it), into arrays sized for the whole split but allocated with
``np.zeros``: pages of shards never opened cost no memory. Keys are not kept (a million Python strings weigh
~100 MB); :meth:`SampleIndex.keys` parses them again for the few shards asked about.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from imnet_data.loader.shardset import ShardError, sample_table

LABEL_BYTES = 8          # a .cls holds at most 7 digits; the window past it lies in the tar padding
KEY_CACHE = 16           # shards whose keys are kept once parsed


class SampleIndex:
    """The split's samples: per sample the ``.cls`` and ``.jpg`` offsets and sizes inside its shard."""

    def __init__(self, counts: np.ndarray, names: list[str]) -> None:
        self.counts, self.names = counts, names
        self.first = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        total = int(self.first[-1])
        self.cls_offset = np.zeros(total, np.int64)
        self.jpg_offset = np.zeros(total, np.int64)
        self.cls_size = np.zeros(total, np.int32)
        self.jpg_size = np.zeros(total, np.int32)
        self.loaded = np.zeros(len(counts), bool)
        self._keys: OrderedDict[int, list[str]] = OrderedDict()

    def __len__(self) -> int:
        return int(self.first[-1])

    def shard_of(self, ids: np.ndarray) -> np.ndarray:
        """The shard number of each global sample number."""
        return np.searchsorted(self.first, ids, side="right") - 1

    def load(self, shard: int, path: Path, size: int) -> None:
        """Read shard ``shard``'s index (at ``path``, a tar of ``size`` bytes); ShardError naming the file when
        it lists another sample count than the manifest, or a sample that does not fit the tar."""
        if self.loaded[shard]:
            return
        table, keys = sample_table(str(path))
        if len(keys) != self.counts[shard]:
            raise ShardError(f"{path}: its index lists {len(keys)} samples, the manifest {int(self.counts[shard])}; "
                             "re-stage it or run 'imnet-data verify'")
        check_fit(path, table, keys, size)
        span = slice(int(self.first[shard]), int(self.first[shard + 1]))
        self.cls_offset[span], self.cls_size[span] = table[:, 0], table[:, 1]
        self.jpg_offset[span], self.jpg_size[span] = table[:, 2], table[:, 3]
        self.loaded[shard] = True
        self._remember(shard, keys)

    def keys(self, shard: int, path: Path) -> list[str]:
        """The sample keys of a shard (its index parsed again unless it was one of the last few asked)."""
        if shard not in self._keys:
            self._remember(shard, sample_table(str(path))[1])
        self._keys.move_to_end(shard)
        return self._keys[shard]

    def _remember(self, shard: int, keys: list[str]) -> None:
        self._keys[shard] = keys
        while len(self._keys) > KEY_CACHE:
            self._keys.popitem(last=False)


def check_fit(path: Path, table: np.ndarray, keys: list[str], size: int) -> None:
    """Every sample's ``.cls`` (and the label window past it) and ``.jpg`` inside the shard's ``size`` bytes;
    else ShardError naming shard and key (reading past a mapped file's end would kill the process)."""
    cls_at, cls_size, jpg_at, jpg_size = table.T if len(table) else np.zeros((4, 0), np.int64)
    bad = ((cls_size < 1) | (cls_size >= LABEL_BYTES) | (jpg_size < 4) | (cls_at < 0) | (cls_at + LABEL_BYTES > size)
           | (jpg_at < 0) | (jpg_at + jpg_size > size))
    if bad.any():
        i = int(np.argmax(bad))
        raise ShardError(f"{path}: sample {keys[i]}: the index does not fit the shard (.cls {int(cls_size[i])} bytes "
                         f"at {int(cls_at[i]):,}, .jpg {int(jpg_size[i]):,} bytes at {int(jpg_at[i]):,}, shard "
                         f"{size:,} bytes); re-stage it or run 'imnet-data verify'")
