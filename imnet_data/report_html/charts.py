"""The report's charts as inline SVG (no script, no network): a bar per class sorted by count, and histograms of
image width, height, aspect ratio and file size. Every bar carries its numbers in a ``<title>`` (the tooltip)
and in ``data-`` attributes, so a person can hover and a test can read them back.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

import numpy as np

WIDTH, HEIGHT = 960, 240          # the chart's size in CSS pixels
LEFT, BOTTOM, TOP = 56, 28, 10    # room for the y labels, the x labels, the top label
BAR = "#4878d0"


def _frame(label: str, ymax: int, body: list[str], xlabels: Sequence[tuple[float, str]]) -> str:
    """An SVG chart: axes, the y axis from 0 to ``ymax``, x labels at fractions of the plot's width."""
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">',
             f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
             f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
             f'<text class="tick" x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{ymax:,}</text>',
             f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>', *body]
    for at, text in xlabels:
        anchor = "start" if at == 0 else "end" if at == 1 else "middle"
        parts.append(f'<text class="tick" x="{LEFT + at * plot_w:.1f}" y="{HEIGHT - 8}" '
                     f'text-anchor="{anchor}">{escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _bars(heights: Sequence[int], titles: Sequence[str], data: Sequence[str]) -> tuple[int, list[str]]:
    """The bars of a chart, side by side over the plot's width; ``(ymax, svg elements)``."""
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    ymax = max(max(heights, default=0), 1)
    step = plot_w / max(len(heights), 1)
    gap = 1 if step >= 4 else 0
    out = []
    for i, (h, title, attrs) in enumerate(zip(heights, titles, data, strict=True)):
        bar_h = plot_h * h / ymax
        out.append(f'<rect class="bar" x="{LEFT + i * step:.2f}" y="{TOP + plot_h - bar_h:.2f}" '
                   f'width="{max(step - gap, 0.5):.2f}" height="{bar_h:.2f}" fill="{BAR}" {attrs}>'
                   f'<title>{escape(title)}</title></rect>')
    return ymax, out


def class_bars(counts: Sequence[tuple[int, str, str, int]], label: str) -> str:
    """A bar per class, largest first: ``counts`` are ``(index, wnid, name, count)`` sorted by count."""
    ymax, body = _bars([c for *_, c in counts],
                       [f"{i} {w} {n}: {c:,} images" for i, w, n, c in counts],
                       [f'data-label="{i}" data-count="{c}"' for i, _, _, c in counts])
    n = len(counts)
    return _frame(label, ymax, body, [(0, "largest"), (1, "smallest"), (0.5, f"{n:,} classes, by count")])


def histogram(values: np.ndarray, label: str, fmt: Callable[[float], str], bins: int = 40) -> str:
    """A histogram of ``values`` over ``bins`` equal bins from the smallest to the 99.5th percentile; larger
    values are counted in the last bin, whose label then ends in ``+``."""
    if values.size == 0:
        return '<p class="empty">no samples</p>'
    lo, hi = float(values.min()), float(np.percentile(values, 99.5))
    hi = hi if hi > lo else lo + 1
    counts, edges = np.histogram(np.minimum(values, hi), bins=bins, range=(lo, hi))
    over = int((values > hi).sum())
    ymax, body = _bars(counts.tolist(),
                       [f"{fmt(a)} to {fmt(b)}{' and over' if i == bins - 1 and over else ''}: {c:,} images"
                        for i, (a, b, c) in enumerate(zip(edges[:-1], edges[1:], counts, strict=True))],
                       [f'data-count="{c}"' for c in counts])
    return _frame(label, ymax, body, [(0, fmt(lo)), (0.5, fmt((lo + hi) / 2)), (1, fmt(hi) + ("+" if over else ""))])
