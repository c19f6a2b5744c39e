"""The default store: one SQLite file in WAL mode, zero setup.

Calls are synchronous on purpose: each is tens of microseconds, less than a hop to a thread.
``synchronous=NORMAL`` in WAL survives a process crash (``kill -9``) without an fsync per
message; only power loss can drop the last moments, which is out of scope.

One row per processed message (``processed``: MessageSid, sender, what they texted, what we
answered) is both the de-duplication record and the transcript, so a turn writes two rows, not
four; the ``transcript`` view shows it line by line. Whether the file is writable and still the one
opened is checked in ``sqlite_files.py``; the retention sweep is ``sqlite_sweep.py``; the consent
ledger's table is ``sqlite_consent.py``; the process status table, ``sqlite_status.py``; the
console's lists, ``sqlite_listings.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from bot.store import sqlite_broadcasts as broadcasts
from bot.store import sqlite_consent as ledger
from bot.store import sqlite_files as files
from bot.store import sqlite_listings as listings
from bot.store import sqlite_owed as owed_replies
from bot.store import sqlite_results as run_results
from bot.store import sqlite_schema as schema
from bot.store import sqlite_status as statuses
from bot.store.base import (
    BroadcastProgress,
    CommitResult,
    KeyedLocks,
    ProcessStatus,
    Purged,
    Retention,
    Snapshot,
    StoreBusy,
    StoreHealth,
    StoreUnavailable,
)
from bot.store.json_text import dumps_own_text, dumps_text, loads_own
from bot.store.listings import ConversationSummary, OptOut, Page, TurnRecord, dump_trace
from bot.store.owed import Owed
from bot.store.records import bookkeeping, conversation_from_record
from bot.store.replies import dump_replies, load_replies
from bot.store.schema_versions import SchemaState
from bot.store.sqlite_schema import SCHEMA  # noqa: F401  (re-exported: the benchmarks fill files with it)
from bot.store.sqlite_sweep import sweep
from bot.types import ConsentChange, Conversation, OutboundMessage, Turn

_SNAPSHOT = """
SELECT (SELECT replies FROM processed WHERE message_sid = ?),
       (SELECT 1 FROM opt_outs WHERE sender = ?),
       c.flow, c.state, c.vars, c.engine, c.updated_at, c.version
FROM (SELECT 1) LEFT JOIN conversations AS c ON c.sender = ?
"""

LOCK_RETRY_SECONDS = 0.0005  # another process holds the write lock: look again this soon
LOCK_WAIT_SECONDS = 5.0
MIGRATION_WAIT_SECONDS = 120.0  # at start-up, for another process migrating the file
CHECKPOINT_EVERY_SECONDS = 0.25


class SqliteStore(run_results.SqliteResults):
    def __init__(self, path: str | Path, retention: Retention = Retention()) -> None:
        self.path = str(path)
        self.retention = retention
        # busy_timeout 0: never wait inside SQLite for another process's lock (that would stall
        # the event loop); writes retry from the loop instead, and WAL readers are not blocked.
        # SQLite opens a file it may not write read-only without a word, and every turn would then
        # fail: one real write now refuses the store at start-up, naming the file and the fix.
        try:
            self._db = _connect(self.path, busy_timeout_ms=0, create=True)
        except sqlite3.Error as error:
            raise files.cannot_open(self.path, error) from None
        try:
            # Older files are migrated forward before anything reads them; workers opening the file at
            # once wait for the one migrating (a large file may take a while: they wait longer).
            _with_retries(lambda: schema.migrate(self._db, self.path), seconds=MIGRATION_WAIT_SECONDS)
            _with_retries(lambda: files.write_once(self._db))
        except sqlite3.Error as error:
            self._db.close()
            raise files.cannot_open(self.path, error) from None
        except BaseException:  # a file from a newer release (SchemaTooNew): refused, untouched
            self._db.close()
            raise
        self._identity = files.identity(self.path)  # the file we write: still the one at our path?
        # Checkpoints (copying the WAL into the database file, with an fsync) happen in a
        # background thread, not in whichever request's COMMIT crosses the WAL threshold.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: asyncio.Task[None] | None = None
        self._locked_since: float | None = None  # when the queued batch first found the lock taken
        self._queue: list[tuple[Turn, asyncio.Future[CommitResult]]] = []
        self._locks = KeyedLocks()

    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        recorded, opted_out, flow, state, variables, engine, updated_at, version = self._db.execute(
            _SNAPSHOT, (message_sid, sender, sender)).fetchone()
        conversation = Conversation(sender) if version is None else \
            conversation_from_record(sender, flow, state, json.loads(variables),
                                     loads_own(engine) if engine is not None else None, updated_at, version)
        return Snapshot(conversation, bool(opted_out),
                        load_replies(recorded) if recorded is not None else None)

    async def is_opted_out(self, sender: str) -> bool:
        return self._db.execute("SELECT 1 FROM opt_outs WHERE sender = ?", (sender,)).fetchone() is not None

    async def commit(self, turn: Turn) -> CommitResult:
        """Queue the turn for the next group commit and wait until it is durable.

        Turns committed in the same moment (one event-loop pass) share one transaction and one
        COMMIT. A duplicate or a conflict writes nothing of its own (``_apply`` undoes its one
        row), so no savepoint is needed; an error fails the whole batch, rolled back together.
        Nobody is answered before the COMMIT that holds their turn returned.
        """
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        if self._checkpointer is None:
            self._checkpointer = asyncio.create_task(self._checkpoint_periodically())
        self._queue.append((turn, future))
        if len(self._queue) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        db = self._db
        gone = files.gone(self.path, self._identity)  # one stat per group commit
        if gone is not None:
            _fail(batch, gone)
            return
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                _fail(batch, files.unavailable(self.path, error))
                return
            # Another process is writing: try again shortly without blocking this process's loop
            # (messages arriving meanwhile join the batch), for a bounded time.
            now = time.monotonic()
            self._locked_since = self._locked_since or now
            if now - self._locked_since > LOCK_WAIT_SECONDS:
                self._locked_since = None
                _fail(batch, StoreBusy(f"SQLite write lock held elsewhere for over {LOCK_WAIT_SECONDS:g}s"))
                return
            self._queue = batch + self._queue
            asyncio.get_running_loop().call_later(LOCK_RETRY_SECONDS, self._flush_if_queued)
            return
        self._locked_since = None
        try:
            results = [_apply(db, turn) for turn, _ in batch]
            # The committed turns' flow runs, all at once (bot/store/sqlite_results.py)
            run_results.apply(db, [(turn.inbound.sender, turn.runs)
                                   for (turn, _), result in zip(batch, results, strict=True)
                                   if turn.runs and result is CommitResult.COMMITTED])
            db.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 (every waiting turn gets the error: 503 or 500)
            files.roll_back(db)
            _fail(batch, files.unavailable(self.path, error))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _checkpoint_periodically(self) -> None:
        checkpointer = _connect(self.path, busy_timeout_ms=0)
        running: asyncio.Future[None] | None = None
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_EVERY_SECONDS)
                running = asyncio.ensure_future(asyncio.to_thread(_checkpoint, checkpointer))
                await asyncio.shield(running)
        finally:
            # Cancelling the task does not stop the thread: closing the connection while the
            # thread still uses it crashes the process (seen as a segfault at shutdown).
            if running is not None and not running.done():
                await asyncio.wait({running})
            checkpointer.close()

    def _flush_if_queued(self) -> None:
        if self._queue:
            self._flush()

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(sender)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[sqlite3.Connection]:
        """A write transaction outside the group commit (rare writes: purge, outbound records),
        waiting for another process's write lock without blocking the event loop."""
        gone = files.gone(self.path, self._identity)
        if gone is not None:
            raise gone
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error):
                    raise files.unavailable(self.path, error) from None
                if time.monotonic() > deadline:
                    raise StoreBusy(f"SQLite database busy: {error}") from None
                await asyncio.sleep(LOCK_RETRY_SECONDS * 4)
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as error:
            files.roll_back(self._db)
            mapped = files.unavailable(self.path, error)
            if mapped is error:
                raise
            raise mapped from error

    async def health(self) -> StoreHealth:
        """Healthy when our file is still at its path, writable after a restart too, and a real
        write succeeds now (a full disk or an I/O error shows here)."""
        gone = files.gone(self.path, self._identity)
        problem = str(gone) if gone is not None else files.read_only(self.path)
        if problem is None:
            try:
                async with self._writing() as db:
                    files.probe_write(db)
            except StoreBusy as error:
                problem = str(error)
        return StoreHealth(problem)

    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        rows = self._db.execute("SELECT sender, at FROM deadlines WHERE at <= ? ORDER BY at LIMIT ?", (now, limit))
        return [(sender, at) for sender, at in rows.fetchall()]

    async def drop_deadline(self, sender: str, at: float) -> None:
        async with self._writing() as db:
            db.execute("DELETE FROM deadlines WHERE sender = ? AND at = ?", (sender, at))

    async def state_counts(self, flow: str, since: float = 0.0) -> dict[str, int]:
        """In a thread on its own connection: a flow with a million people in it takes a while to
        count, and the webhook keeps answering meanwhile (WAL readers wait for no writer)."""
        return await asyncio.to_thread(self._state_counts, flow, since)

    def _state_counts(self, flow: str, since: float) -> dict[str, int]:
        # Read-only: a store file deleted meanwhile is an error here, not a new empty file at its path.
        try:
            db = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT state, COUNT(*) FROM conversations WHERE flow = ? AND state IS NOT NULL "
                                  "AND updated_at >= ? GROUP BY state", (flow, since)).fetchall()
            finally:
                db.close()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"the SQLite store {os.path.abspath(self.path)} cannot be read: {error}") from None
        return {state: count for state, count in rows}

    async def purge(self, sender: str) -> Purged:
        async with self._writing() as db:
            conversations = db.execute("DELETE FROM conversations WHERE sender = ?", (sender,)).rowcount
            db.execute("DELETE FROM deadlines WHERE sender = ?", (sender,))  # no timeout brings them back
            db.execute("DELETE FROM owed_replies WHERE sender = ?", (sender,))  # nor a reply sent later
            lines = db.execute("SELECT COUNT(*) FROM transcript WHERE sender = ? AND body != ''",
                               (sender,)).fetchone()[0]
            blanked = db.execute("UPDATE processed SET body = '', replies = '[]' WHERE sender = ?",
                                 (sender,)).rowcount
            run_results.forget(db, sender, time.time())
        return Purged(conversations, lines, blanked)

    async def sweep(self, now: float) -> Purged:
        """Runs in a thread on its own connection, in small batches: the webhook keeps answering."""
        return await asyncio.to_thread(self._sweep, now)

    def _sweep(self, now: float) -> Purged:
        gone = files.gone(self.path, self._identity)
        if gone is not None:  # said as every write says it, not as SQLite's "no such table"
            raise gone
        db = _connect(self.path)
        try:
            return sweep(db, now, self.retention)
        finally:
            db.close()

    async def save_outbound(self, message: OutboundMessage) -> None:
        async with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO outbound (id, sid, broadcast, record) VALUES (?, ?, ?, ?)",
                       (message.id, message.sid, message.broadcast, json.dumps(dataclasses.asdict(message))))

    async def save_outbounds(self, messages: Sequence[OutboundMessage]) -> None:
        """Several records in one short transaction (a broadcast's, ``bot/broadcast_records.py``): the
        write lock the server's turns need is taken once, and only for the writes."""
        # not dataclasses.asdict (a deep copy, several times slower): the same JSON for these plain fields
        names = [field.name for field in dataclasses.fields(OutboundMessage)]
        rows = [(message.id, message.sid, message.broadcast,
                 json.dumps({name: getattr(message, name) for name in names})) for message in messages]
        async with self._writing() as db:  # an upsert: a record's second write updates it in place (40% quicker)
            db.executemany("INSERT INTO outbound (id, sid, broadcast, record) VALUES (?, ?, ?, ?) ON CONFLICT (id) "
                           "DO UPDATE SET sid = excluded.sid, broadcast = excluded.broadcast, record = excluded.record",
                           rows)

    async def outbound(self, message_id: str) -> OutboundMessage | None:
        return _outbound(self._db.execute("SELECT record FROM outbound WHERE id = ?", (message_id,)).fetchone())

    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None:
        return _outbound(self._db.execute("SELECT record FROM outbound WHERE sid = ?", (sid,)).fetchone())

    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]:
        rows = self._db.execute("SELECT record FROM outbound WHERE broadcast = ? ORDER BY id", (broadcast,))
        return [OutboundMessage(**json.loads(record)) for (record,) in rows.fetchall()]

    async def set_consent(self, change: ConsentChange) -> bool:
        async with self._writing() as db:
            return ledger.change_consent(db, change)

    async def consent_history(self, number: str) -> list[ConsentChange]:
        return ledger.history(self._db, number)

    async def active_conversations(self, flow: str | None = None, state: str | None = None, limit: int = 50,
                                   cursor: str | None = None) -> Page[ConversationSummary]:
        return listings.active_conversations(self._db, flow, state, limit, cursor)

    async def recent_turns(self, sender: str, limit: int = 100) -> list[TurnRecord]:
        """In a thread on its own connection: it may scan the turn log, and the webhook keeps answering."""
        return await asyncio.to_thread(self._recent_turns, sender, limit)

    def _recent_turns(self, sender: str, limit: int) -> list[TurnRecord]:
        db = _connect(self.path)
        try:
            return listings.recent_turns(db, sender, limit)
        finally:
            db.close()

    async def opt_outs(self, limit: int = 100, cursor: str | None = None) -> Page[OptOut]:
        return listings.opt_outs(self._db, limit, cursor)

    def consent_changes(self, since: float | None = None) -> AsyncIterator[ConsentChange]:
        return ledger.changes(self._db, since)

    async def claim_owed(self, now: float, until: float, limit: int = 20) -> list[Owed]:
        async with self._writing() as db:
            return owed_replies.claim(db, now, until, limit)

    async def settle_owed(self, message_sid: str) -> None:
        async with self._writing() as db:
            db.execute("DELETE FROM owed_replies WHERE message_sid = ?", (message_sid,))

    async def release_owed(self, message_sids: Collection[str], at: float | None = None) -> None:
        async with self._writing() as db:
            db.executemany("UPDATE owed_replies SET claimed_until = ? WHERE message_sid = ?",
                           [(time.time() if at is None else at, sid) for sid in message_sids])

    async def schema_state(self) -> SchemaState:
        return schema.state(self._db)

    async def record_status(self, status: ProcessStatus) -> None:
        async with self._writing() as db:
            statuses.record(db, status)

    async def process_statuses(self) -> list[ProcessStatus]:
        return statuses.read(self._db)

    async def record_broadcast_progress(self, progress: BroadcastProgress) -> None:
        async with self._writing() as db:
            broadcasts.record(db, progress)

    async def broadcasts(self, active_within: float, now: float | None = None) -> list[BroadcastProgress]:
        return broadcasts.read(self._db, (time.time() if now is None else now) - active_within)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._db.close()


def _checkpoint(db: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.OperationalError):  # busy: the next round will do
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _outbound(row: tuple[str] | None) -> OutboundMessage | None:
    return OutboundMessage(**json.loads(row[0])) if row is not None else None


def _connect(path: str, busy_timeout_ms: int = 5000, *, create: bool = False) -> sqlite3.Connection:
    """A connection to the store's file. Only the store's first one (``create``) may make the file:
    a later one (a sweep, a checkpoint, a listing) finding it deleted would otherwise make a new,
    empty database there, and the next restart would serve from it."""
    target = path if create else f"{Path(path).resolve().as_uri()}?mode=rw"
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=not create)
    # Switching a new file to WAL takes the write lock: several workers opening it at once wait.
    _with_retries(lambda: db.execute("PRAGMA journal_mode=WAL"))
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    return db


def _with_retries(action: Callable[[], object], seconds: float = 5.0) -> None:
    """Run a start-up statement, waiting (blocking: nothing is served yet) for a busy database."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _apply(db: sqlite3.Connection, turn: Turn) -> CommitResult:
    """Write one turn inside the open transaction; on a duplicate or a conflict, write nothing
    (a conflict deletes the one row it wrote first): other turns of its batch are unaffected."""
    inbound = turn.inbound
    try:
        db.execute("INSERT INTO processed (message_sid, sender, body, replies, at, trace) VALUES (?, ?, ?, ?, ?, ?)",
                   (inbound.message_sid, inbound.sender, inbound.body, dump_replies(turn.replies), turn.at,
                    dump_trace(turn.trace)))
    except sqlite3.IntegrityError:
        return CommitResult.DUPLICATE
    if turn.conversation_changed and not _write_conversation(db, turn):
        db.execute("DELETE FROM processed WHERE message_sid = ?", (inbound.message_sid,))
        return CommitResult.CONFLICT
    if turn.consent is not None:
        ledger.change_consent(db, turn.consent)
    if turn.deadline_changed:
        if turn.deadline is None:
            db.execute("DELETE FROM deadlines WHERE sender = ?", (inbound.sender,))
        else:
            db.execute("INSERT OR REPLACE INTO deadlines (sender, at) VALUES (?, ?)", (inbound.sender, turn.deadline))
    if turn.owed:
        owed_replies.owe(db, turn)
    return CommitResult.COMMITTED


def _write_conversation(db: sqlite3.Connection, turn: Turn) -> bool:
    """Compare-and-set the conversation on its version; False when another turn got there first."""
    conversation = turn.conversation
    row = (conversation.flow, conversation.state, dumps_text(conversation.vars),
           dumps_own_text(bookkeeping(conversation)), conversation.updated_at, turn.expected_version + 1,
           conversation.sender)
    if turn.expected_version == 0:
        cursor = db.execute("INSERT INTO conversations (flow, state, vars, engine, updated_at, version, sender) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sender) DO NOTHING", row)
    else:
        cursor = db.execute("UPDATE conversations SET flow = ?, state = ?, vars = ?, engine = ?, updated_at = ?, "
                            "version = ? WHERE sender = ? AND version = ?", (*row, turn.expected_version))
    return cursor.rowcount == 1



def _fail(batch: list[tuple[Turn, asyncio.Future[CommitResult]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
