"""The one path every inbound message takes: de-duplicate, lock, load, run the engine, commit.

Shared by the webhook, the simulator and the tests, so they cannot disagree about the rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.engine import TIMEOUT_KEY, Engine
from bot.privacy import mask
from bot.store import CommitResult, Store
from bot.store.base import StoreBusy
from bot.types import Inbound, TraceStep, Turn

log = logging.getLogger("bot.route")

MAX_ATTEMPTS = 10  # compare-and-set retries when another process changed the conversation first
MAX_WEBHOOK_WAIT = 12.0  # seconds a webhook may wait in all before answering "one moment" (Twilio: 15)


@dataclass(frozen=True, slots=True)
class Received:
    replies: tuple[str, ...]
    duplicate: bool = False  # a MessageSid seen before: the replies are the recorded ones
    deferred: bool = False  # answered "one moment"; the real replies follow through the REST API
    trace: tuple[TraceStep, ...] = field(default=())


Notifier = Callable[[Inbound, list[tuple[str, str]]], None]


@dataclass(frozen=True, slots=True)
class Started:
    """What starting a flow for someone (a broadcast) did.

    ``status``: "started" (saved; ``replies`` are its opening messages), "recorded" (this start was
    saved before: ``replies`` are the ones recorded then), "opted out", "silent" (the flow says
    nothing when it starts; nothing saved), "conflict" (the conversation changed meanwhile).
    """

    status: str
    replies: tuple[str, ...] = ()
    trace: tuple[TraceStep, ...] = ()


@dataclass(frozen=True)
class Patience:
    """How long a webhook waits for a turn before answering "one moment" (Twilio gives up at 15 s)."""

    seconds: float
    interim: str
    deliver: Callable[[Inbound, tuple[str, ...]], Awaitable[None]]  # sends the real replies later


@dataclass
class _Ticket:
    """Who answers a turn: the webhook (inline) or, after the patience ran out, the REST API.
    Decided once, by whichever side gets there first (single-threaded: no race between them)."""

    patience: Patience
    mode: str | None = None
    locked: asyncio.Event = field(default_factory=asyncio.Event)  # set once the sender's lock is held

    def decide(self) -> str:
        if self.mode is None:
            self.mode = "inline"
        return self.mode


class Inbox:
    def __init__(self, store: Store, engine: Engine, notifier: Notifier | None = None) -> None:
        """``engine`` may be replaced at any time (hot reload): each message uses one engine throughout.
        ``notifier`` gets a turn's ``notify`` messages once the turn is saved (never for a duplicate)."""
        self.store = store
        self.engine = engine
        self.notifier = notifier
        self._background: set[asyncio.Task[Received]] = set()

    async def receive(self, inbound: Inbound, patience: Patience | None = None) -> Received:
        """Handle one message. With ``patience``, a turn still busy after ``patience.seconds`` (a
        slow lookup) is answered at once with ``patience.interim``; its real replies are sent later
        through ``patience.deliver`` — exactly once, before the sender's next message is handled."""
        started = time.perf_counter()
        if patience is None:
            received = await self._receive(inbound, None)
        else:
            received = await self._receive_patiently(inbound, patience)
        _log_route(inbound, received, time.perf_counter() - started)
        return received

    async def _receive_patiently(self, inbound: Inbound, patience: Patience) -> Received:
        ticket = _Ticket(patience)
        task = asyncio.create_task(self._receive(inbound, ticket))
        # The patience counts from when this turn gets the sender's lock: an earlier turn still
        # finishing (a deferred lookup) is not this turn's slowness. The whole wait stays bounded.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_WEBHOOK_WAIT
        locked = asyncio.create_task(ticket.locked.wait())
        await asyncio.wait({task, locked}, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        locked.cancel()
        if not task.done():
            await asyncio.wait({task}, timeout=max(0.0, min(patience.seconds, deadline - loop.time())))
        if task.done() or ticket.mode == "inline":  # finished, or already committing its answer inline
            return await task
        ticket.mode = "deferred"
        self._background.add(task)
        task.add_done_callback(self._finished_later)
        return Received((patience.interim,), deferred=True)

    async def start(self, sender: str, flow: str, variables: dict[str, Any], start_id: str) -> Started:
        """Put ``sender`` into ``flow`` from its start, saved once under ``start_id`` (run again with
        the same id, it answers what was recorded). Opted-out people are never started."""
        async with self.store.lock(sender):
            snapshot = await self.store.snapshot(sender, start_id)
            if snapshot.recorded_replies is not None:
                return Started("recorded", snapshot.recorded_replies)
            if snapshot.opted_out:
                return Started("opted out")
            outcome = await self.engine.start(snapshot.conversation, flow, variables)
            if not outcome.replies:
                return Started("silent")
            turn = Turn(Inbound(start_id, sender), outcome.conversation, snapshot.conversation.version,
                        tuple(outcome.replies), None, deadline=outcome.deadline,
                        deadline_changed=outcome.deadline_changed)
            if await self.store.commit(turn) is not CommitResult.COMMITTED:
                return Started("conflict")
        return Started("started", tuple(outcome.replies), tuple(outcome.trace))

    async def time_out(self, sender: str, due_at: float,
                       deliver: Callable[[Inbound, tuple[str, ...]], Awaitable[None]] | None) -> Received | None:
        """Fire a waiting state's timeout (once: the firing is a turn with its own id), sending
        what the timeout branch says through ``deliver``. None when it had already fired."""
        message_sid = f"timeout:{sender}:{due_at!r}"
        async with self.store.lock(sender):
            snapshot = await self.store.snapshot(sender, message_sid)
            if snapshot.recorded_replies is not None:
                return None
            conversation = snapshot.conversation
            armed = conversation.vars.get(TIMEOUT_KEY)
            channel = conversation.vars.get("flow", {}).get("channel", {}) if conversation.vars else {}
            inbound = Inbound(message_sid, sender, to=str(channel.get("address") or ""))
            if not isinstance(armed, dict) or armed.get("at") != due_at:  # the index was stale
                turn = Turn(inbound, conversation, conversation.version, (), None,
                            deadline=armed.get("at") if isinstance(armed, dict) else None, deadline_changed=True)
                await self.store.commit(turn)
                return None
            outcome = await self.engine.time_out(conversation)
            replies = () if snapshot.opted_out else tuple(outcome.replies)
            turn = Turn(inbound, outcome.conversation, snapshot.conversation.version, replies, None,
                        deadline=outcome.deadline, deadline_changed=True)
            if await self.store.commit(turn) is not CommitResult.COMMITTED:
                return None  # a message arrived meanwhile, or another process fired it: it will be seen again
            if replies and deliver is not None:
                await deliver(inbound, replies)
            elif replies:
                log.error("a timeout of %s has something to say, but outbound messages are not configured",
                          mask(sender))
            received = Received(replies, trace=tuple(outcome.trace))
        _log_route(inbound, received, 0.0)
        return received

    def pending(self) -> set[asyncio.Task[Received]]:
        """Turns still working on an answer that will be sent later (awaited at shutdown)."""
        return set(self._background)

    def _finished_later(self, task: asyncio.Task[Received]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a deferred answer failed", exc_info=task.exception())

    async def _receive(self, inbound: Inbound, ticket: _Ticket | None) -> Received:
        engine = self.engine
        async with self.store.lock(inbound.sender):
            if ticket is not None:
                ticket.locked.set()
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
                deferred = ticket is not None and ticket.decide() == "deferred"
                recorded = (ticket.patience.interim,) if deferred and ticket else replies
                turn = Turn(inbound, outcome.conversation, expected_version, recorded, outcome.opt_out,
                            deadline=outcome.deadline, deadline_changed=outcome.deadline_changed)
                result = await self.store.commit(turn)
                if result is CommitResult.COMMITTED:
                    if outcome.notifications:
                        self._notify(inbound, outcome.notifications)
                    if deferred and ticket and replies:
                        await ticket.patience.deliver(inbound, replies)  # still under the lock: in order
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
