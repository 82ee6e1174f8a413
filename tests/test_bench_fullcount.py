"""``tools/bench_fullcount.py``'s handling of outputs on real folders: the run after a delete follows the delete of
the command's own earlier output alone."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
