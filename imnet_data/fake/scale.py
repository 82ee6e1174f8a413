"""A fake ImageNet-21k at any size, up to the real one: ``images`` tiny unique JPEGs in ``classes`` real WNIDs,
the images per class drawn (seeded) to sum exactly to ``images``, as ``fall11_whole.tar`` or
``winter21_whole.tar.gz`` (a tar of ``<wnid>.tar`` inner tars of ``<wnid>_<n>.JPEG``).

For measuring memory and time at 13 million images, where drawing each image (:mod:`imnet_data.fake.imagenet21k`)
would take days: a few small JPEGs are encoded once and every file is one of them with its own name in a COM
segment right after SOI, so every file is a valid JPEG with unique bytes and fits one 512-byte tar block. Inner
tars are built by ``jobs`` worker processes, at most :data:`AHEAD` per worker ahead of the one being written: the
writer (one process, gzip for winter21) is the slower side, and results queued without a bound held most of the
archive in memory (5 GB in 90 s at winter21's full count). Same arguments, same bytes.

Classes: the real winter21 list is not shipped, so winter21's 19,167 are the published lists its variants are cut
from (timm's ImageNet-12k and MIIL's ImageNet-21K-P winter21 classes) and then seeded fall11 WNIDs up to the
count; fall11 takes its first ``classes`` of the same order. Every class gets at least ``floor`` images (enough
for the variants' held-out val), the rest drawn with heavy-tailed weights, like the real counts.
"""
from __future__ import annotations

import io
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from functools import cache
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path

import numpy as np
from PIL import Image

from imnet_data import catalog, tario
from imnet_data.errors import UsageError
from imnet_data.fake.plan import MAX_TRAIN_NUMBER, rng_for
from imnet_data.shards.writer import tar_header

RELEASES = {"fall11": ("fall11_whole.tar", 21_841), "winter21": ("winter21_whole.tar.gz", 19_167)}
BASES = 16            # distinct small JPEGs the files are made of
SIDE = 8              # their width and height, px: ~370 bytes (Huffman tables optimised): one tar block with the name
FLOOR = 60            # images every class gets at least (12k holds out 40 per class, 21K-P 50)
END = b"\0" * 1024    # a tar's end-of-archive marker
AHEAD = 4             # inner tars built ahead per worker, waiting to be written
GZIP_LEVEL = 6        # zlib's default: level 9 is 7x slower here for a gzip 20% smaller


def make_scaled_imagenet21k(out: Path, images: int, classes: int | None = None, release: str = "winter21",
                            seed: int = 0, jobs: int | None = None, floor: int = FLOOR,
                            wnids: list[str] | None = None) -> Path:
    """Write the fake into ``out`` (see the module doc) and return the archive's path; ``wnids``: exactly these
    classes instead of ``classes`` drawn ones (e.g. a variant's list, or a WNID that is no ImageNet class)."""
    name, real = RELEASES[release]
    classes = len(wnids) if wnids else real if classes is None else classes
    if not 1 <= classes <= real or images < classes:
        raise UsageError(f"images {images:,} in {classes:,} classes: need 1 <= classes <= {real:,} and at least "
                         "one image per class")
    wnids = sorted(wnids) if wnids else scaled_classes(release, classes, seed)
    counts = class_counts(images, len(wnids), seed, max(1, min(floor, images // len(wnids))))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    work = [(w, int(n), seed) for w, n in zip(wnids, counts, strict=True)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool, \
            tario.atomic_tar(path, compress=name.endswith(".gz"), level=GZIP_LEVEL) as tar:
        for (wnid, _, _), data in zip(work, bounded_map(pool, work, AHEAD * (jobs or os.cpu_count() or 1)),
                                      strict=True):
            tario.add_bytes(tar, f"{wnid}.tar", data)
    return path


def bounded_map(pool: Pool, work: list[tuple[str, int, int]], ahead: int) -> Iterator[bytes]:
    """:func:`inner_tar` of each job in order, computed by ``pool`` at most ``ahead`` jobs ahead of the caller (a
    plain ``imap`` queues every result the caller has not taken yet)."""
    pending: deque[AsyncResult[bytes]] = deque()
    for job in work:
        pending.append(pool.apply_async(inner_tar, (job,)))
        if len(pending) > ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def scaled_classes(release: str, count: int, seed: int) -> list[str]:
    """``count`` real fall11 WNIDs, sorted: the 12k and 21K-P lists first, then seeded others (module doc)."""
    fall11 = catalog.imagenet21k("fall11")
    first = sorted(set(catalog.imagenet21k("imagenet12k")) | set(catalog.imagenet21k("miil_w21")))
    rest = sorted(set(fall11) - set(first))
    order = first + [rest[i] for i in rng_for(seed, "scaled-21k", release).permutation(len(rest))]
    return sorted(order[:count])


def class_counts(images: int, classes: int, seed: int, floor: int) -> np.ndarray:
    """Images per class: ``floor`` each, the rest multinomial over lognormal weights; sums to ``images``."""
    rng = rng_for(seed, "scaled-21k", "counts")
    weights = rng.lognormal(0.0, 0.6, classes)
    return floor + rng.multinomial(images - floor * classes, weights / weights.sum())


@cache
def base_jpegs(seed: int) -> list[bytes]:
    """:data:`BASES` noise JPEGs of :data:`SIDE` px."""
    rng, out = rng_for(seed, "scaled-21k", "bases"), []
    for _ in range(BASES):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, "JPEG", quality=75, optimize=True)
        out.append(buf.getvalue())
    return out


def named(base: bytes, name: str) -> bytes:
    """``base`` with a COM segment holding ``name`` right after SOI: a valid JPEG whose bytes are unique."""
    text = name.encode()
    return base[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + base[2:]


def members(wnid: str, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """The class's ``(name, JPEG)`` files, sorted by name (file numbers seeded and sparse, as the real ones)."""
    rng = rng_for(seed, "scaled-21k", wnid)
    numbers = rng.choice(max(MAX_TRAIN_NUMBER, 2 * count), count, replace=False) + 1
    bases = base_jpegs(seed)
    for i, name in enumerate(sorted(f"{wnid}_{n}.JPEG" for n in numbers)):
        yield name, named(bases[(i + int(numbers[0])) % BASES], name)


def inner_tar(job: tuple[str, int, int]) -> bytes:
    """The ``<wnid>.tar`` bytes of one class, headers made directly (fixed fields, as the shard writer's)."""
    parts: list[bytes] = []
    for name, data in members(*job):
        parts += (tar_header(name, len(data)), data, b"\0" * (-len(data) % tario.BLOCK))
    parts.append(END)
    return b"".join(parts)
