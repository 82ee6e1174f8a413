"""The plan of a fake download: every file's name, class, kind, size, boxes and pixel seed, decided before any
pixel is drawn, so archives, annotations, the Kaggle layout and the truth document all follow from one source.

Every random choice comes from its own stream keyed by (seed, purpose), so one choice never shifts another.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from imnet_data.catalog import SynsetClass, ilsvrc2012, known_quirks
from imnet_data.fake.defects import FAULT_KINDS, Key, place_defects
from imnet_data.fake.geometry import Box, image_size, object_boxes
from imnet_data.fake.options import FakeOptions

MAX_TRAIN_NUMBER = 30000  # real train file numbers are sparse, up to about this


@dataclass(frozen=True)
class ImageSpec:
    """One file to write. ``boxes`` are the drawn objects; ``annotated`` says whether a bbox XML describes them.
    A ``duplicate`` repeats the bytes (and so the size and boxes) of ``source``."""

    split: str
    name: str
    wnid: str
    kind: str
    size: tuple[int, int]
    boxes: tuple[Box, ...]
    annotated: bool
    seed: int
    source: ImageSpec | None = None

    @property
    def stem(self) -> str:
        """The name without ``.JPEG``, as bbox XMLs and Kaggle lists spell it."""
        return self.name[: -len(".JPEG")]


@dataclass(frozen=True)
class Plan:
    """All files of one fake download: ``train`` sorted by name (so grouped by class), ``val`` in file order."""

    options: FakeOptions
    classes: tuple[SynsetClass, ...]
    train: tuple[ImageSpec, ...]
    val: tuple[ImageSpec, ...]


def rng_for(seed: int, *purpose: object) -> np.random.Generator:
    """An independent random stream for ``purpose`` under ``seed``."""
    digest = hashlib.sha256(repr((seed, *purpose)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def make_plan(options: FakeOptions) -> Plan:
    """Decide every file of the fake download described by ``options``."""
    classes = select_classes(options)
    train = {c.wnid: _train_names(options, c.wnid) for c in classes}
    val = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": w for i, w in enumerate(_val_wnids(options, classes))}
    kinds, sources = place_defects(rng_for(options.seed, "defects"), train, val, quirks=options.with_quirks,
                                   faults=options.with_faults)
    specs: dict[Key, ImageSpec] = {}
    for key in [("train", n) for w in sorted(train) for n in train[w]] + [("val", n) for n in val]:
        if key not in sources:
            specs[key] = _spec(options, key, val.get(key[1], key[1].split("_")[0]), kinds.get(key, "jpeg"))
    for key, source in sorted(sources.items()):
        specs[key] = _duplicate(key, specs[source])
    return Plan(options, classes, _annotate_train(options, specs), tuple(specs[("val", n)] for n in val))


def select_classes(options: FakeOptions) -> tuple[SynsetClass, ...]:
    """The faked classes in sorted-WNID order (see ``FakeOptions`` for how a count is sampled)."""
    catalog = ilsvrc2012()
    if not isinstance(options.classes, int):
        return tuple(sorted((catalog.by_wnid(w) for w in options.classes), key=lambda c: c.wnid))
    rng = rng_for(options.seed, "classes")
    chosen: list[str] = []
    if options.with_quirks:
        cmyk = sorted({n.split("_")[0] for n in known_quirks()["cmyk"]})
        chosen = [next(iter(known_quirks()["png"])).split("_")[0], cmyk[int(rng.integers(len(cmyk)))]]
    rest = [w for w in catalog.wnids if w not in chosen]
    chosen += [rest[i] for i in rng.choice(len(rest), options.classes - len(chosen), replace=False)]
    return tuple(sorted((catalog.by_wnid(w) for w in chosen), key=lambda c: c.wnid))


def _train_names(options: FakeOptions, wnid: str) -> list[str]:
    """Distinct sparse numbers like the real ones; the real quirk files of this class keep their real names."""
    quirks = sorted(n for names in known_quirks().values() for n in names if n.startswith(wnid + "_"))
    forced = [int(n[len(wnid) + 1: -len(".JPEG")]) for n in quirks] if options.with_quirks else []
    drawn = rng_for(options.seed, "train", wnid).choice(MAX_TRAIN_NUMBER, options.train_per_class, replace=False)
    picked = [n + 1 for n in drawn.tolist() if n + 1 not in forced][: options.train_per_class - len(forced)]
    return sorted(f"{wnid}_{n}.JPEG" for n in forced + picked)


def _val_wnids(options: FakeOptions, classes: tuple[SynsetClass, ...]) -> list[str]:
    """The class of each val image: as even as possible over the classes (the remainder to random classes),
    in a seeded random order."""
    rng = rng_for(options.seed, "val")
    order = [classes[i].wnid for i in rng.permutation(len(classes))]
    labels = [order[i % len(order)] for i in range(options.val_images)]
    return [labels[i] for i in rng.permutation(len(labels))]


def _spec(options: FakeOptions, key: Key, wnid: str, kind: str) -> ImageSpec:
    rng = rng_for(options.seed, "image", *key)
    size = image_size(options.profile, rng)
    seed = int(rng.integers(2**63))
    return ImageSpec(key[0], key[1], wnid, kind, size, object_boxes(rng, *size), key[0] == "val", seed)


def _duplicate(key: Key, source: ImageSpec) -> ImageSpec:
    return ImageSpec(key[0], key[1], source.wnid, "duplicate", source.size, source.boxes, key[0] == "val",
                     source.seed, source)


def _annotate_train(options: FakeOptions, specs: dict[Key, ImageSpec]) -> tuple[ImageSpec, ...]:
    """Train images with a bbox XML: half of each class's decodable images (rounded up), seeded."""
    by_class: dict[str, list[ImageSpec]] = {}
    for key, spec in specs.items():
        if key[0] == "train":
            by_class.setdefault(spec.wnid, []).append(spec)
    out = []
    for wnid, own in sorted(by_class.items()):
        eligible = [s.name for s in own if s.kind not in FAULT_KINDS]
        order = rng_for(options.seed, "bbox", wnid).permutation(len(eligible))
        keep = {eligible[i] for i in order[: (len(eligible) + 1) // 2]}
        out += [replace(s, annotated=s.name in keep) for s in own]
    return tuple(sorted(out, key=lambda s: s.name))
