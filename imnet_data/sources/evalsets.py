"""The evaluation sets that ship as class folders, read in place, or the folders they were extracted into.

ImageNet-A and ImageNet-R (``imagenet-a.tar``, ``imagenet-r.tar``: ``imagenet-a/<wnid>/*.jpg`` and a ``README.txt``),
ImageNet-Sketch (``ImageNet-Sketch.zip``: ``sketch/<wnid>/*.JPEG``) and ImageNetV2 (``imagenetv2-<variant>.tar.gz``:
``imagenetv2-<variant>-format-val/<i>/*.jpeg``, folders named by the 1k class index).

A set's classes are checked as they are read: a WNID outside the set's list, or a V2 folder name outside 0..999,
stops the reader naming the member. Labels are WNIDs, so every set shards into the ImageNet-1k label space; the
set's own class subset goes into the manifest (:meth:`ClassFolderSet.evaluation`). File names repeat across class
folders (ImageNet-R's ``art_1.jpg``), so a sample's name is ``<wnid>_<file>``, as ImageNet's train files are named.
"""
from __future__ import annotations

import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imnet_data import catalog
from imnet_data.sources.access import fetch, open_zip
from imnet_data.sources.base import WNID, Entry, Sample, Source, SourceError, Unit, stem
from imnet_data.sources.folders import entries, read_files, regular_files
from imnet_data.sources.ilsvrc import index_tar
from imnet_data.sources.safety import DEFAULT_LIMITS, iter_tar, read_member, safe_name

GZIP_MAGIC = b"\x1f\x8b"
README = "README.txt"


@dataclass(frozen=True)
class Part:
    """One archive of a set, the split it becomes: ``archive`` as the set ships it, ``top`` its top folder (inside
    the archive, or where it was extracted), ``variant`` the set's name for it ("" when the set has one)."""

    split: str
    variant: str
    archive: str
    top: str


class ClassFolderSet(Source):
    """Base of the class-folder sets: subclasses name the set, its parts and its classes."""

    set_name = "?"
    parts: tuple[Part, ...] = ()
    marker: str | None = None           # a file an extracted top folder holds (A and R: README.txt)
    extras: frozenset[str] = frozenset()   # files allowed at the top beside the class folders
    reference = ""                      # where the set is published

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._listed: dict[str, list[Unit]] = {}

    @classmethod
    def classes(cls) -> tuple[str, ...]:
        """The set's WNIDs (default: ImageNet-1k's)."""
        return catalog.ilsvrc2012().wnids

    @classmethod
    def folder_wnid(cls, folder: str, origin: str) -> str:
        """The WNID a class folder's name gives; SourceError naming ``origin`` when it is not one of the set's."""
        if not WNID.match(folder) or folder not in _set_of(cls):
            raise SourceError(f"{origin}: class folder {folder!r} is not one of the {len(cls.classes())} "
                              f"{cls.set_name} classes")
        return folder

    @classmethod
    def detect(cls, path: Path) -> bool:
        """One of the set's archives, a folder holding one or its extracted top folder, or that top folder."""
        return any(_find(cls, path, part) is not None for part in cls.parts)

    @classmethod
    def extracted(cls, folder: Path) -> bool:
        """Whether ``folder`` looks like the set's extracted top folder: its marker file, and a class folder."""
        if not folder.is_dir() or (cls.marker and not (folder / cls.marker).is_file()):
            return False
        with os.scandir(folder) as it:
            return any(e.is_dir(follow_symlinks=False) for e in it)

    def evaluation(self, split: str) -> dict | None:
        """What the manifest records of the set: its name, the variant, and its classes as 1k indices (``mask``;
        None for all 1000), so a scorer restricts the logits as the set's authors do."""
        part = self._part(split)
        wnids = self.classes()
        mask = None if len(wnids) == 1000 else sorted(catalog.ilsvrc2012().wnid_to_index(w) for w in wnids)
        return {"set": self.set_name, "variant": part.variant, "mask": mask, "reference": self.reference}

    def splits(self) -> list[str]:
        """The parts present."""
        return [p.split for p in self.parts if self._where(p) is not None]

    def home(self, split: str) -> str:
        """The part's archive or extracted folder."""
        return str(self._where(self._part(split)) or self.root)

    def _part(self, split: str) -> Part:
        """The part that becomes ``split``; SourceError for a split the set does not have."""
        for part in self.parts:
            if part.split == split:
                return part
        raise SourceError(f"{self.root}: {self.set_name} has no split {split!r} (have {self.splits()})")

    def _where(self, part: Part) -> Path | None:
        """The archive or extracted folder of ``part``; SourceError when a folder holds both (never a guess)."""
        if self.root.is_dir() and (self.root / part.archive).is_file() and \
                type(self).extracted(self.root / part.top):
            raise SourceError(f"{self.root}: holds both {part.archive} and its extracted {part.top}/; point at "
                              "the one to read")
        return _find(type(self), self.root, part)

    def units(self, split: str) -> list[Unit]:
        """One unit per class folder (with its members' offsets or names), or one stream unit for a gzipped
        archive, which cannot be read out of order."""
        if split not in self._listed:
            part = self._part(split)
            path = self._where(part)
            if path is None:
                raise SourceError(f"{self.root}: no {part.archive} nor an extracted {part.top}/ folder")
            self._listed[split] = self._units(split, part, path)
        return self._listed[split]

    def _units(self, split: str, part: Part, path: Path) -> list[Unit]:
        """The units of ``part`` at ``path``: its extracted folder, its zip, its tar or its gzipped tar."""
        if path.is_dir():
            return self._folder_units(split, path)
        if path.suffix == ".zip":
            return self._group(split, part, path, "zip", [(safe_name(zi.filename, str(path)), 0, zi.file_size)
                                                          for zi in open_zip(path).infolist() if not zi.is_dir()])
        with open(path, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                return [Unit(split, path.name, ("stream", str(path), part.top), path.stat().st_size)]
        return self._group(split, part, path, "tar", [(ti.name, ti.offset_data, ti.size) for ti in
                                                      index_tar(path, max_member=DEFAULT_LIMITS.max_image_bytes)])

    def _group(self, split: str, part: Part, path: Path, kind: str, members: list[tuple[str, int, int]]
               ) -> list[Unit]:
        """Units by class folder of an archive's ``(member, offset, size)`` (a zip's offsets: 0, unused), each
        member checked to be ``<top>/<class>/<file>`` (or an allowed file at the top)."""
        classes: dict[str, list[tuple[str, int, int]]] = {}
        for member, offset, size in members:
            wnid = self._member_class(part, member, f"{path}:{member}")
            if wnid is not None:
                classes.setdefault(wnid, []).append((member, offset, size))
        if not classes:
            raise SourceError(f"{path}: holds no {part.top}/<class>/ images")
        return [Unit(split, wnid, (kind, str(path), tuple(sorted(files))), sum(f[2] for f in files))
                for wnid, files in sorted(classes.items())]

    def _member_class(self, part: Part, member: str, origin: str) -> str | None:
        """The WNID of an archive member's class folder; None for an allowed file at the top; else SourceError."""
        parts = member.split("/")
        if parts[0] != part.top:
            raise SourceError(f"{origin}: unexpected member (expected {part.top}/<class>/<file>)")
        if len(parts) == 2 and parts[1] in self.extras:
            return None
        if len(parts) != 3 or not parts[2]:
            raise SourceError(f"{origin}: unexpected member (expected {part.top}/<class>/<file>)")
        return self.folder_wnid(parts[1], origin)

    def _folder_units(self, split: str, top: Path) -> list[Unit]:
        """Units of an extracted top folder: one per class folder; only the allowed files beside them."""
        units = []
        for e in entries(top):
            if not e.is_dir(follow_symlinks=False):
                if e.name not in self.extras:
                    raise SourceError(f"{e.path}: unexpected file (expected only class folders here)")
                continue
            wnid = self.folder_wnid(e.name, e.path)
            files = regular_files(Path(e.path))
            units.append(Unit(split, wnid, ("folder", e.path, tuple(files)), sum(s for _, s in files)))
        if not units:
            raise SourceError(f"{top}: holds no class folders")
        return sorted(units, key=lambda u: u.name)

    def read(self, unit: Unit) -> Iterator[Sample]:
        """The unit's images, labelled by their class folder (a gzipped archive: every image, streamed)."""
        kind, path, *ref = unit.ref
        if kind == "folder":
            for name, data, origin in read_files(path, ref[0]):
                yield Sample(unit.split, stem(name), unit.name, f"{unit.name}_{name}", data, origin)
        elif kind == "stream":
            yield from self._stream(unit, Path(path), self._part(unit.split))
        else:
            for entry, (member, *_) in zip(self.locate(unit), ref[0], strict=True):
                origin = f"{path}:{member}"
                yield Sample(unit.split, stem(entry.name), unit.name, entry.name, fetch(entry.loc, origin), origin)

    def locate(self, unit: Unit) -> Iterator[Entry]:
        """The unit's members as listed (no image read); a gzipped archive has no random access."""
        kind, path, *ref = unit.ref
        if kind == "stream":
            raise SourceError(f"{path}: a gzipped tar has no random access, so it cannot be sharded in place; "
                              f"extract it (tar -xzf {Path(path).name}) and shard the {ref[0]}/ folder it gives")
        if kind == "folder":
            for name, size in ref[0]:
                yield Entry(f"{unit.name}_{name}", unit.name, size, ("range", os.path.join(path, name), 0, size))
            return
        for member, offset, size in ref[0]:
            name = f"{unit.name}_{member.rsplit('/', 1)[-1]}"
            loc = ("range", path, offset, size) if kind == "tar" else ("zip", path, member)
            yield Entry(name, unit.name, size, loc)

    def _stream(self, unit: Unit, path: Path, part: Part) -> Iterator[Sample]:
        """Every image of a gzipped archive, in archive order, each member checked like the others."""
        try:
            with open(path, "rb") as f:
                for info, reader in iter_tar(f, str(path)):
                    member = safe_name(info.name, str(path))
                    origin = f"{path}:{member}"
                    wnid = self._member_class(part, member, origin)
                    if wnid is not None:
                        name = f"{wnid}_{member.rsplit('/', 1)[-1]}"
                        yield Sample(unit.split, stem(name), wnid, name, read_member(reader, info, origin), origin)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise SourceError(f"{path}: truncated or corrupt archive ({e})") from e


_CLASS_SETS: dict[str, frozenset[str]] = {}


def _set_of(cls: type[ClassFolderSet]) -> frozenset[str]:
    """The set's WNIDs as a set (made once per set)."""
    if cls.layout not in _CLASS_SETS:
        _CLASS_SETS[cls.layout] = frozenset(cls.classes())
    return _CLASS_SETS[cls.layout]


def _find(cls: type[ClassFolderSet], path: Path, part: Part) -> Path | None:
    """``part``'s archive or extracted folder at ``path``: the archive itself, the top folder itself, or either
    inside ``path``."""
    if path.is_file():
        return path if path.name == part.archive else None
    if path.name == part.top and cls.extracted(path):
        return path
    if (path / part.archive).is_file():
        return path / part.archive
    return path / part.top if cls.extracted(path / part.top) else None


class ImageNetA(ClassFolderSet):
    """ImageNet-A (Hendrycks et al. 2021, "Natural Adversarial Examples"): 7,500 images of 200 classes."""

    layout = set_name = "imagenet-a"
    about = "ImageNet-A (imagenet-a.tar, or its imagenet-a/ folder with README.txt)"
    parts = (Part("val", "", "imagenet-a.tar", "imagenet-a"),)
    marker, extras = README, frozenset({README})
    reference = "https://github.com/hendrycks/natural-adv-examples"

    @classmethod
    def classes(cls) -> tuple[str, ...]:
        """The set's 200 WNIDs (the catalog's subset of its name)."""
        return tuple(catalog.subset(cls.set_name)[1])


class ImageNetR(ImageNetA):
    """ImageNet-R (Hendrycks et al. 2021, "The Many Faces of Robustness"): 30,000 renditions of 200 classes."""

    layout = set_name = "imagenet-r"
    about = "ImageNet-R (imagenet-r.tar, or its imagenet-r/ folder with README.txt)"
    parts = (Part("val", "", "imagenet-r.tar", "imagenet-r"),)
    reference = "https://github.com/hendrycks/imagenet-r"


class ImageNetSketch(ClassFolderSet):
    """ImageNet-Sketch (Wang et al. 2019): 50,889 sketches of the 1000 classes."""

    layout = set_name = "imagenet-sketch"
    about = "ImageNet-Sketch (ImageNet-Sketch.zip, or a folder holding its extracted sketch/)"
    parts = (Part("val", "", "ImageNet-Sketch.zip", "sketch"),)
    reference = "https://github.com/HaohanWang/ImageNet-Sketch"

    @classmethod
    def extracted(cls, folder: Path) -> bool:
        """A ``sketch/`` folder holding only ImageNet-1k class folders (a ``sketch/`` of other sets' classes, such
        as DomainNet's, is not claimed)."""
        if not folder.is_dir():
            return False
        with os.scandir(folder) as it:
            found = list(it)
        classes = _set_of(cls)
        return bool(found) and all(e.is_dir(follow_symlinks=False) and e.name in classes for e in found)


V2_VARIANTS = ("matched-frequency", "threshold0.7", "top-images")
V2_FOLDER = re.compile(r"^(0|[1-9]\d{0,2})$")


class ImageNetV2(ClassFolderSet):
    """ImageNetV2 (Recht et al. 2019): three test sets of 10,000 images, 10 per class, class folders named by the
    1k index (``0``..``999``: read as text, torchvision's ImageFolder sorts them 0, 1, 10, 100, ...)."""

    layout = set_name = "imagenet-v2"
    about = "ImageNetV2 (imagenetv2-<variant>.tar.gz, or its imagenetv2-<variant>-format-val/ folder)"
    parts = tuple(Part(v, v, f"imagenetv2-{v}.tar.gz", f"imagenetv2-{v}-format-val") for v in V2_VARIANTS)
    reference = "https://github.com/modestyachts/ImageNetV2"

    @classmethod
    def folder_wnid(cls, folder: str, origin: str) -> str:
        """The WNID of class folder ``<i>`` (0..999, written without leading zeros)."""
        if not V2_FOLDER.match(folder):
            raise SourceError(f"{origin}: class folder {folder!r} is not a class index 0..999")
        return catalog.ilsvrc2012().index_to_wnid(int(folder))

    @classmethod
    def extracted(cls, folder: Path) -> bool:
        """A ``-format-val`` folder (its name is the marker) with a class folder."""
        return folder.name.endswith("-format-val") and super().extracted(folder)


__all__ = ["ClassFolderSet", "ImageNetA", "ImageNetR", "ImageNetSketch", "ImageNetV2", "Part"]
