"""The SQLite store's tables, and the migrations that bring any older file to them.

The file's schema version is ``PRAGMA user_version`` (0 in every file from before versions were
kept). Opening the store runs the missing migrations in one transaction, under SQLite's write lock
(``BEGIN IMMEDIATE``): workers opening the file at once wait their turn, and the first one
migrates; a crash or an error part-way leaves the file exactly as it was. Each step is recorded in
``schema_history`` (when, by which release and process), for operators.

A migration never drops a conversation, an opt-out or a consent record: steps add tables, columns,
indexes and views. One that must rewrite rows does so in SQL inside the same transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator

from bot.store import sqlite_broadcasts as broadcasts
from bot.store import sqlite_consent as ledger
from bot.store import sqlite_results as run_results
from bot.store import sqlite_status as statuses
from bot.store.schema_versions import Applied, Migration, SchemaState, SchemaTooNew, check_sequence, migrated_by

log = logging.getLogger("bot.store")

# Lean on purpose: every index is written on every message. The turn log needs none beyond its
# MessageSid: rows arrive in time order, so rowid order is age order for the retention sweep, and
# the rare per-sender reads (purge, transcript) may scan.
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    sender TEXT PRIMARY KEY,
    flow TEXT,
    state TEXT,
    vars TEXT NOT NULL,  -- the flow author's variables (JSON)
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    engine TEXT  -- the engine's bookkeeping (JSON, bot/store/records.py); NULL in rows from before it
) WITHOUT ROWID;
-- Who is where (the console's counts, an edit's impact): only conversations in a flow, so an idle
-- one's turn writes nothing here; the count reads this index alone, never the rows.
CREATE INDEX IF NOT EXISTS conversations_by_state ON conversations (flow, state, updated_at)
    WHERE flow IS NOT NULL;
CREATE TABLE IF NOT EXISTS processed (
    message_sid TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,  -- what they texted ('' once retention or a purge removed it)
    replies TEXT NOT NULL,  -- JSON list of what we answered
    at REAL NOT NULL,
    trace TEXT  -- how it was routed (JSON, bot/store/listings.py); NULL in rows from before it
);
CREATE TABLE IF NOT EXISTS opt_outs (
    sender TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deadlines (  -- written only by turns entering or leaving a timed wait
    sender TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deadlines_by_time ON deadlines (at);
CREATE TABLE IF NOT EXISTS outbound (
    id TEXT PRIMARY KEY,
    sid TEXT,
    broadcast TEXT,
    record TEXT NOT NULL  -- the OutboundMessage as JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbound_by_sid ON outbound (sid);
CREATE INDEX IF NOT EXISTS outbound_by_broadcast ON outbound (broadcast);
"""

#: The turns line by line. A reply with pictures is stored as {"text", "media"} (bot/store/replies.py):
#: its text is the body, its URLs (a JSON list) the media column.
TRANSCRIPT_VIEW = """
CREATE VIEW transcript (id, sender, direction, body, message_sid, at, media) AS
    SELECT rowid * 1000, sender, 'in', body, message_sid, at, NULL FROM processed
    UNION ALL
    SELECT p.rowid * 1000 + 1 + r.key, p.sender, 'out',
           CASE r.type WHEN 'object' THEN json_extract(r.value, '$.text') ELSE r.value END, p.message_sid, p.at,
           CASE r.type WHEN 'object' THEN json_extract(r.value, '$.media') END
    FROM processed AS p, json_each(p.replies) AS r;
"""

HISTORY = """
CREATE TABLE IF NOT EXISTS schema_history (  -- one row per migration applied to this file
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at REAL NOT NULL,
    applied_by TEXT NOT NULL  -- the release and process: 'textflow 0.2.0 on host:pid'
);
"""

#: Replies a committed turn still has to send through the REST API (a deferred answer, a timeout's),
#: written in the turn's own transaction and deleted once sent: a restart sends what is left.
OWED_REPLIES = """
CREATE TABLE owed_replies (
    message_sid TEXT PRIMARY KEY,  -- the turn's: each send's id derives from it, so a resend is recognised
    sender TEXT NOT NULL,
    record TEXT NOT NULL,  -- JSON: the turn's record (who, from which of our numbers) and its replies
    at REAL NOT NULL,  -- when the turn was committed
    claimed_until REAL NOT NULL  -- a process is sending them until then; after that, any process may
) WITHOUT ROWID;
CREATE INDEX owed_replies_by_claim ON owed_replies (claimed_until);
"""


def _baseline(db: sqlite3.Connection) -> None:
    """Every shape since 0.1.0 to the last unversioned one: the tables added over time (created if
    missing), the columns added to old rows (NULL in them, which the code reads as "from before"),
    and the transcript view as it reads replies with pictures."""
    for statement in statements(SCHEMA + ledger.LEDGER_SCHEMA + statuses.STATUS_SCHEMA + run_results.RESULTS_SCHEMA
                                + broadcasts.BROADCASTS_SCHEMA + HISTORY):
        db.execute(statement)
    if "engine" not in _columns(db, "conversations"):
        db.execute("ALTER TABLE conversations ADD COLUMN engine TEXT")
    if "trace" not in _columns(db, "processed"):
        db.execute("ALTER TABLE processed ADD COLUMN trace TEXT")
    view = db.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'transcript'").fetchone()
    if view is None or "media" not in view[0]:
        db.execute("DROP VIEW IF EXISTS transcript")
        db.execute(TRANSCRIPT_VIEW)


def _owed_replies(db: sqlite3.Connection) -> None:
    for statement in statements(OWED_REPLIES):
        db.execute(statement)


MIGRATIONS = (
    Migration(1, "the shape of every store from before schema versions (0.1.0 and after), made whole"),
    Migration(2, "owed_replies: a deferred answer or a timeout's replies survive a restart until sent"),
)
_STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _baseline, 2: _owed_replies}
LATEST = check_sequence(MIGRATIONS)


def version_of(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: str, target: int = LATEST) -> list[Migration]:
    """Bring the file to ``target`` (the latest: tests name an earlier one to make older shapes),
    in one transaction; the migrations applied (none when it was there already). Raises
    SchemaTooNew for a file from a newer release, and sqlite3's "database is locked" while another
    process holds the write lock (the caller waits and tries again)."""
    if version_of(db) == target:  # the usual case: one read, no lock
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        found = version_of(db)  # again, under the lock: another worker may have just migrated
        if found > LATEST:
            raise SchemaTooNew(os.path.abspath(path), found, LATEST)
        due = [migration for migration in MIGRATIONS if found < migration.version <= target]
        for migration in due:
            _STEPS[migration.version](db)
            db.execute("INSERT OR REPLACE INTO schema_history (version, description, applied_at, applied_by) "
                       "VALUES (?, ?, ?, ?)", (migration.version, migration.description, time.time(), migrated_by()))
        if due:
            db.execute(f"PRAGMA user_version = {int(target)}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if due:
        log.warning("store %s: schema migrated from version %d to %d (%s)", os.path.abspath(path), found, target,
                    "; ".join(f"{migration.version}: {migration.description}" for migration in due))
    return due


def state(db: sqlite3.Connection) -> SchemaState:
    """The file's version and the migrations it records, for operators."""
    return SchemaState(version_of(db), LATEST, tuple(Applied(*row) for row in history(db)))


def history(db: sqlite3.Connection) -> list[tuple[int, str, float, str]]:
    """The migrations applied to this file, oldest first (empty for a file never migrated)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_history'").fetchone() is None:
        return []
    return [tuple(row) for row in db.execute(  # type: ignore[misc]
        "SELECT version, description, applied_at, applied_by FROM schema_history ORDER BY version")]


def statements(script: str) -> Iterator[str]:
    """The statements of a script, one by one: ``executescript`` would commit the migration's
    transaction before running. Split where SQLite itself says a statement is complete, so a
    trigger's ``BEGIN …; END;`` stays whole."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        raise ValueError(f"an incomplete statement at the end of a schema script: {pending.strip()[:60]}")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {name for _, name, *_ in db.execute(f"PRAGMA table_info({table})")}
