"""SIGINT (Ctrl-C) and SIGTERM end a command at once and quietly: the signal becomes :class:`Interrupted` in
the main thread, the command stops its workers (:func:`imnet_data.executors.local.stop_workers`) and prints one line;
what was being written stays under its temp name, and the same command run again resumes.

A terminal's Ctrl-C reaches the whole process group: the pool's workers ignore SIGINT (their parent ends them)
and die silently on SIGTERM (:func:`imnet_data.executors.local.init_worker`, forked with both held back); a process
forked some other way (a library's own pool) that inherits the handler below just exits.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from imnet_data.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interruptible(line: str) -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`Interrupted`; a second one while the first is being handled
    prints ``line`` and exits at once (128 + the first signal). Outside the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()
    first: list[int] = []   # the signal being handled

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:           # a forked child that kept this handler
            os._exit(128 + signum)
        if first:
            os.write(2, (line + "\n").encode())
            os._exit(128 + first[0])
        first.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
