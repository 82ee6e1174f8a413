"""The prepared evaluation sets under a folder: every split folder with a manifest, in the folder itself or one
level down (``EVAL/imagenet-a/val/manifest.json``), recognised by its manifest: an evaluation set's ``evaluation``
(set, variant, class mask; written by ``shard`` from the set's archive), or an ImageNet-1k ``val`` split (ImageNet
val, scored with ReaL labels too). Anything else there is listed as skipped, with the reason.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.shards.manifest import MANIFEST, read_manifest
from imnet_data.shards.schema import check_evaluation
from imnet_data.sources import imagenet_c

IMAGENET = "imagenet"   # the ImageNet val split's set name (its ReaL row: "imagenet-real")


@dataclass(frozen=True)
class EvalSplit:
    """One split to score: its set and variant, where its shards are, and how to score it."""

    set: str
    variant: str
    folder: Path
    split: str
    samples: int
    mask: tuple[int, ...] | None = None     # the set's classes as 1k indices: logits restricted to them
    corruption: str | None = None           # ImageNet-C
    severity: int | None = None

    @property
    def real(self) -> bool:
        """Whether the ReaL labels score it too (ImageNet val)."""
        return self.set == IMAGENET

    @property
    def label(self) -> str:
        """The set and variant, for messages."""
        return f"{self.set} {self.variant}".strip()


def find_splits(root: Path, sets: Iterable[str] | None = None, corruptions: Iterable[str] | None = None,
                severities: Iterable[int] | None = None) -> tuple[list[EvalSplit], list[str]]:
    """The splits under ``root`` to score (``sets``: only these sets; ImageNet-C: only ``corruptions`` at
    ``severities``, by :func:`imnet_data.sources.imagenet_c.select`), and a line for each split folder skipped.
    UsageError when nothing is found, or a set named is not there."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    found, skipped = [], []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        for split_folder in sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file()):
            split, why = _split(split_folder)
            (found.append(split) if split else skipped.append(f"{split_folder}: {why}"))
    _no_twice(found)
    wanted = set(sets) if sets else None
    if wanted is not None:
        unknown = sorted(wanted - {s.set for s in found} - {"imagenet-real"})
        if unknown:
            raise UsageError(f"{root}: no prepared {unknown[0]} (found: {', '.join(sorted({s.set for s in found}))})")
        found = [s for s in found if s.set in wanted or (s.real and "imagenet-real" in wanted)]
    if corruptions or severities:
        chosen = set(imagenet_c.select([s.variant for s in found if s.set == "imagenet-c"], corruptions, severities))
        found = [s for s in found if s.set != "imagenet-c" or s.variant in chosen]
    if not found:
        raise UsageError(f"{root}: no prepared evaluation sets (looked for <set>/<split>/{MANIFEST}"
                         + (f"; skipped: {skipped[0]}" if skipped else "") + ")")
    return found, skipped


def _split(folder: Path) -> tuple[EvalSplit | None, str]:
    """The split a shard folder holds, or None and why it is not one to score."""
    try:
        manifest = read_manifest(folder)
        evaluation = check_evaluation(manifest, str(folder / MANIFEST))
    except ValueError as e:
        return None, f"unreadable manifest ({e})"
    if manifest.get("label_space") != "imagenet-1k" or len(manifest["classes"]) != 1000:
        return None, f"labels in {manifest.get('label_space')!r}, not the ImageNet-1k index the sets are scored in"
    split, samples = manifest["split"], manifest["num_samples"]
    if evaluation is None:
        if split != "val":
            return None, f"split {split!r} of a training set (only its val split is scored)"
        return EvalSplit(IMAGENET, "val", folder, split, samples), ""
    mask = evaluation["mask"]
    return EvalSplit(evaluation["set"], evaluation["variant"], folder, split, samples,
                     tuple(mask) if mask is not None else None, evaluation.get("corruption"),
                     evaluation.get("severity")), ""


def _no_twice(found: list[EvalSplit]) -> None:
    """UsageError when one set and variant is found in two folders (which one counts would be a guess)."""
    seen: dict[tuple[str, str], Path] = {}
    for s in found:
        if (s.set, s.variant) in seen:
            raise UsageError(f"{s.label} is prepared twice: {seen[s.set, s.variant]} and {s.folder}; keep one")
        seen[s.set, s.variant] = s.folder
