"""Where a command may write: never into a source, never into a folder that holds the source.

``organize SRC SRC/train`` or ``shard SRC SRC/shards`` would write into the download (and the next run would
read its own output as input); a DEST that holds SRC would mix them the other way. Both are refused before
anything is written, as usage errors.
"""
from __future__ import annotations

import os
from pathlib import Path

from imnet_data.errors import UsageError


def check_apart(src: str | os.PathLike, dest: str | os.PathLike, what: str = "DEST") -> None:
    """UsageError when ``dest`` is ``src``, lies inside it, or holds it (links resolved)."""
    s, d = Path(src).resolve(), Path(dest).resolve()
    if d == s:
        raise UsageError(f"{dest}: {what} is the source itself; write somewhere else")
    if s in d.parents:
        raise UsageError(f"{dest}: {what} is inside the source {src}; it would write into the download")
    if d in s.parents:
        raise UsageError(f"{dest}: {what} holds the source {src}; write beside it, not around it")
