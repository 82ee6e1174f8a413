"""What to fake (``FakeOptions``) and what came out (``FakeResult``), checked up front so a bad request fails
before anything is written."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imnet_data.catalog import ilsvrc2012
from imnet_data.errors import UsageError

PROFILES = ("tiny", "imagenet")


@dataclass(frozen=True)
class FakeOptions:
    """A fake ILSVRC2012 download: which classes, how many images, which extras.

    ``classes`` is a count (a seeded sample of the 1000 classes) or explicit WNIDs (unknown ones raise the
    catalog's ``UnknownClassError``). With ``with_quirks`` and a count, the sample always includes n02105855
    (home of the real PNG-named-.JPEG) and one class of a real CMYK JPEG, so the quirks appear.
    ``val_images`` is the total, spread over the classes as evenly as possible.
    """

    classes: int | tuple[str, ...] = 10
    train_per_class: int = 6
    val_images: int = 20
    seed: int = 0
    profile: str = "tiny"
    with_quirks: bool = False
    with_faults: bool = False
    bbox: bool = False
    kaggle: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.classes, int):
            low = 2 if self.with_quirks else 1
            if not low <= self.classes <= 1000:
                raise UsageError(f"classes must be {low}..1000 (with_quirks needs 2), got {self.classes}")
        else:
            if not self.classes or len(set(self.classes)) != len(self.classes):
                raise UsageError("classes must name at least one WNID, each once")
            for wnid in self.classes:
                ilsvrc2012().by_wnid(wnid)
        if self.train_per_class < 1 or self.val_images < 0:
            raise UsageError("train_per_class must be >= 1 and val_images >= 0")
        if self.profile not in PROFILES:
            raise UsageError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")


@dataclass(frozen=True)
class FakeResult:
    """Where ``make_fake`` wrote: ``archives`` by role (``train``, ``val``, ``devkit``, and ``bbox_train``,
    ``bbox_val``, ``kaggle`` (a folder) when asked) and the expected-truth document."""

    out: Path
    archives: dict[str, Path]
    truth: dict
