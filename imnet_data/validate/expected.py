"""What a sound download holds, per layout: the class set, and with ``expect="official"`` the catalog's truth of
the real set (train counts, val files and labels, ImageNet-21k's release totals), with ``expect="self"`` the
download's own metadata (devkit, Kaggle's solution file); and the split-level checks of a scanned split
against it."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

from imnet_data import catalog
from imnet_data.catalog import UnknownClassError
from imnet_data.sources import Source, SourceError
from imnet_data.sources.devkit import ARCHIVE as DEVKIT_ARCHIVE, Devkit
from imnet_data.sources.kaggle import SOLUTION, load_solution
from imnet_data.validate.report import UNREADABLE, Problem, class_where, inside
from imnet_data.validate.scan import Tally

TINY_TRAIN_PER_CLASS = 500
HUB_TEST_IMAGES = 100_000   # the hub copy's test set (the 2012 test images, the 2019 patch applied)


@dataclass(frozen=True)
class Expected:
    """What a sound download holds; a split absent from a map is not checked on that point."""

    family: str                          # the class set, for messages
    known: Callable[[str], bool]         # whether a class may appear at all
    splits: tuple[str, ...] = ("train", "val")
    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # split -> wnid -> images
    names: dict[str, frozenset[str]] = field(default_factory=dict)    # split -> every file name
    labels: dict[str, dict[str, str]] = field(default_factory=dict)   # split -> file name -> wnid
    releases: dict[str, tuple[catalog.Release, ...]] = field(default_factory=dict)  # split -> totals it may have
    unlabelled: frozenset[str] = frozenset()                          # splits published without labels
    totals: dict[str, int] = field(default_factory=dict)              # split -> images (an unlabelled split's)
    required: dict[str, frozenset[str]] = field(default_factory=dict)   # split -> classes it must hold


def _val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def _is_synset(wnid: str) -> bool:
    try:
        catalog.synset_words(wnid)
    except UnknownClassError:
        return False
    return True


def _ilsvrc_classes() -> Expected:
    return Expected("ILSVRC2012", frozenset(catalog.ilsvrc2012().wnids).__contains__)


def _with_truth(base: Expected, train: dict[str, int], val: dict[str, str]) -> Expected:
    """``base`` expecting ``train`` images per class and exactly the val files ``val`` (name -> label); the
    val count per class follows from the labels."""
    return replace(base, counts={"train": train, "val": dict(Counter(val.values()))}, names={"val": frozenset(val)},
                   labels={"val": val})


def val_truth() -> dict[str, str]:
    """The 50,000 official val file names and their WNIDs (the devkit ground truth through the catalog)."""
    cat = catalog.ilsvrc2012()
    return {_val_name(i): cat.by_ilsvrc2012_id(c).wnid for i, c in enumerate(catalog.val_ground_truth(), 1)}


def _ilsvrc_official(base: Expected, _: Source) -> Expected:
    """The real set: train counts per class, 50,000 val files with their official labels (50 per class)."""
    return _with_truth(base, {c.wnid: c.train_images for c in catalog.ilsvrc2012()}, val_truth())


def _hub_classes() -> Expected:
    """The hub copies: ILSVRC2012's classes, and a test split that carries no labels."""
    return replace(_ilsvrc_classes(), unlabelled=frozenset({"test"}))


def _hub_official(base: Expected, src: Source) -> Expected:
    """The hub copies of the real set: the official train and val truth, and 100,000 test images."""
    return replace(_ilsvrc_official(base, src), totals={"test": HUB_TEST_IMAGES})


def _tiny_classes() -> Expected:
    return Expected("Tiny ImageNet", frozenset(catalog.subset("tiny-imagenet")[1]).__contains__)


def _tiny_official(base: Expected, _: Source) -> Expected:
    """Tiny ImageNet: 500 train images per class, 10,000 val images labelled as the catalog says."""
    val = {file: wnid for file, wnid, _ in catalog.tiny_imagenet_val_annotations()}
    return _with_truth(base, dict.fromkeys(catalog.subset("tiny-imagenet")[1], TINY_TRAIN_PER_CLASS), val)


def _imagenet21k_official(base: Expected, src: Source) -> Expected:
    """ImageNet-21k (no per-class counts are published): the release its archive names, or for an extracted
    folder the one whose class count it has; that many classes, every one in fall11's list, and its images."""
    archive = src.archive  # type: ignore[attr-defined]
    releases = tuple(r for r in catalog.imagenet21k_releases() if archive is None or r.archive == archive.name)
    fall11 = frozenset(catalog.imagenet21k("fall11"))
    return replace(base, family="ImageNet-21k (fall11's 21,841 classes)", known=fall11.__contains__,
                   releases={"train": releases})


# the evaluation sets: set -> (classes, images, where the figures are published); no per-class counts are
EVAL_TOTALS = {"imagenet-a": (200, 7_500, "Hendrycks et al. 2021, Natural Adversarial Examples"),
               "imagenet-r": (200, 30_000, "Hendrycks et al. 2021, The Many Faces of Robustness"),
               "imagenet-sketch": (1000, 50_889, "Wang et al. 2019; TFDS imagenet_sketch")}
V2_PER_CLASS = 10


def _eval_classes(family: str, wnids: Callable[[], Iterable[str]]) -> Callable[[], Expected]:
    """The class set of an evaluation set; ``splits=()``: the splits the download holds."""
    return lambda: Expected(family, frozenset(wnids()).__contains__, splits=())


def _eval_totals(base: Expected, src: Source) -> Expected:
    """ImageNet-A, -R, -Sketch: the set's published class and image totals."""
    classes, images, source = EVAL_TOTALS[src.layout]
    release = catalog.Release(src.layout, "", classes, images, False, source)
    wnids = frozenset(catalog.subset(src.layout)[1]) if classes == 200 else frozenset(_one_k())
    return replace(base, releases=dict.fromkeys(base.splits, (release,)), required=dict.fromkeys(base.splits, wnids))


def _v2_official(base: Expected, _: Source) -> Expected:
    """ImageNetV2: each variant holds 10 images of every class."""
    return replace(base, counts=dict.fromkeys(base.splits, dict.fromkeys(catalog.ilsvrc2012().wnids, V2_PER_CLASS)))


def _c_official(base: Expected, _: Source) -> Expected:
    """ImageNet-C: every corruption and severity holds the 50,000 val images, each under its official class."""
    val = val_truth()
    counts, names = dict(Counter(val.values())), frozenset(val)
    return replace(base, counts=dict.fromkeys(base.splits, counts), names=dict.fromkeys(base.splits, names),
                   labels=dict.fromkeys(base.splits, val))


def _one_k() -> tuple[str, ...]:
    return catalog.ilsvrc2012().wnids


CLASSES: dict[str, Callable[[], Expected]] = {
    "tiny": _tiny_classes, "hf": _hub_classes, "hf-parquet": _hub_classes,
    "imagenet21k": lambda: Expected("ImageNet (words.txt)", _is_synset, splits=("train",)),
    "imagenet-a": _eval_classes("ImageNet-A's 200 classes", lambda: catalog.subset("imagenet-a")[1]),
    "imagenet-r": _eval_classes("ImageNet-R's 200 classes", lambda: catalog.subset("imagenet-r")[1]),
    "imagenet-sketch": _eval_classes("ILSVRC2012", _one_k), "imagenet-v2": _eval_classes("ILSVRC2012", _one_k),
    "imagenet-c": _eval_classes("ILSVRC2012", _one_k),
}
OFFICIAL: dict[str, Callable[[Expected, Source], Expected]] = {
    "ilsvrc2012": _ilsvrc_official, "folders": _ilsvrc_official, "kaggle": _ilsvrc_official, "tiny": _tiny_official,
    "imagenet21k": _imagenet21k_official, "hf": _hub_official, "hf-parquet": _hub_official,
    "imagenet-a": _eval_totals, "imagenet-r": _eval_totals, "imagenet-sketch": _eval_totals,
    "imagenet-v2": _v2_official, "imagenet-c": _c_official}


def class_set(src: Source) -> Expected:
    """Only the class set of ``src``'s layout (and the splits it should hold): what is checked when nothing else
    is known. One split's folder (``DEST/train``) should hold only that split."""
    base = CLASSES.get(src.layout, _ilsvrc_classes)()
    return replace(base, splits=tuple(src.splits())) if getattr(src, "single", False) or not base.splits else base


def truth(src: Source, expect: str, kit: Devkit | None) -> Expected:
    """The truth to check ``src`` against: the catalog's (official) or the download's own metadata (self)."""
    base = class_set(src)
    if expect == "official":
        unknown = [s for s in base.splits if s not in ("train", "val")] if getattr(src, "single", False) else []
        if unknown:
            raise SourceError(f"{src.root}: the official set has no split named {unknown[0]!r}, so there are no "
                              "official counts to check it against: name the folder train or val, or check it "
                              "with --expect self")
        return OFFICIAL[src.layout](base, src)
    if kit is not None:
        val = {_val_name(i): w for i, w in enumerate(kit.val_wnids, 1)}
        return _with_truth(base, {w: n for w, n in kit.num_train_images.items() if n > 0}, val)
    if src.layout == "kaggle":
        rows = load_solution(src.root / SOLUTION["val"])
        return replace(base, names={"val": frozenset(f"{key}.JPEG" for key in rows)} if rows else {})
    return base


def check_devkit(src: Source, expect: str) -> tuple[Devkit | None, list[Problem]]:
    """The devkit of a layout that has one (official archives, folders), and what is wrong with it."""
    if not isinstance(getattr(type(src), "devkit", None), cached_property):   # not hasattr: that would load it
        return None, []
    where = str(src.root / DEVKIT_ARCHIVE)
    try:
        kit = src.devkit  # type: ignore[attr-defined]  # the layouts with a devkit, checked above
    except UNREADABLE as e:
        return None, [Problem("error", "devkit", where, str(e))]
    if kit is None:
        missing = Problem("error", "missing", where, "no devkit (archive or extracted folder): val cannot be labelled")
        return None, [missing] if src.layout == "ilsvrc2012" else []
    if expect != "official":
        return kit, []
    official = {c.ilsvrc2012_id: c.wnid for c in catalog.ilsvrc2012()}
    wrong = sorted(i for i in official.keys() | kit.id_to_wnid.keys() if official.get(i) != kit.id_to_wnid.get(i))
    if wrong:
        return kit, [Problem("error", "devkit", kit.origin, f"meta.mat maps {len(wrong)} ILSVRC2012_IDs unlike the "
                             f"official devkit, e.g. ID {wrong[0]} -> {kit.id_to_wnid.get(wrong[0])} "
                             f"(official {official.get(wrong[0])})")]
    return kit, []


# ---- a scanned split against what it should hold --------------------------------------------------------------

def check_split(split: str, tally: Tally, expected: Expected, home: str) -> list[Problem]:
    """The split's classes, per-class counts, file names and labels against ``expected``."""
    problems = []
    counts = expected.counts.get(split)
    for wnid, n in sorted((w, n) for w, n in tally.classes.items() if w is not None):
        if not expected.known(wnid):
            problems.append(Problem("error", "unknown_class", class_where(home, split, wnid),
                                    f"{wnid}: {n:,} images of a class not in {expected.family}"))
        elif counts is not None and n != counts.get(wnid, 0):
            problems.append(Problem("error", "count", class_where(home, split, wnid),
                                    f"{wnid}: {n:,} {split} images, expected {counts.get(wnid, 0):,}"))
    for wnid, n in sorted((counts or {}).items()):
        if n and wnid not in tally.classes:
            problems.append(Problem("error", "missing_class", class_where(home, split, wnid),
                                    f"{wnid}: missing ({n:,} {split} images expected)"))
    for wnid in sorted(expected.required.get(split, frozenset()) - tally.classes.keys()):
        problems.append(Problem("error", "missing_class", class_where(home, split, wnid),
                                f"{wnid}: missing (the set has images of this class)"))
    if tally.classes[None] and split not in expected.unlabelled:
        problems.append(Problem("error", "unlabelled", home, f"{tally.classes[None]:,} {split} images have no label"))
    total = expected.totals.get(split)
    if total is not None and tally.images != total:
        problems.append(Problem("error", "count", home, f"{tally.images:,} {split} images, expected {total:,}"))
    return problems + _check_release(split, tally, expected.releases.get(split, ()), home) + \
        _check_names(split, tally, expected, home)


def _check_release(split: str, tally: Tally, releases: tuple[catalog.Release, ...], home: str) -> list[Problem]:
    """The split's class and image totals against the release with that many classes (ImageNet-21k, whose
    per-class counts are not published); a count no release has is a subset or an incomplete copy."""
    if not releases:
        return []
    classes = len(tally.classes.keys() - {None})
    release = next((r for r in releases if r.classes == classes), None)
    if release is None:
        known = ", ".join(f"{r.name} has {r.classes:,}" for r in releases)
        return [Problem("error", "count", home, f"{classes:,} {split} classes; of the official releases, {known} "
                        "(a subset or an incomplete copy: --expect self checks it as it is)")]
    if tally.images < release.images or (tally.images > release.images and not release.images_at_least):
        bound = "at least " if release.images_at_least else ""
        return [Problem("error", "count", home, f"{tally.images:,} {split} images; the {release.name} release has "
                        f"{bound}{release.images:,}")]
    return []


def _check_names(split: str, tally: Tally, expected: Expected, home: str) -> list[Problem]:
    """Missing and unexpected file names (a few named, all counted), and each wrong label."""
    problems = []
    names = expected.names.get(split)
    if names is not None:
        for kind, found, whole in (("missing", names - tally.names.keys(), len(names)),
                                   ("unexpected", tally.names.keys() - names, len(tally.names))):
            if found:
                problems.append(Problem("error", kind, home, f"{len(found):,} of {whole:,} {split} files "
                                        f"{kind}, e.g. {', '.join(sorted(found)[:5])}"))
    labels = expected.labels.get(split, {})
    for name, wnid in sorted(tally.names.items()):
        if wnid is not None and labels.get(name, wnid) != wnid:
            problems.append(Problem("error", "label", inside(home, name), f"labelled {wnid}, expected {labels[name]}"))
    return problems
