"""The console's lists on SQLite (``bot/store/listings.py``), read on the store's connection.

Who is in a flow reads the index ``conversations_by_state`` (flow, state, updated_at; only
conversations in a flow) and never adds one, since every index costs every message: the
(flow, state) pairs present are found by skipping through it (one seek per pair), then each pair's
newest are read off its end, and the pages merged. So a page costs about pairs × its length,
whatever the number of conversations. The transcript reads the turn log (``processed``) from its
newest row back until it has the sender's last turns: rows have no index by sender, on purpose.
"""

from __future__ import annotations

import sqlite3

from bot.store.listings import ConversationSummary, Cursor, OptOut, Page, TurnRecord, load_trace, page_size
from bot.store.replies import load_replies

# Each a seek in the index. (A row value, "(flow, state) > (?, ?)", reads every entry of the pair it
# starts from instead: a millisecond per pair on a million conversations.)
_PAIR = "SELECT flow, state FROM conversations WHERE flow IS NOT NULL AND state IS NOT NULL AND "
_FIRST_PAIR = _PAIR + "flow > '' ORDER BY flow, state LIMIT 1"
_NEXT_STATE = _PAIR + "flow = ? AND state > ? ORDER BY state LIMIT 1"
_NEXT_FLOW = _PAIR + "flow > ? ORDER BY flow, state LIMIT 1"
_AT_PAIR = ("SELECT sender, updated_at FROM conversations WHERE flow = ? AND state = ? AND updated_at <= ? "
            "ORDER BY updated_at DESC, sender DESC LIMIT ?")


def active_conversations(db: sqlite3.Connection, flow: str | None, state: str | None, limit: int,
                         cursor: str | None) -> Page[ConversationSummary]:
    after = Cursor.read(cursor)
    size = page_size(limit)
    skip = after.skip if after is not None else 0
    newest = after.at if after is not None else float("inf")
    found: list[ConversationSummary] = []
    for pair_flow, pair_state in _pairs(db, flow, state):
        rows = db.execute(_AT_PAIR, (pair_flow, pair_state, newest, size + skip + 1)).fetchall()
        found.extend(ConversationSummary(sender, pair_flow, pair_state, at) for sender, at in rows)
    found.sort(key=lambda item: (item.updated_at, item.sender), reverse=True)
    found = found[skip:]  # those at exactly the cursor's time come first: the ones read already
    chosen = found[:size]
    more = len(found) > size
    return Page(chosen, str(Cursor.after([item.updated_at for item in chosen], after)) if more else None)


def _pairs(db: sqlite3.Connection, flow: str | None, state: str | None) -> list[tuple[str, str]]:
    """The (flow, state) pairs anyone is at, each found by one seek in the index."""
    if flow is not None and state is not None:
        return [(flow, state)]
    pairs: list[tuple[str, str]] = []
    row = db.execute(_NEXT_STATE, (flow, "")).fetchone() if flow is not None else db.execute(_FIRST_PAIR).fetchone()
    while row is not None and (flow is None or row[0] == flow):
        if state is None or row[1] == state:
            pairs.append((row[0], row[1]))
        row = db.execute(_NEXT_STATE, row).fetchone() or \
            (db.execute(_NEXT_FLOW, (row[0],)).fetchone() if flow is None else None)
    return pairs


def recent_turns(db: sqlite3.Connection, sender: str, limit: int) -> list[TurnRecord]:
    rows = db.execute("SELECT message_sid, at, body, replies, trace FROM processed WHERE sender = ? "
                      "ORDER BY rowid DESC LIMIT ?", (sender, page_size(limit))).fetchall()
    return [TurnRecord(sid, at, body, load_replies(replies), load_trace(trace))
            for sid, at, body, replies, trace in reversed(rows)]


def opt_outs(db: sqlite3.Connection, limit: int, cursor: str | None) -> Page[OptOut]:
    """Opt-outs are few beside messages and never dropped: their table is read without an index."""
    after = Cursor.read(cursor)
    size = page_size(limit)
    rows = db.execute("SELECT sender, at FROM opt_outs WHERE at <= ? ORDER BY at DESC, sender DESC LIMIT ? OFFSET ?",
                      (after.at if after is not None else float("inf"), size + 1,
                       after.skip if after is not None else 0)).fetchall()
    chosen = [OptOut(number, at) for number, at in rows[:size]]
    return Page(chosen, str(Cursor.after([item.at for item in chosen], after)) if len(rows) > size else None)
