"""The one exit-code rule of every command, as exception types: 0 done, 1 a problem found or the job failed,
2 a usage error. :class:`UsageError` is the 2: bad option values, a SRC that is not a download, a DEST inside the
source; everything else the tool raises about its inputs (a damaged archive, a refused member) is a 1."""
from __future__ import annotations


class UsageError(ValueError):
    """The command was asked something it cannot do as asked (exit status 2); the message says what to change."""


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM arrived: the command stops at once, exit status 128 + the signal (130, 143).
    A KeyboardInterrupt, so every ``except Exception`` lets it through and every cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum

    @property
    def status(self) -> int:
        """The command's exit status: 128 + the signal number."""
        return 128 + self.signum
