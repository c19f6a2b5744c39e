"""The SQLite store's process status table: one row per server process (``host:pid``), what it
runs and its last refused reload, for ``python -m bot status``. Tiny, and never on a message's path:
written at start-up, on reload attempts and once a minute by each process."""

from __future__ import annotations

import sqlite3

from bot.store.base import PROCESS_STATUS_KEEP_SECONDS, ProcessStatus

STATUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS process_status (
    process TEXT PRIMARY KEY,  -- host:pid
    written_at REAL NOT NULL,
    record TEXT NOT NULL  -- the ProcessStatus as JSON
) WITHOUT ROWID;
"""


def record(db: sqlite3.Connection, status: ProcessStatus) -> None:
    """Inside an open write transaction: replace the process's row, drop the long-silent ones."""
    db.execute("INSERT OR REPLACE INTO process_status (process, written_at, record) VALUES (?, ?, ?)",
               (status.process, status.written_at, status.to_json()))
    db.execute("DELETE FROM process_status WHERE written_at < ?", (status.written_at - PROCESS_STATUS_KEEP_SECONDS,))


def read(db: sqlite3.Connection) -> list[ProcessStatus]:
    rows = db.execute("SELECT record FROM process_status ORDER BY written_at DESC, process").fetchall()
    return [ProcessStatus.from_json(text) for (text,) in rows]
