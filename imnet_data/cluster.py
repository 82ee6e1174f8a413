"""Which node (or rank) this process is, from arguments or the launcher's environment.

One place for the conventions every cluster job meets: SLURM array jobs (``SLURM_ARRAY_TASK_ID`` /
``SLURM_ARRAY_TASK_COUNT``), SLURM tasks (``SLURM_PROCID`` / ``SLURM_NTASKS``) and torchrun (``RANK`` /
``WORLD_SIZE``). Explicit arguments win; without either, a single node (rank 0 of 1).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from imnet_data.errors import UsageError

ENV_PAIRS = (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"), ("SLURM_PROCID", "SLURM_NTASKS"),
             ("RANK", "WORLD_SIZE"))


def node_of(rank: int | None = None, count: int | None = None,
            env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(rank, count)``: the arguments when given, else the first launcher pair found in ``env``, else (0, 1).

    Raises ValueError for a rank outside ``0..count-1``. SLURM array IDs must start at 0 (``--array=0-N``).
    """
    env = os.environ if env is None else env
    if rank is None and count is None:
        for rank_var, count_var in ENV_PAIRS:
            if rank_var in env and count_var in env:
                rank, count = _int(env, rank_var), _int(env, count_var)
                break
    rank = 0 if rank is None else rank
    count = 1 if count is None else count
    if count < 1 or not 0 <= rank < count:
        raise UsageError(f"node rank {rank} is not in 0..{count - 1} (num nodes {count})")
    return rank, count


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"environment variable {name}={env[name]!r} is not an integer") from None
