"""A gzipped tar read in place, in parallel: an index (the gzip's seek points and the tar's member table) built
once, then any member read from its offset by any process.

The library is rapidgzip (the ``[21k]`` extra). Measured on a 200 MB fake winter21 (2 cores, 2026-12-06): building
the index took 0.96 s with rapidgzip (it decompresses in parallel while it indexes) against 1.95 s with
indexed_gzip (one core, zlib), and ``gzip -dc`` 1.56 s; reading from a seek point is plain inflate in both. The
index build is the one step that cannot be split into units, so the library that parallelises it wins.

A seek point holds a 32 KiB window, so the index grows with the archive: every ``CHUNK`` (32 MiB) of tar, about
1 MB per GB of winter21 (~1 GB for the whole), loaded by each worker once. A unit (a class tar, 57 MB on average)
is decompressed from the seek point before it, 16 MiB before it on average: ~1.3x the bytes of one pass, in
parallel, unless the worker read its neighbour just before (a worker keeps the chunk it decoded last): units go
out in runs of neighbours (:func:`runs`), a chunk decoded twice only where two runs meet. Smaller chunks trade
index size (per worker) for less of that overhead. An archive that compresses (not JPEGs) gets chunks smaller by
its compression ratio (:func:`chunk_size`): each indexing thread then holds about ``CHUNK`` of tar, not ratio x
``CHUNK``, and the closer seek points grow the index (measured on a fake that compresses 44x: peak 650 MB instead
of 1,993, index 32 MB instead of 2.7 MB, for 1.4 GB of tar).

The index is one file: a JSON line (the archive's identity and its members) and rapidgzip's exported index. It
is kept in the folder the caller names (``shard``: DEST, or ``--work`` for a bucket) and reused by re-runs. One
whose archive changed since (size, mtime, or a hash of its first and last MiB) is refused, naming both files:
shards already written from the old bytes may not match the new ones, so the user decides (delete the index).
A command with no DEST (``validate``, ``organize``'s reads, a library caller) keeps it in :func:`run_folder`, a
private temp folder removed when the process exits: nothing is left outside a DEST, at the cost of indexing again
on the next run.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import itertools
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from imnet_data.sources.base import SourceError
from imnet_data.sources.safety import DEFAULT_LIMITS, UnsafeArchiveError
from imnet_data.tario import BLOCK, atomic_file

MIB = 1 << 20
CHUNK = 32 * MIB           # bytes a thread decodes at once, and between seek points: see the module doc
PROBE = 4 * MIB            # compressed bytes at most that chunk_size inflates to measure the ratio
RUN = 16 * CHUNK           # most tar bytes one task reads (:func:`runs`): a cut between two decodes a chunk twice
FOLDER = ".imnet-data"     # where in the caller's folder the index goes
Member = tuple[str, int, int]   # name, offset of its data in the decompressed tar, size


def library() -> Any | None:
    """rapidgzip, or None where the ``[21k]`` extra is not installed."""
    try:
        import rapidgzip
    except ImportError:
        return None
    return rapidgzip


def identity(path: Path) -> dict:
    """What the index records of its archive: size, mtime and a hash of its first and last MiB (cheap, and a
    changed file nearly always changes one of them)."""
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(MIB))
        f.seek(max(0, st.st_size - MIB))
        digest.update(f.read(MIB))
    return {"archive": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def index_path(path: Path, folder: Path) -> Path:
    """The index file of archive ``path`` in ``folder``."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return folder / FOLDER / f"{path.name}-{key}.gzindex"


@cache
def run_folder() -> Path:
    """This process's private folder for gzip indexes no DEST holds, removed at exit (forked workers exit
    without running it, so the driver's folder outlives them)."""
    folder = Path(tempfile.mkdtemp(prefix="imnet-gzindex-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def load_index(path: Path, folder: Path, lib: Any, refuse_stale: bool = True) -> tuple[Path, list[Member]]:
    """The index file of ``path`` and its members: read if there, else built (in parallel) and written. A stale
    one raises SourceError, or is built again where not ``refuse_stale`` (a cache no shard depends on)."""
    where = index_path(path, folder)
    if where.is_file():
        with open(where, "rb") as f:
            head = _head(f, where)
        if head.get("identity") == identity(path):
            return where, [(name, offset, size) for name, offset, size in head["members"]]
        if refuse_stale:
            raise SourceError(f"{where}: stale gzip index: {path} changed since it was indexed (size, mtime or "
                              f"contents); delete the index to index the file again")
    chunk = chunk_size(path)
    members, exported = _build(path, lib, chunk)
    where.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(where) as f:
        f.write(json.dumps({"identity": identity(path), "members": members, "chunk": chunk}).encode() + b"\n")
        f.write(exported)
    return where, members


def _head(f: BinaryIO, where: Path) -> dict:
    """The JSON line of the index file ``where``, read from ``f`` at its start (``f`` is left after it)."""
    try:
        return json.loads(f.readline())
    except ValueError as e:
        raise SourceError(f"{where}: not a gzip index of imnet-data ({e}); delete it") from e


def _build(path: Path, lib: Any, chunk: int) -> tuple[list[Member], bytes]:
    """The outer tar's members (headers read, data skipped: rapidgzip decompresses it in parallel, ``chunk``
    compressed bytes at a time, and records seek points on the way) and the exported index."""
    try:
        with lib.RapidgzipFile(str(path), parallelization=os.cpu_count() or 1, chunk_size=chunk) as f:
            members = _members(f, str(path))
            exported = io.BytesIO()
            f.export_index(exported)
    except SourceError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise SourceError(f"{path}: truncated or corrupt gzip ({e})") from e
    return members, exported.getvalue()


def chunk_size(path: Path) -> int:
    """The chunk of rapidgzip (compressed bytes a thread decodes at once) for the gzip ``path``: ``CHUNK`` where the
    data barely compresses (JPEGs: the real winter21), smaller by the compression ratio of its start (the first
    ``CHUNK`` of decompressed data, or of ``PROBE`` compressed bytes if less), so that each thread holds about
    ``CHUNK`` decompressed, whatever the ratio (at ``CHUNK``, a fake winter21 that compresses 44x held 14.9 GB while
    it was indexed). A stream zlib cannot read gets ``CHUNK``: the build names what is wrong with it.

    ``PROBE``: this runs on one core before the parallel pass; inflating a whole ``CHUNK`` of JPEGs took 0.27 s
    of a 1.4 s index build (the bench's 275 MB fake), ``PROBE`` 0.04 s (29,228,173 bytes against 29,194,274)."""
    inflate, read, out = zlib.decompressobj(wbits=31), 0, 0
    with open(path, "rb") as f:
        while out < CHUNK and read < PROBE and not inflate.eof:
            data = inflate.unconsumed_tail or f.read(MIB)
            if not inflate.unconsumed_tail:
                read += len(data)
            if not data:
                break
            try:
                out += len(inflate.decompress(data, MIB))
            except zlib.error:
                return CHUNK
    used = read - len(inflate.unconsumed_tail)
    return CHUNK if out <= used else max(MIB, CHUNK * used // out)


def _members(f: Any, origin: str) -> list[Member]:
    """The regular members of the tar ``f`` reads, each checked to end inside it, and inside the cap on what a
    compressed archive may expand to (checked before decompressing up to it: a gzip bomb stops there)."""
    out: list[Member] = []
    pos = 0
    while True:
        f.seek(pos)
        header = f.read(BLOCK)
        if len(header) < BLOCK or not header.strip(b"\0"):
            break
        try:
            ti = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.TarError as e:
            raise SourceError(f"{origin}: not a readable tar at offset {pos:,} ({e})") from e
        if ti.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            raise SourceError(f"{origin}: member {ti.name!r} is not a plain file (long name, link or pax header);"
                              f" extract the outer tar and shard the folder")
        end = pos + BLOCK + ti.size
        if end > DEFAULT_LIMITS.max_total_bytes:
            raise UnsafeArchiveError(f"{origin}: member {ti.name!r} ends past the {DEFAULT_LIMITS.max_total_bytes:,}"
                                     f"-byte cap on what the archive may expand to")
        if ti.size:
            f.seek(end - 1)
            if len(f.read(1)) != 1:
                raise SourceError(f"{origin}: member {ti.name!r} is cut off: truncated download?")
        if ti.isreg():
            out.append((ti.name, pos + BLOCK, ti.size))
        pos += BLOCK + -(-ti.size // BLOCK) * BLOCK
    if len(header) < BLOCK:
        raise SourceError(f"{origin}: the tar ends without its end-of-archive blocks: truncated download?")
    return out


def open_indexed(path: Path, where: Path, lib: Any) -> Any:
    """``path`` opened for reads at any offset through its index file ``where`` (one thread: the processes are
    the parallelism), decoding the chunk the index was built with (an index of an earlier version: ``CHUNK``)."""
    with open(where, "rb") as index:
        chunk = _head(index, where).get("chunk")     # only a speed: a value out of range gets CHUNK
        exported = index.read()
    chunk = chunk if isinstance(chunk, int) and MIB <= chunk <= CHUNK else CHUNK
    f = lib.RapidgzipFile(str(path), parallelization=1, chunk_size=chunk)
    atexit.register(f.close)   # rapidgzip aborts the interpreter at exit if a file is left open
    f.import_index(io.BytesIO(exported))   # rapidgzip reads an index from the start of the file object it gets
    return f


def runs(spans: Sequence[tuple[int, int]], jobs: int) -> list[int]:
    """A run number per unit of one archive, given each one's ``(offset, size)`` in the tar, in unit order: units
    that follow each other in the tar share a run, cut into ``jobs`` runs of equal bytes or more, of at most about
    ``RUN`` bytes each (:func:`imnet_data.parallel.map_units` gives a run to one worker as one task).

    Why: a worker decodes whole chunks from the seek point before a unit, and keeps the last one; a class tar
    (1.5 MB in the bench's fake, 57 MB in winter21) shares its chunks with its neighbours, so units dealt out one
    at a time had every worker decode nearly every chunk (measured on a 300 MB fake, 2 workers: 3.97 CPU s
    against 2.49-3.02 for the same units in two contiguous halves). A cut costs one chunk decoded twice."""
    total = sum(size for _, size in spans)
    parts = max(jobs, -(-total // RUN), 1)
    keys, group, done, end = [], 0, 0, None
    for offset, size in spans:
        if end is None or not 0 <= offset - end < CHUNK:   # not the next member: nothing shared
            group += 1
        keys.append((group, min(parts - 1, (done + size // 2) * parts // max(total, 1))))
        done, end = done + size, offset + size
    return _numbered(keys)


def _numbered(keys: list[tuple[int, int]]) -> list[int]:
    """Each key's number among the distinct ones, in order (equal keys are consecutive)."""
    return [n - 1 for n in itertools.accumulate(int(i == 0 or key != keys[i - 1]) for i, key in enumerate(keys))]


def read_range(f: Any, offset: int, size: int, origin: str) -> bytes:
    """``size`` bytes at ``offset`` of the decompressed stream, or SourceError naming ``origin``."""
    try:
        f.seek(offset)
        data = f.read(size)
    except (OSError, ValueError, RuntimeError) as e:
        raise SourceError(f"{origin}: truncated or corrupt gzip ({e})") from e
    if len(data) != size:
        raise SourceError(f"{origin}: truncated ({len(data):,} of {size:,} bytes)")
    return data
