"""``imnet-data report DEST --out report.html``: one self-contained HTML page about a shard set, made from what the
tool already wrote: per split counts and bytes, the class histogram (smallest and largest classes named), the
distributions of image width, height, aspect ratio and file size, the problems ``validate`` found with what was
done about each (fixed, skipped, kept as a known quirk) and a thumbnail, a contact sheet per split, the label
space and the provenance (source layout, the options as a command, tool versions, sha256 of each manifest).

The page holds no script and loads nothing (SVG charts and base64 images inline), so it opens from a laptop's
disk, a CI artifact or a mail attachment alike. The same inputs give the same bytes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from imnet_data.paths import check_apart
from imnet_data.report import Report
from imnet_data.report_html.findings import draw_thumbnails, findings, wanted_keys
from imnet_data.report_html.inputs import read_organize_report, read_split, read_validate_report
from imnet_data.report_html.page import page
from imnet_data.shards.preview import contact_sheet
from imnet_data.shards.verify import split_folders
from imnet_data.tario import atomic_file


@dataclass
class HtmlReport(Report):
    """What ``report`` wrote: the page, its size, the samples per split and the problems it lists."""

    out: str
    bytes: int
    samples: dict[str, int] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)     # severity -> findings
    thumbnails: int = 0

    @property
    def ok(self) -> bool:
        """The page was written (problems in the data are shown, not failures of this command)."""
        return True

    def render(self) -> str:
        """Where the page is and what it covers, in two lines."""
        found = ", ".join(f"{n} {sev}" for sev, n in self.problems.items()) or "none recorded"
        return (f"wrote {self.out} ({self.bytes / 1e6:.1f} MB): "
                + ", ".join(f"{split} {n:,} samples" for split, n in self.samples.items())
                + f"\n  problems: {found}; {self.thumbnails} thumbnails; open it in a browser (no network needed)")


def write_report(dest: Path, out: Path, *, validate_report: Path | None = None, organize_report: Path | None = None,
                 splits: list[str] | None = None, max_samples: int = 50_000, sheet: int = 32,
                 thumbnails: int = 200, quiet: bool = False) -> HtmlReport:
    """Write the page about the shards in ``dest`` (a shard output folder or one split folder) to ``out``
    (atomically; never inside ``dest``). ``validate_report``: a ``validate --report`` file; ``organize_report``:
    organize's report or the organized folder; ``max_samples``: sample ``.json`` read per split for the size
    charts (0: all); ``sheet``: classes on each split's contact sheet; ``thumbnails``: problem images drawn at
    most. UsageError when ``dest`` holds no manifest or ``out`` is inside it; ValueError naming the file for an
    input that is not what the tool writes."""
    dest, out = Path(dest), Path(out)
    folders = split_folders(dest, splits)
    check_apart(dest, out, "--out")
    validate = read_validate_report(Path(validate_report)) if validate_report else None
    organize = read_organize_report(Path(organize_report)) if organize_report else None
    wanted = wanted_keys(validate, organize)
    data = [read_split(folder, wanted, max_samples, quiet) for folder in folders]
    found = findings(data, validate, organize)
    drawn = draw_thumbnails(found, data, thumbnails)
    sheets = {s.name: sheet_jpeg([s.folder / x["name"] for x in s.manifest["shards"]], sheet) for s in data}
    html = page(str(dest), data, validate, organize, found, drawn, thumbnails, sheets).encode()
    with atomic_file(out) as f:
        f.write(html)
    tally: dict[str, int] = {}
    for finding in found:
        tally[finding.severity] = tally.get(finding.severity, 0) + 1
    return HtmlReport(str(out), len(html), {s.name: s.manifest["num_samples"] for s in data}, tally, drawn)


def sheet_jpeg(shards: list[Path], n: int) -> bytes | None:
    """A per-class contact sheet (``preview --per-class``) of up to ``n`` classes as JPEG bytes; None when
    ``n`` is 0 or the split has no sample."""
    image = contact_sheet(shards, n, per_class=True, columns=8) if n and shards else None
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
