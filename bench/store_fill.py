"""Pre-fill a SQLite store with N conversations, written directly with the bot's own schema.

Each stored conversation is what one earlier "STATUS" leaves behind: a conversation waiting at
``bench_order:ask_number`` (updated within the last day, so neither expired nor swept), its
processed MessageSid with the recorded reply, and (if the schema keeps one as a table) two
transcript lines. The schema is ``bot.store.sqlite.SCHEMA`` itself, and rows are written into
whichever of the known columns the tables have (so the fill follows schema changes; a new
NOT NULL column it does not know stops it with a clear message). Bulk inserts in one
transaction, journal off, rows in time order as the bot would have written them.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.webhooks import sender_number
from bot.store.sqlite import SCHEMA

ASK_NUMBER = "What's your order number? (6 digits, like 123456)"
BATCH = 100_000

Row = dict[str, Any]  # one stored conversation: sender, sid, at


def _conversation(row: Row) -> dict[str, Any]:
    return {"sender": row["sender"], "flow": "bench_order", "state": "ask_number", "vars": "{}",
            "engine": json.dumps({"timeout": None, "returns": [], "channel": "+15550001111"}),
            "updated_at": row["at"], "version": 1}


def _processed(row: Row) -> dict[str, Any]:
    return {"message_sid": row["sid"], "sender": row["sender"], "body": "STATUS",
            "replies": json.dumps([ASK_NUMBER]), "at": row["at"]}


def _transcript(row: Row) -> Iterable[dict[str, Any]]:
    yield {"sender": row["sender"], "direction": "in", "body": "STATUS", "message_sid": row["sid"], "at": row["at"]}
    yield {"sender": row["sender"], "direction": "out", "body": ASK_NUMBER, "message_sid": row["sid"],
           "at": row["at"]}


TABLES: dict[str, Callable[[Row], Iterable[dict[str, Any]]]] = {
    "conversations": lambda row: (_conversation(row),),
    "processed": lambda row: (_processed(row),),
    "transcript": _transcript,
}


def fill(path: Path, conversations: int, seed: int = 5) -> float:
    """Create ``path`` holding ``conversations`` stored conversations; returns the seconds it took."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(seed)
    now = time.time()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        db.executescript(SCHEMA)
        inserts = _inserts(db)
        # When the stored conversations last spoke, oldest first: rows go in in time order.
        ages = sorted((rng.uniform(60, 86_400) for _ in range(conversations)), reverse=True)
        db.execute("BEGIN")
        for low in range(0, conversations, BATCH):
            batch = [{"sender": sender_number(index), "at": now - ages[index],
                      "sid": f"SM{rng.getrandbits(128):032x}"}
                     for index in range(low, min(conversations, low + BATCH))]
            for table, (sql, columns) in inserts.items():
                db.executemany(sql, ([values[c] for c in columns] for row in batch for values in TABLES[table](row)))
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")  # what the bot uses (it sets it again on start)
        db.execute("ANALYZE")
    finally:
        db.close()
    return time.perf_counter() - started


def _inserts(db: sqlite3.Connection) -> dict[str, tuple[str, list[str]]]:
    """INSERT statements for the known tables the schema has, with the columns they have."""
    kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").fetchall())
    if kinds.get("conversations") != "table":
        raise RuntimeError("bot.store.sqlite.SCHEMA has no conversations table: update bench/store_fill.py")
    inserts = {}
    for table, make in TABLES.items():
        if kinds.get(table) != "table":
            continue  # e.g. a transcript kept as a view over other tables
        known = set(next(iter(make({"sender": "+1", "at": 0.0, "sid": "SM"}))))
        columns = []
        for _, name, _, not_null, default, primary in db.execute(f"PRAGMA table_info({table})"):
            if name in known:
                columns.append(name)
            elif not_null and default is None and not primary:
                raise RuntimeError(f"{table}.{name} is a new NOT NULL column: teach bench/store_fill.py its value")
        placeholders = ", ".join("?" for _ in columns)
        inserts[table] = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", columns)
    return inserts
