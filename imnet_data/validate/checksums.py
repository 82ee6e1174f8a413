"""The checksum pass of ``validate`` (official archives only): each archive's size, then its md5, streamed (a
wrong size is reported and not hashed)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from imnet_data import catalog
from imnet_data.progress import progress
from imnet_data.sources import Source
from imnet_data.validate.report import Problem

HASH_BLOCK = 8 << 20


def md5_file(path: Path, *, quiet: bool = False) -> str:
    """The md5 of a file, streamed with a progress bar."""
    digest = hashlib.md5()
    with open(path, "rb") as f, progress(total=path.stat().st_size, desc=f"md5 {path.name}", unit="B",
                                          unit_scale=True, quiet=quiet) as bar:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def archive_checksums(src: Source, expect: str, enabled: bool, quiet: bool) -> tuple[dict, list[Problem]]:
    """md5 of each official archive present (a missing one is reported by the split and devkit checks)."""
    if src.layout != "ilsvrc2012":
        return {}, []
    out, problems = {}, []
    for role in ("train", "val", "devkit"):
        fact = catalog.facts()["archives"][role]
        path = src.root / fact["name"]
        if not path.is_file():
            continue
        official = expect == "official"
        actual, problem = _checksum(path, fact, quiet) if official and enabled else (
            "skipped" if official else "not applicable", None)
        out[fact["name"]] = {"expected": fact["md5"] if official else None, "actual": actual}
        problems += [problem] if problem else []
    return out, problems


def _checksum(path: Path, fact: dict, quiet: bool) -> tuple[str, Problem | None]:
    """``(md5 or why not hashed, problem)`` of one official archive; a wrong size is reported, not hashed."""
    size = path.stat().st_size
    if fact["size"] is not None and size != fact["size"]:
        return "not hashed", Problem("error", "size", str(path), f"{size:,} bytes, the official file has "
                                     f"{fact['size']:,}: incomplete or another file (not hashed)")
    actual = md5_file(path, quiet=quiet)
    if actual != fact["md5"]:
        return actual, Problem("error", "checksum", str(path), f"md5 {actual}, the official file has {fact['md5']}")
    return actual, None
