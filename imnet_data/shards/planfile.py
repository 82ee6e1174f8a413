"""``DEST/<split>/plan.json.gz``: the stored plan, written and read a shard at a time.

One JSON document: the header's fields, then ``"shards"``, a list of ``{"digest", "keys", "labels", "name"}``,
one shard per line, so that writing it never holds more than one shard's text and reading it (a resume, ``--merge``,
``upload``) parses one line at a time and keeps each shard's name, digest and sample count, not its keys: 13 million
keys would take gigabytes as Python strings. Any JSON reader reads the file whole (a plan written on one line by an
earlier version is read that way too).
"""
from __future__ import annotations

import gzip
import json
import tempfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from imnet_data.shards.plan import SplitPlan
from imnet_data.stores import ReadableStore

PLAN = "plan.json.gz"
MAX_PLAN = 4 << 30         # bytes a stored plan may inflate to (the full 21k plan is far smaller)
SHARDS = b',"shards":['


def plan_bytes(plan: SplitPlan) -> bytes:
    """The plan as stored: deterministic bytes for the same plan. Compressed into a temporary file first: the
    plan of 13 million samples is ~140 MB compressed, and a growing buffer would hold it twice while it grows."""
    with tempfile.TemporaryFile() as out:
        _write(plan, out)
        out.seek(0)
        return out.read()


def _write(plan: SplitPlan, out: BinaryIO) -> None:
    """The stored plan's bytes into ``out``, a shard at a time."""
    head = json.dumps(plan.header(), sort_keys=True, separators=(",", ":")).encode()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=1) as gz:
        gz.write(head[:-1] + SHARDS + b"\n")
        for i, shard in enumerate(plan.shards):
            table = plan.table
            keys = b'","'.join(table.keys[shard.start:shard.end].tolist())
            labels = ",".join(map(str, table.wnid[shard.start:shard.end].tolist())).encode()
            gz.write(b'{"digest":"%s","keys":[%s],"labels":[%s],"name":"%s"}%s\n' % (
                shard.digest.encode(), b'"' + keys + b'"' if shard.samples else b"", labels, shard.name.encode(),
                b"," if i + 1 < len(plan.shards) else b""))
        gz.write(b"]}\n")


def read_plan(store: ReadableStore) -> dict | None:
    """The plan stored in a split folder or prefix as plain data, each shard as ``{"name", "digest",
    "samples"}`` (no keys); None when absent or not a plan."""
    raw = store.read(PLAN)
    if raw is None:
        return None
    try:
        lines = _lines(raw)
        first = next(lines, b"")
        if first.endswith(SHARDS):
            plan = json.loads(first[:-len(SHARDS)] + b"}")
            plan["shards"] = [_brief(json.loads(line.rstrip(b","))) for line in lines if line not in (b"]}", b"")]
        else:
            plan = json.loads(first + b"".join(lines))
            if isinstance(plan, dict) and isinstance(plan.get("shards"), list):
                plan["shards"] = [_brief(s) for s in plan["shards"]]
    except (zlib.error, EOFError, ValueError, RecursionError, TypeError, KeyError):
        return None
    return plan if isinstance(plan, dict) and isinstance(plan.get("shards"), list) else None


def _brief(shard: dict) -> dict:
    """A stored shard without its sample lists."""
    return {"name": shard["name"], "digest": shard["digest"], "samples": len(shard["keys"])}


def _lines(raw: bytes) -> Iterator[bytes]:
    """The decompressed lines of ``raw`` (without their newline), at most :data:`MAX_PLAN` bytes in all
    (ValueError past it)."""
    inflate, left, tail = zlib.decompressobj(16 + zlib.MAX_WBITS), MAX_PLAN, b""
    for start in range(0, len(raw), 1 << 20):
        data = inflate.decompress(raw[start:start + (1 << 20)], left + 1)
        while inflate.unconsumed_tail and len(data) <= left:
            data += inflate.decompress(inflate.unconsumed_tail, left + 1 - len(data))
        left -= len(data)
        if left < 0:
            raise ValueError("plan inflates past its cap")
        *done, tail = (tail + data).split(b"\n")
        yield from done
    if not inflate.eof:
        raise EOFError("plan is cut short")
    if tail:
        yield tail
