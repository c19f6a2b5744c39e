"""The one turn pipeline: lock, load, de-duplicate, step the engine, commit, retry, then effects.

Every turn goes through :meth:`Inbox._turn`: a message from the webhook or the simulator, a flow
started for someone (broadcasts, the simulator, dry runs), a wait timeout firing, and an
operator's reset or the console simulator's wait (``bot/interventions.py``). What differs
between them is the event (``bot/types.py``) and how the engine handles it, never this sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.compliance import ConsentReading, read_consent
from bot.consent.words import LANGUAGE_CODE
from bot.engine import Engine
from bot.privacy import mask
from bot.results.tracking import opening, track
from bot.simulated_numbers import is_simulated
from bot.store.base import CommitResult, Locks, StoreBusy, Turns
from bot.store.owed import RETRY_SECONDS, Owed, OwedReplies
from bot.store.read_ahead import read_ahead
from bot.types import (
    ConsentChange,
    ConsentStatus,
    Elapse,
    Event,
    Inbound,
    Message,
    Outcome,
    Reset,
    SetLanguage,
    Skip,
    Start,
    TimeoutDue,
    TraceStep,
    Turn,
)

log = logging.getLogger("bot.route")

MAX_ATTEMPTS = 10  # compare-and-set retries when another process changed the conversation first
MAX_WEBHOOK_WAIT = 12.0  # seconds a webhook may wait in all before answering "one moment" (Twilio: 15)

Notifier = Callable[[Inbound, list[tuple[str, str]]], None]
#: Told of every saved turn: (its event, the engine's outcome, whether the sender was opted out
#: before it). The app's inbox counts turns this way (``bot/metrics.py``); the simulator's does not.
Observer = Callable[[Event, Outcome, bool], None]
#: Sends a turn's replies later, through the REST API: (the turn's record, replies). False when some
#: could not be handed to Twilio yet (unreachable, throttled): they stay owed, tried again later.
Deliver = Callable[[Inbound, tuple[str, ...]], Awaitable[bool | None]]


class TurnStore(Turns, Locks, OwedReplies, Protocol):
    """What the pipeline needs of a store: turns, the per-sender lock, and the replies owed."""


@dataclass(frozen=True, slots=True)
class Received:
    """What a turn answered."""

    replies: tuple[str, ...]
    duplicate: bool = False  # seen before (a Twilio retry, a re-run start): the replies are the recorded ones
    deferred: bool = False  # answered "one moment"; the real replies follow through the REST API
    trace: tuple[TraceStep, ...] = field(default=())
    skipped: Skip | None = None  # nothing was saved or sent, and why


@dataclass(frozen=True)
class Patience:
    """How long a webhook waits for a turn before answering "one moment" (Twilio gives up at 15 s)."""

    seconds: float
    interim: str
    deliver: Deliver  # sends the real replies later


class Answer(enum.Enum):
    """Who sends a turn's replies."""

    INLINE = "inline"  # the caller: TwiML, a broadcast's own send, the simulator
    LATER = "later"  # the turn itself, through ``deliver``, once committed


@dataclass
class _Ticket:
    """Who answers a turn. Decided once, by whichever side gets there first: the turn when it
    commits, or the webhook when its patience runs out (single-threaded: no race between them)."""

    deliver: Deliver | None = None
    interim: str | None = None  # what the webhook answered instead; recorded as the answer
    answer: Answer | None = None
    on_locked: Callable[[], None] | None = None  # called once the sender's lock is held

    def decide(self) -> Answer:
        if self.answer is None:
            self.answer = Answer.INLINE
        return self.answer


class Inbox:
    def __init__(self, store: TurnStore, engine: Engine, notifier: Notifier | None = None, *,
                 observer: Observer | None = None) -> None:
        """``engine`` may be replaced at any time (hot reload): each turn uses one engine throughout.
        ``notifier`` gets a turn's ``notify`` messages once the turn is saved (never for a duplicate);
        ``observer`` hears of every saved turn (metrics)."""
        self.store = store
        self.engine = engine
        self.notifier = notifier
        self.observer = observer
        self._background: set[asyncio.Task[Received]] = set()
        # MessageSids whose owed replies this process is sending now, or will try again (Twilio was
        # unreachable): released at shutdown, so the next process to start sends them at once.
        self._owing: set[str] = set()

    async def receive(self, inbound: Inbound, patience: Patience | None = None) -> Received:
        """Handle one message. With ``patience``, a turn still busy after ``patience.seconds`` (a
        slow lookup) is answered at once with ``patience.interim``; its real replies are sent later
        through ``patience.deliver`` — exactly once, before the sender's next message is handled."""
        if patience is None:
            return await self._turn(Message(inbound), _Ticket())
        return await self._receive_patiently(inbound, patience)

    async def start(self, sender: str, flow: str, variables: Mapping[str, Any], start_id: str, *,
                    dry_run: bool = False) -> Received:
        """Put ``sender`` into ``flow`` from its start, saved once under ``start_id`` (run again with
        the same id, it answers what was recorded). Opted-out people are never started. A dry run
        answers what the start would say and changes nothing."""
        return await self._turn(Start.of(sender, flow, variables, start_id), _Ticket(), dry_run=dry_run)

    async def time_out(self, sender: str, due_at: float, deliver: Deliver | None) -> Received:
        """Fire a waiting state's timeout (once: the firing is a turn with its own id), sending
        what the timeout branch says through ``deliver``."""
        return await self._turn(TimeoutDue.of(sender, due_at), _Ticket(deliver, answer=Answer.LATER))

    async def reset(self, sender: str) -> Received:
        """End ``sender``'s conversation as if it expired (an operator's reset): silently, its timer
        disarmed, in a turn of its own, so a message being handled now is neither lost nor undone."""
        return await self._turn(Reset.of(sender, f"reset:{uuid.uuid4().hex}"), _Ticket())

    async def elapse(self, sender: str, seconds: float) -> Received:
        """Let ``seconds`` pass for one simulated sender only (``bot/simulated_numbers.py``): their
        conversation's times move back, so its timers and its expiry come that much sooner. Refused
        for any other number: a real person's clock is never moved."""
        if not is_simulated(sender):
            raise ValueError(f"{mask(sender)} is not a simulated number: only those may have time moved")
        if not 0 <= seconds < float("inf"):
            raise ValueError("time only moves forward: wait a finite duration of 0 or more")
        return await self._turn(Elapse.of(sender, seconds, f"wait:{uuid.uuid4().hex}"), _Ticket())

    async def set_language(self, sender: str, language: str) -> Received:
        """Talk to ``sender`` in ``language`` (a code such as es) from now on, as if they had chosen
        it, in a turn of its own: nothing is said, nothing else changes (``chat --language``)."""
        if not LANGUAGE_CODE.fullmatch(language):
            raise ValueError(f"{language!r} is not a language code; write a code such as en, es, fr or pt-BR")
        return await self._turn(SetLanguage.of(sender, language, f"language:{uuid.uuid4().hex}"), _Ticket())

    async def send_owed(self, owed: Owed, deliver: Deliver) -> None:
        """Send what a committed turn still owes (claimed from the store: its process stopped
        first), under the sender's lock like the turn itself, so it goes out before their next
        message is answered. A message already handed to Twilio is not sent again (its record)."""
        async with self.store.lock(owed.record.sender):
            await self._send_owed(deliver, owed.record, owed.replies)

    async def release_owed(self) -> None:
        """At shutdown: owed replies this process has not finished sending may be claimed by the
        next process to start at once, rather than when this one's claim lapses."""
        if self._owing:
            with contextlib.suppress(Exception):  # the store is gone: the claims lapse by themselves
                await self.store.release_owed(set(self._owing))

    def pending(self) -> set[asyncio.Task[Received]]:
        """Turns still working on an answer that will be sent later (awaited at shutdown)."""
        return set(self._background)

    async def _receive_patiently(self, inbound: Inbound, patience: Patience) -> Received:
        # The patience counts from when this turn gets the sender's lock: an earlier turn still
        # finishing (a deferred lookup) is not this turn's slowness. The whole wait stays bounded.
        # One future, woken by the turn's end or by one timer (the deadline, then the patience):
        # this runs for every message once outbound is configured, where asyncio.wait and a task
        # waiting on an Event cost a quarter of a turn.
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        deadline = loop.time() + MAX_WEBHOOK_WAIT

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        timer = loop.call_at(deadline, wake)

        def locked() -> None:
            nonlocal timer
            timer.cancel()
            timer = loop.call_at(min(loop.time() + patience.seconds, deadline), wake)

        ticket = _Ticket(patience.deliver, patience.interim, on_locked=locked)
        task = asyncio.create_task(self._turn(Message(inbound), ticket))
        task.add_done_callback(wake)
        try:
            await woken
        finally:
            timer.cancel()
            task.remove_done_callback(wake)
            ticket.on_locked = None  # a lock taken after this wait ended arms nothing
        if task.done() or ticket.answer is Answer.INLINE:  # finished, or already committing its answer inline
            return await task
        ticket.answer = Answer.LATER
        self._background.add(task)
        task.add_done_callback(self._finished_later)
        return Received((ticket.interim or patience.interim,), deferred=True)

    def _finished_later(self, task: asyncio.Task[Received]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a deferred answer failed", exc_info=task.exception())

    async def _turn(self, event: Event, ticket: _Ticket, *, dry_run: bool = False) -> Received:
        """The pipeline. A dry run stops before the commit: nothing is saved, sent or notified."""
        started = time.perf_counter()
        engine = self.engine
        sender = event.inbound.sender
        # A message's consent is read once, here: it decides the lane, and the engine answers from it.
        consent = read_consent(event.inbound, engine.flows.consent) if isinstance(event, Message) else None
        read_ahead(sender, event.inbound.message_sid)  # a store may read the snapshot with the lock: one trip
        async with self.store.lock(_lane(sender, consent)):
            if ticket.on_locked is not None:
                ticket.on_locked()
            for _ in range(MAX_ATTEMPTS):
                # Read under the lock: a twin of this turn (a Twilio retry) may have just won.
                snapshot = await self.store.snapshot(sender, event.inbound.message_sid)
                if snapshot.recorded_replies is not None:
                    return _logged(event, Received(snapshot.recorded_replies, duplicate=True), started)
                expected_version = snapshot.conversation.version
                if ticket.interim is not None:  # "one moment" in the language the person is talked to in
                    spoken = engine.languages.texts(snapshot.conversation)
                    if spoken is not engine.flows.program:
                        ticket.interim = spoken.wait
                runs_before = opening(snapshot.conversation)  # read before the step changes it in place
                outcome = await engine.step(snapshot.conversation, event, snapshot.opted_out, consent)
                replies = tuple(outcome.replies)
                trace = tuple(outcome.trace)
                if outcome.skipped is not None:
                    return _logged(event, Received((), trace=trace, skipped=outcome.skipped), started)
                if snapshot.opted_out and outcome.opt_out is not False and not outcome.answers_opted_out:
                    replies = ()  # never text an opted-out number, whatever a flow says (HELP excepted)
                if dry_run:
                    return Received(replies, trace=trace)
                answer = ticket.decide()
                recorded = (ticket.interim,) if answer is Answer.LATER and ticket.interim is not None else replies
                # Sent after the commit; kept in the store until sent, so a restart in between loses nothing.
                owed = replies if answer is Answer.LATER and ticket.deliver is not None else ()
                # The turn's record names our number, so later answers go out from the one they texted.
                record = event.inbound if event.inbound.to else \
                    dataclasses.replace(event.inbound, to=outcome.conversation.channel)
                at = engine.clock()  # the engine's time: a test's or the simulator's clock dates the records too
                turn = Turn(record, outcome.conversation, expected_version, recorded, _consent(record, outcome, at),
                            at, deadline=outcome.deadline, deadline_changed=outcome.deadline_changed,
                            conversation_changed=outcome.conversation_changed, trace=trace,
                            runs=track(runs_before, outcome, record.message_sid, at, engine.flows.flows), owed=owed)
                result = await self.store.commit(turn)
                if result is CommitResult.COMMITTED:
                    if self.observer is not None:
                        self.observer(event, outcome, snapshot.opted_out)
                    if outcome.notifications:
                        self._notify(record, outcome.notifications)
                    if owed and ticket.deliver is not None:
                        await self._send_owed(ticket.deliver, record, owed)  # still under the lock: in order
                    elif answer is Answer.LATER and replies:
                        log.error("a turn of %s has something to say later, but outbound messages are not "
                                  "configured", mask(record.sender))
                    return _logged(event, Received(replies, trace=trace), started)
                # CONFLICT: another process changed the conversation; DUPLICATE: a twin won. Either
                # way the next snapshot shows what happened.
        raise StoreBusy(f"conversation of {mask(sender)} kept changing; gave up")

    async def _send_owed(self, deliver: Deliver, record: Inbound, replies: tuple[str, ...]) -> None:
        """Send a turn's owed replies, then settle them in the store; those that could not reach
        Twilio are kept, to be tried again after RETRY_SECONDS. Cancelled (a stop): kept, and
        released for the next process at shutdown (``release_owed``)."""
        sid = record.message_sid
        self._owing.add(sid)
        sent = await deliver(record, replies)
        try:
            if sent is False:
                await self.store.release_owed([sid], time.time() + RETRY_SECONDS)
                return  # still ours to try again (or the next process's, released at shutdown)
            await self.store.settle_owed(sid)
        except Exception:  # noqa: BLE001 - kept in the store: resent later, each message at most once
            log.exception("could not record that the replies owed to %s were sent", mask(record.sender))
        self._owing.discard(sid)

    def _notify(self, inbound: Inbound, notifications: list[tuple[str, str]]) -> None:
        if self.notifier is None:
            log.error("a flow asked to notify %s, but outbound messages are not configured (%s)",
                      ", ".join(mask(to) for to, _ in notifications), "see README: TWILIO_ACCOUNT_SID, TWILIO_FROM")
            return
        self.notifier(inbound, notifications)


def _consent(inbound: Inbound, outcome: Outcome, at: float) -> ConsentChange | None:
    """The consent change a turn makes, as the ledger records it (the store writes it only when it
    changes the sender's status)."""
    decision = outcome.consent
    if decision is None:
        return None
    status = ConsentStatus.OPTED_OUT if decision.opted_out else ConsentStatus.OPTED_IN
    return ConsentChange(inbound.sender, status, decision.how, decision.detail, inbound.message_sid, at)


def _lane(sender: str, consent: ConsentReading | None) -> str:
    """Which per-sender lock a turn takes. A sender's turns go one at a time, except compliance
    words (STOP, START, HELP…): they have their own lane, so they are recorded and answered at once
    even while a slow lookup holds the sender's turn. That turn cannot then answer after a STOP:
    STOP changes the conversation's version, so the slow turn's commit conflicts, and its redo sees
    the opt-out and stays silent."""
    return f"{sender} compliance" if consent is not None and consent.answered_at_once else sender


def _logged(event: Event, received: Received, started: float) -> Received:
    """One line per turn: the answer to "why did the bot say that?"."""
    if log.isEnabledFor(logging.INFO):
        if received.duplicate:
            route = "duplicate MessageSid: recorded reply"  # bench/servers.py counts these
        else:
            route = "; ".join(f"{step.before} -> {step.after} ({step.rule})" for step in received.trace)
        # Made and handled directly: log.info would also walk the stack to name its caller, a third
        # of the line's cost, for a line whose place in the code never changes.
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "from=%s sid=%s %s replies=%d ms=%.1f",
                                  (mask(event.inbound.sender), event.inbound.message_sid, route,
                                   len(received.replies), (time.perf_counter() - started) * 1000), None))
    return received
