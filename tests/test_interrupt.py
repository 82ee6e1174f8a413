"""organize's hold on DEST: a re-run removes the temp files a killed run left among its records (and only those),
and a second organize into a DEST another one is writing is refused."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.organize import REPORT, STATE
from tests.helpers import run_cli


def test_organize_rerun_removes_its_own_leftover_temp_files(tmp_path: Path) -> None:
    fake = make_fake(tmp_path / "src", FakeOptions(classes=3, train_per_class=4, val_images=6), quiet=True)
    dest = tmp_path / "out"
    assert run_cli("organize", str(fake.out), str(dest), "--quiet").returncode == 0
    markers = dest / STATE / "train"
    wnid = sorted(p.stem for p in markers.glob("*.json"))[0]
    (markers / f"{wnid}.json").unlink()          # that unit is redone
    ours = [markers / f"{wnid}.json.4242-0badf00d.partial", markers / f"{wnid}.json.77-12345678.partial",
            dest / STATE / "val" / "val-0.json.99-abcdef01.partial", dest / f"{REPORT}.4242-0badf00d.partial",
            dest / "class_to_idx.json.4242-0badf00d.partial"]
    others = [markers / "notes.txt", markers / f"{wnid}.json.partial", dest / "mine.json.4242-0badf00d.partial",
              markers / f"{wnid}.jpg.4242-0badf00d.partial"]
    for path in ours + others:
        path.write_bytes(b"{half")               # as a run killed mid-write leaves them (SIGKILL: no cleanup)
    again = run_cli("organize", str(fake.out), str(dest), "--quiet", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"train": 12, "val": 6}
    assert [p for p in ours if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert (markers / f"{wnid}.json").is_file()


def test_organize_refuses_a_dest_another_organize_is_writing(tmp_path: Path) -> None:
    fake = make_fake(tmp_path / "src", FakeOptions(classes=2, train_per_class=2, val_images=2), quiet=True)
    dest = tmp_path / "out"
    (dest / STATE).mkdir(parents=True)
    with open(dest / STATE / "lock", "a") as held:          # what a running organize holds
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = run_cli("organize", str(fake.out), str(dest), "--quiet")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"imnet-data organize: error: {dest}: another organize run is writing here (it holds "
        f"{dest / STATE / 'lock'}); run again when it has ended"]
    assert not (dest / "train").exists()
    assert run_cli("organize", str(fake.out), str(dest), "--quiet").returncode == 0
