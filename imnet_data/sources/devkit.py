"""The ILSVRC2012 devkit: ``meta.mat`` (devkit ID -> WNID) and the val ground truth (devkit IDs, one per val
image), read from ``ILSVRC2012_devkit_t12.tar.gz`` or an extracted ``ILSVRC2012_devkit_t12/`` folder.

The ground truth is in devkit ID order, not sorted-WNID order: mapping it through meta.mat is the step ad-hoc
valprep scripts get wrong, so it lives here once.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from imnet_data.sources.base import SourceError
from imnet_data.sources.safety import DEVKIT_LIMITS, read_member, tar_members

META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
FOLDER = "ILSVRC2012_devkit_t12"


@dataclass(frozen=True)
class Devkit:
    """What the devkit says: leaf classes by devkit ID, their train counts, and each val image's WNID."""

    id_to_wnid: dict[int, str]
    num_train_images: dict[str, int]
    val_wnids: tuple[str, ...]      # val_wnids[i] labels ILSVRC2012_val_%08d.JPEG with number i + 1
    origin: str

    def val_wnid(self, number: int, origin: str) -> str:
        """The WNID of val image ``number`` (1-based), or SourceError naming the file."""
        if not 1 <= number <= len(self.val_wnids):
            raise SourceError(f"{origin}: val image number {number} is outside the devkit ground truth "
                              f"(1..{len(self.val_wnids)}, {self.origin})")
        return self.val_wnids[number - 1]


def parse(meta_mat: bytes, ground_truth: bytes, origin: str) -> Devkit:
    """Parse the two devkit files (bytes) into a :class:`Devkit`."""
    try:
        import scipy.io  # here, not at the top: 0.2 s of import that only a devkit read needs

        synsets = scipy.io.loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
        leaves = [s for s in synsets if int(s["num_children"]) == 0]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
        counts = {str(s["WNID"]): int(s["num_train_images"]) for s in leaves}
    except Exception as e:  # noqa: BLE001 -- damaged bytes make scipy raise many types (OSError, zlib.error, ...)
        raise SourceError(f"{origin}: {META} is not a devkit meta.mat ({str(e) or type(e).__name__})") from e
    try:
        ids = [int(line) for line in ground_truth.decode("ascii").split()]
    except (UnicodeDecodeError, ValueError) as e:
        raise SourceError(f"{origin}: {GROUND_TRUTH} is not a list of class IDs ({e})") from e
    unknown = sorted(set(ids) - set(id_to_wnid))
    if unknown:
        raise SourceError(f"{origin}: {GROUND_TRUTH} has IDs {unknown[:5]} that meta.mat does not define")
    return Devkit(id_to_wnid, counts, tuple(id_to_wnid[i] for i in ids), origin)


def load(root: Path) -> Devkit | None:
    """The devkit found in ``root`` (archive or extracted folder), or None when there is none."""
    archive, folder = root / ARCHIVE, root / FOLDER
    if archive.is_file():
        wanted = {f"{FOLDER}/{META}": b"", f"{FOLDER}/{GROUND_TRUTH}": b""}
        for info, reader in tar_members(archive, DEVKIT_LIMITS):
            if info.name in wanted:
                wanted[info.name] = read_member(reader, info, str(archive))
        missing = [name for name, data in wanted.items() if not data]
        if missing:
            raise SourceError(f"{archive}: devkit lacks {', '.join(missing)}")
        return parse(wanted[f"{FOLDER}/{META}"], wanted[f"{FOLDER}/{GROUND_TRUTH}"], str(archive))
    if folder.is_dir():
        files = [folder / META, folder / GROUND_TRUTH]
        for p in files:
            if not p.is_file():
                raise SourceError(f"{folder}: devkit lacks {p.relative_to(folder)}")
        return parse(files[0].read_bytes(), files[1].read_bytes(), str(folder))
    return None
