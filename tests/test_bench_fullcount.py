"""``tools/bench_fullcount.py``'s handling of outputs on real folders: the run after a delete follows the delete of
the command's own earlier output alone."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("bench_fullcount", ROOT / "tools" / "bench_fullcount.py")
assert spec and spec.loader
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_fullcount"] = bench          # its dataclasses look their module up
spec.loader.exec_module(bench)


def tree(root: Path, folders: int = 3, files: int = 4) -> Path:
    """``root`` with ``folders`` class folders of ``files`` small files each."""
    for k in range(folders):
        (root / "train" / f"n{k:08d}").mkdir(parents=True)
        for i in range(files):
            (root / "train" / f"n{k:08d}" / f"{i}.JPEG").write_bytes(b"x" * 10)
    return root


def test_delete_then_pause_deletes_only_the_commands_own_output(tmp_path: Path) -> None:
    outputs = bench.Outputs(tmp_path, reserve=0, settle=0, pause=0)
    other = tree(tmp_path / "out-tar-x")
    outputs.clear(other)                         # the row before's output, moved aside as run_rows does
    mine = tree(tmp_path / "out-organize")
    outputs.delete_then_pause(mine)
    assert not mine.exists()
    assert "after deleting 12 files" in outputs.last_delete
    kept = list((tmp_path / ".trash").rglob("*.JPEG"))
    assert len(kept) == 12, "the other row's output was deleted too: the run would follow two deletes"
    outputs.empty()
    assert not (tmp_path / ".trash").exists()


def cached_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache (util-linux's ``fincore``)."""
    out = subprocess.run(["fincore", "--noheadings", "--raw", "--output", "PAGES", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[0])


def test_every_run_starts_with_earlier_outputs_out_of_the_page_cache(tmp_path: Path) -> None:
    """Outputs kept for later rows (the trash, a run's output waiting for its run after a delete) are dropped from
    the page cache before a run, once each; the download's archives are read into it again."""
    if not shutil.which("fincore"):
        pytest.skip("util-linux's fincore is not installed")
    source = tmp_path / "src.tar"
    source.write_bytes(os.urandom(1 << 20))
    work = tmp_path / "work"
    outputs = bench.Outputs(work, reserve=0, settle=0, pause=0, sources=[source])
    kept = tree(work / "out-tar-x")
    moved = tree(work / "out")
    outputs.clear(moved)
    files = [*kept.rglob("*.JPEG"), *(work / ".trash").rglob("*.JPEG")]
    assert len(files) == 24 and all(cached_pages(f) for f in files)     # just written: in the cache
    os.sync()                                                         # dropped once written back
    bench.drop_cached(source)
    if cached_pages(source):
        pytest.skip(f"{tmp_path}: its filesystem keeps files in memory (tmpfs?): nothing to drop")
    outputs.prepare(work / "out")
    assert not any(cached_pages(f) for f in files)
    assert cached_pages(source) == (1 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert len(outputs.uncached) == 2
