"""The probe tokens a cluster driver writes into each output folder for its nodes to read back (a folder every
node sees), named after the driver's machine and process, so that the next run on this machine, whatever its
executor, removes those of a driver that was killed (:func:`imnet_data.parallel.check_visible`)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

PROBE = ".imnet-probe-"   # the start of a cluster driver's token in an output folder (see probe_token)


def probe_token(folder: Path, content: str) -> Path:
    """The name of the token a cluster driver writes into ``folder`` for its nodes to read back:
    ``.imnet-probe-HOST-PID-CONTENT`` (so the next run on this machine knows whether its driver is alive)."""
    return folder / f"{PROBE}{socket.gethostname()}-{os.getpid()}-{content}"


def remove_stale_tokens(folder: Path) -> None:
    """Remove the probe tokens (:func:`probe_token`) that drivers on this machine left in ``folder`` when they
    were killed (their process is gone); those of live drivers, and of other machines', stay."""
    if not folder.is_dir():
        return
    for token in folder.glob(f"{PROBE}{socket.gethostname()}-*-*"):
        pid = token.name[len(PROBE) + len(socket.gethostname()) + 1:].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            token.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # another user's
        return True
    return True
