"""Every command's ``--help`` ends with one worked example that runs as written on the demo's fake: each is read
from the help text, the demo's folder (and the example S3 endpoint) replaced by the test's, and run in a shell as
a user would paste it; it must succeed. ``imnet-data --version`` prints the version."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from imnet_data import __version__
from imnet_data.cli import build_parser
from imnet_data.cli.shared import DEMO
from tests.helpers import ROOT, run_cli
from tests.servers import moto_server

HEADING = f"worked example, on the demo's fake (imnet-data demo {DEMO} makes it):"
ENDPOINT = "http://127.0.0.1:9000"


def helps() -> dict[str, str]:
    """Each command's --help text, as argparse prints it."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {name: p.format_help() for name, p in sub.choices.items()}


def example(text: str) -> str:
    """The worked example: the last line of the help, right after its heading."""
    lines = text.rstrip("\n").splitlines()
    assert lines[-2] == HEADING, lines[-3:]
    return lines[-1].strip()


def shell(line: str, demo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``line`` with the demo's folder and the command replaced, run by bash in the demo's parent folder."""
    line = line.replace(DEMO, str(demo)).replace("imnet-data ", f"{shlex.quote(sys.executable)} -m imnet_data ", 1)
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=demo.parent, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout == f"imnet-data {__version__}\n"


def test_every_help_ends_with_a_worked_example_that_runs(tmp_path: Path) -> None:
    texts = helps()
    examples = {name: example(text) for name, text in texts.items()}
    assert all(line.split("#")[0].split().count("imnet-data") == 1 and f"imnet-data {name}" in line
               for name, line in examples.items()), examples
    demo = tmp_path / "imnet-demo"
    made = shell(examples.pop("demo"), demo, {})          # the demo first: it makes what the others run on
    assert made.returncode == 0, made.stdout + made.stderr
    if not Path("/usr/share/wordnet").is_dir():
        examples.pop("wordnet")
        print("wordnet's example not run: no /usr/share/wordnet (apt-get install -y wordnet-base "
              "wordnet-sense-index)")
    with moto_server(tmp_path / "moto.log") as endpoint:
        env = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo-secret", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "HOME": str(tmp_path)}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="demo", aws_secret_access_key="demo-secret",
                     region_name="us-east-1").create_bucket(Bucket="imnet-demo")
        for name, line in examples.items():
            done = shell(line.replace(ENDPOINT, endpoint), demo, env)
            assert done.returncode == 0, (name, line, done.stdout[-2000:], done.stderr[-2000:])
    assert (demo / "report.html").is_file() and (demo / "val.png").is_file() and (demo / "staged").is_dir()


@pytest.mark.parametrize("name", ["validate", "shard", "report"])
def test_the_worked_example_is_the_last_thing_help_prints(name: str) -> None:
    done = run_cli(name, "--help")
    assert done.returncode == 0 and done.stdout.rstrip("\n").splitlines()[-2] == HEADING
