"""Sizes written with their unit (``500MB``, ``1GB``, ``2GiB``, ``200kB``, ``4096B``): one parser for the command
line (``--shard-size``, ``--max-rate``) and the library (the loader's ``cache_limit``)."""
from __future__ import annotations

import math

UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
         "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes (at least 1) from a number with its unit; ValueError for anything else. A bare number is refused:
    ``--shard-size 10`` read as 10 bytes made a shard per sample without a word."""
    low = text.strip().lower()
    suffix = next((u for u in sorted(UNITS, key=len, reverse=True) if low.endswith(u)), "")
    number = low[:len(low) - len(suffix)].strip()
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a size (e.g. 500MB, 1GB, 2GiB)")
    if not suffix:
        raise ValueError(f"{text!r} has no unit: write {number}B, {number}kB, {number}MB or {number}GB "
                         "(or KiB, MiB, GiB)")
    if value * UNITS[suffix] < 1:
        raise ValueError(f"{text!r}: a size must be at least 1 byte")
    return int(value * UNITS[suffix])
