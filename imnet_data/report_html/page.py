"""The report's HTML: one self-contained page (inline CSS, SVG and base64 images; no script, no network) with the
sections of :func:`page`. Every string from the inputs is escaped: file names in a download are untrusted."""
from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from html import escape

import numpy as np

from imnet_data import __version__
from imnet_data.progress import amount_of
from imnet_data.report_html.charts import class_bars, histogram
from imnet_data.report_html.findings import Finding
from imnet_data.report_html.inputs import SplitData, Supplied

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 22px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; } h3 { margin-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.axis { stroke: #555; } .tick { font-size: 11px; fill: #444; } .note { color: #555; font-size: 13px; }
.error, .skipped { color: #b00020; } .warning { color: #a65e00; } .known, .fixed { color: #2a6f2a; }
code { background: #f3f3f3; padding: 0 3px; } td code { word-break: break-all; }
img.sheet { max-width: 100%; } .finding { display: flex; gap: 12px; border-top: 1px solid #ddd; padding: 6px 0; }
.finding .image { flex: 0 0 120px; font-size: 12px; color: #555; } img.thumb { width: 120px; height: 120px; }
.finding .text { min-width: 0; overflow-wrap: anywhere; }
details { margin: 8px 0; } nav a { margin-right: 12px; }
"""


def num(n: int) -> str:
    """An exact count, with thousands separators."""
    return f"{n:,}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    """An HTML table of already-escaped cells (a cell starting with ``<td`` is taken as is)."""
    ident = f' id="{table_id}"' if table_id else ""
    cells = ["".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) for row in rows]
    return (f"<table{ident}><tr>{''.join(f'<th>{escape(h)}</th>' for h in head)}</tr>"
            + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>")


def n_cell(value: int | None, ident: str) -> str:
    """A right-aligned count cell with an id (the test reads it back); empty when unknown."""
    return f'<td class="n" id="{ident}">{"" if value is None else num(value)}</td>'


def overview(splits: list[SplitData], validate: Supplied | None, organize: Supplied | None) -> str:
    """Per split: samples, shards, bytes and classes in the shards; images and bytes in the download (validate
    report) and in the organized copy (organize report)."""
    rows = []
    for s in splits:
        m = s.manifest
        down = validate.data["splits"].get(s.name) if validate else None
        rows.append([escape(s.name), n_cell(m["num_samples"], f"{s.name}-samples"),
                     n_cell(len(m["shards"]), f"{s.name}-shards"), n_cell(m["num_bytes"], f"{s.name}-bytes"),
                     escape(amount_of(m["num_bytes"], "B")),
                     n_cell(sum(1 for c in m["class_counts"] if c), f"{s.name}-classes"),
                     n_cell(down["images"] if down else None, f"{s.name}-download-images"),
                     n_cell(down["bytes"] if down else None, f"{s.name}-download-bytes"),
                     n_cell(organize.data["counts"].get(s.name) if organize else None, f"{s.name}-organized")])
    return table(["split", "samples", "shards", "bytes", "size", "classes", "images in the download",
                  "bytes in the download", "files organized"], rows, "overview")


def classes_section(s: SplitData) -> str:
    """The class histogram of a split, sorted, with the largest and smallest classes named."""
    m = s.manifest
    counts = sorted(((c["index"], c["wnid"], c.get("name") or "", n) for c, n in zip(m["classes"], m["class_counts"],
                                                                                       strict=True) if n),
                    key=lambda t: (-t[3], t[0]))
    if not counts:
        return f"<h3>{escape(s.name)}</h3><p>no samples</p>"
    missing = len(m["classes"]) - len(counts)

    def named(rows: Sequence[tuple[int, str, str, int]], ident: str) -> str:
        return table(["index", "wnid", "class", "images"],
                     [[num(i), escape(w), escape(n), f'<td class="n">{num(c)}</td>'] for i, w, n, c in rows], ident)
    big, small = counts[0], counts[-1]
    return (f"<h3>{escape(s.name)}: {num(m['num_samples'])} images in {num(len(counts))} classes</h3>"
            f'<p>largest: <b id="{s.name}-largest">{escape(big[1])} {escape(big[2])} ({num(big[3])})</b>; '
            f'smallest: <b id="{s.name}-smallest">{escape(small[1])} {escape(small[2])} ({num(small[3])})</b>'
            + (f"; {num(missing)} classes of the label space have no image here" if missing else "") + "</p>"
            + class_bars(counts, f"{s.name}: images per class, largest first")
            + "<details><summary>the 10 largest and 10 smallest classes</summary>"
            + named(counts[:10], f"{s.name}-top") + named(counts[-10:][::-1], f"{s.name}-bottom") + "</details>")


MEASURES: list[tuple[str, str, Callable[[float], str]]] = [
    ("width", "width (px)", lambda v: f"{v:,.0f}"),
    ("height", "height (px)", lambda v: f"{v:,.0f}"),
    ("aspect", "aspect ratio (width / height)", lambda v: f"{v:.2f}"),
    ("bytes", "file size", lambda v: amount_of(v, "B")),
]


def sizes_section(s: SplitData) -> str:
    """Distributions of width, height, aspect ratio (from the sampled ``.json``) and file size (every image)."""
    w = np.array([m["width"] for m in s.samples], dtype=np.float64)
    h = np.array([m["height"] for m in s.samples], dtype=np.float64)
    values = {"width": w, "height": h, "aspect": w / np.maximum(h, 1),
              "bytes": np.frombuffer(s.sizes, dtype=np.int64).astype(np.float64)}
    rows = []
    for key, label, fmt in MEASURES:
        v = values[key]
        stats = [v.min(), float(np.median(v)), v.mean(), v.max()] if v.size else []
        rows.append([escape(label), n_cell(int(v.size), f"{s.name}-{key}-n"),
                     *(f'<td class="n" id="{s.name}-{key}-{name}">{escape(fmt(x))}</td>'
                       for name, x in zip(("min", "median", "mean", "max"), stats, strict=True))])
    spread = "every sample" if s.stride == 1 else f"every {num(s.stride)}th sample"
    charts = "".join(f"<h4>{escape(label)}</h4>" + histogram(values[key], f"{s.name}: {label}", fmt)
                     for key, label, fmt in MEASURES)
    return (f"<h3>{escape(s.name)}</h3>"
            f'<p class="note">width, height and aspect ratio: the stored image, from the <code>.json</code> of '
            f"{num(len(s.samples))} of {num(s.manifest['num_samples'])} samples ({spread}); file size: every "
            f"image, from the <code>.idx</code> files.</p>"
            + table(["", "images", "min", "median", "mean", "max"], rows, f"{s.name}-sizes") + charts)


def problems_section(found: list[Finding], drawn: int, limit: int) -> str:
    """Every problem found, with what was done about it and a thumbnail of the image as it is in the shards."""
    if not found:
        return "<p>No problem recorded (pass <code>--validate-report</code> and <code>--organize-report</code> " \
               "to include what validate and organize found).</p>"
    tally: dict[tuple[str, str], int] = {}
    for f in found:
        tally[(f.severity, f.kind)] = tally.get((f.severity, f.kind), 0) + 1
    summary = table(["severity", "kind", "count"],
                    [[f'<td class="{escape(sev)}">{escape(sev)}</td>', escape(kind), f'<td class="n">{num(n)}</td>']
                     for (sev, kind), n in tally.items()], "problem-tally")
    rows = []
    for f in found:
        thumb = (f'<img class="thumb" alt="{escape(f.key or "")}" src="data:image/jpeg;base64,'
                 f'{base64.b64encode(f.thumbnail).decode()}">') if f.thumbnail else \
            ("(not drawn: over --thumbnails)" if f.location else "(no image in the shards)")
        rows.append(f'<div class="finding"><div class="image">{thumb}</div><div class="text">'
                    f'<b class="{escape(f.severity)}">{escape(f.severity)}</b> {escape(f.kind)}: '
                    f"<code>{escape(f.where)}</code><br>{escape(f.detail)}<br>"
                    f'<i>what was done:</i> <span class="outcome">{escape(f.outcome)}</span></div></div>')
    note = f"<p class=\"note\">{num(len(found))} findings; thumbnails of the first {num(drawn)} images in the " \
           f"shards (at most {num(limit)}: <code>--thumbnails</code>), as stored there.</p>"
    return summary + note + '<div id="findings">' + "".join(rows) + "</div>"


def sheet_section(s: SplitData, jpeg: bytes | None) -> str:
    """A contact sheet of the split: the first sample of each class met, captioned with its label."""
    if jpeg is None:
        return f"<h3>{escape(s.name)}</h3><p>no samples with an image</p>"
    return (f"<h3>{escape(s.name)}</h3><img class=\"sheet\" alt=\"contact sheet of {escape(s.name)}\" "
            f"src=\"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}\">")


def labels_section(splits: list[SplitData]) -> str:
    """The label space and every class with an image: index, WNID, name and images per split."""
    first = splits[0].manifest
    per_split = {s.name: s.manifest["class_counts"] for s in splits}
    rows = [[num(c["index"]), escape(c["wnid"]), escape(c.get("name") or ""),
             *(f'<td class="n">{num(per_split[s.name][i])}</td>' for s in splits)]
            for i, c in enumerate(first["classes"]) if any(per_split[s.name][i] for s in splits)]
    return (f"<p>label space <b id=\"label-space\">{escape(str(first.get('label_space', '')))}</b>: "
            f"<span id=\"label-count\">{num(len(first['classes']))}</span> classes; the <code>.cls</code> of a sample "
            f"is its index.</p><details><summary>{num(len(rows))} classes with images</summary>"
            + table(["index", "wnid", "class", *(s.name for s in splits)], rows, "classes") + "</details>")


def command(manifest: dict) -> str:
    """The ``shard`` options the manifest records, as the command line that gives them (non-default ones)."""
    opts, split = manifest.get("options") or {}, manifest["split"]
    args = ["imnet-data", "shard", "SRC", "DEST"]
    defaults = {"seed": 0, "shard_size": 10**9, "fix": True, "shuffle": split == "train"}
    for name, value in sorted(opts.items()):
        if value is None or defaults.get(name) == value or (name == "shard_size" and opts.get("samples_per_shard")):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else ("--no-fix" if name == "fix" else f"--no-{name}"))
        else:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            args += [flag, text + ("B" if name == "shard_size" else "")]
    if manifest.get("label_space"):
        args += ["--label-space", str(manifest["label_space"])]
    return " ".join(args)


def provenance_section(splits: list[SplitData], validate: Supplied | None, organize: Supplied | None) -> str:
    """Where every number came from: the manifests (sha256, tool version, source, options as a command) and the
    reports passed in (path, sha256, what they checked)."""
    out = ""
    for s in splits:
        m, src = s.manifest, s.manifest.get("source") or {}
        archives = ", ".join(f"{a.get('name')} ({num(a['bytes'])} bytes)" if isinstance(a.get("bytes"), int)
                             else str(a.get("name")) for a in src.get("archives") or [] if isinstance(a, dict))
        out += f"<h3>{escape(s.name)}</h3>" + table(["", "value"], [
            ["manifest", f"<code>{escape(str(s.folder / 'manifest.json'))}</code>"],
            ["sha256 of the manifest", f'<code id="{escape(s.name)}-manifest-sha256">{s.sha256}</code>'],
            ["written by", escape(f"imnet-data {m.get('tool_version', '?')}")],
            ["source layout", escape(str(src.get("layout", "?")))],
            ["source archives", escape(archives or "none (a folder layout)")],
            ["sha256 of the source listing", f"<code>{escape(str(src.get('listing_sha256', '?')))}</code>"],
            ["shard options as a command", f"<code>{escape(command(m))}</code>"]], f"{s.name}-provenance")
    for what, sup, fields in (("validate report", validate, ("source", "layout", "expect", "deep")),
                              ("organize report", organize, ("source", "dest", "layout", "fix", "quality"))):
        if sup:
            facts = "; ".join(f"{k} {sup.data.get(k)}" for k in fields)
            out += (f"<p>{what}: <code>{escape(str(sup.path))}</code>, sha256 <code>{sup.sha256}</code>: "
                    f"{escape(facts)}</p>")
    return out + f"<p>this page: imnet-data {escape(__version__)}</p>"


def page(dest: str, splits: list[SplitData], validate: Supplied | None, organize: Supplied | None,
         found: list[Finding], drawn: int, limit: int, sheets: dict[str, bytes | None]) -> str:
    """The whole page."""
    sections = [("splits", "Splits", overview(splits, validate, organize)),
                ("classes", "Classes", "".join(classes_section(s) for s in splits)),
                ("sizes", "Image sizes", "".join(sizes_section(s) for s in splits)),
                ("problems", "Problems found and what was done", problems_section(found, drawn, limit)),
                ("sheets", "Contact sheets", "".join(sheet_section(s, sheets[s.name]) for s in splits)),
                ("labels", "Label space", labels_section(splits)),
                ("provenance", "Provenance", provenance_section(splits, validate, organize))]
    nav = "".join(f'<a href="#{ident}">{escape(title)}</a>' for ident, title, _ in sections)
    body = "".join(f'<section id="{ident}"><h2>{escape(title)}</h2>{html}</section>' for ident, title, html in sections)
    total = sum(s.manifest["num_samples"] for s in splits)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>imnet-data report: {escape(dest)}</title><style>{STYLE}</style></head><body>"
            f"<h1>imnet-data report: <code>{escape(dest)}</code></h1>"
            f"<p>{num(total)} samples in {len(splits)} split{'s' if len(splits) != 1 else ''} "
            f"({escape(', '.join(s.name for s in splits))}), "
            f"{escape(amount_of(sum(s.manifest['num_bytes'] for s in splits), 'B'))} of shards.</p>"
            f"<nav>{nav}</nav>{body}</body></html>\n")
