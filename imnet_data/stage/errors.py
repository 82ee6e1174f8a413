"""The exceptions of staging: :class:`StageError` (reported or raised to the caller) and :class:`Retry` (one
attempt failed; the retry loop of :mod:`imnet_data.stage.transfer` catches it). Apart so that the sources and the
transfers, which both raise them, import neither each other nor the package."""


class StageError(RuntimeError):
    """A file that cannot be staged (a permanent error, or retries spent), or a run refused (free space)."""


class Retry(Exception):
    """One attempt failed in a way worth retrying; ``restart``: the partial bytes are useless, delete them."""

    def __init__(self, message: str, restart: bool = False) -> None:
        super().__init__(message)
        self.restart = restart
