"""The default store: one SQLite file in WAL mode, zero setup.

Calls are synchronous on purpose: each is tens of microseconds, less than a hop to a thread.
``synchronous=NORMAL`` in WAL survives a process crash (``kill -9``) without an fsync per
message; only power loss can drop the last moments, which is out of scope.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from bot.store.base import CommitResult, KeyedLocks, Purged, Retention
from bot.types import Conversation, Turn

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    sender TEXT PRIMARY KEY,
    flow TEXT,
    state TEXT,
    vars TEXT NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS processed (
    message_sid TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    replies TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS opt_outs (
    sender TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS transcript (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    direction TEXT NOT NULL,
    body TEXT NOT NULL,
    message_sid TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transcript_by_sender ON transcript (sender, at);
CREATE INDEX IF NOT EXISTS transcript_by_age ON transcript (at);
CREATE INDEX IF NOT EXISTS processed_by_sender ON processed (sender);
CREATE INDEX IF NOT EXISTS processed_by_age ON processed (at);
CREATE INDEX IF NOT EXISTS conversations_by_age ON conversations (updated_at);
"""


class SqliteStore:
    def __init__(self, path: str | Path, retention: Retention = Retention()) -> None:
        self.path = str(path)
        self.retention = retention
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._locks = KeyedLocks()

    async def load(self, sender: str) -> Conversation:
        row = self._db.execute(
            "SELECT flow, state, vars, updated_at, version FROM conversations WHERE sender = ?", (sender,)
        ).fetchone()
        if row is None:
            return Conversation(sender)
        flow, state, variables, updated_at, version = row
        return Conversation(sender, flow, state, json.loads(variables), updated_at, version)

    async def is_opted_out(self, sender: str) -> bool:
        return self._db.execute("SELECT 1 FROM opt_outs WHERE sender = ?", (sender,)).fetchone() is not None

    async def recorded_replies(self, message_sid: str) -> tuple[str, ...] | None:
        row = self._db.execute("SELECT replies FROM processed WHERE message_sid = ?", (message_sid,)).fetchone()
        return tuple(json.loads(row[0])) if row is not None else None

    async def commit(self, turn: Turn) -> CommitResult:
        conversation, inbound = turn.conversation, turn.inbound
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            try:
                db.execute("INSERT INTO processed (message_sid, sender, replies, at) VALUES (?, ?, ?, ?)",
                           (inbound.message_sid, inbound.sender, json.dumps(turn.replies), turn.at))
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                return CommitResult.DUPLICATE
            row = (conversation.flow, conversation.state, json.dumps(conversation.vars),
                   conversation.updated_at, turn.expected_version + 1, inbound.sender)
            if turn.expected_version == 0:
                cursor = db.execute(
                    "INSERT INTO conversations (flow, state, vars, updated_at, version, sender) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sender) DO NOTHING", row)
            else:
                cursor = db.execute(
                    "UPDATE conversations SET flow = ?, state = ?, vars = ?, updated_at = ?, version = ? "
                    "WHERE sender = ? AND version = ?", (*row, turn.expected_version))
            if cursor.rowcount != 1:
                db.execute("ROLLBACK")
                return CommitResult.CONFLICT
            if turn.opt_out is True:
                db.execute("INSERT OR REPLACE INTO opt_outs (sender, at) VALUES (?, ?)", (inbound.sender, turn.at))
            elif turn.opt_out is False:
                db.execute("DELETE FROM opt_outs WHERE sender = ?", (inbound.sender,))
            db.executemany(
                "INSERT INTO transcript (sender, direction, body, message_sid, at) VALUES (?, ?, ?, ?, ?)",
                [(inbound.sender, "in", inbound.body, inbound.message_sid, turn.at)]
                + [(inbound.sender, "out", reply, inbound.message_sid, turn.at) for reply in turn.replies])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return CommitResult.COMMITTED

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(sender)

    async def purge(self, sender: str) -> Purged:
        with self._transaction() as db:
            conversations = db.execute("DELETE FROM conversations WHERE sender = ?", (sender,)).rowcount
            lines = db.execute("DELETE FROM transcript WHERE sender = ?", (sender,)).rowcount
            blanked = db.execute("UPDATE processed SET replies = '[]' WHERE sender = ?", (sender,)).rowcount
        return Purged(conversations, lines, blanked)

    async def sweep(self, now: float) -> Purged:
        with self._transaction() as db:
            conversations = db.execute("DELETE FROM conversations WHERE updated_at < ?",
                                       (now - self.retention.seconds,)).rowcount
            lines = db.execute("DELETE FROM transcript WHERE at < ?", (now - self.retention.seconds,)).rowcount
            db.execute("DELETE FROM processed WHERE at < ?", (now - self.retention.dedup_seconds,))
        return Purged(conversations, lines)

    async def transcript(self, sender: str) -> list[dict[str, object]]:
        rows = self._db.execute("SELECT at, direction, body, message_sid FROM transcript WHERE sender = ? "
                                "ORDER BY id", (sender,)).fetchall()
        return [{"at": at, "dir": direction, "body": body, "sid": sid} for at, direction, body, sid in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def close(self) -> None:
        self._db.close()
