"""The SQLite store's retention sweep: old turns, idle conversations, outbound records and (after
their own, much longer period) consent ledger rows leave in small batches, each in its own short
write transaction, so a sweep of a large store never holds the write lock long enough to stall the
webhook (it runs in a thread, on its own connection)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator

from bot.store import sqlite_results as results
from bot.store.base import Purged, Retention

SWEEP_BATCH = 500  # rows per transaction, so a sweep never holds the write lock for long


def sweep(db: sqlite3.Connection, now: float, retention: Retention) -> Purged:
    """Apply the retention period: blank old texts, drop idle conversations and old MessageSids."""
    conversations = _drop_idle_conversations(db, now - retention.seconds)
    lines = _blank_old_texts(db, now - retention.seconds)
    _drop_old_turns(db, now - retention.dedup_seconds)
    results.close_lapsed(db, now, transaction)  # counted as expired before their rows may go
    results.drop_ended(db, now - retention.seconds, transaction)
    with transaction(db):  # outbound records hold numbers and texts too
        db.execute("DELETE FROM outbound WHERE json_extract(record, '$.updated_at') < ?",
                   (now - retention.dedup_seconds,))
        # Replies owed that nobody tried to send for the whole period (no process with outbound
        # settings ran): a number and texts no longer wanted.
        db.execute("DELETE FROM owed_replies WHERE claimed_until < ?", (now - retention.seconds,))
    return Purged(conversations, lines, consent_changes=_drop_old_consent(db, now - retention.consent_seconds))


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _drop_idle_conversations(db: sqlite3.Connection, cutoff: float) -> int:
    idle = [(sender, cutoff) for (sender,) in
            db.execute("SELECT sender FROM conversations WHERE updated_at < ?", (cutoff,)).fetchall()]
    for start in range(0, len(idle), SWEEP_BATCH):
        with transaction(db):  # checked again: the conversation may have moved on meanwhile
            db.executemany("DELETE FROM conversations WHERE sender = ? AND updated_at < ?",
                           idle[start:start + SWEEP_BATCH])
            db.executemany("DELETE FROM deadlines WHERE sender = ? AND NOT EXISTS "
                           "(SELECT 1 FROM conversations WHERE sender = deadlines.sender)",
                           [(sender,) for sender, _ in idle[start:start + SWEEP_BATCH]])
    return len(idle)


def _oldest_turns(db: sqlite3.Connection, cutoff: float, after: int) -> list[tuple[int, str, str]]:
    """The next batch of turns older than ``cutoff`` in rowid (= arrival) order, read outside any
    write transaction; stops at the first turn that is young enough."""
    rows = db.execute("SELECT rowid, at, body, replies FROM processed WHERE rowid > ? ORDER BY rowid LIMIT ?",
                      (after, SWEEP_BATCH)).fetchall()
    old = []
    for rowid, at, body, replies in rows:
        if at >= cutoff:
            break
        old.append((rowid, body, replies))
    return old


def _blank_old_texts(db: sqlite3.Connection, cutoff: float) -> int:
    """Blank what people texted and what we answered once the retention period is over."""
    lines, after = 0, 0
    while batch := _oldest_turns(db, cutoff, after):
        texts = [(rowid, replies) for rowid, body, replies in batch if body or replies != "[]"]
        with transaction(db):
            db.executemany("UPDATE processed SET body = '', replies = '[]' WHERE rowid = ?",
                           [(rowid,) for rowid, _ in texts])
        lines += sum(1 + len(json.loads(replies)) for _, replies in texts)
        after = batch[-1][0]
        if len(batch) < SWEEP_BATCH:
            break
    return lines


def _drop_old_turns(db: sqlite3.Connection, cutoff: float) -> None:
    """Forget MessageSids past the de-duplication period (48 h or more)."""
    while batch := _oldest_turns(db, cutoff, 0):
        with transaction(db):
            db.executemany("DELETE FROM processed WHERE rowid = ?", [(rowid,) for rowid, _, _ in batch])
        if len(batch) < SWEEP_BATCH:
            break


def _drop_old_consent(db: sqlite3.Connection, cutoff: float) -> int:
    """Consent ledger rows past the consent retention period; the opt-out flags themselves stay."""
    dropped = 0
    while True:
        with transaction(db):
            count = db.execute("DELETE FROM consent_ledger WHERE rowid IN (SELECT rowid FROM consent_ledger "
                               "WHERE at < ? ORDER BY at LIMIT ?)", (cutoff, SWEEP_BATCH)).rowcount
        dropped += count
        if count < SWEEP_BATCH:
            return dropped
