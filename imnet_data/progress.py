"""Progress of a long step, made in one place for every command: a tqdm bar on a terminal; where stderr is not a
terminal (a SLURM log, ``| tee``, CI) one line every :data:`EVERY` seconds with done/total, rate and ETA and a
last line when the step is done, never a carriage return; nothing with ``quiet`` (``--quiet``).

A bar redrawn with carriage returns is one unreadable line in a log file; a line per interval reads as a log.
``imnet-data --progress-every SECONDS`` sets the interval (:func:`configure`); the library's default is 30 s.
"""
from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

EVERY = 30.0      # seconds between two progress lines where stderr is not a terminal


def configure(every: float) -> None:
    """Set the seconds between two progress lines (``--progress-every``) for every step from now on."""
    global EVERY
    if not every > 0:
        raise ValueError(f"progress interval must be > 0 seconds, got {every}")
    EVERY = every


class Progress:
    """A step's progress as the caller sees it: ``update(n)`` (and ``items``: whole units finished, for a step
    counted in bytes), used as a context manager. This base class shows nothing (``quiet``)."""

    def update(self, n: int = 1, items: int = 0) -> None:
        """``n`` more done (bytes or units), ``items`` more whole units among them."""

    def close(self, ok: bool = True) -> None:
        """The step ended (``ok``: it ran to its end, not stopped by an error or an interrupt)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close(ok=kind is None)


class Bar(Progress):
    """On a terminal: tqdm's bar on stderr, removed when the step ends."""

    def __init__(self, total: int | None, desc: str, unit: str, unit_scale: bool) -> None:
        from tqdm import tqdm  # imported when a bar is drawn: the command line starts without it

        self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1, items: int = 0) -> None:
        """Advance the bar by ``n``."""
        self.bar.update(n)

    def close(self, ok: bool = True) -> None:
        """Remove the bar."""
        self.bar.close()


class Lines(Progress):
    """Not a terminal: a line every ``every`` seconds from a timer thread (so a long unit in progress still shows
    the step alive), ``<time> <desc>: done/total (percent), rate, ETA``, and one line when the step is done. The
    rate is the step's average so far, the ETA what is left at that rate."""

    def __init__(self, total: int | None, desc: str, unit: str, items: int | None = None, item_unit: str = "",
                 every: float | None = None, stream: TextIO | None = None) -> None:
        self.total, self.unit, self.items_total, self.item_unit = total, unit, items, item_unit
        self.desc = "".join(c if c.isprintable() else "?" for c in desc)     # no \r or \n from a file name
        self.done = self.items_done = 0
        self.stream, self.start, self.lock = stream, time.monotonic(), threading.Lock()
        self.stopped = threading.Event()
        self.timer = threading.Thread(target=self._tick, args=(EVERY if every is None else every,), daemon=True,
                                      name=f"progress {self.desc}")
        self.timer.start()

    def update(self, n: int = 1, items: int = 0) -> None:
        """Count ``n`` more (and ``items`` more whole units); the timer prints."""
        with self.lock:
            self.done += n
            self.items_done += items

    def close(self, ok: bool = True) -> None:
        """Stop the timer; when the step ran to its end, print its last line (what was done, in how long)."""
        self.stopped.set()
        if self.timer is not threading.current_thread():
            self.timer.join()
        if ok:
            self._print(self.line(final=True))

    def _tick(self, every: float) -> None:
        while not self.stopped.wait(every):
            self._print(self.line())

    def line(self, final: bool = False) -> str:
        """The progress line now: done/total, percent, rate and ETA (``final``: what was done, in how long)."""
        with self.lock:
            done, items = self.done, self.items_done
        seconds = time.monotonic() - self.start
        rate = done / seconds if seconds > 0 else 0.0
        whole = final and done == self.total and self.items_total in (None, items)
        parts = [] if self.items_total is None else [
            f"{items:,} {self.item_unit}" if whole else f"{items:,}/{self.items_total:,} {self.item_unit}"]
        if whole or self.total is None:
            parts.append(amount_of(done, self.unit))
        elif self.unit == "B":
            parts.append(f"{amount_of(done, 'B')}/{amount_of(self.total, 'B')}")
        else:
            parts.append(f"{done:,}/{self.total:,} {self.unit}")
        if final:
            return f"{self.desc}: done, {', '.join(parts)} in {duration(seconds)} ({rate_of(rate, self.unit)})"
        if self.total:
            parts[-1] += f" ({100 * done / self.total:.1f}%)"
        parts.append(rate_of(rate, self.unit))
        if self.total is not None:
            parts.append(f"ETA {duration((self.total - done) / rate) if rate > 0 else 'unknown'}")
        return f"{self.desc}: {', '.join(parts)}"

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(f"{time.strftime('%H:%M:%S')} {text}", file=stream, flush=True)


def progress(total: int | None = None, *, desc: str = "", unit: str = "units", quiet: bool = False,
             unit_scale: bool = False, items: int | None = None, item_unit: str = "") -> Progress:
    """The progress of one step on stderr: nothing with ``quiet``, a tqdm bar on a terminal, else a line every
    :data:`EVERY` seconds (:class:`Lines`). ``unit`` ``"B"`` counts bytes; ``items``/``item_unit``: the whole
    units a byte-counted step is made of (``12/147 shards``), shown in the lines."""
    if quiet:
        return Progress()
    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):     # replaced by an object without it, or closed
        terminal = False
    if terminal:
        return Bar(total, desc, unit, unit_scale)
    return Lines(total, desc, unit, items, item_unit)


def amount_of(n: float, unit: str) -> str:
    """``n`` of ``unit`` as a person reads it: bytes in kB/MB/GB/TB (powers of 1000, as the size options),
    counts with thousands separators."""
    if unit != "B":
        return f"{n:,.0f} {unit}"
    for scale, name in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.1f} {name}"
    return f"{n:.0f} B"


def rate_of(per_second: float, unit: str) -> str:
    """A rate: ``52.1 MB/s``, ``3.2 shards/s``, ``0.042 units/s``."""
    if unit == "B":
        return f"{amount_of(per_second, 'B')}/s"
    return f"{per_second:,.1f} {unit}/s" if per_second >= 10 else f"{per_second:.2g} {unit}/s"


def duration(seconds: float) -> str:
    """Seconds as ``45s``, ``5m 07s``, ``2h 03m`` or ``3d 04h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"
