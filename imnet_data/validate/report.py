"""What :func:`imnet_data.validate.validate` reports: :class:`Problem` findings and the :class:`ValidationReport`
(per-split totals, checksums, every problem), and how a finding names where it is."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from imnet_data import tario
from imnet_data.report import Report
from imnet_data.sources import Source, SourceError, Unit
from imnet_data.sources.base import WNID

SEVERITIES = ("error", "warning", "known")
UNREADABLE = (SourceError, OSError)   # a malformed download, or a file the disk cannot give back: reported


@dataclass(frozen=True)
class Problem:
    """One finding. ``where`` names the file and member, e.g. ``.../ILSVRC2012_img_train.tar:n01440764.tar:
    n01440764_1.JPEG``; ``kind`` is a short stable name (``empty``, ``count``, ``cmyk``, ...)."""

    severity: str   # "error" | "warning" | "known"
    kind: str
    where: str
    detail: str


@dataclass
class ValidationReport(Report):
    """What :func:`imnet_data.validate.validate` found: per-split totals, checksums and every problem."""

    source: str
    layout: str
    expect: str
    deep: bool
    splits: dict[str, dict[str, int]] = field(default_factory=dict)      # split -> images, classes, bytes
    checksums: dict[str, dict[str, str | None]] = field(default_factory=dict)  # archive -> expected, actual
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Sound: nothing missing or damaged (warnings and known quirks allowed)."""
        return not any(p.severity == "error" for p in self.problems)

    def tally(self) -> dict[str, dict[str, int]]:
        """Problem counts by severity, then kind."""
        out: dict[str, dict[str, int]] = {s: {} for s in SEVERITIES}
        for p in self.problems:
            out[p.severity][p.kind] = out[p.severity].get(p.kind, 0) + 1
        return out

    def as_dict(self) -> dict:
        """The report as JSON-ready data (what ``--json`` prints and ``--report`` writes)."""
        return {"source": self.source, "layout": self.layout, "expect": self.expect, "deep": self.deep,
                "ok": self.ok, "seconds": round(self.seconds, 2), "splits": self.splits,
                "checksums": self.checksums, "tally": self.tally(), "problems": [asdict(p) for p in self.problems]}

    def save(self, path: Path) -> None:
        """Write :meth:`as_dict` as JSON, atomically (a reader never sees half a report)."""
        tario.write_json(Path(path), self.as_dict())

    def render(self, per_kind: int = 5) -> str:
        """A readable summary: totals, checksums, problems by severity and kind (the first ``per_kind`` of
        each), and the verdict."""
        width = max([8, *(len(split) + 1 for split in self.splits)])   # ImageNet-C's split names are long
        lines = [(f"{self.source}: layout {self.layout}, expect {self.expect}"
                  f"{', deep' if self.deep else ''} ({self.seconds:.1f} s)"),
                 f"  {'split':<{width}}{'images':>12}{'classes':>9}{'size':>12}"]
        lines += [f"  {split:<{width}}{t['images']:>12,}{t['classes']:>9,}{_size(t['bytes']):>12}"
                  for split, t in self.splits.items()]
        lines += [f"  md5 {name}: {c['actual']}" + (" (ok)" if c["actual"] == c["expected"] else "")
                  for name, c in self.checksums.items()]
        tally = self.tally()
        lines.append("problems: " + ", ".join(f"{s} {sum(tally[s].values()):,}" for s in SEVERITIES))
        for severity, kind in ((s, k) for s in SEVERITIES for k in sorted(tally[s])):
            found = [p for p in self.problems if p.severity == severity and p.kind == kind]
            lines.append(f"  {severity} {kind} ({len(found):,})")
            lines += [f"    {p.where}: {p.detail}" for p in found[:per_kind]]
            if len(found) > per_kind:
                lines.append(f"    ... and {len(found) - per_kind:,} more (all of them in --report / --json)")
        errors = sum(tally["error"].values())
        lines.append(f"verdict: {'SOUND' if self.ok else 'NOT SOUND'}: " + (
            f"{errors:,} error{'s' * (errors != 1)}: files missing or damaged" if errors else
            "complete" + ("; every image decodes" if self.deep else "; add --deep to decode every image")))
        return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


# ---- where things are, for messages --------------------------------------------------------------------------

def inside(home: str, name: str) -> str:
    """``name`` in ``home``: ``archive.tar:name`` or ``folder/name``."""
    return f"{home}:{name}" if ".tar" in home else f"{home}/{name}"


def class_where(home: str, split: str, wnid: str) -> str:
    """Where one class lives: its inner tar or folder (``train.tar:<wnid>.tar``, ``train/<wnid>``) in train,
    the split (a flat val holds every class) elsewhere."""
    return inside(home, f"{wnid}.tar" if ".tar" in home else wnid) if split == "train" else home


def unit_where(src: Source, unit: Unit) -> str:
    """Where one unit lives: its class tar or folder, else its split's archive or folder."""
    home = src.home(unit.split)
    return class_where(home, unit.split, unit.name) if WNID.match(unit.name) else home
