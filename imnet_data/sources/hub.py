"""What the Hugging Face hub copies of ILSVRC2012 (``ILSVRC/imagenet-1k``) share, whichever form a user has:
where a download lies, and what its file names say.

``huggingface-cli download`` / ``snapshot_download`` leave either a plain folder (``--local-dir``) or the hub
cache's repository folder ``datasets--ILSVRC--imagenet-1k/`` with ``refs/<branch>`` (a revision) and
``snapshots/<revision>/...`` (symlinks into ``blobs/``): :func:`snapshot` finds the snapshot a branch names.

The repository's images are named after the official files with the class appended:
``n01440764_10026_n01440764.JPEG`` (train), ``ILSVRC2012_val_00000001_n01751748.JPEG`` (val),
``ILSVRC2012_test_00000001.JPEG`` (test, unlabelled). :func:`official_name` gives back the official name (so keys,
``.json`` ``file`` and every check are those of the official archives) and the WNID the name carries. The label
int of the parquet copies is the sorted-WNID index (the repository's ``classes.py`` lists the 1000 WNIDs in
sorted order, its card says so; ``tests/test_hub.py`` checks the order against the catalog).
"""
from __future__ import annotations

import re
from pathlib import Path

from imnet_data.sources.base import SourceError

# the hub's split names -> this tool's (the shards of ``val`` are named as from the official archives)
SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
ORDER = ("train", "val", "test")
NAME = re.compile(r"^(?P<stem>(?P<train>n\d{8})_\d+|ILSVRC2012_val_\d{8}|(?P<test>ILSVRC2012_test_\d{8}))"
                  r"(?:_(?P<wnid>n\d{8}))?\.(?:JPEG|jpeg|jpg|JPG)$")
REPO = "datasets--ILSVRC--imagenet-1k"


def snapshot(path: Path, branch: str) -> Path:
    """The folder to read: ``path`` itself, or, for a hub cache repository folder (``refs/`` + ``snapshots/``),
    the snapshot ``refs/<branch>`` names (``path`` unchanged when it has no such ref)."""
    ref = path / "refs" / branch
    if (path / "snapshots").is_dir() and ref.is_file():
        revision = ref.read_text(errors="replace").strip()
        if re.fullmatch(r"[0-9a-f]{7,64}", revision) and (path / "snapshots" / revision).is_dir():
            return path / "snapshots" / revision
    return path


def official_name(name: str, split: str, origin: str) -> tuple[str, str | None]:
    """``(official file name, WNID the name carries or None)`` of a hub file name (folders dropped); SourceError
    naming ``origin`` for a name that is no ILSVRC2012 image of ``split``, or whose two WNIDs differ."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    match = NAME.match(base)
    kind = "test" if match and match["test"] else "train" if match and match["train"] else "val"
    if not match or kind != split:
        expected = {"train": "<wnid>_<n>_<wnid>.JPEG", "val": "ILSVRC2012_val_<8 digits>_<wnid>.JPEG",
                    "test": "ILSVRC2012_test_<8 digits>.JPEG"}[split]
        raise SourceError(f"{origin}: unexpected file name {name!r} for {split} (expected {expected})")
    wnid = match["wnid"] or match["train"]
    if match["train"] and match["wnid"] and match["wnid"] != match["train"]:
        raise SourceError(f"{origin}: file name {name!r} carries two classes, {match['train']} and {match['wnid']}")
    if kind == "test" and match["wnid"]:
        raise SourceError(f"{origin}: test file name {name!r} carries a class; the test set is unlabelled")
    return f"{match['stem']}.JPEG", wnid


def label_wnid(label: int | None, wnid: str | None, wnids: tuple[str, ...], split: str, origin: str) -> str | None:
    """The class of a parquet row from its ``label`` (the sorted-WNID index; -1 or None: unlabelled) checked
    against the WNID its file name carries; SourceError naming ``origin`` for a label out of range, a
    labelled test row, an unlabelled train or val row, or a label that is not the name's class."""
    if label is None or label == -1:
        if split != "test":
            raise SourceError(f"{origin}: no label (label {label}) in the {split} split")
        return None
    if split == "test":
        raise SourceError(f"{origin}: label {label} in the test split, which is unlabelled (-1)")
    if not 0 <= label < len(wnids):
        raise SourceError(f"{origin}: label {label} is outside 0..{len(wnids) - 1} (the 1000 classes)")
    if wnid is not None and wnids[label] != wnid:
        raise SourceError(f"{origin}: label {label} is {wnids[label]}, but the file name says {wnid}")
    return wnids[label]
