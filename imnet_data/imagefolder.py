"""torchvision's ``ImageFolder`` over ``organize``'s output, with the targets the shards use.

``ImageFolder(DEST/train)`` numbers the class folders it finds 0..K-1: on a class subset that is not the
1000-class sorted-WNID index of ImageNet-1k (the shards' ``.cls``, timm's and torchvision's pretrained heads).
:func:`image_folder` reads ``DEST/class_to_idx.json`` (written by ``organize``; without it, ImageNet-1k's index)::

    from imnet_data.imagefolder import image_folder
    train = image_folder("/data/imagenet/train", transform=...)   # targets: the catalog's class indices
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imnet_data import catalog
from imnet_data.organize import CLASS_INDEX


def class_index(split_folder: Path) -> dict[str, int]:
    """WNID -> index of the ``class_to_idx.json`` beside ``split_folder``, else ImageNet-1k's."""
    path = Path(split_folder).parent / CLASS_INDEX
    if path.is_file():
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    return {c.wnid: c.index for c in catalog.ilsvrc2012()}


def image_folder(split_folder: str | os.PathLike, **kwargs: Any):
    """A ``torchvision.datasets.ImageFolder`` of ``split_folder`` (``DEST/train`` or ``DEST/val``) whose
    ``class_to_idx`` and targets are the label space's indices; ``kwargs`` go to ImageFolder (transform, ...).
    A class folder the index does not know is an error naming it."""
    from torchvision.datasets import ImageFolder

    index = class_index(Path(split_folder))

    class IndexedFolder(ImageFolder):
        def find_classes(self, directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
            unknown = [c for c in classes if c not in index]
            if unknown:
                raise FileNotFoundError(f"{directory}: class folder {unknown[0]} is not in {CLASS_INDEX}")
            return classes, {c: index[c] for c in classes}

    return IndexedFolder(os.fspath(split_folder), **kwargs)
