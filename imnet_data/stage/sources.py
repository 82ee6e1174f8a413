"""Where staged files come from: a folder (:class:`FileSource`) or an HTTP(S) base URL (:class:`HttpSource`), each
giving small files whole and large ones as a ``readinto`` stream from a byte offset; :func:`open_source` picks one."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from imnet_data.shards.schema import MAX_METADATA
from imnet_data.stage.errors import Retry, StageError

PERMANENT = {401, 403, 404, 410}


class FileSource:
    """A folder on a local or network filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def child(self, name: str) -> "FileSource":
        return FileSource(self.root / name)

    def url(self, name: str) -> str:
        return str(self.root / name)

    def read(self, name: str) -> bytes | None:
        """A metadata file's bytes (None when absent; StageError past the metadata cap)."""
        try:
            with open(self.root / name, "rb") as f:
                return capped(f.read(MAX_METADATA + 1), self.url(name))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StageError(f"{self.url(name)}: {e.strerror}") from e

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(offset, readinto)``: file ``name`` from byte ``start``."""
        try:
            f = open(self.root / name, "rb")
        except (FileNotFoundError, PermissionError) as e:
            raise StageError(f"{self.root / name}: {e.strerror}") from e
        with f:
            f.seek(start)
            yield start, f.readinto


class HttpSource:
    """A base URL served over HTTP(S), read with a pooled :class:`requests.Session`."""

    def __init__(self, base: str, session: requests.Session, timeout: tuple[float, float]) -> None:
        self.base, self.session, self.timeout = base.rstrip("/") + "/", session, timeout

    def __str__(self) -> str:
        return self.base

    def child(self, name: str) -> "HttpSource":
        return HttpSource(self.base + quote(name), self.session, self.timeout)

    def url(self, name: str) -> str:
        return self.base + quote(name)

    def get(self, name: str, headers: dict | None = None) -> requests.Response:
        """A streamed GET of ``name``: StageError for a permanent status, Retry for 5xx and the like."""
        url = self.url(name)
        r = self.session.get(url, headers={"Accept-Encoding": "identity", **(headers or {})}, stream=True,
                             timeout=self.timeout)
        try:
            check_status(r, url)
        except BaseException:
            r.close()
            raise
        return r

    def read(self, name: str) -> bytes | None:
        """A metadata file's bytes: None when the server says 404; StageError (with the status and URL) for
        another refusal or a body past the metadata cap (read no further); transient errors are raised."""
        url = self.url(name)
        r = self.session.get(url, headers={"Accept-Encoding": "identity"}, stream=True, timeout=self.timeout)
        with r:
            if r.status_code == 404:
                return None
            check_status(r, url)
            declared = r.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_METADATA:
                raise StageError(f"{url}: {int(declared):,} bytes, over the {MAX_METADATA:,}-byte cap for metadata")
            return capped(r.raw.read(MAX_METADATA + 1), url)

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(offset, readinto)``: from ``start`` when the server honours the Range request (206), else from 0.

        An identity-encoded body is read straight from the ``http.client`` response under urllib3's (into the
        caller's buffer: ~20% faster than urllib3's ``readinto``, which copies); lengths are checked by the caller,
        and a body read to its end hands its connection back to the pool.
        """
        with self.get(name, {"Range": f"bytes={start}-"} if start else None) as r:
            offset = 0
            if r.status_code == 206:
                m = re.match(r"bytes (\d+)-", r.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != start:
                    raise Retry(f"{r.url}: unexpected Content-Range {r.headers.get('Content-Range')!r}", True)
                offset = start
            raw = getattr(r.raw, "_fp", None)
            plain = r.headers.get("Content-Encoding", "identity") == "identity" and hasattr(raw, "readinto")
            yield offset, raw.readinto if plain else r.raw.readinto
            if plain and raw.length == 0:   # read to its end: the connection goes back to the pool (keep-alive)
                r.raw.release_conn()


Source = FileSource | HttpSource


def check_status(r: requests.Response, url: str) -> None:
    """StageError for a permanent refusal (401/403/404/410), Retry for any other answer but 200/206; both
    carry the server's status and the URL."""
    if r.status_code in PERMANENT:
        raise StageError(f"{url}: HTTP {r.status_code} {r.reason}")
    if r.status_code not in (200, 206):
        raise Retry(f"{url}: HTTP {r.status_code} {r.reason}", restart=r.status_code == 416)


def capped(body: bytes, where: str) -> bytes:
    """``body`` (read up to one byte past the cap), or StageError when it is past the metadata cap."""
    if len(body) > MAX_METADATA:
        raise StageError(f"{where}: over the {MAX_METADATA:,}-byte cap for metadata; refused")
    return body


@contextlib.contextmanager
def open_source(source: str | os.PathLike, jobs: int, timeout: tuple[float, float]) -> Iterator[Source]:
    """The source behind a path or URL (an HTTP session pooled for ``jobs`` connections, closed after)."""
    text = os.fspath(source)
    if not re.match(r"https?://", text):
        yield FileSource(Path(text))
        return
    with requests.Session() as session:
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(jobs, 1), max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        yield HttpSource(text, session, timeout)
