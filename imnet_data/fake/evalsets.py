"""Fakes of the evaluation sets, byte-compatible with the archives as they ship: ``imagenet-a.tar`` and
``imagenet-r.tar`` (``<set>/README.txt`` and ``<set>/<wnid>/*.jpg``), ``ImageNet-Sketch.zip``
(``sketch/<wnid>/*.JPEG``), the three ``imagenetv2-<variant>.tar.gz`` (``imagenetv2-<variant>-format-val/<i>/*.jpeg``,
folders named by the 1k index) and ImageNet-C's family tars (``noise.tar``: ``<corruption>/<severity>/<wnid>/
ILSVRC2012_val_%08d.JPEG``, the real val file names of the chosen classes).

Each image carries a code of two class indices (:mod:`imnet_data.fake.coded`): mostly its own class first, else
another one (for ImageNet-A and -R often one outside the set's 200, so scoring with and without the set's class mask
differ). The truth says, per split and file (as the readers name it: ``<wnid>_<file>``, ImageNet-C the val name),
its WNID, 1k label, the two drawn classes and sha256. ``val_images`` images per split, spread over the classes;
``classes`` a count (drawn from the set's classes) or WNIDs. Same options, same bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from imnet_data import catalog, tario
from imnet_data.errors import UsageError
from imnet_data.fake.coded import CodedSpec, draw
from imnet_data.fake.geometry import image_size
from imnet_data.fake.options import FakeOptions, FakeResult
from imnet_data.fake.plan import rng_for
from imnet_data.fake.truth import FORMAT_VERSION, _md5
from imnet_data.parallel import map_units
from imnet_data.sources.evalsets import V2_VARIANTS
from imnet_data.sources.imagenet_c import FAMILIES, SEVERITIES, split_name

R_STYLES = ("art", "cartoon", "deviantart", "embroidery", "graffiti", "graphic", "misc", "origami", "painting",
            "sculpture", "sketch", "sticker", "tattoo", "toy", "videogame")
ZIP_DATE = (2019, 5, 13, 0, 0, 0)
Member = tuple[str, CodedSpec, str, str]   # archive member, what to draw, the reader's name, WNID


def _options(options: FakeOptions, layout: str) -> None:
    """UsageError for an option the evaluation fakes do not have (silently ignored, it would mislead)."""
    asked = [f for f in ("with_quirks", "with_faults", "bbox", "kaggle") if getattr(options, f)]
    if asked:
        raise UsageError(f"--{asked[0].replace('_', '-')} is for the ilsvrc2012 fake, not {layout}")


def classes_of(options: FakeOptions, pool: tuple[str, ...], layout: str) -> list[str]:
    """The faked classes, sorted: ``options.classes`` WNIDs (each in ``pool``) or a seeded sample of ``pool``."""
    _options(options, layout)
    if not isinstance(options.classes, int):
        outside = [w for w in options.classes if w not in pool]
        if outside:
            raise UsageError(f"{outside[0]} is not one of the {len(pool)} {layout} classes")
        return sorted(options.classes)
    if options.classes > len(pool):
        raise UsageError(f"{layout} has {len(pool)} classes, fewer than --classes {options.classes}")
    rng = rng_for(options.seed, layout, "classes")
    return sorted(pool[i] for i in rng.choice(len(pool), options.classes, replace=False))


def drawn(rng: np.random.Generator, label: int, outside: tuple[int, ...], right: float) -> tuple[int, int]:
    """Two distinct classes to draw on an image of class ``label``: ``label`` first with probability ``right``,
    else another (half the time one of ``outside``, the classes outside the set's, when it has fewer than 1000);
    the second is ``label`` half the time the first is not, else any other."""
    if rng.random() < right:
        first = label
    elif outside and rng.random() < 0.5:
        first = outside[int(rng.integers(len(outside)))]
    else:
        first = (label + 1 + int(rng.integers(999))) % 1000
    if first != label and rng.random() < 0.5:
        return first, label
    return first, (first + 1 + int(rng.integers(999))) % 1000


def spread(classes: list[str], count: int) -> Iterator[tuple[str, int]]:
    """``(wnid, k)`` for ``count`` images over ``classes`` round-robin, ``k`` the image's number in its class."""
    seen: dict[str, int] = {}
    for i in range(count):
        wnid = classes[i % len(classes)]
        seen[wnid] = seen.get(wnid, -1) + 1
        yield wnid, seen[wnid]


def _spec(options: FakeOptions, key: tuple, name: str, wnid: str, outside: tuple[int, ...] = (),
          right: float = 0.6, side: tuple[int, int] | None = None, corruption: str = "", severity: int = 0
          ) -> CodedSpec:
    """What to draw for one image, from its own seeded stream (``key``): a picture of ``wnid``, ``side`` pixels
    per side (a range; default: 64..128 for the ``tiny`` profile, ImageNet's sizes for ``imagenet``), and the
    code (:func:`drawn`)."""
    rng = rng_for(options.seed, *key)
    label = catalog.ilsvrc2012().wnid_to_index(wnid)
    if side is None and options.profile == "imagenet":
        size = image_size("imagenet", rng)
    else:
        low, high = side or (64, 129)
        size = (int(rng.integers(low, high)), int(rng.integers(low, high)))
    return CodedSpec(name, wnid, size, int(rng.integers(2**63)), drawn(rng, label, outside, right), options.profile,
                     corruption, severity)


def _render(members: list[Member], quiet: bool) -> list[bytes]:
    jobs = None if len(members) >= 400 else 1
    return list(map_units(draw, [m[1] for m in members], jobs=jobs, desc="draw", unit="img", quiet=quiet))


def _truth_entries(members: list[Member], data: list[bytes]) -> dict[str, dict]:
    one_k = catalog.ilsvrc2012()
    return {name: {"wnid": wnid, "label": one_k.wnid_to_index(wnid), "drawn": list(spec.drawn),
                   "sha256": hashlib.sha256(blob).hexdigest()}
            for (_, spec, name, wnid), blob in zip(members, data, strict=True)}


def _result(out: Path, layout: str, options: FakeOptions, archives: dict[str, Path], splits: dict[str, dict],
            mask: tuple[int, ...] | None) -> FakeResult:
    settings = dataclasses.asdict(options)
    if not isinstance(options.classes, int):
        settings["classes"] = list(options.classes)
    truth = {"format_version": FORMAT_VERSION, "layout": layout, "options": settings,
             "mask": list(mask) if mask is not None else None, "splits": splits,
             "archives": {role: {"name": p.name, "md5": _md5(p), "size": p.stat().st_size}
                          for role, p in sorted(archives.items())}}
    return FakeResult(out, archives, truth)


def _write_tar(path: Path, members: list[Member], data: list[bytes], extra: dict[str, bytes],
               compress: bool = False) -> None:
    with tario.atomic_tar(path, compress=compress) as tar:
        for name, blob in sorted(extra.items()):
            tario.add_bytes(tar, name, blob)
        for (member, *_), blob in sorted(zip(members, data, strict=True), key=lambda m: m[0][0]):
            tario.add_bytes(tar, member, blob)


def _make_class_set(out: Path, options: FakeOptions, layout: str, quiet: bool,
                    file_name: Callable[[np.random.Generator, str, int], str]) -> FakeResult:
    """ImageNet-A or -R: ``<layout>.tar`` of ``<layout>/README.txt`` and ``<layout>/<wnid>/<file>``."""
    pool = tuple(catalog.subset(layout)[1])
    wnids = classes_of(options, pool, layout)
    mask = tuple(sorted(catalog.ilsvrc2012().wnid_to_index(w) for w in pool))
    outside = tuple(sorted(set(range(1000)) - set(mask)))
    members = []
    for wnid, k in spread(wnids, options.val_images):
        file = file_name(rng_for(options.seed, layout, "name", wnid, k), wnid, k)
        spec = _spec(options, (layout, wnid, k), file, wnid, outside)
        members.append((f"{layout}/{wnid}/{file}", spec, f"{wnid}_{file}", wnid))
    data = _render(members, quiet)
    readme = ("This is a fake of " + layout + " made by imnet-data for tests.\n" + "\n" * 11 +
              "".join(f"{w} {catalog.synset_words(w).split(',')[0]}\n" for w in pool)).encode()
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / f"{layout}.tar"
    _write_tar(path, members, data, {f"{layout}/README.txt": readme})
    return _result(Path(out), layout, options, {"val": path}, {"val": _truth_entries(members, data)}, mask)


def _a_name(rng: np.random.Generator, wnid: str, k: int) -> str:
    """Like ImageNet-A's names: ``0.<6 digits>_<class> _ <class>_<confidence>.jpg`` (spaces included)."""
    word = catalog.ilsvrc2012()[int(rng.integers(1000))].name
    return f"0.{k:03d}{int(rng.integers(1000)):03d}_{word} _ {word}_{rng.random():.7f}.jpg"


def make_imagenet_a(out: Path, options: FakeOptions, *, quiet: bool = False) -> FakeResult:
    """A fake ``imagenet-a.tar``."""
    return _make_class_set(out, options, "imagenet-a", quiet, _a_name)


def make_imagenet_r(out: Path, options: FakeOptions, *, quiet: bool = False) -> FakeResult:
    """A fake ``imagenet-r.tar`` (names like ImageNet-R's: ``<rendition>_<n>.jpg``, repeated across classes)."""
    return _make_class_set(out, options, "imagenet-r", quiet,
                           lambda rng, wnid, k: f"{R_STYLES[k % len(R_STYLES)]}_{k}.jpg")


def make_imagenet_sketch(out: Path, options: FakeOptions, *, quiet: bool = False) -> FakeResult:
    """A fake ``ImageNet-Sketch.zip``: ``sketch/<wnid>/sketch_<n>.JPEG``."""
    wnids = classes_of(options, catalog.ilsvrc2012().wnids, "imagenet-sketch")
    members = [(f"sketch/{wnid}/sketch_{k}.JPEG", _spec(options, ("sketch", wnid, k), f"sketch_{k}.JPEG", wnid),
                f"{wnid}_sketch_{k}.JPEG", wnid) for wnid, k in spread(wnids, options.val_images)]
    data = _render(members, quiet)
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / "ImageNet-Sketch.zip"
    folders = sorted({m[0].rsplit("/", 1)[0] + "/" for m in members} | {"sketch/"})
    with tario.atomic_file(path) as f, zipfile.ZipFile(f, "w") as zf:
        for name, blob in [(d, None) for d in folders] + sorted((m[0], b) for m, b in zip(members, data, strict=True)):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.create_system = 3
            info.external_attr = (0o40755 << 16 | 0x10) if blob is None else 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED if blob is None else zipfile.ZIP_DEFLATED
            zf.writestr(info, blob or b"")
    return _result(Path(out), "imagenet-sketch", options, {"val": path}, {"val": _truth_entries(members, data)}, None)


def make_imagenet_v2(out: Path, options: FakeOptions, *, quiet: bool = False) -> FakeResult:
    """The three fake ``imagenetv2-<variant>.tar.gz``, folders ``0``..``999`` by class index, ``<hash>.jpeg``."""
    wnids = classes_of(options, catalog.ilsvrc2012().wnids, "imagenet-v2")
    index = catalog.ilsvrc2012().wnid_to_index
    archives, splits = {}, {}
    Path(out).mkdir(parents=True, exist_ok=True)
    for variant in V2_VARIANTS:
        top, members = f"imagenetv2-{variant}-format-val", []
        for wnid, k in spread(wnids, options.val_images):
            file = hashlib.sha1(repr((options.seed, variant, wnid, k)).encode()).hexdigest() + ".jpeg"
            spec = _spec(options, ("v2", variant, wnid, k), file, wnid)
            members.append((f"{top}/{index(wnid)}/{file}", spec, f"{wnid}_{file}", wnid))
        data = _render(members, quiet)
        archives[variant] = Path(out) / f"imagenetv2-{variant}.tar.gz"
        _write_tar(archives[variant], members, data, {}, compress=True)
        splits[variant] = _truth_entries(members, data)
    return _result(Path(out), "imagenet-v2", options, archives, splits, None)


def make_imagenet_c(out: Path, options: FakeOptions, *, quiet: bool = False,
                    families: tuple[str, ...] = ("noise",)) -> FakeResult:
    """ImageNet-C's family tars (default ``noise.tar``): every corruption of the family at severities 1..5, each
    holding the same val images (real names and labels of the chosen classes), 224 x 224 as the real ones; the
    code's first class is right less often as the severity grows."""
    wnids = classes_of(options, catalog.ilsvrc2012().wnids, "imagenet-c")
    quota = dict.fromkeys(wnids, 0)
    for wnid, _ in spread(wnids, options.val_images):
        quota[wnid] += 1
    cat, names = catalog.ilsvrc2012(), []
    for number, devkit_id in enumerate(catalog.val_ground_truth(), 1):
        wnid = cat.by_ilsvrc2012_id(devkit_id).wnid
        if quota.get(wnid):
            quota[wnid] -= 1
            names.append((f"ILSVRC2012_val_{number:08d}.JPEG", wnid))
    archives: dict[str, Path] = {}
    splits: dict[str, dict] = {}
    Path(out).mkdir(parents=True, exist_ok=True)
    for family in families:
        members = []
        for corruption in FAMILIES[family]:
            for severity in SEVERITIES:
                split = split_name(corruption, severity)
                members += [(f"{corruption}/{severity}/{wnid}/{name}",
                             _spec(options, ("c", split, name), name, wnid, right=0.95 - 0.1 * severity,
                                   side=(224, 225), corruption=corruption, severity=severity), name, wnid)
                            for name, wnid in names]
        data = _render(members, quiet)
        archives[family] = Path(out) / f"{family}.tar"
        _write_tar(archives[family], members, data, {})
        for member, blob in zip(members, data, strict=True):
            name, level = member[0].split("/")[:2]
            splits.setdefault(split_name(name, int(level)), {}).update(_truth_entries([member], [blob]))
    return _result(Path(out), "imagenet-c", options, archives, splits, None)
