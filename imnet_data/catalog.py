"""The ImageNet catalog: ILSVRC2012 classes, their index spaces, names, quirks, subsets and other label sets.

Index spaces (they differ, and mixing them up silently mislabels data):

* ``index`` 0..999: sorted-WNID order, the convention of torchvision ImageFolder, timm, TFDS, Keras
  (0 = n01440764 tench, 999 = n15075141 toilet tissue). Every label this tool writes is in this space.
* ``ilsvrc2012_id`` 1..1000: the devkit order used by ``meta.mat`` and the val ground truth
  (1 = n02119789 kit fox).
* ``wnid``: the WordNet 3.0 noun offset, ``n`` + 8 digits.

Everything is read from the shipped manifests (generated from the real devkit by ``tools/gen_manifests.py``).
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from imnet_data import resources

WNID_RE = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class SynsetClass:
    """One ILSVRC2012 class."""

    index: int
    wnid: str
    ilsvrc2012_id: int
    names: tuple[str, ...]
    gloss: str
    train_images: int

    @property
    def name(self) -> str:
        """The first (most common) name, e.g. ``tench``."""
        return self.names[0]


class UnknownClassError(LookupError):
    """A class query matched nothing (or, for a name, more than one class); carries close matches."""

    def __init__(self, query: object, message: str, suggestions: list[str]) -> None:
        self.query = query
        self.suggestions = suggestions
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"{message}{hint}")


class Catalog:
    """The 1000 ILSVRC2012 classes, looked up by index, WNID, devkit ID or name."""

    def __init__(self, classes: list[SynsetClass]) -> None:
        self.classes = tuple(classes)
        self._by_wnid = {c.wnid: c for c in classes}
        self._by_id = {c.ilsvrc2012_id: c for c in classes}
        self._by_name: dict[str, list[SynsetClass]] = {}
        for c in classes:
            for n in c.names:
                self._by_name.setdefault(n.lower(), []).append(c)

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[SynsetClass]:
        return iter(self.classes)

    def __getitem__(self, index: int) -> SynsetClass:
        return self.by_index(index)

    @property
    def wnids(self) -> tuple[str, ...]:
        """WNIDs in index order."""
        return tuple(c.wnid for c in self.classes)

    def by_index(self, index: int) -> SynsetClass:
        """Class at sorted-WNID ``index`` (0..999)."""
        if not 0 <= index < len(self.classes):
            raise UnknownClassError(index, f"class index {index} is out of range 0..{len(self.classes) - 1}", [])
        return self.classes[index]

    def by_wnid(self, wnid: str) -> SynsetClass:
        """Class with WordNet ID ``wnid``."""
        try:
            return self._by_wnid[wnid]
        except KeyError:
            close = difflib.get_close_matches(wnid, self._by_wnid, n=3, cutoff=0.7)
            shape = "" if WNID_RE.match(wnid) else " (a WNID is 'n' + 8 digits)"
            raise UnknownClassError(wnid, f"{wnid!r} is not an ILSVRC2012 class WNID{shape}",
                                    [self._label(self._by_wnid[w]) for w in close]) from None

    def by_ilsvrc2012_id(self, ilsvrc2012_id: int) -> SynsetClass:
        """Class with devkit ``ILSVRC2012_ID`` (1..1000, meta.mat order)."""
        try:
            return self._by_id[ilsvrc2012_id]
        except KeyError:
            raise UnknownClassError(ilsvrc2012_id, f"ILSVRC2012_ID {ilsvrc2012_id} is out of range 1..1000",
                                    []) from None

    def by_name(self, name: str) -> SynsetClass:
        """Class with exactly this name (any of its synonyms, case-insensitive); ambiguous names raise."""
        found = self._by_name.get(name.strip().lower(), [])
        if len(found) == 1:
            return found[0]
        if found:
            raise UnknownClassError(name, f"name {name!r} is ambiguous: {len(found)} classes carry it",
                                    [self._label(c) for c in found])
        close = difflib.get_close_matches(name.lower(), self._by_name, n=5, cutoff=0.6)
        for c in self.search(name)[:5]:
            close.append(c.name)
        suggestions = list(dict.fromkeys(self._label(self._by_name[n][0]) for n in close))[:5]
        raise UnknownClassError(name, f"no ILSVRC2012 class is named {name!r}", suggestions)

    def get(self, query: int | str) -> SynsetClass:
        """Look up by index (an int or digits), WNID (``n01440764``) or exact name."""
        if isinstance(query, int) or (isinstance(query, str) and query.strip().isdigit()):
            return self.by_index(int(query))
        if re.match(r"^n\d+$", query.strip()):
            return self.by_wnid(query.strip())
        return self.by_name(query)

    def search(self, text: str) -> list[SynsetClass]:
        """Classes whose WNID or any name contains ``text`` (case-insensitive), in index order."""
        t = text.strip().lower()
        return [c for c in self.classes if t in c.wnid or any(t in n.lower() for n in c.names)]

    def index_to_ilsvrc2012_id(self, index: int) -> int:
        """Sorted-WNID index -> devkit ILSVRC2012_ID."""
        return self.by_index(index).ilsvrc2012_id

    def ilsvrc2012_id_to_index(self, ilsvrc2012_id: int) -> int:
        """Devkit ILSVRC2012_ID -> sorted-WNID index."""
        return self.by_ilsvrc2012_id(ilsvrc2012_id).index

    def wnid_to_index(self, wnid: str) -> int:
        """WNID -> sorted-WNID index."""
        return self.by_wnid(wnid).index

    def index_to_wnid(self, index: int) -> str:
        """Sorted-WNID index -> WNID."""
        return self.by_index(index).wnid

    @staticmethod
    def _label(c: SynsetClass) -> str:
        return f"{c.wnid} ({c.name})"


@lru_cache(maxsize=1)
def ilsvrc2012() -> Catalog:
    """The ILSVRC2012 catalog (1000 classes, sorted-WNID index order)."""
    return Catalog([SynsetClass(index=c["index"], wnid=c["wnid"], ilsvrc2012_id=c["ilsvrc2012_id"],
                                names=tuple(c["names"]), gloss=c["gloss"], train_images=c["train_images"])
                    for c in resources.read_json("ilsvrc2012.json")["classes"]])


def facts() -> dict:
    """Facts of the official download: archive names/md5s/sizes, image totals, val per class, quirk lists."""
    return {k: v for k, v in resources.read_json("ilsvrc2012.json").items() if k != "classes"}


def known_quirks() -> dict[str, frozenset[str]]:
    """The real set's known quirk files by kind: ``cmyk`` (22 CMYK JPEGs) and ``png`` (a PNG named .JPEG)."""
    f = facts()
    return {"cmyk": frozenset(f["cmyk_train_images"]), "png": frozenset(f["png_train_images"])}


def devkit_synsets() -> list[dict]:
    """The 1860 entries of the real devkit ``meta.mat`` (field for field, file order)."""
    return resources.read_json("ilsvrc2012_devkit_synsets.json")


def val_ground_truth() -> list[int]:
    """The real devkit val ground truth: ILSVRC2012_ID of ``ILSVRC2012_val_%08d.JPEG`` for i = 1..50000."""
    return [int(x) for x in resources.read_lines("ilsvrc2012_val_ground_truth.txt.gz")]


@dataclass(frozen=True)
class LabelSpace:
    """A class index space: its classes are ``wnids()`` in index order (``.cls`` = position)."""

    about: str
    wnids: Callable[[], Sequence[str]]


LABEL_SPACES = {
    "imagenet-1k": LabelSpace("ILSVRC2012's 1000 classes, sorted-WNID order (torchvision, timm, TFDS)",
                              lambda: ilsvrc2012().wnids),
    "imagenet-21k": LabelSpace("ImageNet-21k fall11's 21,841 classes, sorted-WNID order (timm's imagenet22k list; "
                               "winter21's 19,167 are among them)", lambda: imagenet21k("fall11")),
    "imagenet-21k-goog": LabelSpace("Google's 21,843-class ImageNet-21k list (BiT / ViT checkpoints)",
                                    lambda: imagenet21k("goog")),
    "imagenet-21k-p": LabelSpace("ImageNet-21K-P winter21's 10,450 classes (timm's in21k_miil models)",
                                 lambda: imagenet21k("miil_w21")),
    "imagenet-12k": LabelSpace("timm's ImageNet-12k: 11,821 fall11 classes, sorted-WNID order (timm's in12k models)",
                               lambda: imagenet21k("imagenet12k")),
    "tiny-imagenet-200": LabelSpace("Tiny ImageNet's 200 classes, sorted-WNID order",
                                    lambda: sorted(subset("tiny-imagenet")[1])),
    "found": LabelSpace("the WNIDs found in the download, sorted: only when asked for, since the indices then "
                        "depend on which classes this copy holds", lambda: ()),
}
DEFAULT_SPACES = {"tiny": "tiny-imagenet-200", "imagenet21k": "imagenet-21k"}   # every other layout: imagenet-1k


def label_space(layout: str, found: Callable[[], Iterable[str]],
                name: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The class index space, as ``(name, WNIDs in index order)``: ``name`` (one of :data:`LABEL_SPACES`), else
    the layout's default: ImageNet-1k's sorted WNIDs (what timm and torchvision use) for every 1k layout, Tiny
    ImageNet's 200, and for 21k the published fall11 list. Only the space ``found`` is derived from the download:
    the sorted WNIDs ``found()`` gives (called only then), so a subset never silently gets indices of its own.
    The shards' ``.cls`` and organize's ``class_to_idx.json`` use it."""
    name = name or DEFAULT_SPACES.get(layout, "imagenet-1k")
    if name not in LABEL_SPACES:
        raise UnknownClassError(name, f"unknown label space {name!r} (known: {', '.join(LABEL_SPACES)})",
                                difflib.get_close_matches(name, LABEL_SPACES, n=2))
    return name, tuple(sorted(set(found())) if name == "found" else LABEL_SPACES[name].wnids())


@lru_cache(maxsize=1)
def real_labels() -> tuple[tuple[int, ...], ...]:
    """ReaL labels (Beyer et al. 2020, "Are we done with ImageNet?"): entry ``i - 1`` holds the sorted-WNID class
    indices the raters kept for ``ILSVRC2012_val_%08d.JPEG`` (empty for the 3,163 images they kept none of)."""
    return tuple(tuple(x) for x in json.loads(resources.read_bytes("ilsvrc2012_real_labels.json.gz")))


REAL_KEY = re.compile(r"^ILSVRC2012_val_(\d{8})$")


def real_labels_of(key: str) -> tuple[int, ...] | None:
    """The ReaL labels of a sample key (``ILSVRC2012_val_00000002`` -> (795, 970)), None for any other key."""
    match = REAL_KEY.match(key)
    number = int(match.group(1)) if match else 0
    table = real_labels() if match else ()
    return table[number - 1] if 1 <= number <= len(table) else None


SUBSETS = {
    "1percent": ("subset_1percent.txt.gz", "files"),
    "10percent": ("subset_10percent.txt.gz", "files"),
    "imagenet-a": ("subset_imagenet_a.txt", "wnids"),
    "imagenet-r": ("subset_imagenet_r.txt", "wnids"),
    "tiny-imagenet": ("tiny_imagenet_wnids.txt", "wnids"),
}


def subset(name: str) -> tuple[str, list[str]]:
    """A named subset: ``(kind, items)`` where kind is ``files`` (train file names) or ``wnids`` (classes).

    ``1percent``/``10percent`` are the standard semi-supervised train subsets (SimCLR lists);
    ``imagenet-a``/``imagenet-r`` the 200-class subsets of those test sets; ``tiny-imagenet`` its 200 classes.
    """
    try:
        file, kind = SUBSETS[name]
    except KeyError:
        raise UnknownClassError(name, f"unknown subset {name!r} (known: {', '.join(SUBSETS)})",
                                difflib.get_close_matches(name, SUBSETS, n=2)) from None
    return kind, resources.read_lines(file)


IMAGENET21K = {"fall11": "imagenet21k_fall11.txt.gz", "goog": "imagenet21k_goog.txt.gz",
               "miil_w21": "imagenet21k_miil_w21.txt.gz", "imagenet12k": "imagenet21k_imagenet12k.txt.gz"}


def imagenet21k(variant: str = "fall11") -> list[str]:
    """ImageNet-21k synset lists in their class-index order.

    ``fall11``: the 21,841 synsets of fall11_whole; ``goog``: Google's 21,843-class list (BiT/ViT checkpoints);
    ``miil_w21``: the 10,450-class winter21 subset of ImageNet-21K-P (timm's ``in21k`` winter21 models);
    ``imagenet12k``: timm's 11,821-class ImageNet-12k (the fall11 classes with at least 440 images).
    """
    if variant not in IMAGENET21K:
        raise UnknownClassError(variant, f"unknown ImageNet-21k list {variant!r} (known: {', '.join(IMAGENET21K)})",
                                difflib.get_close_matches(variant, IMAGENET21K, n=2))
    return resources.read_lines(IMAGENET21K[variant])


@dataclass(frozen=True)
class Release:
    """A published ImageNet-21k release: its archive, classes and images (``images_at_least``: only a lower
    bound is published), and where the figures come from."""

    name: str
    archive: str
    classes: int
    images: int
    images_at_least: bool
    source: str


def imagenet21k_releases() -> tuple[Release, ...]:
    """The ImageNet-21k releases (fall11, winter21) with their totals, for ``validate --expect official``."""
    return tuple(Release(name=name, **fields) for name, fields in
                 sorted(resources.read_json("imagenet21k_releases.json")["releases"].items()))


@lru_cache(maxsize=1)
def _imagenet21k_words() -> dict[str, tuple[str, str]]:
    out = {}
    for line in resources.read_lines("imagenet21k_words.tsv.gz"):
        wnid, lemmas, definition = line.split("\t")
        out[wnid] = (lemmas, definition)
    return out


@lru_cache(maxsize=1)
def _words() -> dict[str, str]:
    return dict(line.split("\t", 1) for line in resources.read_lines("wordnet_words.tsv.gz"))


def synset_words(wnid: str) -> str:
    """Names of any ImageNet synset (82,115 known, from image-net.org words.txt), e.g. ``'tench, Tinca tinca'``."""
    try:
        return _words()[wnid]
    except KeyError:
        raise UnknownClassError(wnid, f"{wnid!r} is not a known ImageNet synset",
                                difflib.get_close_matches(wnid, _words(), n=3, cutoff=0.8)) from None


def synset_definition(wnid: str) -> str:
    """The WordNet definition of an ImageNet-21k synset ('' where the lists give none)."""
    if wnid not in _imagenet21k_words():
        synset_words(wnid)  # raises with suggestions when unknown
        return ""
    return _imagenet21k_words()[wnid][1]


def tiny_imagenet_val_annotations() -> list[tuple[str, str, tuple[int, int, int, int]]]:
    """Tiny ImageNet's val labels: ``(file, wnid, (x0, y0, x1, y1))`` for its 10,000 val images."""
    out = []
    for line in resources.read_lines("tiny_imagenet_val_annotations.tsv.gz"):
        file, wnid, x0, y0, x1, y1 = line.split("\t")
        out.append((file, wnid, (int(x0), int(y0), int(x1), int(y1))))
    return out
