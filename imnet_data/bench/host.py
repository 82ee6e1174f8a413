"""``imnet-data bench --host-only``: the loader's host path alone (schedule, reads by index, the batch handed to
DALI, each JPEG header parsed, no decode) against DALI's own ``readers.webdataset`` doing the same, per thread
count."""
from __future__ import annotations

import itertools
from pathlib import Path

from imnet_data.bench.peers import plain_dali
from imnet_data.bench.rows import Row, limited, measured
from imnet_data.loader.base import LoaderOptions
from imnet_data.loader.shardset import ShardSet


def host_rows(folder: Path, batch_size: int, threads: list[int], batches: int,
              seconds: float | None = None) -> tuple[list[Row], dict[str, float]]:
    """Per thread count: the loader's host path (schedule, reads by index, the batch handed to DALI, each JPEG
    header parsed by DALI, no decode) vs ``readers.webdataset`` doing the same; both on DALI's CPU (a GPU does
    not take part in the host path)."""
    from imnet_data.loader.dali import DaliLoader

    shards = ShardSet(folder)
    rows, ratios = [], {}
    for t in threads:
        options = LoaderOptions(split=(shards.manifest or {}).get("split", "train"), batch_size=batch_size,
                                device="cpu", num_threads=t, train=True)
        ours = DaliLoader(shards, options, decode=False)
        mine = measured(f"loader host path, {t} threads", batch_size, limited(ours, batches + 3), 3,
                        "shuffled, read by index, handed to DALI, headers parsed", seconds)
        peer = measured(f"DALI readers.webdataset, {t} threads", batch_size,
                        itertools.islice(plain_dali(folder, batch_size, t, None, decode=False), batches + 3), 3,
                        "random_shuffle, headers parsed", seconds)
        rows += [mine, peer]
        ratios[f"host path / DALI reader, {t} threads"] = mine.images_per_s / peer.images_per_s
    return rows, ratios


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... up to ``cores``, and ``cores`` itself."""
    counts = [1 << k for k in range(cores.bit_length()) if 1 << k <= cores]
    return counts + ([cores] if counts[-1] != cores else [])
