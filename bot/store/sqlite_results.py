"""The SQLite store's results: per-flow, per-day counts and one row per flow run.

Each group commit writes its turns' ``Turn.runs`` in its own transaction (:func:`apply`, two
``executemany`` for all its turns): a run's row as it begins, moves or ends. Each row written
carries its ``tally`` (what to count: ``started``, ``state:NAME``, how it ended), and the triggers
below add it to the counts of the run's flow and day — inside SQLite, and only for a row the
statement really wrote (an update of a run the sweep closed meanwhile changes and counts nothing).
Reading a flow's results (:func:`flow_results`) sums its counts over the days asked for and counts
the runs that lapsed unnoticed, a range of the runs table's primary key (flow, start): tens of
milliseconds for a million runs, never a scan of the conversations.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from bot.store.base import DAY, RUNS_PAGE, FlowResults, RunKey, RunRow, StoreUnavailable, period_days
from bot.store.json_text import dumps_text
from bot.types import RunOutcome, RunUpdate

R = TypeVar("R")

RESULTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS result_counts (  -- no personal data: kept whatever the retention period
    flow TEXT NOT NULL,
    day INTEGER NOT NULL,  -- the UTC day the runs began, as days since 1970-01-01
    what TEXT NOT NULL,  -- 'started', 'state:NAME' or how runs ended ('finished', 'expired', ...)
    n INTEGER NOT NULL,
    PRIMARY KEY (flow, day, what)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (  -- one per run of a flow: the answers table (personal data)
    flow TEXT NOT NULL,
    started_at REAL NOT NULL,
    id TEXT NOT NULL,  -- the MessageSid of the turn that began it, and which run of that turn
    sender TEXT NOT NULL,
    state TEXT,
    vars TEXT NOT NULL,  -- the flow's saved variables (JSON)
    expires_at REAL NOT NULL,  -- it lapses then unless the person writes
    outcome TEXT,  -- NULL while it goes on
    ended_at REAL,
    tally TEXT,  -- what its last write counted (a JSON list): the triggers below add it to result_counts
    PRIMARY KEY (flow, started_at, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_sender ON runs (sender);  -- written once per run: for a purge
CREATE TRIGGER IF NOT EXISTS runs_count_begun AFTER INSERT ON runs BEGIN
    INSERT INTO result_counts (flow, day, what, n)
        SELECT NEW.flow, CAST(NEW.started_at / 86400 AS INTEGER), value, 1 FROM json_each(NEW.tally) WHERE true
        ON CONFLICT (flow, day, what) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS runs_count_moved AFTER UPDATE OF tally ON runs BEGIN
    INSERT INTO result_counts (flow, day, what, n)
        SELECT NEW.flow, CAST(NEW.started_at / 86400 AS INTEGER), value, 1 FROM json_each(NEW.tally) WHERE true
        ON CONFLICT (flow, day, what) DO UPDATE SET n = n + 1;
END;
"""

_BEGIN = ("INSERT INTO runs (state, vars, expires_at, outcome, ended_at, tally, flow, started_at, id, sender) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
_MOVE = ("UPDATE runs SET state = ?, vars = ?, expires_at = ?, outcome = ?, ended_at = ?, tally = ? "
         "WHERE flow = ? AND started_at = ? AND id = ? AND outcome IS NULL")
_CLOSE = ("UPDATE runs SET outcome = ?, ended_at = ?, tally = json_array(?) "
          "WHERE flow = ? AND started_at = ? AND id = ? AND outcome IS NULL")
BATCH = 500
#: ``sqlite_sweep.transaction``: a short write transaction (passed in: that module calls this one)
Transaction = Callable[[sqlite3.Connection], AbstractContextManager[Any]]


class SqliteResults:
    """The ``Results`` reads of ``SqliteStore`` (its base): each in a thread on a connection of its
    own, as a console page or the CLI asks while the webhook keeps answering (WAL: readers wait for
    no writer)."""

    path: str

    async def flow_results(self, flow: str, since: date | None = None, until: date | None = None,
                           now: float | None = None) -> FlowResults:
        first, last = period_days(since, until)
        return await asyncio.to_thread(self._read, flow_results, flow, first, last, time.time() if now is None else now)

    async def runs(self, flow: str, since: date | None = None, until: date | None = None, *,
                   after: RunKey | None = None, limit: int | None = None,
                   now: float | None = None) -> AsyncIterator[RunRow]:
        first, last = period_days(since, until)
        now = time.time() if now is None else now
        left = limit if limit is not None else float("inf")
        while left > 0:
            size = int(min(left, RUNS_PAGE))
            page = await asyncio.to_thread(self._read, runs_page, flow, first, last, after, size)
            for row in page:
                yield row.as_of(now)
            if len(page) < size:
                return
            left -= len(page)
            after = (page[-1].started_at, page[-1].id)

    def _read(self, read: Callable[..., R], *args: Any) -> R:
        # Read-only: a store file deleted meanwhile is an error here, not a new empty file at its path.
        try:
            db = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            try:
                return read(db, *args)
            finally:
                db.close()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"the SQLite store {os.path.abspath(self.path)} cannot be read: {error}") from None


def apply(db: sqlite3.Connection, turns: Iterable[tuple[str, Iterable[RunUpdate]]]) -> None:
    """Write the run updates of a group commit's turns, (sender, ``Turn.runs``) each, inside its
    open transaction: new runs in one statement, the others in another (the triggers count)."""
    begun: list[tuple[Any, ...]] = []
    moved: list[tuple[Any, ...]] = []
    for sender, updates in turns:
        for update in updates:
            outcome = str(update.outcome) if update.outcome is not None else None
            # What the triggers count, as a JSON list (built by hand: names, outcomes are plain words)
            tally = [f'"state:{state}"' for state in update.reached]
            if outcome is not None:
                tally.append(f'"{outcome}"')
            if update.began:
                tally.insert(0, '"started"')
            row = (update.state, dumps_text(update.vars), update.expires_at, outcome, update.ended_at,
                   f"[{','.join(tally)}]", update.flow, update.started_at, update.id)
            if update.began:
                begun.append((*row, sender))
            else:
                moved.append(row)
    if begun:
        db.executemany(_BEGIN, begun)
    if moved:
        db.executemany(_MOVE, moved)


def flow_results(db: sqlite3.Connection, flow: str, first: int, last: int, now: float) -> FlowResults:
    """The flow's counts over the epoch days ``first`` to ``last``, with the runs that lapsed
    unnoticed (still open past their expiry) counted as expired."""
    counts: dict[str, int] = dict(db.execute(
        "SELECT what, SUM(n) FROM result_counts WHERE flow = ? AND day BETWEEN ? AND ? GROUP BY what",
        (flow, first, last)).fetchall())
    (lapsed,) = db.execute("SELECT COUNT(*) FROM runs WHERE flow = ? AND started_at >= ? AND started_at < ? "
                           "AND outcome IS NULL AND expires_at < ?",
                           (flow, first * DAY, (last + 1) * DAY, now)).fetchone()
    counts[RunOutcome.EXPIRED] = counts.get(RunOutcome.EXPIRED, 0) + lapsed
    return FlowResults.of(flow, counts)


def runs_page(db: sqlite3.Connection, flow: str, first: int, last: int, after: RunKey | None,
              limit: int) -> list[RunRow]:
    """Up to ``limit`` runs of the flow that began on those days, after the run ``after``."""
    start, ends = (first * DAY, ""), (last + 1) * DAY
    if after is not None and after > start:
        start = after
    rows = db.execute("SELECT id, sender, started_at, state, vars, expires_at, outcome, ended_at FROM runs "
                      "WHERE flow = ? AND (started_at, id) > (?, ?) AND started_at < ? ORDER BY started_at, id "
                      "LIMIT ?", (flow, *start, ends, limit)).fetchall()
    return [RunRow(run_id, flow, sender, started_at, state, json.loads(variables), expires_at,
                   RunOutcome(outcome) if outcome is not None else None, ended_at)
            for run_id, sender, started_at, state, variables, expires_at, outcome, ended_at in rows]


def forget(db: sqlite3.Connection, sender: str, now: float) -> int:
    """A purge, inside its transaction: the number's open runs end reset (so the counts stay
    true), then its run rows go. Returns how many rows went."""
    for flow, started_at, run_id in db.execute("SELECT flow, started_at, id FROM runs WHERE sender = ? "
                                               "AND outcome IS NULL", (sender,)).fetchall():
        _close(db, (flow, started_at, run_id), RunOutcome.RESET, now)
    return int(db.execute("DELETE FROM runs WHERE sender = ?", (sender,)).rowcount)


def _close(db: sqlite3.Connection, key: tuple[str, float, str], outcome: RunOutcome, at: float) -> None:
    """End a run still open (counted by the trigger); one closed meanwhile is left alone."""
    db.execute(_CLOSE, (str(outcome), at, str(outcome), *key))


def close_lapsed(db: sqlite3.Connection, now: float, transaction: Transaction) -> int:
    """The sweep: runs still open past their expiry end ``expired`` at it, a batch per short
    transaction (so the retention period can then remove them without losing their count)."""
    closed = 0
    for batch in _batches(db, "outcome IS NULL AND expires_at < ?", (now,), "expires_at"):
        with transaction(db):
            for flow, started_at, run_id, expires_at in batch:
                _close(db, (flow, started_at, run_id), RunOutcome.EXPIRED, expires_at)
        closed += len(batch)
    return closed


def drop_ended(db: sqlite3.Connection, cutoff: float, transaction: Transaction) -> int:
    """The sweep: rows of runs that ended before ``cutoff`` (the retention period) leave."""
    dropped = 0
    for batch in _batches(db, "ended_at < ?", (cutoff,), "ended_at"):
        with transaction(db):
            db.executemany("DELETE FROM runs WHERE flow = ? AND started_at = ? AND id = ?",
                           [(flow, started_at, run_id) for flow, started_at, run_id, _ in batch])
        dropped += len(batch)
    return dropped


def _batches(db: sqlite3.Connection, condition: str, values: tuple[float, ...],
             column: str) -> Iterator[list[tuple[str, float, str, float]]]:
    """The rows matching ``condition``, a batch at a time in primary key order, each read outside
    any write transaction and continued after the last key (one pass over the table in all)."""
    after: tuple[str, float, str] = ("", float("-inf"), "")
    while batch := db.execute(f"SELECT flow, started_at, id, {column} FROM runs WHERE (flow, started_at, id) > "
                              f"(?, ?, ?) AND {condition} ORDER BY flow, started_at, id LIMIT ?",
                              (*after, *values, BATCH)).fetchall():
        yield batch
        after = batch[-1][:3]
        if len(batch) < BATCH:
            return

