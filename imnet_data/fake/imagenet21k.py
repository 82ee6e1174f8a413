"""A fake ImageNet-21k download: ``fall11_whole.tar`` (or ``winter21_whole.tar.gz``), a tar of ``<wnid>.tar``
inner tars of ``<wnid>_<n>.JPEG``, with real fall11 WNIDs, half of them outside the ILSVRC2012 1000 so that
readers cannot assume the 1k classes. Same arguments, same bytes (seeded choices, fixed tar headers).
"""
from __future__ import annotations

from pathlib import Path

from imnet_data import catalog, tario
from imnet_data.errors import UsageError
from imnet_data.fake.geometry import image_size, object_boxes
from imnet_data.fake.plan import MAX_TRAIN_NUMBER, rng_for
from imnet_data.fake.tiny_imagenet import draw_jpeg

ARCHIVE = {False: "fall11_whole.tar", True: "winter21_whole.tar.gz"}


def make_fake_imagenet21k(out: Path, classes: int = 5, per_class: int = 4, seed: int = 0,
                          compressed: bool = False) -> Path:
    """Write ``OUT/fall11_whole.tar`` (``compressed``: ``OUT/winter21_whole.tar.gz``) and return its path."""
    if classes < 1 or per_class < 1:
        raise UsageError("classes and per_class must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ARCHIVE[compressed]
    with tario.atomic_tar(path, compress=compressed) as tar:
        for wnid in fake_classes(classes, seed):
            tario.add_bytes(tar, f"{wnid}.tar", tario.tar_bytes(_images(wnid, per_class, seed)))
    return path


def fake_classes(count: int, seed: int) -> list[str]:
    """``count`` seeded fall11 WNIDs, sorted: ``count // 2`` ILSVRC2012 classes, the rest from outside them."""
    ilsvrc = set(catalog.ilsvrc2012().wnids)
    fall11 = catalog.imagenet21k("fall11")
    inside, outside = [w for w in fall11 if w in ilsvrc], [w for w in fall11 if w not in ilsvrc]
    rng = rng_for(seed, "imagenet21k", "classes")
    picked = [inside[i] for i in rng.choice(len(inside), count // 2, replace=False)]
    picked += [outside[i] for i in rng.choice(len(outside), count - count // 2, replace=False)]
    return sorted(picked)


def _images(wnid: str, count: int, seed: int) -> list[tuple[str, bytes]]:
    """The class's ``(name, JPEG)`` members, sorted by name; a class outside the 1000 borrows the colours and
    pattern of a seeded ILSVRC2012 class (the ``tiny`` renderer styles images by ILSVRC2012 class)."""
    rng = rng_for(seed, "imagenet21k", wnid)
    wnids = catalog.ilsvrc2012().wnids
    style = wnid if wnid in wnids else wnids[int(rng.integers(len(wnids)))]
    numbers = rng.choice(MAX_TRAIN_NUMBER, count, replace=False) + 1
    out = []
    for name in sorted(f"{wnid}_{n}.JPEG" for n in numbers):
        size = image_size("tiny", rng)
        out.append((name, draw_jpeg(name, style, size, object_boxes(rng, *size), int(rng.integers(2**63)))))
    return out
