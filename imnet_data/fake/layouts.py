"""The fake downloads by layout: ``imnet-data fake OUT --layout NAME`` makes the download NAME describes.

Each entry makes one layout's files from :class:`~imnet_data.fake.options.FakeOptions` (the classes, images per
class, seed and profile every fake shares) and returns a :class:`~imnet_data.fake.options.FakeResult` whose
``truth`` says what every file is. Adding a fake layout: a function ``make(out, options, *, quiet)`` in a module of
``imnet_data/fake/`` and one line in :data:`FAKE_LAYOUTS` naming it (``"module:function"``, imported only when
used, so the command line starts without the image code); the ``--layout`` choices of ``imnet-data fake`` come
from here.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imnet_data.fake.options import FakeResult


@dataclass(frozen=True)
class FakeLayout:
    """A fake download: ``make``, ``"module:function"`` writing it (``function(out, options, *, quiet)``); ``about``,
    what it is in one line (``--layout``'s help)."""

    make: str
    about: str

    def load(self) -> Callable[..., FakeResult]:
        """The function, its module imported."""
        module, _, name = self.make.partition(":")
        return getattr(importlib.import_module(module), name)


DEFAULT = "ilsvrc2012"
FAKE_LAYOUTS: dict[str, FakeLayout] = {
    "ilsvrc2012": FakeLayout("imnet_data.fake.make:make_fake", "the official archives: train tar of "
                             "<wnid>.tar, val tar, devkit (default; --bbox and --kaggle add the bbox archives "
                             "and the Kaggle layout)"),
    "hf": FakeLayout("imnet_data.fake.hub:make_hf", "the Hugging Face hub copy: data/train_images_{0..4}.tar.gz, "
                     "val_images.tar.gz, test_images.tar.gz (the official fake's images, hub names)"),
    "hf-parquet": FakeLayout("imnet_data.fake.hub:make_hf_parquet", "the hub copy as parquet (image {bytes, "
                             "path}, label): data/train-00000-of-00002.parquet, validation-..., test-... ('[hf]')"),
    "imagenet-v2": FakeLayout("imnet_data.fake.evalsets:make_imagenet_v2", "ImageNetV2's three "
                              "imagenetv2-<variant>.tar.gz (class folders 0..999); --val-images per variant"),
    "imagenet-a": FakeLayout("imnet_data.fake.evalsets:make_imagenet_a", "imagenet-a.tar (200 classes)"),
    "imagenet-r": FakeLayout("imnet_data.fake.evalsets:make_imagenet_r", "imagenet-r.tar (200 classes)"),
    "imagenet-sketch": FakeLayout("imnet_data.fake.evalsets:make_imagenet_sketch", "ImageNet-Sketch.zip"),
    "imagenet-c": FakeLayout("imnet_data.fake.evalsets:make_imagenet_c", "ImageNet-C's noise.tar (3 corruptions "
                             "x 5 severities; --val-images per corruption and severity)"),
}
