"""The SQLite store's owed replies (``bot/store/owed.py``): written in a turn's transaction, claimed
by the process sending them, deleted once sent. The table is made by migration 2 (``sqlite_schema.py``)."""

from __future__ import annotations

import sqlite3
import time

from bot.store.owed import CLAIM_SECONDS, Owed, owed_by, readable
from bot.types import Turn


def owe(db: sqlite3.Connection, turn: Turn) -> None:
    """Inside the turn's transaction: its replies, claimed by the committing process for a while."""
    now = time.time()
    db.execute("INSERT OR REPLACE INTO owed_replies (message_sid, sender, record, at, claimed_until) "
               "VALUES (?, ?, ?, ?, ?)", (turn.inbound.message_sid, turn.inbound.sender, owed_by(turn).to_json(),
                                          now, now + CLAIM_SECONDS))


def claim(db: sqlite3.Connection, now: float, until: float, limit: int) -> list[Owed]:
    """Inside a write transaction: the lapsed claims, oldest first, claimed until ``until``."""
    rows = db.execute("SELECT message_sid, record FROM owed_replies WHERE claimed_until <= ? "
                      "ORDER BY claimed_until LIMIT ?", (now, limit)).fetchall()
    db.executemany("UPDATE owed_replies SET claimed_until = ? WHERE message_sid = ?", [(until, sid) for sid, _ in rows])
    found = [(sid, readable(record)) for sid, record in rows]
    db.executemany("DELETE FROM owed_replies WHERE message_sid = ?", [(sid,) for sid, owed in found if owed is None])
    return [owed for _, owed in found if owed is not None]
