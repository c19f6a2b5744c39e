"""Simulated senders in the running bot: what the console's simulator does, through the bot's own
inbox (the webhook's path, not a copy), for numbers of the simulated range only
(``bot/simulated_numbers.py``).

* :func:`text` is a message as the webhook would hand it to ``Inbox.receive``; the replies come
  back to the caller, as TwiML would carry them.
* Nothing of a simulated sender reaches Twilio: answers sent later (timeouts fired by the server's
  timer loop) stop in ``send_for_turn`` (``bot/outbound.py``); a flow's ``notify`` stops in
  :func:`kept_apart`, before the notification limits count it, and goes to the person simulating
  (:func:`shown_notifications`) instead of to staff.
* :func:`wait` lets time pass for one simulated sender only. The server has one clock, so the
  sender's conversation is moved into the past instead (``Inbox.elapse``: its last message and
  armed timer, in a turn of its own), then each timer that comes due is fired through the store's
  deadline index and ``Inbox.time_out``, at its own time, as the timer loop would, the way
  ``Simulation.wait`` (``bot/simulator.py``) does on its simulated clock. Whatever the timer fired
  armed next counts from its own firing; ``expires_after`` ends the conversation on time. Real
  senders are never touched: ``Inbox.elapse`` refuses any other number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from bot.flows.schema_types import format_duration
from bot.inbox import Inbox, Notifier, Received
from bot.privacy import mask
from bot.simulated_numbers import RANGE, is_simulated
from bot.simulator import EndlessTimers
from bot.store.listings import Listings
from bot.types import WHATSAPP, Inbound, TimeoutDue

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 366 * 86400.0
MAX_FIRINGS_PER_WAIT = 200  # more is a cycle of timeouts (lint points at it)
MAX_MEDIA = 10  # Twilio's limit per MMS
MAX_URL_LENGTH = 2000
MAX_BODY_LENGTH = 1600  # Twilio's limit on a message's Body

_shown: ContextVar[list[tuple[str, str]] | None] = ContextVar("simulated_notifications", default=None)


class NotSimulated(ValueError):
    """A number outside the simulated range, given where only a simulated one may be."""


@dataclass(frozen=True)
class SimulatedTurn:
    """What one simulated turn did: its id (for the transcript), its answer, and the notifications a
    flow would have texted staff (not sent)."""

    message_sid: str
    received: Received
    notified: tuple[tuple[str, str], ...] = ()
    after: float = 0.0  # for a timer fired during a wait: seconds into the wait


def require_simulated(number: str) -> str:
    if not is_simulated(number):
        raise NotSimulated(f"{mask(number)} is not a simulated number: the simulator texts from {RANGE}, "
                           "never from a real phone")
    return number


def check_media(urls: list[str]) -> tuple[str, ...]:
    """Picture URLs as Twilio would send them (MediaUrl0…): at most 10 http(s) URLs."""
    kept = tuple(url.strip() for url in urls if url.strip())
    if len(kept) > MAX_MEDIA:
        raise ValueError(f"at most {MAX_MEDIA} pictures per message (Twilio's limit), not {len(kept)}")
    for url in kept:
        if not url.lower().startswith(("https://", "http://")) or len(url) > MAX_URL_LENGTH or \
                any(character.isspace() or ord(character) < 32 for character in url):
            raise ValueError(f"a picture is an http(s) URL of at most {MAX_URL_LENGTH} characters without "
                             f"spaces, not {url[:60]!r}")
    return kept


async def text(inbox: Inbox, sender: str, body: str, media: tuple[str, ...] = (),
               our_number: str = "") -> SimulatedTurn:
    """``sender`` texts ``body`` (with ``media``) to ``our_number``, through ``Inbox.receive``."""
    require_simulated(sender)
    if len(body) > MAX_BODY_LENGTH:
        raise ValueError(f"a message has at most {MAX_BODY_LENGTH} characters (Twilio's limit), not {len(body)}")
    if our_number and sender.startswith(WHATSAPP) != our_number.startswith(WHATSAPP):
        our_number = WHATSAPP + our_number if sender.startswith(WHATSAPP) else our_number.removeprefix(WHATSAPP)
    inbound = Inbound(f"SMsim{uuid.uuid4().hex}", sender, our_number, body, media)
    with shown_notifications() as notified:
        received = await inbox.receive(inbound)  # no patience: a slow lookup is simply waited for
    return SimulatedTurn(inbound.message_sid, received, tuple(notified))


async def wait(inbox: Inbox, sender: str, seconds: float, turns: Listings | None = None) -> list[SimulatedTurn]:
    """Let ``seconds`` pass for ``sender`` alone; the timers that came due, in order (module doc).
    ``turns`` (the store) supplies the trace of a timer the server's own loop fired first."""
    require_simulated(sender)
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ValueError(f"wait between 0 and {format_duration(MAX_WAIT_SECONDS)}, not {format_duration(seconds)}")
    fired: list[SimulatedTurn] = []
    remaining = seconds
    while True:
        armed = (await inbox.store.snapshot(sender, "")).conversation.timeout
        now = inbox.engine.clock()
        if armed is not None and armed.at <= now:
            if len(fired) >= MAX_FIRINGS_PER_WAIT:
                raise EndlessTimers(f"more than {MAX_FIRINGS_PER_WAIT} timeouts and reminders fired within "
                                    f"{format_duration(seconds)}: a cycle of timeouts (python -m bot lint points "
                                    "at it); wait less, or end the cycle")
            turn = await _fire(inbox, sender, armed.at, seconds - remaining, turns)
            if turn.received.trace or turn.received.duplicate:  # else stale: the flow changed under it
                fired.append(turn)
                continue
        elif armed is not None and armed.at - now <= remaining:
            step = armed.at - now
            await inbox.elapse(sender, step)  # to this timer's time, so what it arms counts from then
            remaining -= step
            continue
        if remaining > 0:
            await inbox.elapse(sender, remaining)
        return fired


async def _fire(inbox: Inbox, sender: str, at: float, after: float, turns: Listings | None) -> SimulatedTurn:
    async def shown(record: Inbound, replies: tuple[str, ...]) -> None:
        return None  # the replies come back in the turn's answer: shown, never sent

    with shown_notifications() as notified:
        received = await inbox.time_out(sender, at, shown)
    turn_id = TimeoutDue.of(sender, at).inbound.message_sid  # the firing's own id, as Inbox.time_out gives it
    if received.duplicate and turns is not None:  # the server's timer loop fired it a moment before
        kept = next((turn for turn in reversed(await turns.recent_turns(sender, 20)) if turn.message_sid == turn_id),
                    None)
        if kept is not None:
            received = dataclasses.replace(received, trace=kept.trace)
    return SimulatedTurn(turn_id, received, tuple(notified), after)


@contextlib.contextmanager
def shown_notifications() -> Iterator[list[tuple[str, str]]]:
    """Collects the notifications simulated turns run inside this block would have sent."""
    shown: list[tuple[str, str]] = []
    token = _shown.set(shown)
    try:
        yield shown
    finally:
        _shown.reset(token)


def kept_apart(notify: Notifier | None) -> Notifier:
    """The inbox's notifier: ``notify`` for real senders; a simulated sender's notifications go to
    whoever is simulating (:func:`shown_notifications`), or nowhere, never to staff."""

    def notifier(inbound: Inbound, notifications: list[tuple[str, str]]) -> None:
        if is_simulated(inbound.sender):
            shown = _shown.get()
            if shown is not None:
                shown.extend(notifications)
            else:  # a timer the server's loop fired: nobody is watching
                log.info("notify from simulated sender %s: %d message(s) not sent", mask(inbound.sender),
                         len(notifications))
            return
        if notify is None:
            log.error("a flow asked to notify %s, but outbound messages are not configured (%s)",
                      ", ".join(mask(to) for to, _ in notifications), "see README: TWILIO_ACCOUNT_SID, TWILIO_FROM")
            return
        notify(inbound, notifications)

    return notifier
