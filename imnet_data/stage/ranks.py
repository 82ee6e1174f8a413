"""Which shards to stage: all, or those a list of ranks reads (:func:`select`, by the loader's own assignment), a
node's ranks (:func:`node_selection`), and rank lists as text (``"0-7,12"``: :func:`parse_ranks`,
:func:`format_ranks`)."""
from __future__ import annotations

import itertools

from imnet_data.assign import node_ranks, shards_for_ranks
from imnet_data.errors import UsageError


def select(counts: list[int], ranks: list[int] | None, world_size: int | None) -> list[int]:
    """The shard numbers to stage: all, or those ``ranks`` of ``world_size`` read (the loader's assignment)."""
    if ranks is None:
        return list(range(len(counts)))
    if not world_size:
        raise UsageError("a rank list needs the world size")
    return shards_for_ranks(counts, ranks, world_size)


def node_selection(node_rank: int, num_nodes: int, world_size: int | None = None) -> tuple[list[int] | None,
                                                                                         int | None]:
    """``(ranks, world_size)`` of node ``node_rank`` of ``num_nodes`` for :func:`stage` (``(None, None)``: all,
    for a single node). Without the world size, the node's share is its ``1/num_nodes`` of the samples, which
    is the union of its ranks' shares whatever the world size (ranks fill nodes in order)."""
    if num_nodes == 1:
        return None, None
    if world_size:
        return node_ranks(node_rank, num_nodes, world_size), world_size
    return [node_rank], num_nodes


def parse_ranks(text: str) -> list[int]:
    """``"0-7,12"`` -> ``[0, ..., 7, 12]``."""
    ranks: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            raise UsageError(f"bad rank list {text!r} (expected e.g. 0-7,12)")
        ranks.update(range(int(a), int(b or a) + 1))
    return sorted(ranks)


def format_ranks(ranks: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    runs = [[r for _, r in g] for _, g in itertools.groupby(enumerate(sorted(ranks)), lambda x: x[1] - x[0])]
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
