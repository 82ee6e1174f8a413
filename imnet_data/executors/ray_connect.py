"""The driver's connection to a Ray cluster: the address Ray would use, checked before Ray is asked; a cluster of
the run's own when none is named; Ray's refusals said in one line.

Ray, asked to connect where nothing answers, retries for minutes ("Failed to get cluster ID from GCS server:
TimedOut"), and a token-authenticated cluster (Ray 2.52+; on by default for clusters ``ray.init()`` starts and
for ``ray start`` where ``~/.ray/auth_token`` exists) refuses a driver without its token in a way that reads as
"no cluster". So, before :func:`ray.init`:

- ``HOST:PORT`` (``--ray-address`` or ``RAY_ADDRESS``) must accept a TCP connection within :data:`CONNECT_TIMEOUT`.
- No address (or ``auto``): Ray attaches to the cluster named in ``ray_current_cluster`` in its temp folder (the
  last one ``ray start`` started on this machine). That cluster must answer the same way; one that was stopped or
  killed is named, with the file, instead of waited for. With no such file, the run starts a cluster of its own
  (:func:`own_cluster`): ``ray start --head --block`` in a private temp folder, with a token of its own, stopped
  when the run ends, and by the kernel (Linux's parent-death signal) when the driver is killed, agents included.
  Unlike ``ray.init()``, nothing is left in ``~/.ray`` or in Ray's temp folder.
- A refusal for want of the right token names where the driver's token came from and the fix.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.executors.local import die_with_parent

CONNECT_TIMEOUT = 5.0     # seconds a cluster's address has to accept a TCP connection
CONNECT_TRIES = "5"       # Ray's tries (about a second each) to reach a cluster that accepted the connection
START_TIMEOUT = 120.0     # seconds a cluster of the run's own has to start
STOP_TIMEOUT = 60.0       # seconds it has to stop (Ray drains a node for up to 30 s) before it is killed
INSTALL = "pip install 'imnet-data[ray]'"
TOKEN_FIX = ("run with RAY_AUTH_MODE=token and the cluster's token (`ray get-auth-token` on its head) in "
             "~/.ray/auth_token, in a file named by RAY_AUTH_TOKEN_PATH or in RAY_AUTH_TOKEN; or start every node "
             "of the cluster, and this command, with RAY_AUTH_MODE=disabled")


@contextlib.contextmanager
def connected(ray, address: str | None) -> Iterator[None]:
    """The driver connected to the cluster at ``address`` (``HOST:PORT``, ``auto``, None: see the module doc)
    for the duration, disconnected after (and a cluster of its own stopped); RuntimeError saying what is wrong
    when it cannot connect."""
    given = address or os.environ.get("RAY_ADDRESS") or None
    if given is None and not current_cluster()[1]:
        with own_cluster() as (own, auth), environ(auth), attached(ray, own, own):
            yield
        return
    with attached(ray, given, answering(given, from_env=not address)):
        yield


def answering(given: str | None, from_env: bool) -> str:
    """The address Ray connects to for ``given`` (None and ``auto``: the one in ``ray_current_cluster``, if any),
    checked to accept a connection; RuntimeError naming it (and the file) and what to do when it does not."""
    if given not in (None, "auto"):
        problem = unanswered(given)
        if problem:
            raise RuntimeError(f"no Ray cluster answers at {given}{' (RAY_ADDRESS)' if from_env else ''}: {problem}. "
                               "Start one (ray start --head), or name a running one (--ray-address HOST:PORT)")
        return given
    current, named = current_cluster()
    problem = unanswered(named) if named else None
    if problem:
        raise RuntimeError(
            f"no Ray address given, and the cluster named in {current} ({named}: the last one `ray start` started "
            f"on this machine) does not answer ({problem}): it was stopped or killed. Start one (ray start --head), "
            f"name a running one (--ray-address HOST:PORT or RAY_ADDRESS), or remove {current} to have this run "
            "start a cluster of its own")
    return named or "auto (a cluster running on this machine)"


@contextlib.contextmanager
def attached(ray, address: str | None, where: str) -> Iterator[None]:
    """``ray.init(address)`` for the duration (Ray's tries bounded: the cluster answered), ``ray.shutdown()``
    after; a failure to connect as RuntimeError naming ``where`` (a refused token: why, and the fix)."""
    wait = "RAY_gcs_server_port_wait_time_s"
    tries = {} if wait in os.environ else {wait: CONNECT_TRIES}
    try:
        with environ(tries, refresh=False), signals_kept():
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False,
                     configure_logging=True)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
        raise RuntimeError(auth_problem(where, e) or f"cannot connect to Ray at {where}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def signals_kept() -> Iterator[None]:
    """SIGINT's and SIGTERM's handlers as they were before: ``ray.init`` installs its core worker's own (on
    SIGTERM it prints a stack trace and aborts, exit 134), where the command's say one line and exit 130 / 143
    (:mod:`imnet_data.interrupts`). Only the main thread sets handlers; one set outside Python stays Ray's."""
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for s, handler in before.items():
            if handler is not None:
                signal.signal(s, handler)


def unanswered(address: str) -> str | None:
    """Why ``address`` (``[ray://]HOST:PORT``) does not accept a TCP connection within :data:`CONNECT_TIMEOUT`
    (None: it does, or it is not a host and port, which Ray then judges)."""
    found = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address.strip())
    if not found:
        return None
    try:
        with socket.create_connection((found[1], int(found[2])), timeout=CONNECT_TIMEOUT):
            return None
    except TimeoutError:
        return f"no answer within {CONNECT_TIMEOUT:.0f} s"
    except OSError as e:
        return e.strerror or str(e)


def current_cluster() -> tuple[Path, str]:
    """Where Ray keeps the address of the last cluster ``ray start`` started on this machine, and that address
    ("" when none): ``ray_current_cluster`` in Ray's temp folder (``RAY_TMPDIR``, else ``TMPDIR`` on Linux, else
    ``/tmp``, then ``ray``)."""
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    path = Path(base or "/tmp") / "ray" / "ray_current_cluster"
    try:
        return path, path.read_text().strip()
    except OSError:
        return path, ""


def auth_problem(where: str, error: BaseException) -> str | None:
    """What ``error`` (from ``ray.init``) says about token authentication, in one line with the fix; None when
    it is about something else."""
    chain: list[str] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 8:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    text = "\n".join(chain)
    if "InvalidAuthToken" not in text and "AuthenticationError" not in text:
        return None
    mode = os.environ.get("RAY_AUTH_MODE", "disabled")
    if mode.lower() != "token":
        return (f"the Ray cluster at {where} requires token authentication and this driver sends no token "
                f"(RAY_AUTH_MODE is {mode!r} here): {TOKEN_FIX}")
    if "InvalidAuthToken" in text:
        return (f"the Ray cluster at {where} refused this driver's token (from {token_source()}): it is not the "
                f"cluster's; {TOKEN_FIX}")
    said = str(getattr(error, "message", error)).split(". ")[0]
    return f"Ray token authentication is on here (RAY_AUTH_MODE=token) but: {said}; {TOKEN_FIX}"


def token_source() -> str:
    """Where Ray reads this process's token from (its order: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, the file)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    return str(Path.home() / ".ray" / "auth_token")


@contextlib.contextmanager
def own_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A one-machine cluster of this run's own (see the module doc); yields its address and the RAY_AUTH_*
    variables a driver needs to connect to it (a fresh token, unless RAY_AUTH_MODE=disabled here)."""
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if ray_bin is None:
        raise UsageError(f"--executor ray needs the ray command: {INSTALL}")
    temp = Path(tempfile.mkdtemp(prefix="imnet-ray-", dir=os.environ.get("RAY_TMPDIR")))
    auth = {} if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" else {
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    log = temp / "ray-start.log"
    with open(log, "wb") as out:   # preexec_fn: only the child can ask for its parent-death signal (prctl)
        proc = subprocess.Popen(
            [ray_bin, "start", "--head", "--block", "--port", "0", "--temp-dir", str(temp), "--disable-usage-stats",
             "--include-dashboard=false", "--node-ip-address", "127.0.0.1"], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env={**os.environ, **auth}, start_new_session=True,
            preexec_fn=functools.partial(die_with_parent, os.getpid(), signal.SIGTERM))  # noqa: PLW1509
    try:
        yield started(proc, temp / "ray_current_cluster", log), auth
    finally:
        stop(proc)
    shutil.rmtree(temp, ignore_errors=True)


def started(proc: subprocess.Popen, address_file: Path, log: Path) -> str:
    """The address ``ray start`` writes once its node runs; RuntimeError with the end of ``log`` if it exits
    first or takes longer than :data:`START_TIMEOUT`."""
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            address = address_file.read_text().strip()
            if re.fullmatch(r"\S+:\d+", address):
                return address
        time.sleep(0.1)
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    how = f"exited ({proc.returncode})" if proc.poll() is not None else f"not running after {START_TIMEOUT:.0f} s"
    raise RuntimeError(f"could not start a local Ray cluster (ray start --head {how}): {tail} (log: {log})")


def stop(proc: subprocess.Popen) -> None:
    """Stop a node ``ray start --block`` runs: SIGTERM (it stops its processes), then its process group killed."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def environ(values: dict[str, str], refresh: bool = True) -> Iterator[None]:
    """``values`` set in this process's environment for the duration, then restored. With ``refresh``, Ray
    reads its configuration and token again (it read RAY_AUTH_* when imported), as ``ray.init`` does when it
    turns token authentication on by itself; Ray before 2.52 has no token authentication to refresh."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    if refresh and values:
        _reload_ray_auth()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if refresh and values:
            _reload_ray_auth()


def _reload_ray_auth() -> None:
    with contextlib.suppress(ImportError):
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # Ray 2.52+

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
