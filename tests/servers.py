"""The real servers the tests start on loopback, shared with the benchmarks in ``tools/``: nginx (Debian's
``nginx-light``, unprivileged, no master), moto's standalone S3-protocol server and Ray nodes (``ray start
--block``). Importing this module needs none of them installed; a launcher whose program is missing says so
(nginx: the test is skipped) or fails to start naming its log."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_listening

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
NGINX_CONF = """daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  {server}
}}
"""


@contextlib.contextmanager
def nginx(root: Path | None, work: Path, server: Callable[[int], str] | None = None) -> Iterator[str]:
    """Serve ``root`` with nginx (one unprivileged-style process, no master) on a free loopback port; yields the
    base URL. ``server``: instead, the ``server`` block it returns for the port (a config users deploy, e.g. the
    walkthrough's, its ``listen`` set to the port). Skips the test when nginx is not installed."""
    if NGINX is None:
        pytest.skip("nginx not installed: apt-get install -y nginx-light (Debian) to run the HTTP tests")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if server is None:
        assert root is not None, "nginx() serves root, or the server block given"
        block = f"server {{ listen 127.0.0.1:{port}; root {root.resolve()}; }}"
    else:
        block = server(port)
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, server=block))
    proc = subprocess.Popen([NGINX, "-c", str(work / "nginx.conf"), "-p", str(work), "-e", str(work / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(proc, port, "nginx", work / "error.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def moto_server(log: Path, auth: bool = False) -> Iterator[str]:
    """moto's S3-protocol server in its own process on a free loopback port (``auth``: requests authenticated
    after the first three, which make the IAM user); yields the endpoint URL."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if auth else {})})
    try:
        wait_listening(proc, port, "moto server", log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
NODE = ["--block", "--num-cpus", "1", "--object-store-memory", str(100 << 20), "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1"]


def ray_env(base: Mapping[str, str], root: Path) -> dict[str, str]:
    """``base`` as every Ray node and driver of the tests sees it: HOME and Ray's temp folder (``RAY_TMPDIR``)
    in ``root``, token authentication off on both sides, no ``RAY_ADDRESS`` or token variables. What Ray left on
    the machine (a cluster started before and its ``ray_current_cluster``, a ``~/.ray/auth_token`` that turns
    token authentication on for every ``ray start --head``) then changes nothing. ``root`` must be short: Ray's
    Unix sockets live under it (107 bytes at most)."""
    env = {k: v for k, v in base.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH_")}
    (root / "home").mkdir(exist_ok=True)
    return {**env, "HOME": str(root / "home"), "RAY_TMPDIR": str(root), "RAY_AUTH_MODE": "disabled"}


@contextlib.contextmanager
def isolated_ray() -> Iterator[Path]:
    """This process's environment set to :func:`ray_env` in a new short folder for the duration (its nodes and
    drivers inherit it); yields the folder, removed after, with any process still holding a file in it (what a
    failed test left running)."""
    root = Path(tempfile.mkdtemp(prefix="ir", dir="/tmp"))
    env = ray_env(os.environ, root)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key in set(os.environ) - set(env):
                patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            yield root
    finally:
        for pid in set(holding(root)) - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def holding(folder: Path) -> list[int]:
    """Pids of the processes with a file under ``folder`` open (a Ray node's processes, workers and agents
    included, hold their logs in its session folder): a cluster's processes, told apart from other clusters'."""
    prefix = f"{folder}/"
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and any(name.startswith(prefix) for name in open_files(p))]


def open_files(proc: Path) -> list[str]:
    """What the process at ``/proc/PID`` has open (the targets of its file descriptors; none once it is gone)."""
    names = []
    with contextlib.suppress(OSError):
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                names.append(os.readlink(fd))
    return names


@contextlib.contextmanager
def ray_node(args: list[str], log: Path, wrap: list[str] | None = None,
             env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """One Ray node (``ray start --block``) in its own process group, stopped (the whole group) after."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([*(wrap or []), RAY, "start", *NODE, *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_nodes(address: str, count: int, env: Mapping[str, str] | None = None) -> None:
    """Until the cluster has ``count`` alive nodes (60 s at most), asked from a separate driver."""
    code = ("import ray, sys, time\nray.init(address=sys.argv[1], logging_level='ERROR')\nend = time.time() + 60\n"
            "while len([n for n in ray.nodes() if n['Alive']]) != int(sys.argv[2]):\n"
            "    assert time.time() < end, ray.nodes()\n    time.sleep(0.2)\n")
    subprocess.run([sys.executable, "-c", code, address, str(count)], check=True, timeout=120,
                   capture_output=True, env=env)


@contextlib.contextmanager
def ray_head(log: Path, cpus: int = 1, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A Ray head node with ``cpus`` CPUs on a free loopback port; yields the cluster's address."""
    port = free_port()
    with ray_node(["--head", "--port", str(port), "--include-dashboard=false", "--num-cpus", str(cpus)],
                  log, env=env) as head:
        wait_listening(head, port, "ray head", log)
        yield f"127.0.0.1:{port}"
