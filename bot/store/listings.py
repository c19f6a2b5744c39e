"""What the console lists from a store: who is in a flow now (newest first, a page at a time), one
sender's turns with how each was routed, and who opted out.

The contract is :class:`Listings` (every store keeps it: tests/test_store.py ``TestListings``).
Pages are read newest first and continued with an opaque cursor that never holds a phone number
(it travels in URLs): the time of the last item and how many items of that very time were
already read (:class:`Cursor`). Items changing between two pages may be missed or shown twice,
as in any live list; nothing is lost from the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bot.store.json_text import dumps_own_text
from bot.types import TraceStep

Item = TypeVar("Item")

MAX_PAGE = 500  # items one call returns at most, whatever it is asked for


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """Where one sender is now: a flow and state, and when they last wrote."""

    sender: str
    flow: str
    state: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One turn as the store keeps it: what was texted (blank once retention or a purge removed
    it), what was answered (replies with pictures are ``MediaText``), and the routing trace (empty in
    turns recorded before traces were kept). ``message_sid`` names the kind of turn: a Twilio
    MessageSid, or ``timeout:…``, ``broadcast:…``, ``reset:…``, ``wait:…`` for the others."""

    message_sid: str
    at: float
    body: str
    replies: tuple[str, ...]
    trace: tuple[TraceStep, ...] = ()


@dataclass(frozen=True, slots=True)
class OptOut:
    """A number that opted out, and since when."""

    number: str
    at: float


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    """Some items, newest first, and the cursor of the next page (None: there is none)."""

    items: list[Item]
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the time of its last item and how many items with exactly that time
    have been read so far (the next page skips them)."""

    at: float
    skip: int

    def __str__(self) -> str:
        return f"{self.at!r}~{self.skip}"

    @classmethod
    def read(cls, text: str | None) -> Cursor | None:
        """A cursor from its text; ValueError names a malformed one."""
        if not text:
            return None
        at, _, skip = text.partition("~")
        try:
            cursor = cls(float(at), int(skip))
        except ValueError:
            raise ValueError(f"not a page cursor: {text[:40]!r}") from None
        if cursor.skip < 0 or cursor.at != cursor.at:  # NaN
            raise ValueError(f"not a page cursor: {text[:40]!r}")
        return cursor

    @classmethod
    def after(cls, items_at: list[float], previous: Cursor | None) -> Cursor:
        """The cursor after a page whose items (newest first) have these times."""
        last = items_at[-1]
        same = sum(1 for at in items_at if at == last)
        if previous is not None and previous.at == last:
            same += previous.skip
        return cls(last, same)


def page_size(limit: int) -> int:
    """``limit`` kept between 1 and :data:`MAX_PAGE`."""
    return max(1, min(int(limit), MAX_PAGE))


class Listings(Protocol):
    """The console's lists. Reads only; each page costs about its length, never a scan of every
    conversation (the SQLite transcript excepted: it scans the turn log, newest first, until it has
    the sender's last turns)."""

    async def active_conversations(self, flow: str | None = None, state: str | None = None, limit: int = 50,
                                   cursor: str | None = None) -> Page[ConversationSummary]:
        """Conversations in a flow (in ``flow``, at ``state`` when given), the person who wrote last
        first. Conversations the retention period dropped are not listed (Redis: even before the
        next sweep); an expired one is, until its next turn ends it."""

    async def recent_turns(self, sender: str, limit: int = 100) -> list[TurnRecord]:
        """The sender's last ``limit`` turns, oldest first."""

    async def opt_outs(self, limit: int = 100, cursor: str | None = None) -> Page[OptOut]:
        """The numbers opted out now, the most recent first."""


def dump_trace(trace: tuple[TraceStep, ...]) -> str | None:
    """A turn's trace as the SQLite and Redis stores keep it (JSON ``[[rule, before, after], …]``)."""
    return dumps_own_text([[step.rule, step.before, step.after] for step in trace]) if trace else None


def load_trace(text: str | None) -> tuple[TraceStep, ...]:
    """A stored trace (none: a turn recorded before traces were kept)."""
    if not text:
        return ()
    return tuple(TraceStep(str(rule), str(before), str(after)) for rule, before, after in json.loads(text))
