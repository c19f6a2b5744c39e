"""Why a Studio export cannot be imported, in words a Studio user knows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class StudioError(Exception):
    """The file cannot be imported; the message says why."""


@dataclass(frozen=True)
class Unsupported:
    """A widget this bot cannot run, and why."""

    widget: str
    type: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.widget} ({self.type})" + (f": {self.reason}" if self.reason else "")


class UnsupportedWidgets(StudioError):
    """The flow has widgets that cannot run here, and the import was not asked to stub them."""

    def __init__(self, items: Sequence[Unsupported]) -> None:
        self.items = list(items)
        lines = "\n".join(f"  {item}" for item in self.items)
        super().__init__(f"this flow has {len(self.items)} widget(s) that cannot run here:\n{lines}\n"
                         "(import with --stub to replace them with states that say so; see docs/studio.md)")
