"""Where the quirks and faults go: which files get which ``kind`` and which duplicates repeat which file.

Quirks are what a valid real download contains: the real CMYK JPEGs and the PNG-named-.JPEG at their real file
names (where their classes are faked), plus grayscale JPEGs at generated names (no real list exists; one in
train, one in val). Faults are what a damaged download contains: in train a truncated JPEG, a zero-byte file,
an HTML error page named .JPEG and a byte-identical duplicate of another image of its class; in val (when it
has images) a duplicate of a train image of the same class.
"""
from __future__ import annotations

import collections
from typing import TypeVar

import numpy as np

from imnet_data.catalog import known_quirks
from imnet_data.errors import UsageError

Key = tuple[str, str]  # (split, file name)
T = TypeVar("T")
QUIRK_KINDS = ("cmyk", "png", "gray")
FAULT_KINDS = ("truncated", "empty", "not_image", "duplicate")


def place_defects(rng: np.random.Generator, train: dict[str, list[str]], val: dict[str, str], *, quirks: bool,
                  faults: bool) -> tuple[dict[Key, str], dict[Key, Key]]:
    """``(kinds, sources)``: the kind of every file that is not a plain JPEG, and each duplicate's original.

    ``train`` maps WNID -> its train file names, ``val`` val file name -> WNID.
    """
    kinds: dict[Key, str] = {}
    sources: dict[Key, Key] = {}
    if quirks:
        for kind, names in sorted(known_quirks().items()):
            kinds.update({("train", n): kind for n in sorted(names) if n.split("_")[0] in train})
        kinds[_pick(rng, _free(train, kinds, sources))] = "gray"
        if val:
            kinds[_pick(rng, [("val", n) for n in sorted(val)])] = "gray"
    if faults:
        _place_faults(rng, train, val, kinds, sources)
    return kinds, sources


def _place_faults(rng: np.random.Generator, train: dict[str, list[str]], val: dict[str, str],
                  kinds: dict[Key, str], sources: dict[Key, Key]) -> None:
    if val:
        have = {name.split("_")[0] for _, name in _free(train, kinds, sources)}
        copy = _pick(rng, [("val", n) for n in sorted(val) if ("val", n) not in kinds and val[n] in have])
        kinds[copy], sources[copy] = "duplicate", _pick(rng, _free(train, kinds, sources, val[copy[1]]))
    per_class = collections.Counter(name.split("_")[0] for _, name in _free(train, kinds, sources))
    same_class = _free(train, kinds, sources, _pick(rng, sorted(w for w, n in per_class.items() if n >= 2)))
    copy, original = (same_class[i] for i in rng.permutation(len(same_class))[:2])
    kinds[copy], sources[copy] = "duplicate", original
    for kind in ("truncated", "empty", "not_image"):
        kinds[_pick(rng, _free(train, kinds, sources))] = kind


def _free(train: dict[str, list[str]], kinds: dict[Key, str], sources: dict[Key, Key],
          wnid: str | None = None) -> list[Key]:
    """Plain train JPEGs (of ``wnid``, or all) not yet used by a defect, nor the original of a duplicate."""
    used = set(kinds) | set(sources.values())
    return [("train", n) for w in ([wnid] if wnid else sorted(train)) for n in train[w] if ("train", n) not in used]


def _pick(rng: np.random.Generator, items: list[T]) -> T:
    if not items:
        raise UsageError("too few images to place the quirks and faults: raise classes or train_per_class")
    return items[int(rng.integers(len(items)))]
