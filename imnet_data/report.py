"""What every command's report is: a dataclass with a verdict (``ok``, which the exit status follows), a text
for people (``render``) and a JSON form (``as_dict``: what ``--json`` prints and ``--report`` writes)."""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar


class Report(ABC):
    """Base of the command reports (each a dataclass); ``as_dict`` is ``ok`` then every field, which a report
    with another JSON form overrides."""

    __dataclass_fields__: ClassVar[dict[str, Any]]   # what the dataclass decorator gives every subclass

    @property
    @abstractmethod
    def ok(self) -> bool:
        """Whether the command found what it should and did what it was asked (exit status 0)."""

    @abstractmethod
    def render(self) -> str:
        """The report as a person reads it."""

    def as_dict(self) -> dict:
        """The report as JSON-ready data: ``ok``, then the fields."""
        return {"ok": self.ok, **dataclasses.asdict(self)}
