"""Progress bars (tqdm) that the ``--quiet`` flag and non-interactive runs can switch off in one place."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", quiet: bool = False, unit_scale: bool = False) -> tqdm:
    """A tqdm bar on stderr; ``quiet=True`` disables it (the iterable still passes through)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, unit_scale=unit_scale,
                dynamic_ncols=True, leave=False)
