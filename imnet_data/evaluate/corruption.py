"""ImageNet-C's summary figures (Hendrycks & Dietterich 2019): per corruption the corruption error CE, the model's
top-1 errors summed over the severities divided by AlexNet's on the same severities, and the relative CE, the same
for the errors' rise over each model's clean error; mCE and relative mCE are their means over the 15 benchmark
corruptions (the 4 extra ones are reported, not averaged). AlexNet's errors ship as a manifest with their source
(``imagenet_c_alexnet.json``)."""
from __future__ import annotations

from imnet_data import resources
from imnet_data.sources.imagenet_c import BENCHMARK, FAMILY_OF, SEVERITIES


def alexnet() -> dict:
    """AlexNet's errors: ``errors`` (corruption -> 5 per-severity top-1 errors), ``clean_error``, ``source``."""
    return resources.read_json("imagenet_c_alexnet.json")


def summarize(top1: dict[tuple[str, int], float], clean_error: float | None) -> dict:
    """The per-corruption top-1 (percent) by severity, CE and relative CE, and mCE / relative mCE, from
    ``top1[(corruption, severity)]`` (fractions) and the model's clean top-1 error on ImageNet val (a fraction;
    None: no relative figures). Over a subset of severities or corruptions the figures cover only those, and
    ``complete`` says so."""
    ref = alexnet()
    rows = {}
    for corruption in sorted({c for c, _ in top1}, key=lambda c: (c not in BENCHMARK, list(FAMILY_OF).index(c))):
        severities = [s for s in SEVERITIES if (corruption, s) in top1]
        errors = [1 - top1[corruption, s] for s in severities]
        row: dict = {"top1": {str(s): round(100 * top1[corruption, s], 4) for s in severities},
                     "mean_top1": round(100 * sum(top1[corruption, s] for s in severities) / len(severities), 4)}
        if corruption in ref["errors"]:
            base = [ref["errors"][corruption][s - 1] for s in severities]
            row["ce"] = round(100 * sum(errors) / sum(base), 4)
            if clean_error is not None:
                row["relative_ce"] = round(100 * (sum(errors) - len(errors) * clean_error)
                                           / (sum(base) - len(base) * ref["clean_error"]), 4)
        rows[corruption] = row
    scored = [rows[c] for c in BENCHMARK if c in rows]
    complete = all((c, s) in top1 for c in BENCHMARK for s in SEVERITIES)
    return {"corruptions": rows, "complete": complete, "benchmark_corruptions": len(scored),
            "mce": _mean([r["ce"] for r in scored]),
            "relative_mce": _mean([r["relative_ce"] for r in scored]) if clean_error is not None else None,
            "normalisation": ref["source"]}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
