"""Which samples (and so which shard files) each rank reads: one rule shared by the loader and ``stage``.

The split's samples, in manifest order (shard after shard), are cut into ``world_size`` contiguous ranges of
near-equal length (they differ by at most one), like DALI's ``readers.webdataset`` ``shard_id``/``num_shards``.
A rank's range is fixed across epochs, so a node stages only the shards its ranks' ranges touch (a shard on a
range boundary goes to both nodes); what changes per epoch is the order inside the range (seed + epoch).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """The samples ``[start, stop)`` of shard number ``shard`` (indexes into the manifest's shard list)."""

    shard: int
    start: int
    stop: int


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """The global sample range ``[a, b)`` of ``rank``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return total * rank // world_size, total * (rank + 1) // world_size


def rank_pieces(counts: list[int], rank: int, world_size: int) -> list[Piece]:
    """The pieces of shards (``counts``: samples per shard, in manifest order) that ``rank`` reads."""
    a, b = rank_range(sum(counts), rank, world_size)
    pieces, offset = [], 0
    for shard, n in enumerate(counts):
        lo, hi = max(a, offset), min(b, offset + n)
        if lo < hi:
            pieces.append(Piece(shard, lo - offset, hi - offset))
        offset += n
    return pieces


def shards_for_ranks(counts: list[int], ranks: list[int], world_size: int) -> list[int]:
    """The shard numbers any of ``ranks`` reads, sorted (what a node running those ranks must stage)."""
    return sorted({p.shard for r in ranks for p in rank_pieces(counts, r, world_size)})


def node_ranks(node_rank: int, num_nodes: int, world_size: int) -> list[int]:
    """The ranks of node ``node_rank`` when ``world_size`` ranks fill ``num_nodes`` nodes in order (torchrun and
    SLURM place ranks ``node * per_node ... + per_node - 1`` on a node)."""
    if world_size % num_nodes:
        raise ValueError(f"world size {world_size} is not a multiple of the node count {num_nodes}")
    per = world_size // num_nodes
    return list(range(node_rank * per, (node_rank + 1) * per))
