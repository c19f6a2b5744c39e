"""The SQLite store's consent ledger: one row per change of a number's consent, append-only.

Rows are written in the same transaction as the opt-out flag they explain (a turn's group commit,
or ``set_consent``), and only when the flag actually changes. Triggers refuse any UPDATE, and any
DELETE of a row younger than four years (the TCPA's limitation period), whoever runs it; the
retention sweep (``sqlite_sweep.py``) removes older rows only. The table is created by ``CREATE … IF NOT EXISTS``, so a
database from before the ledger gains it when migrated (``sqlite_schema.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

from bot.store.base import DAY, MIN_CONSENT_RETENTION_DAYS
from bot.types import ConsentChange, ConsentMethod, ConsentStatus

LEDGER_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS consent_ledger (
    number TEXT NOT NULL,  -- the full number: evidence, unlike a log line
    status TEXT NOT NULL,  -- opted_out / opted_in (bot.types.ConsentStatus)
    how TEXT NOT NULL,  -- bot.types.ConsentMethod
    detail TEXT NOT NULL,  -- what triggered it: the text, Twilio's OptOutType, the error, the operator's note
    message_sid TEXT NOT NULL,  -- the MessageSid that carried it ('' when none did)
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_ledger_by_number ON consent_ledger (number, at);
CREATE INDEX IF NOT EXISTS consent_ledger_by_time ON consent_ledger (at);
CREATE TRIGGER IF NOT EXISTS consent_ledger_is_append_only BEFORE UPDATE ON consent_ledger
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_ledger_keeps_four_years BEFORE DELETE ON consent_ledger
WHEN OLD.at > (julianday('now') - 2440587.5) * 86400.0 - {MIN_CONSENT_RETENTION_DAYS * DAY!r}
BEGIN SELECT RAISE(ABORT, 'consent ledger rows are kept at least {MIN_CONSENT_RETENTION_DAYS} days'); END;
"""

PAGE = 1000  # rows per read of an export

_COLUMNS = "number, status, how, detail, message_sid, at"


def change_consent(db: sqlite3.Connection, change: ConsentChange) -> bool:
    """Inside an open transaction: set or clear the opt-out and append the change to the ledger,
    only when it differs from the stored status (False: nothing written)."""
    opted_out = db.execute("SELECT 1 FROM opt_outs WHERE sender = ?", (change.number,)).fetchone() is not None
    if opted_out == change.opted_out:
        return False
    if change.opted_out:
        db.execute("INSERT INTO opt_outs (sender, at) VALUES (?, ?)", (change.number, change.at))
    else:
        db.execute("DELETE FROM opt_outs WHERE sender = ?", (change.number,))
    db.execute(f"INSERT INTO consent_ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
               (change.number, str(change.status), str(change.how), change.detail, change.message_sid, change.at))
    return True


def history(db: sqlite3.Connection, number: str) -> list[ConsentChange]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM consent_ledger WHERE number = ? ORDER BY at, rowid", (number,))
    return [_change(row) for row in rows.fetchall()]


async def changes(db: sqlite3.Connection, since: float | None) -> AsyncIterator[ConsentChange]:
    """The ledger from ``since`` in (time, rowid) order, a page per query: no cursor stays open
    across an await, while the connection commits turns."""
    at, rowid = (since if since is not None else float("-inf")), 0
    while True:
        rows = db.execute(f"SELECT rowid, {_COLUMNS} FROM consent_ledger WHERE at >= ? AND (at > ? OR rowid > ?) "
                          "ORDER BY at, rowid LIMIT ?", (at, at, rowid, PAGE)).fetchall()
        for row in rows:
            yield _change(row[1:])
        if len(rows) < PAGE:
            return
        rowid, at = rows[-1][0], rows[-1][-1]


def _change(row: tuple[str, str, str, str, str, float]) -> ConsentChange:
    number, status, how, detail, message_sid, at = row
    return ConsentChange(number, ConsentStatus(status), ConsentMethod(how), detail, message_sid, at)
