"""The result of an evaluation: one row per set and variant (ImageNet-C: one row for all its splits, and its own
table by corruption and severity), the run's settings, and what was skipped; as JSON and as a markdown table."""
from __future__ import annotations

from dataclasses import dataclass, field

from imnet_data.evaluate.score import Score
from imnet_data.evaluate.sets import EvalSplit
from imnet_data.report import Report
from imnet_data.sources.imagenet_c import SEVERITIES


@dataclass
class EvalReport(Report):
    """``results``: each split scored; ``imagenet_c``: the summary of :func:`~imnet_data.evaluate.corruption.
    summarize` (None without ImageNet-C); ``skipped``: split folders not scored, with the reason."""

    settings: dict
    results: list[tuple[EvalSplit, Score]] = field(default_factory=list)
    imagenet_c: dict | None = None
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every split scored at least one image."""
        return all(score.images for _, score in self.results)

    def rows(self) -> list[dict]:
        """The table's rows: each set and variant, ImageNet val's ReaL row after it, ImageNet-C summed up."""
        rows: list[dict] = []
        for split, score in self.results:
            if split.corruption:
                continue
            note = "" if split.mask is None else (f"logits restricted to the set's {len(split.mask)} classes"
                                                  if self.settings.get("masks", True) else "over all 1000 classes")
            rows.append(_row(split.set, split.variant, score.images, score.percent(score.top1),
                             score.percent(score.top5), note, score.seconds))
            if split.real:
                rows.append(_row("imagenet-real", "val", score.real_images,
                                 score.percent(score.real_top1, score.real_images), None,
                                 "ReaL labels (Beyer et al. 2020); images without any left out", 0.0))
        c = [(split, score) for split, score in self.results if split.corruption]
        if c and self.imagenet_c:
            images, hits = sum(s.images for _, s in c), sum(s.top1 for _, s in c)
            summary = self.imagenet_c
            relative = (f"relative mCE {_num(summary['relative_mce'])}" if summary["relative_mce"] is not None
                        else "relative mCE needs the ImageNet val row")
            note = f"mCE {_num(summary['mce'])}, {relative}" + \
                ("" if summary["complete"] else f" (over {summary['benchmark_corruptions']} of 15 corruptions "
                 "and the severities scored)")
            rows.append(_row("imagenet-c", f"{len(c)} splits", images, 100.0 * hits / images if images else None,
                             None, note, sum(s.seconds for _, s in c)))
        return rows

    def markdown(self) -> str:
        """The table (and ImageNet-C's by corruption and severity)."""
        lines = ["| set | variant | images | top-1 | top-5 | notes |", "|---|---|---:|---:|---:|---|"]
        lines += [f"| {r['set']} | {r['variant']} | {r['images']:,} | {_num(r['top1'])} | {_num(r['top5'])} | "
                  f"{r['notes']} |" for r in self.rows()]
        if self.imagenet_c:
            lines += ["", "| corruption | " + " | ".join(f"s{s}" for s in SEVERITIES) + " | CE | relative CE |",
                      "|---|" + "---:|" * (len(SEVERITIES) + 2)]
            for name, r in self.imagenet_c["corruptions"].items():
                cells = [_num(r["top1"].get(str(s))) for s in SEVERITIES]
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {_num(r.get('ce'))} | "
                             f"{_num(r.get('relative_ce'))} |")
        return "\n".join(lines)

    def render(self) -> str:
        """The settings in one line, the tables, the skipped folders."""
        s = self.settings
        head = (f"{s['model']} ({s['weights'] or 'no weights file'}), {s['image_size']} px crop of "
                f"{s['resize_size']} ({s['interpolation']}), {s['dtype']} on {s['device']} ({s['backend']}), "
                f"{self.seconds:.1f} s" + (f", first {s['limit']} images of each split" if s["limit"] else ""))
        return "\n".join([head, "", self.markdown(), *[f"skipped: {line}" for line in self.skipped]])

    def as_dict(self) -> dict:
        """Everything, as plain data: settings, rows, every split's counts, ImageNet-C's summary, skipped."""
        return {"settings": self.settings, "rows": self.rows(), "imagenet_c": self.imagenet_c,
                "splits": [{"set": sp.set, "variant": sp.variant, "folder": str(sp.folder), "split": sp.split,
                            "images": sc.images, "top1": sc.top1, "top5": sc.top5, "real_images": sc.real_images,
                            "real_top1": sc.real_top1, "masked": sp.mask is not None,
                            "seconds": round(sc.seconds, 3)} for sp, sc in self.results],
                "skipped": self.skipped, "seconds": round(self.seconds, 3), "ok": self.ok}


def _row(set_name: str, variant: str, images: int, top1: float | None, top5: float | None, notes: str,
         seconds: float) -> dict:
    return {"set": set_name, "variant": variant, "images": images, "top1": _round(top1), "top5": _round(top5),
            "notes": notes, "seconds": round(seconds, 3)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
