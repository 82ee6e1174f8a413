"""Shared test helpers: where the real reference data lives and how to run the CLI as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("IMNET_REFERENCE", ROOT.parent / "shared" / "imagenet-reference"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m imnet_data ARGS`` in a subprocess, capturing text output."""
    return subprocess.run([sys.executable, "-m", "imnet_data", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)
