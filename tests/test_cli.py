"""The ``imnet-data`` command as a user runs it: help, classes, doctor, demo; exit codes and JSON output."""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imnet_data.cli import COMMANDS
from tests.helpers import ROOT, run_cli

SUBCOMMANDS = ["demo", "validate", "organize", "shard", "verify", "preview", "stage", "bench", "classes", "fake",
               "doctor", "wordnet", "index"]


def test_help_lists_commands_and_each_has_an_example() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    for name in SUBCOMMANDS:
        assert name in top.stdout
        sub = run_cli(name, "--help")
        assert sub.returncode == 0 and f"imnet-data {name}" in sub.stdout.split("example", 1)[1], name


# every command with the arguments it needs, so that argparse reaches the options
ARGS = {"demo": [], "validate": ["A"], "organize": ["A", "B"], "shard": ["A", "B"], "upload": ["A", "s3://b/p"],
        "stage": ["A", "B"], "verify": ["A"], "preview": ["A", "--out", "p.png"], "report": ["A", "--out", "r.html"],
        "bench": ["A"], "classes": [], "fake": ["A"], "doctor": [], "wordnet": [], "index": ["A"]}


def test_help_shows_no_argparse_escapes_and_real_slurm_options() -> None:
    assert set(ARGS) == {add.__name__.removeprefix("add_") for add in COMMANDS}
    for name in ARGS:
        assert "%%" not in run_cli(name, "--help").stdout, name
    shard = run_cli("shard", "--help").stdout
    assert "<name>-<split>-%06d.tar" in shard and "sbatch --array=0-3 --wrap" in shard and "srun --array" not in shard


def test_a_prefix_of_an_option_is_a_usage_error_in_every_command(tmp_path: Path) -> None:
    for name, args in ARGS.items():
        r = run_cli(name, *args, "--qui", cwd=tmp_path)          # a prefix of --quiet, which every command has
        assert r.returncode == 2 and "unrecognized arguments: --qui\n" in r.stderr, (name, r.stderr)
    r = run_cli("shard", "A", "B", "--sample", "10", cwd=tmp_path)
    assert r.returncode == 2 and "unrecognized arguments: --sample 10" in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_classes_table_search_and_json() -> None:
    table = run_cli("classes")
    assert table.returncode == 0
    rows = table.stdout.strip().splitlines()
    assert len(rows) == 1001 and rows[1].split()[:3] == ["0", "n01440764", "449"]
    found = json.loads(run_cli("classes", "terrier", "--json").stdout)
    assert found and all("terrier" in " ".join(c["names"]).lower() for c in found)
    one = json.loads(run_cli("classes", "n15075141", "--json").stdout)
    assert [c["index"] for c in one] == [999]


def test_classes_unknown_exits_2_with_suggestion() -> None:
    r = run_cli("classes", "--ancestors", "n0208562")
    assert r.returncode == 2 and "n0208562" in r.stderr and "n02085620" in r.stderr
    r = run_cli("classes", "tenhc")
    assert r.returncode == 2 and "did you mean" in r.stderr and "tench" in r.stderr


def test_classes_ancestry_under_and_depth() -> None:
    path = json.loads(run_cli("classes", "--ancestors", "n02085620", "--json", "--backend", "offline").stdout)
    wnids = [p["wnid"] for p in path]
    assert wnids[0] == "n00001740" and wnids[-1] == "n02085620" and "n02084071" in wnids
    dogs = json.loads(run_cli("classes", "--under", "n02084071", "--json", "--backend", "offline").stdout)
    assert {c["index"] for c in dogs} >= set(range(151, 269))
    groups = json.loads(run_cli("classes", "--depth", "2", "--json", "--backend", "offline").stdout)
    assert sum(len(v) for v in groups.values()) == 1000


def test_doctor_reports_every_piece_and_exits_0(tmp_path: Path) -> None:
    r = run_cli("doctor", "--path", str(tmp_path))
    assert r.returncode == 0
    for piece in ("python", "PIL", "webdataset", "DALI", "GPU", "boto3", "ray", "WordNet", "disk"):
        assert piece in r.stdout
    checks = json.loads(run_cli("doctor", "--json").stdout)
    pil = next(c for c in checks if c["name"] == "PIL")
    assert "pillow" in pil["detail"] and "libjpeg" in pil["detail"]
    extras = {c["name"]: c for c in checks if c["name"] in ("boto3", "ray")}
    assert extras["boto3"]["ok"] and "s3://" in extras["boto3"]["detail"]    # the test extra installs both
    assert extras["ray"]["ok"] and extras["ray"]["detail"].startswith(importlib.metadata.version("ray"))


def test_fake_cli_writes_archives_and_truth(tmp_path: Path) -> None:
    r = run_cli("fake", str(tmp_path / "in"), "--classes", "3", "--train-per-class", "2", "--val-images", "3",
                "--truth", str(tmp_path / "truth.json"), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"train", "val", "devkit"} <= set(out["archives"])
    assert all(Path(p).stat().st_size > 0 for p in out["archives"].values())
    assert len(json.loads((tmp_path / "truth.json").read_text())["classes"]) == 3
    bad = run_cli("fake", str(tmp_path / "bad"), "--classes", "n01440764,n99999999", "--quiet")
    assert bad.returncode == 2 and "n99999999" in bad.stderr


def test_demo_runs_every_stage(tmp_path: Path) -> None:
    r = run_cli("demo", str(tmp_path / "demo"), "--quiet", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and [s["name"] for s in report["stages"]] == ["fake download", "catalog", "validate --deep",
                                                                 "organize --fix", "shard", "load"]
    assert (tmp_path / "demo" / "download" / "ILSVRC2012_img_train.tar").is_file()
    assert json.loads((tmp_path / "demo" / "validate-report.json").read_text())["problems"]
    assert any((tmp_path / "demo" / "organized" / "val").iterdir())


@pytest.mark.parametrize("argv", [["classes", "--depth", "x"], ["fake"], ["nosuchcommand"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert run_cli(*argv).returncode == 2


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(),
                    reason="Debian WordNet 3.0 not installed (apt-get install wordnet-base wordnet-sense-index)")
def test_wordnet_install_then_nltk_backend(tmp_path: Path) -> None:
    r = run_cli("wordnet", "--from", "/usr/share/wordnet", "--to", str(tmp_path / "nltk_data"), "--json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "nltk_data" / "corpora" / "wordnet" / "lexnames").is_file()
    env = {"NLTK_DATA": str(tmp_path / "nltk_data")}
    path = json.loads(run_cli("classes", "--ancestors", "n02085620", "--backend", "nltk", "--json", env=env).stdout)
    assert [p["wnid"] for p in path][0] == "n00001740" and path[-1]["wnid"] == "n02085620"
    if not any(Path(d, "corpora", "wordnet").exists() for d in ("/root/nltk_data", "/usr/share/nltk_data",
                                                               "/usr/local/share/nltk_data")):
        missing = run_cli("classes", "--ancestors", "n02085620", "--backend", "nltk",
                          env={"NLTK_DATA": str(tmp_path / "empty")})
        assert missing.returncode == 1 and "imnet-data wordnet --from" in missing.stderr


def test_the_test_summary_lists_failures_and_skip_reasons(tmp_path: Path) -> None:
    """The project's pytest options (pyproject addopts) keep pytest's list of failed tests and add skip reasons."""
    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_fails():\n    assert False\n\n"
                                        "@pytest.mark.skip(reason='no reason at all')\ndef test_skipped():\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "no:cacheprovider",
                        str(tmp_path / "test_x.py")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    summary = r.stdout.split("short test summary info", 1)[-1]
    assert r.returncode == 1 and "::test_fails - assert False" in summary and "no reason at all" in summary, r.stdout
