"""The samples of a plan as columns: a few bytes per sample where a list of objects takes hundreds.

A split of ImageNet-21k has 13 million samples; as one :class:`~imnet_data.sources.base.Entry` object each (with
its key string, locator tuple and name) the plan took ~650 bytes per sample, 9 GB before any shard was written.
Here a sample is a row of numpy columns: its key (fixed-width ASCII bytes: keys are ``[A-Za-z0-9_-]``), class,
place, offset and size, and its file name's extension, ~40 bytes for ImageNet's names. What would repeat per sample
is a small table: the *places* (the tar a sample is stored in, the folder holding its file, the zip and member
folder, the streamed archive, member folder and part), the extensions, the class names. Rare extras are object
columns that exist only when a listing has them: a file name that is not ``key + extension``, a locator of no
known shape, bounding boxes.

Listing workers turn their unit's entries into a table (:meth:`Table.of`); the plan concatenates, selects, sorts
and cuts tables; a shard's worker receives only its rows (:meth:`Table.take`), and :meth:`Table.entry` gives the
:class:`Entry` back for reading.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from imnet_data.shards.schema import KEY
from imnet_data.sources.base import Entry, SourceError, stem

EXTRAS = ("names", "locs", "boxes")   # the object columns, present only where a listing needs them
KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_SIZE = 1 << 32                     # bytes a sample may have (the size column's type)
DTYPES: dict[str, np.dtype] = {"wnid": np.dtype(np.int32), "place": np.dtype(np.int32),
                               "offset": np.dtype(np.int64), "size": np.dtype(np.uint32), "ext": np.dtype(np.uint8)}


@dataclass
class Table:
    """Rows of samples (see the module doc). ``classes`` holds the WNIDs the ``wnid`` column indexes (None: no
    label); ``places`` ``("tar", path)``, ``("dir", folder)``, ``("zip", path, member prefix)`` or
    ``("stream", path, member prefix, part)`` (then ``offset`` is the sample's ordinal in its part)."""

    keys: np.ndarray                       # S<n>: the sample keys
    wnid: np.ndarray                       # int32 into ``classes``
    place: np.ndarray                      # int32 into ``places``
    offset: np.ndarray                     # int64: where the bytes start in a tar (0 for a file; a stream's ordinal)
    size: np.ndarray                       # uint32 (a file of 4 GiB or more is refused: no image is)
    ext: np.ndarray                        # uint8 into ``exts``: the name is key + ext
    classes: list[str | None] = field(default_factory=list)
    places: list[tuple] = field(default_factory=list)
    exts: list[str] = field(default_factory=list)
    names: np.ndarray | None = None        # object: the file name where it is not key + ext, else None
    locs: np.ndarray | None = None         # object: a locator of no known shape, else None
    boxes: np.ndarray | None = None        # object: a sample's boxes, else None
    digest: str = ""                       # a split's listing: sha256 of its names, classes and sizes, in order
    lines: bytes = b""                     # a unit's listing: its ``name\tclass\tsize`` lines (hashed, let go)

    COLUMNS = ("keys", "wnid", "place", "offset", "size", "ext")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def of(cls, entries: Iterable[Entry], key: Callable[[Entry], str]) -> Table:
        """The table of ``entries`` (a unit's listing, in order); ``key(entry)`` gives the sample key."""
        rows = _Rows()
        for entry in entries:
            rows.add(entry, key(entry))
        return rows.table()

    @classmethod
    def build(cls, columns: dict[str, np.ndarray | None], classes: list[str | None], places: list[tuple],
              exts: list[str]) -> Table:
        """A table of named columns (every one of :attr:`COLUMNS`; :data:`EXTRAS` may be None or absent)."""
        main = {name: columns[name] for name in cls.COLUMNS}
        keys, wnid, place, offset, size, ext = (c for c in main.values() if c is not None)
        return cls(keys, wnid, place, offset, size, ext, classes, places, exts, names=columns.get("names"),
                   locs=columns.get("locs"), boxes=columns.get("boxes"))

    def column(self, name: str) -> np.ndarray | None:
        """The column ``name`` (an extra one may be None)."""
        return getattr(self, name)

    def entry(self, i: int) -> Entry:
        """Row ``i`` as the :class:`Entry` it was made of (locator included)."""
        name = self.name(i)
        size = int(self.size[i])
        if self.locs is not None and self.locs[i] is not None:
            loc = self.locs[i]
        else:
            loc = _locator(self.places[self.place[i]], name, int(self.offset[i]), size)
        boxes = self.boxes[i] if self.boxes is not None and self.boxes[i] is not None else ()
        label = int(self.wnid[i])    # -1 after labelling: no class (a split published without labels)
        return Entry(name, self.classes[label] if label >= 0 else None, size, loc, boxes)

    def samples(self) -> Iterator[tuple[str, int, Entry]]:
        """``(key, label, entry)`` of every row in order, as :meth:`key`, the ``wnid`` column and :meth:`entry`
        give them, from the columns turned into lists once (a shard writer's loop: numpy's per-item access cost
        more than the rest of a row's entry). A table with extra columns goes row by row."""
        if any(self.column(name) is not None for name in EXTRAS):
            yield from ((self.key(i), int(self.wnid[i]), self.entry(i)) for i in range(len(self)))
            return
        classes = [*self.classes, None]   # label -1 (no class) picks the last
        for key, label, place, offset, size, ext in zip(
                self.keys.tolist(), self.wnid.tolist(), self.place.tolist(), self.offset.tolist(),
                self.size.tolist(), self.ext.tolist(), strict=True):
            key = key.decode("ascii")
            name = key + self.exts[ext]
            yield key, label, Entry(name, classes[label], size, _locator(self.places[place], name, offset, size))

    def key(self, i: int) -> str:
        """The sample key of row ``i``."""
        return self.keys[i].decode("ascii")

    def name(self, i: int) -> str:
        """The original file name of row ``i``."""
        if self.names is not None and self.names[i] is not None:
            return self.names[i]
        return self.key(i) + self.exts[self.ext[i]]

    def __getstate__(self) -> dict:
        """Pickled with its classes as one joined string (:func:`joined_names`), made a list again once per
        process (:func:`split_names`): rows taken from a plan (:meth:`take`) keep its whole class list, and
        ImageNet-21k's 21,841 WNIDs as a list were 263 KB and ~3.7 ms to pickle, ~2.8 ms to unpickle, in every
        job that carried them."""
        return {**self.__dict__, "classes": joined_names(self.classes)}

    def __setstate__(self, state: dict) -> None:
        """See :meth:`__getstate__` (a list of its own: the cached tuple is shared)."""
        self.__dict__.update(state, classes=list(split_names(*state["classes"])))

    def take(self, rows: np.ndarray | slice) -> Table:
        """A table of the given rows (indices, a boolean mask or a slice), with only the places it uses."""
        columns = {name: None if (c := self.column(name)) is None else c[rows] for name in (*self.COLUMNS, *EXTRAS)}
        used, place = np.unique(self.place[rows], return_inverse=True)
        columns["place"] = place.astype(np.int32)
        return Table.build(columns, self.classes, [self.places[i] for i in used.tolist()], self.exts)

    def reorder(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (indices or a boolean mask), in that order, one column at a time (in place: the
        old column is let go before the next is copied, so a reorder costs one column more, not a table)."""
        for name in (*self.COLUMNS, *EXTRAS):
            column = self.column(name)
            if column is not None:
                setattr(self, name, None)
                setattr(self, name, column[rows])
                del column


def sample_key(entry: Entry) -> str:
    """The ``__key__``: the file stem with every character but ASCII letters, digits, ``-`` and ``_`` made a
    ``_``: dots (WebDataset splits a member name at its first dot), and spaces, newlines, non-ASCII or
    non-UTF-8 bytes, which would break DALI's index and other readers. The original name stays in the sample's
    ``.json`` (``file``); two names that give one key are refused by :func:`make_plan`, naming both."""
    key = KEY_UNSAFE.sub("_", stem(entry.name))
    if not KEY.match(key):
        raise SourceError(f"{entry.origin}: file name {entry.name!r} gives no usable sample key (1-90 characters)")
    return key


class _Rows:
    """A table being built, row by row (a listing worker's)."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.wnid: list[int] = []
        self.place: list[int] = []
        self.offset: list[int] = []
        self.size: list[int] = []
        self.ext: list[int] = []
        self.extras: dict[str, dict[int, object]] = {name: {} for name in EXTRAS}
        self.classes: dict[str | None, int] = {}
        self.places: dict[tuple, int] = {}
        self.exts: dict[str, int] = {}
        self.lines = bytearray()

    def add(self, e: Entry, key: str) -> None:
        """Append entry ``e`` under sample ``key``."""
        row = len(self.keys)
        self.keys.append(key.encode("ascii"))
        self.wnid.append(self.classes.setdefault(e.wnid, len(self.classes)))
        base = stem(e.name)
        ext = e.name[len(base):]
        if base != key or e.name != key + ext or len(self.exts) >= 255 and ext not in self.exts:
            self.extras["names"][row], ext = e.name, ""
        self.ext.append(self.exts.setdefault(ext, len(self.exts)))
        place, offset = _place(e)
        if place is None:
            self.extras["locs"][row], place = e.loc, ("loc",)
        self.place.append(self.places.setdefault(place, len(self.places)))
        self.offset.append(offset)
        if e.size >= MAX_SIZE:
            raise SourceError(f"{e.origin}: {e.size:,} bytes, over the image size cap")
        self.size.append(e.size)
        if e.boxes:
            self.extras["boxes"][row] = e.boxes
        self.lines += f"{e.name}\t{e.wnid}\t{e.size}\n".encode("utf-8", "surrogateescape")

    def table(self) -> Table:
        """The rows as a :class:`Table`."""
        n = len(self.keys)
        out = Table.build({"keys": np.array(self.keys, dtype=f"S{max(map(len, self.keys), default=1)}"),
                           **{name: np.array(getattr(self, name), dtype=DTYPES[name]) for name in Table.COLUMNS[1:]}},
                          list(self.classes), list(self.places), list(self.exts))
        out.lines = bytes(self.lines)
        for name, found in self.extras.items():
            if found:
                column = np.full(n, None, dtype=object)
                for row, value in found.items():
                    column[row] = value
                setattr(out, name, column)
        return out


Joined = tuple[str, int, tuple[int, ...]]   # a name list as joined_names gives it


def joined_names(classes: Sequence[str | None]) -> Joined:
    """``classes`` (WNIDs or class names, None for no class) as the arguments of :func:`split_names` that make
    them again: the names joined by NUL (which no class name holds), their count, and where None is. How a long
    name list is pickled (a table's classes, :class:`~imnet_data.shards.stream.Labels`): one string, not
    tens of thousands of pickle ops."""
    try:   # a plan's (labelled, no None): joined at C speed
        return "\0".join(classes), len(classes), ()   # type: ignore[arg-type]
    except TypeError:
        pass
    return "\0".join(w or "" for w in classes), len(classes), tuple(i for i, w in enumerate(classes) if w is None)


@lru_cache(maxsize=8)
def split_names(joined: str, count: int, nones: tuple[int, ...]) -> tuple[str | None, ...]:
    """The names :func:`joined_names` gave (once per process and name list)."""
    out: list[str | None] = list(joined.split("\0")) if count else []
    for i in nones:
        out[i] = None
    return tuple(out)


def _locator(place: tuple, name: str, offset: int, size: int) -> tuple:
    """The locator of a sample called ``name`` stored at ``place`` (see :func:`_place`)."""
    kind, path, *prefix = place
    return (("range", path, offset, size) if kind == "tar" else
            ("range", os.path.join(path, name), 0, size) if kind == "dir" else
            ("zip", path, prefix[0] + name) if kind == "zip" else
            ("stream", path, prefix[0] + name, prefix[1], offset))


def _place(e: Entry) -> tuple[tuple | None, int]:
    """Where entry ``e`` is stored, as a place shared by its neighbours, and its offset there; ``(None, 0)`` for
    a locator of no known shape."""
    kind, path, *rest = e.loc
    if kind == "range":
        offset, size = rest
        if offset == 0 and size == e.size and path.endswith(os.sep + e.name):
            return ("dir", path[:-len(e.name) - 1]), 0
        if size == e.size:
            return ("tar", path), offset
    elif kind == "zip" and rest[0].endswith(e.name):
        return ("zip", path, rest[0][:-len(e.name)]), 0
    elif kind == "stream" and rest[0].endswith(e.name):   # member, part, ordinal (shards.stream)
        member, part, ordinal = rest
        return ("stream", path, member[:-len(e.name)], part), ordinal
    return None, 0


def concat(tables: Sequence[Table]) -> Table:
    """One table of ``tables`` in order, their class, place and extension tables merged (no digest). Consumes
    them: each column is let go once copied, so joining costs one column more than the tables themselves."""
    tables = list(tables)
    merged: dict[str, dict] = {"wnid": {}, "place": {}, "ext": {}}
    lookups = [{name: np.array([merged[name].setdefault(v, len(merged[name])) for v in values], dtype=DTYPES[name])
                for name, values in (("wnid", t.classes), ("place", t.places), ("ext", t.exts))} for t in tables]
    if len(merged["ext"]) > 256:
        raise SourceError(f"{len(merged['ext'])} different file name extensions in one split; at most 256 are "
                          "supported")
    lengths = [len(t) for t in tables]
    columns: dict[str, np.ndarray | None] = {}
    for name in (*Table.COLUMNS, *EXTRAS):
        if name in EXTRAS and all(t.column(name) is None for t in tables):
            continue
        parts = []
        for t, lookup, n in zip(tables, lookups, lengths, strict=True):
            part = t.column(name)
            setattr(t, name, None)
            if part is None:
                part = np.full(n, None, dtype=object)
            elif name in lookup and n:
                part = lookup[name][part]
            parts.append(part)
        empty = np.zeros(0, dtype=DTYPES.get(name, np.dtype("S1" if name == "keys" else object)))
        columns[name] = np.concatenate(parts) if parts else empty
        del parts
    return Table.build(columns, list(merged["wnid"]), list(merged["place"]), list(merged["ext"]))
