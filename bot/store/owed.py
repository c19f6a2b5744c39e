"""Replies a committed turn still owes: what survives a restart between saving a turn and sending.

A turn answered later through the REST API (a deferred answer after "one moment", a wait's
timeout) commits its replies as *owed*, in its own transaction, claimed by the process that
committed it for :data:`CLAIM_SECONDS`. That process sends them and settles the record; if it
stops first (a SIGTERM whose grace ran out, a crash, Twilio unreachable), the record stays, and
whichever process finds the claim lapsed sends them (``bot/owed_delivery.py``). Each message's id
derives from the turn's MessageSid and an outbound record is written before each API call, so a
message already handed to Twilio is recognised and never sent twice (``send_for_turn``).

Only what sending needs is kept: the person's number, the number they texted, and the replies;
never what they texted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from bot.store.replies import entry, reply_from
from bot.types import Inbound, Turn

log = logging.getLogger("bot.store")

CLAIM_SECONDS = 60.0  # a process sending owed replies holds them this long (20429 back-off included)
RETRY_SECONDS = CLAIM_SECONDS  # a send that could not reach Twilio is tried again this much later


@dataclass(frozen=True)
class Owed:
    """One turn's replies still to be sent, and who to send them to (``record``: the turn's id,
    sender and our number, without what they texted)."""

    record: Inbound
    replies: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"sid": self.record.message_sid, "sender": self.record.sender, "to": self.record.to,
                           "replies": [entry(reply) for reply in self.replies]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Owed:
        data = json.loads(text)
        return cls(Inbound(str(data["sid"]), str(data["sender"]), str(data.get("to", ""))),
                   tuple(reply_from(value) for value in data["replies"]))


def readable(text: str) -> Owed | None:
    """The owed record ``text`` as written, or None (logged) when it cannot be read (damaged by
    hand, or not this release's shape): the store drops it, rather than fail every claim of the
    batch it is in and hold back every reply owed behind it, forever."""
    try:
        return Owed.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        log.error("the replies a turn owed were dropped: their record in the store cannot be read (%s: %s)",
                  type(error).__name__, error)
        return None


def owed_by(turn: Turn) -> Owed:
    """What ``turn`` owes, as kept: who, from which of our numbers, never what they texted."""
    return Owed(Inbound(turn.inbound.message_sid, turn.inbound.sender, turn.inbound.to), turn.owed)


class OwedReplies(Protocol):
    """Owed replies, written by ``Turns.commit`` (``Turn.owed``) and settled once sent."""

    async def claim_owed(self, now: float, until: float, limit: int = 20) -> list[Owed]:
        """Up to ``limit`` owed records whose claim lapsed by ``now``, oldest claim first, each now
        claimed until ``until`` (another process asking meanwhile gets others)."""

    async def settle_owed(self, message_sid: str) -> None:
        """Forget a turn's owed replies: each was handed to Twilio, refused, skipped, or is in doubt."""

    async def release_owed(self, message_sids: Collection[str], at: float | None = None) -> None:
        """Let any process claim these from ``at`` (None: now, as a stopping process does; later:
        a send that found Twilio unreachable is tried again then). The retention sweep drops a
        record nobody tried to send for the retention period."""
