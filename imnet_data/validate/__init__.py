"""``imnet-data validate``: is the download complete and sound? Answered in minutes, before days of training.

Three passes, each reporting :class:`Problem` objects instead of stopping at the first:

* structure and counts, from archive headers only (no image byte is read): archives, splits and classes present,
  images per class against the truth (``expect="official"``: the catalog's numbers of the real set;
  ``expect="self"``: the download's own metadata, for subsets and fakes), val files and labels;
* checksums (official only): each official archive's size, then its md5 (streamed; a wrong size is not hashed);
* ``deep``: every image fully decoded with PIL in worker processes: empty, truncated, undecodable and non-image
  files, CMYK, grayscale and non-JPEG content, extreme sizes, and byte-identical duplicates across all splits.

Severities: ``error`` (missing or damaged: the download is not sound), ``warning`` (sound, worth knowing or
fixing), ``known`` (a documented quirk of the real set, e.g. its 22 CMYK JPEGs and one PNG).

The package: :mod:`.report` (the findings and the report), :mod:`.expected` (what a sound download holds, and
the split-level checks), :mod:`.checksums`, :mod:`.scan` (the per-unit pass in worker processes).
"""
from __future__ import annotations

import time
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.parallel import check_visible
from imnet_data.sources import SourceRef, detect_layout
from imnet_data.validate.checksums import archive_checksums, md5_file
from imnet_data.validate.expected import check_devkit, check_split, class_set, truth
from imnet_data.validate.report import SEVERITIES, UNREADABLE, Problem, ValidationReport
from imnet_data.validate.scan import duplicates, scan, units

EXPECTS = ("official", "self")

__all__ = ["EXPECTS", "SEVERITIES", "Problem", "ValidationReport", "md5_file", "validate"]


def validate(path: Path | str, *, layout: str | None = None, expect: str = "official", checksums: bool = True,
             deep: bool = False, jobs: int | None = None, quiet: bool = False) -> ValidationReport:
    """Check the download at ``path`` (see the module doc); ``jobs`` worker processes (None/0: all cores).

    Problems in the download are reported, not raised (a damaged or hostile archive included). Raises UsageError
    only when ``path`` cannot be opened as a download at all (missing, not a known layout, unknown ``layout``)
    or ``expect`` is unknown.
    """
    if expect not in EXPECTS:
        raise UsageError(f"expect must be one of {', '.join(EXPECTS)}, got {expect!r}")
    start = time.perf_counter()
    ref = SourceRef(str(Path(path)), layout or detect_layout(Path(path)))
    src = ref.open()   # here, before the workers fork: they inherit it (its devkit parsed once)
    check_visible([Path(path)])
    report = ValidationReport(ref.root, src.layout, expect, deep)
    try:
        _fill(report, ref, checksums, jobs, quiet)
    except UNREADABLE as e:   # a reader failing outside one unit (a hostile index, say): the download is not sound
        report.problems.append(Problem("error", "structure", ref.root, f"{e} (the check stopped here)"))
    report.seconds = time.perf_counter() - start
    return report


def _fill(report: ValidationReport, ref: SourceRef, hashing: bool, jobs: int | None, quiet: bool) -> None:
    """Every pass of :func:`validate` over the download ``ref``, adding to ``report``."""
    src, expect, root = ref.open(), report.expect, report.source
    kit, report.problems = check_devkit(src, expect)
    report.problems += [Problem("error" if expect == "official" else "warning", "partial", root, remark)
                        for remark in src.remarks()]
    try:
        expected = truth(src, expect, kit)
    except UNREADABLE as e:
        expected = class_set(src)
        report.problems.append(Problem("error", "structure", root, f"{e} (its expectations not checked)"))
    report.checksums, problems = archive_checksums(src, expect, hashing, quiet)
    found, more = units(src, expected.splits)
    keep = set(expected.names) | set(expected.labels)
    tallies, results = scan(ref, found, report.deep, keep, jobs, quiet)
    # dict.fromkeys: pieces of one unit that fail alike (a damaged class tar) report it once
    report.problems += problems + more + list(dict.fromkeys(p for r in results for p in r.problems))
    for split, tally in tallies.items():
        report.splits[split] = tally.summary()
        report.problems += check_split(split, tally, expected, src.home(split))
    report.problems += duplicates(results)
