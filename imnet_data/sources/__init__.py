"""Readers of every ImageNet download layout, yielding samples straight out of the archives or folders.

``open_source(path)`` detects the layout (or takes ``layout=``; a path that fits several is refused, naming
them) and returns a :class:`Source` whose ``units``
workers read in parallel. Layouts:

* ``ilsvrc2012``: the official archives in one folder (train tar of inner tars, val tar, devkit, bbox archives)
* ``folders``: extracted ``train/<wnid>/*.JPEG`` and flat or foldered ``val/`` (+ devkit for flat val), or one
  split's folder of ``<wnid>/`` folders (the split named by the folder, e.g. organize's ``DEST/train``)
* ``kaggle``: ``ILSVRC/Data/CLS-LOC/{train,val}`` with ``LOC_val_solution.csv`` and ``LOC_synset_mapping.txt``
* ``imagenet21k``: ``winter21_whole.tar.gz`` / ``fall11_whole.tar`` (a tar of ``<wnid>.tar``), or its folder
  (``<wnid>.tar`` files, or ``<wnid>/`` folders not all ImageNet-1k classes)
* ``tiny``: ``tiny-imagenet-200.zip`` or its folder
* ``hf``: the Hugging Face hub copy's ``data/train_images_{0..4}.tar.gz``, ``val_images.tar.gz``,
  ``test_images.tar.gz`` (a folder, or the hub cache's repository folder)
* ``hf-parquet``: parquet copies of it (the hub's ``refs/convert/parquet`` or a full re-upload)
* the evaluation sets: ``imagenet-v2``, ``imagenet-a``, ``imagenet-r``, ``imagenet-sketch`` (archives as they
  ship, or their extracted folders, see :mod:`.evalsets`) and ``imagenet-c`` (the family tars, :mod:`.imagenet_c`)

Worker processes get a download as a :class:`SourceRef` (root, layout and run: small and picklable), never as a
reader: :meth:`SourceRef.open` opens the reader once per process and run.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.sources.base import Box, Entry, Sample, Source, SourceError, Unit
from imnet_data.sources.evalsets import ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2
from imnet_data.sources.folders import Folders
from imnet_data.sources.hf import HubArchives
from imnet_data.sources.hf_parquet import HubParquet
from imnet_data.sources.ilsvrc import IlsvrcArchives
from imnet_data.sources.imagenet21k import ImageNet21k
from imnet_data.sources.imagenet_c import ImageNetC
from imnet_data.sources.kaggle import Kaggle
from imnet_data.sources.tiny import TinyImageNet

# The layouts by name; detection asks every one and takes the only one that fits.
READERS: dict[str, type[Source]] = {"ilsvrc2012": IlsvrcArchives, "kaggle": Kaggle, "tiny": TinyImageNet,
                                    "imagenet21k": ImageNet21k, "folders": Folders, "hf": HubArchives,
                                    "hf-parquet": HubParquet, "imagenet-v2": ImageNetV2, "imagenet-a": ImageNetA,
                                    "imagenet-r": ImageNetR, "imagenet-sketch": ImageNetSketch,
                                    "imagenet-c": ImageNetC}


def detect_layout(path: Path) -> str:
    """The layout name of a download, or UsageError (exit 2) saying what was looked for: when no layout fits
    (the argument is not a download), and when several do, naming each with the ``--layout`` that picks it
    (never a guess: a wrong layout reads the right files with the wrong labels)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    fits = [name for name, reader in READERS.items() if reader.detect(path)]
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise UsageError(f"{path} fits {len(fits)} layouts, and read as the wrong one its labels would be wrong; "
                         "name one: " + " | ".join(f"--layout {name}: {READERS[name].about}" for name in fits))
    raise UsageError(f"{path}: not a known ImageNet layout (looked for {', '.join(READERS)}); name one with --layout")


def open_source(path: Path, layout: str | None = None) -> Source:
    """A reader for the download at ``path`` (UsageError for a path that is none, or an unknown layout)."""
    name = layout or detect_layout(path)
    if name not in READERS:
        raise UsageError(f"unknown layout {name!r} (known: {', '.join(READERS)})")
    if not Path(path).exists():
        raise UsageError(f"{path}: no such file or folder")
    return READERS[name](Path(path))


@dataclass(frozen=True)
class SourceRef:
    """A download as worker processes receive it: where it is, its layout, and the run it belongs to (a new
    one per reference made), so a process that serves several runs (a Ray worker, a test) never reuses the
    reader of an earlier run, whose cached devkit or file index may describe other files."""

    root: str
    layout: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def of(cls, source: Source) -> SourceRef:
        """A new run's reference to ``source``, already open: this process, and the workers it forks, use it as
        it is (its devkit and indexes parsed once); other processes open their own."""
        ref = cls(str(source.root), source.layout)
        _hold(ref, source)
        return ref

    def open(self) -> Source:
        """The reader, opened once per process for this run."""
        if self not in _OPEN:
            _hold(self, open_source(Path(self.root), self.layout))
        return _OPEN[self]


_OPEN: dict[SourceRef, Source] = {}   # this process's reader of the latest run


def _hold(ref: SourceRef, source: Source) -> None:
    """Keep ``source`` as this process's reader of ``ref``'s run; the reader of an earlier run is let go (its
    devkit or file index may be large)."""
    _OPEN.clear()
    _OPEN[ref] = source


__all__ = ["Box", "Entry", "Sample", "Source", "SourceError", "SourceRef", "Unit", "detect_layout", "open_source",
           "READERS"]
