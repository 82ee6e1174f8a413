"""The committed manifests equal a fresh generation from the reference, and ship inside the wheel."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from tests.helpers import REFERENCE, ROOT


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference data not found at {REFERENCE}")
def test_committed_manifests_equal_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_manifests.py"), "--reference", str(REFERENCE),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in (ROOT / "manifests").iterdir()
                 if p.is_file() and p.name != "__init__.py"}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"manifests differ from a fresh generation: {stale}; run tools/gen_manifests.py"
    installed = resources.files("imnet_data.manifests")
    assert all(installed.joinpath(name).read_bytes() == data for name, data in fresh.items())


@pytest.mark.slow
def test_wheel_ships_manifests(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("imnet_data-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "manifests").iterdir() if p.is_file()}
    assert {f"imnet_data/manifests/{n}" for n in shipped} <= names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "imnet_data").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel (pyproject packages?): {sorted(modules - names)}"
