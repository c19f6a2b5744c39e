"""What every store's schema version means, and the refusal of a store newer than this release.

A store carries the number of the last migration applied to it (SQLite: ``PRAGMA user_version``;
Redis: the ``<prefix>:schema`` hash). Opening a store runs the migrations it lacks, forward only,
before anything else reads it; a store whose number is higher than this release knows was written
by a newer release, and is refused rather than misread (its new data might be lost or ignored).
Version 0 is every store from before versions were kept (0.1.0 up to the release that added them):
migration 1 brings each of those shapes to the same baseline.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import __version__
from bot.store.base import StoreUnavailable


@dataclass(frozen=True)
class Migration:
    """One step forward: ``version`` is the schema number the store has once it is applied."""

    version: int
    description: str  # for operators: what changes, in a line (python -m bot status, the log)


@dataclass(frozen=True)
class Applied:
    """One migration as the store recorded it."""

    version: int
    description: str
    applied_at: float
    applied_by: str


@dataclass(frozen=True)
class SchemaState:
    """Where a store's schema stands, for operators (``python -m bot status``)."""

    version: int  # the store's
    latest: int  # what this release knows
    history: tuple[Applied, ...] = ()  # oldest first

    def describe(self) -> str:
        """One line: the version, and how it got there."""
        line = f"store schema version {self.version} (this release knows up to {self.latest})"
        if self.history:
            last = self.history[-1]
            when = datetime.fromtimestamp(last.applied_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            first = self.history[0].version - 1
            line += f"; migrated from {first} to {last.version} on {when} by {last.applied_by}"
        return line


class SchemaTooNew(StoreUnavailable):
    """The store was written by a newer release: refused at start-up, never misread."""

    def __init__(self, store: str, found: int, known: int) -> None:
        super().__init__(
            f"the store {store} has schema version {found}, but textflow {__version__} knows versions up to "
            f"{known}: it was written by a newer release of textflow. Run that release (or a newer one), or "
            f"restore a backup made by this one (python -m bot restore FILE). Nothing was changed.")
        self.found = found
        self.known = known


class SchemaUnreadable(StoreUnavailable):
    """The store's schema version is no number (set by hand): refused as a newer one is, never guessed."""


def check_sequence(migrations: tuple[Migration, ...]) -> int:
    """The latest version, once the list is checked to number 1, 2, 3… with no gap (a module-level
    assertion: a migration added out of order fails at import, in every test)."""
    numbers = [migration.version for migration in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise AssertionError(f"migrations must be numbered 1, 2, 3… in order: {numbers}")
    return len(numbers)


def migrated_by() -> str:
    """Who applied a migration, as kept in the store's history: the release and the process."""
    return f"textflow {__version__} on {socket.gethostname()}:{os.getpid()}"
