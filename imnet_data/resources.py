"""Read the shipped manifests (``imnet_data.manifests``) with importlib.resources, never by a checkout path."""
from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Any


def read_bytes(name: str) -> bytes:
    """Bytes of one shipped manifest file; ``.gz`` files come back decompressed."""
    data = resources.files("imnet_data.manifests").joinpath(name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def read_lines(name: str) -> list[str]:
    """Non-empty lines of a shipped text manifest."""
    return [line for line in read_bytes(name).decode("utf-8").splitlines() if line]


@cache
def read_json(name: str) -> Any:
    """A shipped JSON manifest (cached: treat the result as read-only)."""
    return json.loads(read_bytes(name))
