"""An HTTP(S) base URL as a read-only store (a :class:`~imnet_data.stores.base.ReadableStore`): metadata whole,
large files as a ``readinto`` stream from a byte offset (Range), one pooled :class:`requests.Session`."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from imnet_data.stores.base import capped_read, check_range, direct_reader
from imnet_data.stores.errors import Policy, Retry, StoreError, once

PERMANENT = {401, 403, 404, 410}


class HttpStore:
    """A base URL served over HTTP(S), read with a pooled :class:`requests.Session`."""

    def __init__(self, base: str, session: requests.Session, timeout: tuple[float, float]) -> None:
        self.base, self.session, self.timeout = base.rstrip("/") + "/", session, timeout

    def __str__(self) -> str:
        return self.base

    def child(self, name: str) -> HttpStore:
        """The store of a sub-path of the base URL."""
        return HttpStore(self.base + quote(name), self.session, self.timeout)

    def url(self, name: str) -> str:
        """The file's URL (the name percent-quoted)."""
        return self.base + quote(name)

    def local_folder(self) -> Path | None:
        """None: not a folder."""
        return None

    def get(self, name: str, headers: dict | None = None) -> requests.Response:
        """A streamed GET of ``name``: StoreError for a permanent status, Retry for 5xx and the like."""
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
        """A metadata file's bytes: None when the server says 404; StoreError (with the status and URL) for
        another refusal or a body past the metadata cap (read no further); transient errors are raised."""
        url = self.url(name)
        r = self.session.get(url, headers={"Accept-Encoding": "identity"}, stream=True, timeout=self.timeout)
        with r:
            if r.status_code == 404:
                return None
            check_status(r, url)
            declared = r.headers.get("Content-Length", "")
            return capped_read(r.raw.read, url, int(declared) if declared.isdigit() else None)

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(offset, readinto)``: from ``start`` when the server honours the Range request (206), else from 0
        (read as :func:`~imnet_data.stores.base.direct_reader` says)."""
        with self.get(name, {"Range": f"bytes={start}-"} if start else None) as r:
            offset = 0
            if r.status_code == 206:
                check_range(r.headers.get("Content-Range"), start, r.url)
                offset = start
            with direct_reader(r.raw) as readinto:
                yield offset, readinto


def check_status(r: requests.Response, url: str) -> None:
    """StoreError for a permanent refusal (401/403/404/410), Retry for any other answer but 200/206; both
    carry the server's status and the URL."""
    if r.status_code in PERMANENT:
        raise StoreError(f"{url}: HTTP {r.status_code} {r.reason}")
    if r.status_code not in (200, 206):
        raise Retry(f"{url}: HTTP {r.status_code} {r.reason}", restart=r.status_code == 416)


@contextlib.contextmanager
def http_store(base: str, jobs: int, timeout: tuple[float, float], policy: Policy = once) -> Iterator[HttpStore]:
    """The store of a base URL, its session pooled for ``jobs`` connections (closed after). ``policy`` is not
    used: every request is made once, its caller retries (the stage transfers)."""
    with requests.Session() as session:
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(jobs, 1), max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        yield HttpStore(base, session, timeout)
