"""The one path every inbound message takes: de-duplicate, lock, load, run the engine, commit.

Shared by the webhook, the simulator and the tests, so they cannot disagree about the rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.engine import Engine
from bot.privacy import mask
from bot.store import CommitResult, Store
from bot.store.base import StoreBusy
from bot.types import Inbound, TraceStep, Turn

log = logging.getLogger("bot.route")

MAX_ATTEMPTS = 10  # compare-and-set retries when another process changed the conversation first


@dataclass(frozen=True, slots=True)
class Received:
    replies: tuple[str, ...]
    duplicate: bool = False  # a MessageSid seen before: the replies are the recorded ones
    trace: tuple[TraceStep, ...] = field(default=())


Notifier = Callable[[Inbound, list[tuple[str, str]]], None]


class Inbox:
    def __init__(self, store: Store, engine: Engine, notifier: Notifier | None = None) -> None:
        """``engine`` may be replaced at any time (hot reload): each message uses one engine throughout.
        ``notifier`` gets a turn's ``notify`` messages once the turn is saved (never for a duplicate)."""
        self.store = store
        self.engine = engine
        self.notifier = notifier

    async def receive(self, inbound: Inbound) -> Received:
        started = time.perf_counter()
        received = await self._receive(inbound)
        _log_route(inbound, received, time.perf_counter() - started)
        return received

    async def _receive(self, inbound: Inbound) -> Received:
        engine = self.engine
        async with self.store.lock(inbound.sender):
            for _ in range(MAX_ATTEMPTS):
                # Read under the lock: a twin of this message (a Twilio retry) may have just won.
                snapshot = await self.store.snapshot(inbound.sender, inbound.message_sid)
                if snapshot.recorded_replies is not None:
                    return Received(snapshot.recorded_replies, duplicate=True)
                conversation, opted_out = snapshot.conversation, snapshot.opted_out
                expected_version = conversation.version
                outcome = await engine.handle(inbound, conversation, opted_out)
                replies = tuple(outcome.replies)
                if opted_out and outcome.opt_out is not False:
                    replies = ()  # never text an opted-out number, whatever a flow says
                turn = Turn(inbound, outcome.conversation, expected_version, replies, outcome.opt_out)
                result = await self.store.commit(turn)
                if result is CommitResult.COMMITTED:
                    if outcome.notifications:
                        self._notify(inbound, outcome.notifications)
                    return Received(replies, trace=tuple(outcome.trace))
                if result is CommitResult.DUPLICATE:
                    return Received(await self.store.recorded_replies(inbound.message_sid) or (),
                                    duplicate=True)
        raise StoreBusy(f"conversation of {mask(inbound.sender)} kept changing; gave up")


    def _notify(self, inbound: Inbound, notifications: list[tuple[str, str]]) -> None:
        if self.notifier is None:
            log.error("a flow asked to notify %s, but outbound messages are not configured (%s)",
                      ", ".join(mask(to) for to, _ in notifications), "see README: TWILIO_ACCOUNT_SID, TWILIO_FROM")
            return
        self.notifier(inbound, notifications)


def _log_route(inbound: Inbound, received: Received, seconds: float) -> None:
    """One line per message: the answer to "why did the bot say that?"."""
    if not log.isEnabledFor(logging.INFO):
        return
    if received.duplicate:
        route = "duplicate MessageSid: recorded reply"
    else:
        route = "; ".join(f"{step.before} -> {step.after} ({step.rule})" for step in received.trace)
    log.info("from=%s sid=%s %s replies=%d ms=%.1f", mask(inbound.sender), inbound.message_sid, route,
             len(received.replies), seconds * 1000)
