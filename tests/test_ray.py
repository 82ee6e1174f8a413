"""``--executor ray`` against a real Ray cluster on loopback: a head node and a second worker node, each started
here with ``ray start --block`` (one CPU each: what 2 cores allow). shard, validate --deep, organize and verify
through it, byte-identical to the local executor and to the ``--num-nodes`` path; a Ray worker killed mid-task
and the job still completes the same; the driver killed and re-run resumes; a node that does not see DEST is
named. Without an address, a cluster of the run's own that dies with the driver; a stale cluster, an address
where nothing answers and a token the cluster refuses, each said in one line within seconds. Every node and
driver runs isolated from the machine (:func:`tests.servers.ray_env`: its own HOME and Ray temp folder, explicit
addresses on free ports), so a cluster or ``~/.ray/auth_token`` left on the machine changes nothing (tested).
Tests that need the cluster are skipped when Ray is not installed (``pip install -e '.[ray]'``)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imnet_data.executors import executing
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.organize import organize
from imnet_data.shards import ShardOptions, shard
from tests.helpers import free_port, run_cli
from tests.servers import RAY, holding, isolated_ray, open_files, ray_env, ray_head, ray_node, wait_nodes

pytest.importorskip("ray", reason="the cluster tests need Ray: pip install -e '.[ray]'")
SLOW = ["--samples-per-shard", "120", "--short-side", "96", "--quality", "80", "--splits", "train"]


@pytest.fixture(scope="module", autouse=True)
def isolated() -> Iterator[Path]:
    """Every node and driver of this file in :func:`tests.servers.ray_env` (this process's environment, so the
    commands inherit it); yields its short root folder (HOME and Ray's temp folder are in it)."""
    with isolated_ray() as root:
        yield root


@pytest.fixture(scope="module")
def cluster(isolated: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A two-node Ray cluster on loopback; yields its address."""
    if RAY is None:
        pytest.skip("the ray command is not installed")
    log = tmp_path_factory.mktemp("ray") / "ray.log"
    with ray_head(log) as address:
        with ray_node(["--address", address], log):
            wait_nodes(address, 2)
            yield address


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    return make_fake(tmp_path_factory.mktemp("rayfake") / "src",
                     FakeOptions(classes=10, train_per_class=20, val_images=20), quiet=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    """Real-photo images, so shard tasks that resize them take long enough to be caught running."""
    pytest.importorskip("skimage", reason="real-photo fakes need scikit-image (the test extra)")
    return make_fake(tmp_path_factory.mktemp("rayphotos") / "src",
                     FakeOptions(classes=8, train_per_class=60, val_images=8, profile="imagenet"), quiet=True)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> bytes), temp files and run reports aside."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".partial")}


def without(report: dict, *keys: str) -> dict:
    return {k: v for k, v in report.items() if k not in keys}


def ray_cli(cluster: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, "--executor", "ray", "--ray-address", cluster)


def ray_procs(title: str, root: Path) -> list[int]:
    """Pids of the Ray workers of the clusters under ``root`` (not another cluster on the machine) whose process
    title is ``title`` (``ray::imnet_data_unit``: running a unit)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().split(b"\0")[0].strip() == title.encode() \
                    and any(name.startswith(f"{root}/") for name in open_files(entry)):
                found.append(int(entry.name))
    return found


# ---- SLURM: the example batch script, its allocation simulated ------------------------------------------------

SRUN = """#!/bin/bash
# srun of a one-machine test allocation: the step runs here (the allocation options are dropped)
while [ $# -gt 0 ]; do case "$1" in -w|-N|-n|--nodelist) shift 2;; -*) shift;; *) break;; esac; done
exec "$@"
"""
SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] && printf 'node-a\\nnode-b\\n'
"""


def test_slurm_script_starts_a_cluster_and_shards(isolated: Path, fake: FakeResult, tmp_path: Path) -> None:
    """``tools/slurm_ray.sbatch`` as SLURM would run it on two nodes (``srun``/``scontrol`` stand-ins run the
    steps on this machine): a head and a worker join, the shard job runs on them, the nodes stop with it. First
    in this file, before the module's own cluster starts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node-[a-b]",
           "SLURM_CPUS_PER_TASK": "1", "SRC": str(fake.out), "DEST": str(tmp_path / "shards"),
           "VENV": sys.prefix, "RAY_PORT": str(free_port())}
    script = Path(__file__).resolve().parent.parent / "tools" / "slurm_ray.sbatch"
    done = subprocess.run(["bash", str(script), "--samples-per-shard", "20", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 worker node(s)" in done.stdout and "manifest:" in done.stdout
    shard(fake.out, tmp_path / "local", ShardOptions(samples_per_shard=20), quiet=True)
    assert files(tmp_path / "shards") == files(tmp_path / "local")
    assert not ray_procs("ray::IDLE", isolated)                      # the nodes stopped with the job


# ---- the machine: no address, a stale cluster, a token the cluster refuses, what Ray left behind ---------------

def shard_cli(fake: FakeResult, dest: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``shard`` of the fake on Ray (2 minutes at most: nothing may hang), the local shards of it beside."""
    return run_cli("shard", str(fake.out), str(dest), "--samples-per-shard", "20", "--executor", "ray", "-q",
                   *args, env=env, timeout=120)


def local_shards(fake: FakeResult, dest: Path) -> dict[str, bytes]:
    """The fake sharded by the local executor into ``dest`` (20 per shard), as :func:`files`."""
    shard(fake.out, dest, ShardOptions(samples_per_shard=20), quiet=True)
    return files(dest)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The command's one error line (it exited 1, without a traceback)."""
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("imnet-data shard: error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def gone_within(folder: Path, seconds: float) -> list[int]:
    """The processes still holding files under ``folder`` after waiting up to ``seconds`` for none to."""
    deadline = time.monotonic() + seconds
    while (left := holding(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def current_cluster(temp: Path) -> str:
    """The address a head started with RAY_TMPDIR=``temp`` writes into ``ray_current_cluster`` once it runs."""
    named, deadline = temp / "ray" / "ray_current_cluster", time.monotonic() + 60
    while not (named.is_file() and named.read_text().strip()):
        assert time.monotonic() < deadline, f"no {named} after 60 s"
        time.sleep(0.1)
    return named.read_text().strip()


def test_no_address_runs_on_a_cluster_of_its_own_that_leaves_nothing(isolated: Path, fake: FakeResult,
                                                                      tmp_path: Path) -> None:
    """No address and no cluster named on this machine: the run starts a cluster of its own in a private folder
    under Ray's temp folder, shards as the local executor does, and stops it: no process, no folder, no
    ``~/.ray/auth_token`` is left (``ray.init()`` would write one, and every later ``ray start --head`` would then
    turn token authentication on)."""
    temp = isolated / "a"
    temp.mkdir()
    done = shard_cli(fake, tmp_path / "ray", env={"RAY_TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    assert files(tmp_path / "ray") == local_shards(fake, tmp_path / "local")
    assert not gone_within(temp, 30) and not list(temp.iterdir())
    assert not (isolated / "home" / ".ray").exists()


def test_a_cluster_of_its_own_dies_with_a_killed_driver(isolated: Path, fake: FakeResult, tmp_path: Path) -> None:
    """The driver SIGKILLed once connected (its probe token is in DEST): every process of the cluster it started
    (raylet, GCS, workers, and the dashboard and runtime-env agents that outlived ``ray.init()``'s clusters) is
    gone within a minute; found by the files they hold under the driver's Ray temp folder, so other clusters on
    the machine do not count. The token it left is removed by the next run, a local one."""
    temp, dest = isolated / "k", tmp_path / "ray"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "imnet_data", "shard", str(fake.out), str(dest), "--executor",
                             "ray", "-q"], env={**os.environ, "RAY_TMPDIR": str(temp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (
            list(dest.glob(".imnet-probe-*")) and ray_procs("ray::RuntimeEnvAgent", temp)):
        time.sleep(0.05)
    assert proc.poll() is None, f"finished or failed before it could be killed: {proc.stderr.read()}"
    running = holding(temp)
    assert ray_procs("ray::DashboardAgent", temp) and ray_procs("ray::RuntimeEnvAgent", temp)
    proc.kill()
    proc.wait()
    assert running and not gone_within(temp, 60)
    assert list(dest.glob(f".imnet-probe-{socket.gethostname()}-{proc.pid}-*"))
    assert run_cli("shard", str(fake.out), str(dest), "-q").returncode == 0
    assert not list(dest.glob(".imnet-probe-*"))


def test_a_stale_cluster_or_a_silent_address_is_said_not_waited_for(isolated: Path, fake: FakeResult,
                                                                   tmp_path: Path) -> None:
    """A head killed with SIGKILL leaves its address in ``ray_current_cluster``, where Ray looks when no address
    is given (and then retries for minutes). The run names the file and the address and says what to do, within
    seconds; so does an address, given or in RAY_ADDRESS, where nothing answers."""
    temp = isolated / "s"
    temp.mkdir()
    named = temp / "ray" / "ray_current_cluster"
    with ray_node(["--head", "--port", str(free_port()), "--include-dashboard=false"], tmp_path / "head.log",
                  env={**os.environ, "RAY_TMPDIR": str(temp)}) as head:
        address = current_cluster(temp)
        os.killpg(head.pid, signal.SIGKILL)
        assert not gone_within(temp, 30)
    start = time.monotonic()
    line = error_line(shard_cli(fake, tmp_path / "a", env={"RAY_TMPDIR": str(temp)}))
    assert f"the cluster named in {named} ({address}" in line and "does not answer" in line
    assert "ray start --head" in line and "--ray-address" in line
    assert f"no Ray cluster answers at {address}: " in error_line(shard_cli(fake, tmp_path / "b", "--ray-address",
                                                                            address))
    assert f"no Ray cluster answers at {address} (RAY_ADDRESS)" in error_line(
        shard_cli(fake, tmp_path / "c", env={"RAY_ADDRESS": address}))
    assert time.monotonic() - start < 60
    assert not any((tmp_path / x).exists() and list((tmp_path / x).rglob("*.tar")) for x in "abc")


def test_a_token_the_cluster_refuses_is_said_with_the_fix(isolated: Path, fake: FakeResult, tmp_path: Path) -> None:
    """A head started where ``~/.ray/auth_token`` exists runs with token authentication (Ray 2.60). A driver
    without the token, or with another, is told so in one line within seconds (not "no Ray cluster"), with the
    fix; given the token, it runs."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(16))
    machine = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    with ray_head(tmp_path / "head.log", env={**machine, "HOME": str(home)}) as address:
        assert "Token authentication is enabled" in (tmp_path / "head.log").read_text()
        start = time.monotonic()
        line = error_line(shard_cli(fake, tmp_path / "a", "--ray-address", address))
        assert f"the Ray cluster at {address} requires token authentication" in line
        assert "RAY_AUTH_MODE is 'disabled' here" in line and "~/.ray/auth_token" in line
        line = error_line(shard_cli(fake, tmp_path / "b", "--ray-address", address,
                                    env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}))
        assert f"the Ray cluster at {address} refused this driver's token (from RAY_AUTH_TOKEN)" in line
        assert time.monotonic() - start < 60
        done = shard_cli(fake, tmp_path / "c", "--ray-address", address,
                         env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(home / ".ray" / "auth_token")})
        assert done.returncode == 0, done.stderr
    assert files(tmp_path / "c") == local_shards(fake, tmp_path / "local")


def test_a_stray_token_cluster_and_token_on_the_machine_change_nothing(isolated: Path, fake: FakeResult,
                                                                       tmp_path: Path) -> None:
    """As on a machine where Ray ran before: a token-authenticated head started from the HOME the suite runs
    with (its ``~/.ray/auth_token``), named in Ray's temp folder as the current cluster. In the tests' environment
    (:func:`tests.servers.ray_env` of that machine) a head and a second node form their own cluster (the second
    would not join a head that took the token on) and shard as the local executor does."""
    home, machine_tmp = tmp_path / "home", isolated / "m"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(16))
    machine_tmp.mkdir()
    machine = {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}, "HOME": str(home),
               "RAY_TMPDIR": str(machine_tmp)}
    with ray_head(tmp_path / "stray.log", env=machine):
        assert current_cluster(machine_tmp)
        assert "Token authentication is enabled" in (tmp_path / "stray.log").read_text()
        (isolated / "t").mkdir()
        env = ray_env(machine, isolated / "t")
        with ray_head(tmp_path / "ray.log", env=env) as address:
            with ray_node(["--address", address], tmp_path / "ray.log", env=env):
                wait_nodes(address, 2, env)
                done = run_cli("shard", str(fake.out), str(tmp_path / "ray"), "--samples-per-shard", "20",
                               "--executor", "ray", "--ray-address", address, "-q", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert files(tmp_path / "ray") == local_shards(fake, tmp_path / "local")


# ---- the same bytes, whatever the executor -------------------------------------------------------------------

def test_shard_on_ray_is_byte_identical_to_local_and_to_nodes(cluster: str, fake: FakeResult,
                                                              tmp_path: Path) -> None:
    options = ["--samples-per-shard", "20"]
    done = ray_cli(cluster, "shard", str(fake.out), str(tmp_path / "ray"), *options, "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    assert all(s["manifest"] for s in json.loads(done.stdout)["splits"])
    shard(fake.out, tmp_path / "local", ShardOptions(samples_per_shard=20), quiet=True)
    for rank in (0, 1):
        assert run_cli("shard", str(fake.out), str(tmp_path / "nodes"), *options, "--num-nodes", "2",
                       "--node-rank", str(rank), "-q").returncode == 0
    assert run_cli("shard", "--merge", str(tmp_path / "nodes")).returncode == 0
    ray_files = files(tmp_path / "ray")
    assert len([n for n in ray_files if n.endswith(".tar")]) == 11
    assert ray_files == files(tmp_path / "local") == files(tmp_path / "nodes")

    verified = ray_cli(cluster, "verify", str(tmp_path / "ray"), "--deep", "--json")
    local = run_cli("verify", str(tmp_path / "ray"), "--deep", "--json")
    assert verified.returncode == local.returncode == 0, verified.stderr
    assert without(json.loads(verified.stdout), "seconds") == without(json.loads(local.stdout), "seconds")


def test_validate_and_organize_on_ray_match_local(cluster: str, fake: FakeResult, tmp_path: Path) -> None:
    on_ray = ray_cli(cluster, "validate", str(fake.out), "--expect", "self", "--deep", "--json", "--quiet")
    local = run_cli("validate", str(fake.out), "--expect", "self", "--deep", "--json", "--quiet")
    assert on_ray.returncode == local.returncode == 0, on_ray.stderr
    assert without(json.loads(on_ray.stdout), "seconds") == without(json.loads(local.stdout), "seconds")
    with executing("ray", cluster):                                    # the library, as a script would use it
        report = organize(fake.out, tmp_path / "ray", fix=True, quiet=True)
    assert report.ok
    organize(fake.out, tmp_path / "local", fix=True, quiet=True)
    a, b = files(tmp_path / "ray"), files(tmp_path / "local")
    ra, rb = (json.loads(x.pop("organize-report.json")) for x in (a, b))
    assert a == b and len(a) > 200
    assert without(ra, "dest", "seconds") == without(rb, "dest", "seconds")


# ---- failures: a worker, the driver, a node that cannot see DEST ---------------------------------------------

def test_worker_killed_mid_task_still_completes_the_same(isolated: Path, cluster: str, photos: FakeResult,
                                                         tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "imnet_data", "shard", str(photos.out), str(tmp_path / "ray"),
                             *SLOW, "--executor", "ray", "--ray-address", cluster, "--quiet", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, deadline = None, time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        running = ray_procs("ray::imnet_data_unit", isolated)
        if running:
            killed = running[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    out, err = proc.communicate(timeout=300)
    assert killed is not None, "no unit was caught running"
    assert proc.returncode == 0, err
    assert json.loads(out)["splits"][0]["manifest"]
    shard(photos.out, tmp_path / "local", ShardOptions(samples_per_shard=120, short_side=96, quality=80),
          splits=["train"], quiet=True)
    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_driver_killed_then_rerun_resumes(cluster: str, photos: FakeResult, tmp_path: Path) -> None:
    dest = tmp_path / "ray"
    cmd = [sys.executable, "-m", "imnet_data", "shard", str(photos.out), str(dest), *SLOW, "--executor", "ray",
           "--ray-address", cluster, "--quiet", "--json", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records, deadline = dest / "train" / ".imnet-shard", time.monotonic() + 120
    while proc.poll() is None and not list(records.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in records.glob("*.json"))
    assert 1 <= len(finished) < 4 and not (dest / "train" / "manifest.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["splits"][0]
    assert report["kept"] >= len(finished) and report["kept"] + len(report["written"]) == 4
    shard(photos.out, tmp_path / "local", ShardOptions(samples_per_shard=120, short_side=96, quality=80),
          splits=["train"], quiet=True)
    assert files(dest) == files(tmp_path / "local")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_driver_interrupted_says_one_line_and_a_rerun_resumes(cluster: str, photos: FakeResult, tmp_path: Path,
                                                                 sig: int) -> None:
    """Ray's core worker installs its own SIGTERM handler (a stack trace, then abort: exit 134); the command's
    rule holds on a cluster too: one line, 128 + the signal, and the same command again finishes the job."""
    dest = tmp_path / "ray"
    cmd = [sys.executable, "-m", "imnet_data", "shard", str(photos.out), str(dest), *SLOW, "--executor", "ray",
           "--ray-address", cluster, "--quiet", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records, deadline = dest / "train" / ".imnet-shard", time.monotonic() + 120
    while proc.poll() is None and not list(records.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"finished before it could be interrupted: {proc.stderr.read()}"
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == "imnet-data shard: interrupted; run the same command again to resume"
    assert "Traceback" not in err and "received at time" not in err
    assert not (dest / "train" / "manifest.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shard(photos.out, tmp_path / "local", ShardOptions(samples_per_shard=120, short_side=96, quality=80),
          splits=["train"], quiet=True)
    assert files(dest) == files(tmp_path / "local")


def test_a_node_that_cannot_see_dest_is_named(cluster: str, fake: FakeResult, tmp_path: Path) -> None:
    """A third node whose view of DEST's folder is its own empty tmpfs (a private mount namespace): as if DEST
    were on one machine's local disk. Last in this file: the node leaves the cluster after."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs unshare --mount (util-linux, as root) to give a node its own view of a folder")
    wrap = [unshare, "--mount", "--propagation", "private", "sh", "-c", f'mount -t tmpfs none "{hidden}" && '
            'exec "$0" "$@"']
    with ray_node(["--address", cluster], tmp_path / "node3.log", wrap):
        wait_nodes(cluster, 3)
        done = ray_cli(cluster, "shard", str(fake.out), str(hidden / "shards"), "--samples-per-shard", "20")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    named = re.findall(r"node (\S+) \(([0-9a-f]{12})\): writes to (\S+) would not reach the driver", done.stderr)
    assert len(named) == 1 and named[0][2] == str(hidden / "shards")    # the one node, by address and ID
    assert not list((hidden / "shards").rglob("*.tar"))                 # refused before any unit ran
    wait_nodes(cluster, 2)


def write_into(folder: str, name: str) -> str:
    """A unit that writes one file into ``folder`` (as every shard or organize unit does into DEST)."""
    Path(folder, name).write_text(name)
    return name


def test_a_node_that_joins_after_the_probe_is_refused_by_its_first_unit(tmp_path: Path) -> None:
    """A cluster of its own: the head has no CPUs and the one worker that passed the probe leaves; then a node
    whose DEST is its own tmpfs joins (as an autoscaler adds one) and gets every unit. Its first unit fails
    naming it, and nothing is written where the driver would not see it."""
    from functools import partial

    from imnet_data.parallel import check_visible, map_units

    hidden, src = tmp_path / "hidden", tmp_path / "src"
    (hidden / "dest").mkdir(parents=True)
    src.mkdir()
    (src / "ILSVRC2012_img_val.tar").write_bytes(b"")
    unshare = shutil.which("unshare")
    if RAY is None or not unshare or subprocess.run([unshare, "--mount", "--propagation", "private", "true"],
                                                    capture_output=True).returncode != 0:
        pytest.skip("needs the ray command and unshare --mount (util-linux, as root)")
    wrap = [unshare, "--mount", "--propagation", "private", "sh", "-c", f'mount -t tmpfs none "{hidden}" && '
            f'mkdir "{hidden}/dest" && exec "$0" "$@"']     # its own empty dest: units would "succeed" there
    with ray_head(tmp_path / "ray.log", cpus=0) as address:
        with executing("ray", address):
            with ray_node(["--address", address], tmp_path / "good.log"):
                wait_nodes(address, 2)
                check_visible([src], [hidden / "dest"])                  # the good node passes
                assert list(map_units(partial(write_into, str(hidden / "dest")), ["a"])) == ["a"]
            wait_nodes(address, 1)
            with ray_node(["--address", address], tmp_path / "late.log", wrap):
                wait_nodes(address, 2)
                import ray

                late = [n["NodeID"][:12] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
                with pytest.raises(RuntimeError, match=rf"node \S+ \({late[0]}\), not in the cluster when the job "
                                   rf"started .*writes to {re.escape(str(hidden / 'dest'))} would not reach"):
                    list(map_units(partial(write_into, str(hidden / "dest")), ["b", "c"]))
        assert sorted(p.name for p in (hidden / "dest").iterdir()) == ["a"]   # the token removed, no b or c
