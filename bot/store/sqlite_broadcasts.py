"""The SQLite store's broadcast progress table: one row per broadcast (by its name), where it stands,
for the console's Operations page and ``/metrics``. Tiny, and never on a message's path: written by
the broadcast's own process at most once a second while it runs (``bot/broadcast_progress.py``)."""

from __future__ import annotations

import sqlite3

from bot.store.base import BROADCAST_KEEP_SECONDS, BroadcastProgress

BROADCASTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS broadcast_progress (
    name TEXT PRIMARY KEY,  -- the broadcast's name: its flow and CSV path
    written_at REAL NOT NULL,
    record TEXT NOT NULL  -- the BroadcastProgress as JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS broadcast_progress_by_time ON broadcast_progress (written_at);
"""


def record(db: sqlite3.Connection, progress: BroadcastProgress) -> None:
    """Inside an open write transaction: replace the broadcast's row, drop the long-silent ones."""
    db.execute("INSERT OR REPLACE INTO broadcast_progress (name, written_at, record) VALUES (?, ?, ?)",
               (progress.name, progress.written_at, progress.to_json()))
    db.execute("DELETE FROM broadcast_progress WHERE written_at < ?", (progress.written_at - BROADCAST_KEEP_SECONDS,))


def read(db: sqlite3.Connection, since: float) -> list[BroadcastProgress]:
    rows = db.execute("SELECT record FROM broadcast_progress WHERE written_at >= ? ORDER BY written_at DESC, name",
                      (since,)).fetchall()
    return [BroadcastProgress.from_json(text) for (text,) in rows]
