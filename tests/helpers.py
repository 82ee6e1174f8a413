"""Shared test helpers: where the real reference data lives and how to run the CLI as a user would."""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from imnet_data.bench import rss

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("IMNET_REFERENCE", ROOT.parent / "shared" / "imagenet-reference"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m imnet_data ARGS`` in a subprocess (``timeout`` seconds at most), capturing text output."""
    return subprocess.run([sys.executable, "-m", "imnet_data", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, theirs, ...): the benchmarks' walk of ``/proc``."""
    return set(rss.descendants(pid))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, what: str, log: Path | None = None) -> None:
    """Wait (10 s at most) until the server ``proc`` accepts connections on loopback ``port``."""
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text() if log and log.is_file() else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start listening within 10 s")
        time.sleep(0.05)


class FaultPlan:
    """Faults planned per path and per request, for a test server: ``plan(path, *faults)`` queues them, one per
    request. ``log`` holds ``(path, Range header)`` of every GET, ``calls`` ``(method, path)`` of every request,
    ``clients`` the client addresses (one per TCP connection)."""

    def __init__(self, stall: float = 2.0) -> None:
        self.stall = stall
        self.faults: dict[str, list[str | None]] = {}
        self.log: list[tuple[str, str | None]] = []
        self.calls: list[tuple[str, str]] = []
        self.clients: set[tuple[str, int]] = set()
        self.lock = threading.Lock()
        self.meeting = threading.Barrier(1)
        self.meeting_at: set[str] = set()

    def plan(self, path: str, *faults: str | None) -> None:
        self.faults[path] = list(faults)

    def meet(self, *requests: str) -> None:
        """Hold the first of each of ``requests`` (``"METHOD path"``) until all have arrived, 10 s at most: they
        meet only when sent at the same time, in parallel (``meeting.broken`` when they did not)."""
        self.meeting, self.meeting_at = threading.Barrier(len(requests), timeout=10), set(requests)

    def take(self, method: str, path: str, rng: str | None, client: tuple[str, int]) -> str | None:
        with self.lock:
            meets = f"{method} {path}" in self.meeting_at
            self.meeting_at.discard(f"{method} {path}")
        if meets:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.meeting.wait()
        with self.lock:
            if method == "GET":
                self.log.append((path, rng))
            self.calls.append((method, path))
            self.clients.add(client)
            queue = self.faults.get(f"{method} {path}", self.faults.get(path) if method == "GET" else None)
            return queue.pop(0) if queue else None

    def requests(self, path: str) -> list[str | None]:
        """The Range header (or None) of every GET of ``path``."""
        return [r for p, r in self.log if p == path]

    @property
    def url(self) -> str:
        """The base URL, for a server class that mixes this in (``server_address`` is its socket's)."""
        return f"http://127.0.0.1:{self.server_address[1]}"  # type: ignore[attr-defined]


class QuietHandler(BaseHTTPRequestHandler):
    """An HTTP/1.1 (keep-alive) request handler that logs nothing."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


def send_faulty(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes,
                fault: str | None, stall: float) -> None:
    """Answer with ``body``, damaged as ``fault`` says: ``corrupt`` (one byte flipped), ``drop`` (half the body,
    then a TCP reset), ``truncate`` (half, then a clean close), ``stall`` (half, then ``stall`` seconds of
    silence); otherwise whole."""
    body = bytearray(body)
    if fault == "corrupt" and body:
        body[len(body) // 2] ^= 0xFF
    handler.send_response(status)
    for key, value in headers:
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if fault not in ("drop", "truncate", "stall"):
        handler.wfile.write(body)
        return
    handler.wfile.write(body[:len(body) // 2])
    if fault == "stall":
        time.sleep(stall)
    elif fault == "drop":
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.close()
