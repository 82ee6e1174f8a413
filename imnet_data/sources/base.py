"""What every source reader yields: samples straight out of the download, with where they came from.

A *source* is one download layout (official archives, extracted folders, Kaggle, 21k, Tiny ImageNet). It lists
*units* (an inner class tar, a class folder, a slice of the val tar): independent pieces that workers read in
parallel, each yielding :class:`Sample` objects without extracting anything to disk.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WNID = re.compile(r"^n\d{8}$")


class SourceError(ValueError):
    """The download is malformed or incomplete; the message names the file (and member) and what is wrong."""


@dataclass(frozen=True)
class Box:
    """A bounding box in pixels (PASCAL VOC convention: inclusive corners), labelled with its WNID."""

    wnid: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int


@dataclass(frozen=True)
class Sample:
    """One image as found in the download."""

    split: str                 # "train" | "val"
    key: str                   # stable unique key: the file stem, e.g. n01440764_10026, ILSVRC2012_val_00000001
    wnid: str | None           # the label; None where the download carries none
    name: str                  # original file name, e.g. n01440764_10026.JPEG
    data: bytes
    origin: str                # where it came from, for messages: "ILSVRC2012_img_train.tar:n01440764.tar:..."
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class Unit:
    """An independently readable piece of a split (picklable: workers receive it)."""

    split: str
    name: str                  # e.g. the WNID of a class tar/folder, or "val[0:5000]"
    ref: tuple = field(default=())   # reader-specific locator (paths, offsets, member names)
    size: int = 0              # bytes, for progress and load balancing


@dataclass(frozen=True, slots=True)
class Entry:
    """One sample as listed (slots, no origin string stored: a plan holds 1.28M of them), with a locator to read
    its bytes later by random access (what a global shuffle needs): ``loc`` is ``("range", path, offset, size)``
    (a file, or a member stored in an uncompressed tar) or ``("zip", path, member)``;
    :func:`imnet_data.sources.access.fetch` reads it. A layout without random access (a gzip stream, parquet)
    gives ``("stream", path, where, part, ordinal)``: the sample is the ``ordinal``-th of part ``part`` (a row
    group) of ``path``, at ``where`` (a member, a row), read by streaming (:mod:`imnet_data.shards.stream`)."""

    name: str                  # original file name
    wnid: str | None
    size: int
    loc: tuple
    boxes: tuple[Box, ...] = ()

    @property
    def origin(self) -> str:
        """Where the sample is, for messages: its file, or ``archive:member``."""
        path = self.loc[1]
        if self.loc[0] == "stream":
            return f"{path}:{self.loc[2]}"
        return path if self.loc[0] == "range" and path.endswith(self.name) else f"{path}:{self.name}"


def check_wnid(wnid: str, origin: str) -> str:
    """Return ``wnid`` if it is shaped like a WordNet noun ID, else raise naming where it came from."""
    if not WNID.match(wnid):
        raise SourceError(f"{origin}: {wnid!r} is not a WNID (n + 8 digits)")
    return wnid


def printable(name: str) -> str:
    r"""A file name as valid text: bytes that are not UTF-8 (kept as surrogates when read) shown as ``\xNN``."""
    if name.isascii():   # nearly every name: nothing to show differently
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def stem(name: str) -> str:
    """File name without folders and extension: the sample key."""
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


class Source:
    """Base of the layout readers: subclasses fill ``layout``, ``splits``, ``units`` and ``read``."""

    layout = "?"
    about = "?"                      # what the layout is, for the message that names the layouts a path fits
    expected: tuple[str, ...] = ()   # the splits this layout's download holds (reported when one is absent)
    streams = False                  # no random access: shard streams its units (shards.stream), not locators
    index_home: Path | None = None   # where to keep an index built once per download (shard: DEST or --work)

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def not_found(self) -> list[str]:
        """A message for each expected split the download lacks, saying what was looked for."""
        have = self.splits()
        return [self.missing(split) for split in self.expected if split not in have]

    def missing(self, split: str) -> str:
        """What was looked for and not found for ``split``."""
        return f"{self.describe()}: no {split} split"

    @classmethod
    def detect(cls, path: Path) -> bool:
        """Whether ``path`` looks like this layout."""
        raise NotImplementedError

    def labelled(self, split: str) -> bool:
        """Whether ``split`` should carry labels (False for a test set published without them)."""
        return True

    def remarks(self) -> list[str]:
        """What ``validate`` should say about the download as a whole beyond its files (a partial copy)."""
        return []

    def splits(self) -> list[str]:
        """The splits this download holds, e.g. ["train", "val"]."""
        raise NotImplementedError

    def units(self, split: str) -> list[Unit]:
        """The split's independently readable pieces, in a deterministic order."""
        raise NotImplementedError

    def read(self, unit: Unit) -> Iterator[Sample]:
        """Every sample of ``unit``, in the download's order."""
        raise NotImplementedError

    def runs(self, units: Sequence[Unit], jobs: int) -> list[int] | None:
        """A run number per unit (``units``: any of this source's, in the order they will be read) where
        neighbours read by one worker share work (a gzip's decoded chunks), for ``jobs`` workers: the ``runs`` of
        :func:`imnet_data.parallel.map_units`. None (the default): every unit is read on its own."""
        return None

    def list(self, unit: Unit) -> Iterator[tuple[str, str | None, int]]:
        """``(name, wnid, size)`` of every sample of ``unit``, as and in the order :meth:`read` yields them.

        For counting without decoding (``validate`` without ``--deep``): taken from :meth:`locate`, so no image
        byte is read; a unit of a compressed stream (``ref`` starting with ``"stream"``: a ``.tar.gz``, which has
        no random access) is read through.
        """
        if unit.ref and unit.ref[0] == "stream":
            for sample in self.read(unit):
                yield sample.name, sample.wnid, len(sample.data)
            return
        for entry in self.locate(unit):
            yield entry.name, entry.wnid, entry.size

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """Every sample of ``unit`` as an :class:`Entry` (no image byte read), in :meth:`read` order.

        Layouts that store samples where they can be read by offset (files, uncompressed tars, zips) override it;
        a compressed stream cannot be read out of order, so this default raises.
        """
        raise SourceError(f"{self.describe()}: {unit.name} is a compressed stream without random access; extract "
                          "the outer archive first (its inner tars are then read in place)")

    def home(self, split: str) -> str:
        """Where ``split`` lives, for messages: its archive or folder (default ``ROOT/<split>``)."""
        return str(self.root / split)

    def wnids(self) -> set[str]:
        """Every class of the download, over all its splits: class units by their name, other units (val
        slices) by their listed labels. What the ``found`` label space indexes, one index for every split."""
        out: set[str] = set()
        for unit in (u for split in self.splits() for u in self.units(split)):
            if WNID.match(unit.name):
                out.add(unit.name)
            else:
                out.update(wnid for _, wnid, _ in self.list(unit) if wnid)
        return out

    def samples(self, split: str, classes: set[str] | None = None) -> Iterator[Sample]:
        """Every sample of a split (optionally only ``classes``), unit by unit."""
        for unit in self.units(split):
            for sample in self.read(unit):
                if classes is None or sample.wnid in classes:
                    yield sample

    def describe(self) -> str:
        """The layout and root, for messages."""
        return f"{self.layout} at {self.root}"

    def evaluation(self, split: str) -> dict | None:
        """What an evaluation set's split is, for its manifest (``set``, ``variant``, ``mask``: its classes as 1k
        indices or None for all 1000, ``reference``); None for a training download."""
        return None

    def unlabelled(self, split: str) -> str:
        """Why a ``split`` image of this download came without a label, and what gives it one (for messages)."""
        return f"the {self.layout} download at {self.root} carries no label for its {split} images"
