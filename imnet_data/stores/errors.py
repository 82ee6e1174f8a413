"""The exceptions of moving files to and from stores, and the one retry loop they share: :class:`StoreError` (a
permanent failure, reported or raised to the caller), :class:`Retry` (one attempt failed in a way worth
another) and :func:`retrying` (backoff, counted attempts). Apart so that every store, the stage transfers and
the uploads raise and retry alike."""
from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import TypeVar

import requests
import urllib3

BACKOFF_CAP = 30.0        # seconds: the longest wait between two attempts
TRANSIENT = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError,
             TimeoutError)
T = TypeVar("T")


class StoreError(RuntimeError):
    """A file that cannot be moved (a permanent error, or retries spent), or a run refused (free space)."""


class Retry(Exception):
    """One attempt failed in a way worth retrying; ``restart``: the partial bytes are useless, delete them."""

    def __init__(self, message: str, restart: bool = False) -> None:
        super().__init__(message)
        self.restart = restart


Policy = Callable[[str, Callable[[], T]], T]   # (label, attempt) -> attempt's result, retried as it sees fit


def once(label: str, attempt: Callable[[], T]) -> T:
    """The policy that tries once (the caller retries the whole operation)."""
    return attempt()


def retrying(label: str, attempt: Callable[[], T], retries: int, backoff: float,
             on_retry: Callable[[], None] = lambda: None) -> T:
    """Run ``attempt`` until it succeeds, at most ``retries`` more times after transient failures, waiting
    ``backoff * 2**n`` seconds (capped) in between; then StoreError naming ``label`` and the last error."""
    for n in range(retries + 1):
        try:
            return attempt()
        except (Retry, *TRANSIENT) as e:
            last = e
            if n < retries:
                on_retry()
                time.sleep(min(backoff * 2 ** n, BACKOFF_CAP))
    raise StoreError(f"{label}: failed after {retries + 1} attempts; last: {type(last).__name__}: {last}")


def reason_or(attempt: Callable[[], T]) -> T | str:
    """``attempt()``'s result or, when it fails for good (StoreError, OSError), the reason as text: a pool
    worker's answer, reported beside the others instead of raised."""
    try:
        return attempt()
    except (StoreError, OSError) as e:
        return str(e)
