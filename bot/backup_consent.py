"""A restore keeps every opt-out: consent changes the replaced store recorded after the backup are
carried into the restored copy before it takes the store's place.

A backup is a moment in the past; someone who texted STOP since is in the store being replaced,
not in the backup. Restoring without them would text people who opted out, so ``restore`` applies
the replaced store's consent ledger on top of the backup, per number, where the replaced store
holds a later decision than the backup (the latest decision wins, as it did when it was made). Each
change is applied as the bot applies any (``sqlite_consent.change_consent``: the opt-out flag and
its ledger row together, only when the status changes), with its original time, method and text:
the ledger stays the evidence it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.store import sqlite_consent as ledger
from bot.store.sqlite_sweep import transaction
from bot.types import ConsentChange, ConsentMethod, ConsentStatus

#: The ledger's ``detail`` for an opt-out found only in the replaced store's opt-outs table (a
#: number opted out before the ledger was kept).
FROM_REPLACED_STORE = "python -m bot restore: opted out in the store the backup replaced"


@dataclass(frozen=True)
class Carried:
    changes: int  # consent changes applied to the restored copy
    opted_out: int  # numbers opted out in the copy now that were not in the backup
    problem: str | None = None  # why the replaced store's consent could not be read (None: it was)


def carry_consent(replaced: Path, restored: Path) -> Carried:
    """Apply to the store file ``restored`` (of this release's schema) the consent decisions of
    ``replaced`` that are later than its own, in one transaction."""
    try:
        source = sqlite3.connect(f"{replaced.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as error:
        return Carried(0, 0, str(error))
    with contextlib.closing(source), _writing(restored) as target:
        before = _opted_out(target)
        latest = dict(target.execute("SELECT number, MAX(at) FROM consent_ledger GROUP BY number").fetchall())
        try:
            changes = asyncio.run(_ledger(source))
            legacy = _opt_outs(source)
        except sqlite3.Error as error:  # a damaged store (the reason for the restore?)
            return Carried(0, 0, str(error))
        applied = 0
        for change in changes:
            if change.at > latest.get(change.number, float("-inf")):
                applied += ledger.change_consent(target, change)
        for number, at in legacy.items():
            if at > latest.get(number, float("-inf")):
                applied += ledger.change_consent(target, ConsentChange(
                    number, ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR, FROM_REPLACED_STORE, "", at))
        return Carried(applied, len(_opted_out(target) - before))


async def _ledger(source: sqlite3.Connection) -> list[ConsentChange]:
    tables = {name for (name,) in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "consent_ledger" not in tables:  # a store from before the ledger
        return []
    return [change async for change in ledger.changes(source, None)]


def _opt_outs(source: sqlite3.Connection) -> dict[str, float]:
    return dict(source.execute("SELECT sender, at FROM opt_outs").fetchall())


def _opted_out(db: sqlite3.Connection) -> set[str]:
    return {sender for (sender,) in db.execute("SELECT sender FROM opt_outs")}


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``path``: committed when the block ends, rolled back on an error."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        with transaction(db):
            yield db
    finally:
        db.close()
