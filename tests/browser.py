"""A real headless Chromium (Debian's ``chromium``) for the tests, driven over the DevTools protocol through a
pipe (``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file descriptors 3 and 4), so no
websocket library and no port are needed. :func:`chromium` skips the test, saying why, when it is not installed.

What a test sees of a page: :meth:`Page.evaluate` (JavaScript in the page), :meth:`Page.screenshot` (PNG of the
whole page), ``page.errors`` (console errors, uncaught exceptions, failed loads) and ``page.requests`` (every URL
the page asked for).
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.access(p, os.X_OK)), None)
# headless, no sandbox (root in a container), no GPU, and nothing that phones home: this machine's network is
# closed, and a connection Chromium makes on its own would show up as a failed request
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
         "--disable-client-side-phishing-detection", "--disable-breakpad", "--metrics-recording-only",
         "--mute-audio", "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"]
TIMEOUT = 30.0


class Browser:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, work: Path) -> None:
        to_read, self._to = os.pipe()
        self._from, from_write = os.pipe()

        def as_3_and_4() -> None:   # in the child: the pipe ends become fds 3 and 4, where Chromium looks
            a, b = os.dup(to_read), os.dup(from_write)
            os.dup2(a, 3)
            os.dup2(b, 4)

        profile = work / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.log = work / "chromium.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                         preexec_fn=as_3_and_4, close_fds=False,   # (True would close 3 and 4)
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env={**os.environ, "HOME": str(work)})
        os.close(to_read)
        os.close(from_write)
        self._buffer, self._next, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its answer (events that arrive meanwhile are kept in ``events``)."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            for reply in self._messages():
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise TimeoutError(f"{method}: no answer from Chromium in {TIMEOUT:.0f} s; {self.log}")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe: {self.log.read_text(errors='replace')[-2000:]}")
            self._buffer += chunk

    def _messages(self) -> Iterator[dict]:
        while b"\0" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\0", 1)
            yield json.loads(raw)

    def open(self, url: str, width: int = 1100) -> Page:
        """A new tab showing ``url``, once its load event fired."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 800, "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        page = Page(self, session)
        self.call("Page.navigate", {"url": url}, session)
        deadline = time.monotonic() + TIMEOUT
        while not page.loaded():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: no load event in {TIMEOUT:.0f} s")
            self.call("Runtime.evaluate", {"expression": "1"}, session)   # lets the events in
            time.sleep(0.05)
        return page

    def close(self) -> None:
        """Close the browser (and its process, at once if it does not go)."""
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)


class Page:
    """A tab of :class:`Browser`."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def _events(self, *methods: str) -> list[dict]:
        return [e["params"] for e in self.browser.events
                if e.get("sessionId") == self.session and e.get("method") in methods]

    def loaded(self) -> bool:
        """Whether the page's load event fired."""
        return bool(self._events("Page.loadEventFired"))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results)."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the whole page, beyond the viewport."""
        size = self.browser.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        shot = self.browser.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}, self.session)
        return base64.b64decode(shot["data"])

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) seen so far."""
        out = [" ".join(str(a.get("value", a.get("description", ""))) for a in e["args"])
               for e in self._events("Runtime.consoleAPICalled") if e["type"] in ("error", "assert")]
        out += [e["exceptionDetails"].get("text", "exception") for e in self._events("Runtime.exceptionThrown")]
        out += [e["entry"]["text"] for e in self._events("Log.entryAdded") if e["entry"]["level"] == "error"]
        return out + [f"{e['errorText']}" for e in self._events("Network.loadingFailed")]

    @property
    def requests(self) -> list[str]:
        """The URL of every request the page made (the page itself included)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]


@contextlib.contextmanager
def chromium(work: Path) -> Iterator[Browser]:
    """A headless Chromium with its profile and HOME in ``work``, closed after; skips the test without one."""
    if CHROMIUM is None:
        pytest.skip("Chromium not installed: apt-get install -y chromium (Debian) to run the browser tests")
    browser = Browser(work)
    try:
        yield browser
    finally:
        browser.close()
