"""The one exit-code rule of every command, as exception types: 0 done, 1 a problem found or the job failed,
2 a usage error. :class:`UsageError` is the 2: bad option values, a SRC that is not a download, a DEST inside the
source; everything else the tool raises about its inputs (a damaged archive, a refused member) is a 1."""
from __future__ import annotations


class UsageError(ValueError):
    """The command was asked something it cannot do as asked (exit status 2); the message says what to change."""
