"""``imnet-data report``: one self-contained HTML page made from what the tool wrote, rendered in a real headless
Chromium (no console error, no request leaving the file, every chart drawn in the screenshot), its numbers equal
to the manifests' and the shards', each problem with what was done about it; refusals named."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import statistics
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imnet_data import demo
from tests.browser import chromium
from tests.helpers import run_cli

BAR = (0x48, 0x78, 0xD0)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``imnet-data demo`` leaves: the fake download (quirks and faults), validate-report.json, the organized
    copy with its report, and the shards made from it."""
    work = tmp_path_factory.mktemp("demo")
    assert demo.run(work, quiet=True).ok
    return work


@pytest.fixture(scope="module")
def page(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    done = run_cli("report", str(demo_dir / "shards"), "--validate-report", str(demo_dir / "validate-report.json"),
                   "--organize-report", str(demo_dir / "organized"), "--out", str(out), "--samples", "0")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "train 77 samples, val 40 samples" in done.stdout
    return out


class ById(HTMLParser):
    """The text of every element with an id (the page's numbers), and every bar's data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.open: list[str | None] = []
        self.bars: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "rect" and a.get("class") == "bar":
            self.bars.append(a)
        if tag not in ("img", "br", "meta", "line", "rect"):
            self.open.append(a.get("id"))
            if a.get("id"):
                self.text[a["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("img", "br", "meta", "line", "rect") and self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self.open:
            if ident:
                self.text[ident] += data


def parsed(path: Path) -> ById:
    p = ById()
    p.feed(path.read_text())
    return p


def number(text: str) -> int:
    return int(text.replace(",", ""))


def shard_samples(split_folder: Path) -> list[tuple[dict, int]]:
    """Every sample's .json and .jpg size, read from the shard tars with tarfile."""
    manifest = json.loads((split_folder / "manifest.json").read_text())
    out = []
    for shard in manifest["shards"]:
        with tarfile.open(split_folder / shard["name"]) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name, m in members.items():
                if name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    out.append((meta, members[name[:-5] + ".jpg"].size))
    return out


def test_the_numbers_in_the_page_equal_the_manifests_and_the_shards(demo_dir: Path, page: Path) -> None:
    p = parsed(page)
    for split in ("train", "val"):
        folder = demo_dir / "shards" / split
        manifest = json.loads((folder / "manifest.json").read_text())
        assert number(p.text[f"{split}-samples"]) == manifest["num_samples"]
        assert number(p.text[f"{split}-shards"]) == len(manifest["shards"])
        assert number(p.text[f"{split}-bytes"]) == manifest["num_bytes"]
        assert number(p.text[f"{split}-classes"]) == sum(1 for c in manifest["class_counts"] if c)
        validated = json.loads((demo_dir / "validate-report.json").read_text())["splits"][split]
        assert number(p.text[f"{split}-download-images"]) == validated["images"]
        organized = json.loads((demo_dir / "organized" / "organize-report.json").read_text())["counts"][split]
        assert number(p.text[f"{split}-organized"]) == organized
        assert p.text[f"{split}-manifest-sha256"] == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
        # the class histogram: a bar per class present, largest first, each with the manifest's count
        counts = {i: n for i, n in enumerate(manifest["class_counts"]) if n}
        bars = [b for b in p.bars if b.get("data-label") is not None]
        mine = bars[:len(counts)] if split == "train" else bars[-len(counts):]
        assert {int(b["data-label"]): int(b["data-count"]) for b in mine} == counts
        assert [int(b["data-count"]) for b in mine] == sorted(counts.values(), reverse=True)
        names = {c["index"]: f"{c['wnid']} {c['name']}" for c in manifest["classes"]}
        big = min(counts, key=lambda i: (-counts[i], i))
        small = max(counts, key=lambda i: (-counts[i], i))
        assert p.text[f"{split}-largest"] == f"{names[big]} ({counts[big]})"
        assert p.text[f"{split}-smallest"] == f"{names[small]} ({counts[small]})"
        # the distributions: every sample read (--samples 0), their statistics as the shards give them
        samples = shard_samples(folder)
        widths = [m["width"] for m, _ in samples]
        sizes = [size for _, size in samples]
        assert number(p.text[f"{split}-width-n"]) == len(samples) == manifest["num_samples"]
        assert number(p.text[f"{split}-width-min"]) == min(widths)
        assert number(p.text[f"{split}-width-max"]) == max(widths)
        assert number(p.text[f"{split}-height-max"]) == max(m["height"] for m, _ in samples)
        aspect = statistics.median(m["width"] / m["height"] for m, _ in samples)
        assert p.text[f"{split}-aspect-median"] == f"{aspect:.2f}"
        assert p.text[f"{split}-bytes-max"] == f"{max(sizes) / 1e3:.1f} kB"
        assert p.text[f"{split}-bytes-n"] == f"{len(sizes):,}"
    assert p.text["label-space"] == "imagenet-1k" and p.text["label-count"] == "1,000"


def test_each_problem_is_listed_with_what_was_done_and_a_thumbnail(demo_dir: Path, page: Path) -> None:
    html = page.read_text()
    rows = re.findall(r'<div class="finding">(.*?)</div></div>', html)
    problems = json.loads((demo_dir / "validate-report.json").read_text())["problems"]
    assert len(rows) == len(problems) == 9
    done = {}
    for row in rows:
        where = re.search(r"<code>(.*?)</code>", row).group(1)
        done[where.rsplit(":", 1)[-1]] = (re.search(r'class="outcome">(.*?)</span>', row).group(1), "<img" in row)
    assert done["n04371774_5854.JPEG"] == ("fixed: re-encoded to RGB JPEG by organize --fix (cmyk)", True)
    assert done["n02105855_2933.JPEG"] == ("fixed: re-encoded to RGB JPEG by organize --fix (png)", True)
    assert done["n04141076_17000.JPEG"] == \
        ("skipped by organize --fix (cannot decode: Premature end of JPEG file); not in the shards", False)
    assert done["n04141076_9620.JPEG"][0].startswith("skipped by organize --fix (empty file)")
    assert done["ILSVRC2012_val_00000031.JPEG"] == ("kept as is in the shards (warning)", True)
    # a thumbnail is the image as stored in the shards: the CMYK one now decodes as RGB
    thumbs = re.findall(r'alt="(\w+)" src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(thumbs) == 6
    for _, data in thumbs:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            assert img.mode == "RGB" and img.size == (160, 160)


def test_the_page_is_self_contained_and_the_same_bytes_twice(demo_dir: Path, page: Path, tmp_path: Path) -> None:
    html = page.read_text()
    assert "<script" not in html and "url(" not in html and "@import" not in html
    assert not re.findall(r'(?:src|href)="(?!data:|#)', html)      # every image inline, every link in the page
    again = tmp_path / "again.html"
    done = run_cli("report", str(demo_dir / "shards"), "--validate-report", str(demo_dir / "validate-report.json"),
                   "--organize-report", str(demo_dir / "organized"), "--out", str(again), "--samples", "0", "-q")
    assert done.returncode == 0, done.stderr
    assert again.read_bytes() == page.read_bytes()


def test_the_page_renders_in_chromium_with_its_charts_and_no_error(page: Path, tmp_path: Path) -> None:
    with chromium(tmp_path) as browser:
        tab = browser.open(page.as_uri())
        charts = tab.evaluate("[...document.querySelectorAll('svg.chart')].map(s => { const r = "
                              "s.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, "
                              "r.height, s.querySelectorAll('rect.bar').length]; })")
        images = tab.evaluate("[...document.images].map(i => [i.className, i.complete, i.naturalWidth])")
        shown = tab.evaluate("document.getElementById('train-samples').innerText + ' ' + "
                             "document.getElementById('val-shards').innerText")
        shot = tab.screenshot()
        assert tab.errors == []
        assert all(url.startswith(("file://", "data:")) for url in tab.requests), tab.requests
    assert shown == "77 2"
    assert len(charts) == 2 * (1 + 4)           # per split: the class histogram and four distributions
    assert {c for c, *_ in images} == {"thumb", "sheet"} and all(done and w > 0 for _, done, w in images)
    with Image.open(io.BytesIO(shot)) as img:
        pixels = np.asarray(img.convert("RGB"))
    for left, top, width, height, bars in charts:
        assert width == 960 and height == 240 and bars > 0
        area = pixels[int(top):int(top + height), int(left):int(left + width)]
        drawn = np.all(np.abs(area.astype(int) - BAR) <= 2, axis=-1).mean()
        assert drawn > 0.01, f"chart at y={top:.0f}: {drawn:.3%} of its pixels in the bar colour"


def test_untrusted_names_are_escaped(demo_dir: Path, tmp_path: Path) -> None:
    """A file name in a download is untrusted: shown as text, never markup."""
    report = json.loads((demo_dir / "validate-report.json").read_text())
    report["problems"].append({"severity": "error", "kind": "truncated", "detail": "<b>bold</b>",
                               "where": "x.tar:<script>alert(1)</script>.JPEG"})
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(report))
    out = tmp_path / "r.html"
    done = run_cli("report", str(demo_dir / "shards"), "--validate-report", str(hostile), "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.JPEG" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_what_report_refuses(demo_dir: Path, tmp_path: Path) -> None:
    shards = demo_dir / "shards"
    none = run_cli("report", str(demo_dir / "organized"), "--out", str(tmp_path / "r.html"))
    assert none.returncode == 2 and "not a shard output folder" in none.stderr
    inside = run_cli("report", str(shards), "--out", str(shards / "r.html"))
    assert inside.returncode == 2 and "--out is inside" in inside.stderr and not (shards / "r.html").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": "s", "layout": "l", "expect": "self", "deep": True, "splits": {},
                               "problems": [{"severity": "fatal", "kind": "k", "where": "w", "detail": "d"}]}))
    wrong = run_cli("report", str(shards), "--validate-report", str(bad), "--out", str(tmp_path / "r.html"))
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert f"{bad}: problems[0].severity: expected one of error, warning, known, got 'fatal'" in wrong.stderr
    missing = run_cli("report", str(shards), "--organize-report", str(tmp_path), "--out", str(tmp_path / "r.html"))
    assert missing.returncode == 1 and "organize-report.json: cannot read the organize report" in missing.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_damaged_index_or_sample_is_named(demo_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(demo_dir / "shards", copy)
    idx = next((copy / "val").glob("*-000001.idx"))
    lines = idx.read_text().splitlines()
    fields = lines[1].split(" ")
    fields[5] = str(10**9)                        # the first sample's .jpg offset, far past the end of the tar
    idx.write_text("\n".join([lines[0], " ".join(fields), *lines[2:]]) + "\n")
    past = run_cli("report", str(copy), "--out", str(tmp_path / "r.html"))
    assert past.returncode == 1 and f"{idx}: " in past.stderr and "past the end of" in past.stderr, past.stderr
    shutil.copy(demo_dir / "shards" / "val" / idx.name, idx)
    tar = next((copy / "val").glob("*-000000.tar"))
    raw = bytearray(tar.read_bytes())
    at = raw.index(b'{"boxes"')
    raw[at:at + 8] = b'{"boxes!'                  # the first sample's .json: no longer JSON
    tar.write_bytes(bytes(raw))
    broken = run_cli("report", str(copy), "--out", str(tmp_path / "r.html"), "--samples", "0")
    assert broken.returncode == 1 and f"{tar}:" in broken.stderr and ".json: not JSON" in broken.stderr
