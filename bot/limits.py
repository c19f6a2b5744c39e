"""How many staff notifications (a flow's ``notify:``) may leave: per sender, and in all, per hour.

A ``notify`` texts staff each time a conversation passes the state, so anyone could page the
on-call number as often as they liked: 30 AGENT texts, 30 pages (issue 11, finding 12). A
:class:`NotifyLimiter` lets through at most ``per_sender`` notifications for the turns of one
person (the sender whose turn notified), and ``overall`` for everybody, in any sliding window of
an hour; what it holds back is not sent, and each is logged on one line (numbers masked, never
the text, which may hold what the person wrote). Only notifications are limited: every text is
still answered, and broadcasts still send their own messages.

The counts live in memory, per process: cheap, and lost on restart. With ``WORKERS=N``, or a
broadcast run beside the server, each process counts for itself, so staff may get up to N times
the numbers in an hour. That still bounds the paging; sharing the counts would need the store.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from bot.privacy import mask
from bot.types import Inbound

log = logging.getLogger(__name__)

HOUR = 3600.0
PER_SENDER_PER_HOUR = 3  # the defaults of NOTIFY_PER_SENDER_PER_HOUR and NOTIFY_PER_HOUR
PER_HOUR = 20

#: Receives a turn's notify texts, (to, text), once the turn is saved (``bot/inbox.py``'s ``Notifier``).
Notify = Callable[[Inbound, list[tuple[str, str]]], None]


class SlidingWindow:
    """At most ``limit`` events per key in any ``seconds``-long window.

    Keeps the times of the events let through (at most ``limit`` per key), and forgets keys
    whose events are all older than the window, so one-off senders do not pile up.
    """

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._events: dict[str, deque[float]] = {}
        self._tidied = 0.0

    def allows(self, key: str, now: float) -> bool:
        events = self._events.get(key)
        if events is None:
            return self.limit > 0
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return len(events) < self.limit

    def count(self, key: str, now: float) -> None:
        """Record an event let through (call after ``allows`` said yes)."""
        self._events.setdefault(key, deque()).append(now)
        if now - self._tidied > self.seconds:
            self._tidied = now
            for idle in [k for k, events in self._events.items() if events[-1] <= now - self.seconds]:
                del self._events[idle]


class NotifyLimiter:
    """Per-sender and overall caps on notifications, in one sliding hour (see the module doc)."""

    def __init__(self, per_sender: int = PER_SENDER_PER_HOUR, overall: int = PER_HOUR, *, window: float = HOUR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_sender = per_sender
        self.overall = overall
        self.clock = clock
        self._senders = SlidingWindow(per_sender, window)
        self._all = SlidingWindow(overall, window)

    def admit(self, sender: str) -> str | None:
        """Count one notification for ``sender``'s turn if both caps allow it (None), else say
        which cap holds it back. A held-back one counts against neither."""
        now = self.clock()
        if not self._senders.allows(sender, now):
            return f"{self.per_sender} per sender per hour"
        if not self._all.allows("", now):
            return f"{self.overall} per hour in all"
        self._senders.count(sender, now)
        self._all.count("", now)
        return None

    def admitted(self, inbound: Inbound, notifications: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The notifications of ``inbound``'s turn that may be sent; logs each one held back."""
        allowed = []
        for to, text in notifications:
            cap = self.admit(inbound.sender)
            if cap is None:
                allowed.append((to, text))
            else:
                log.warning("notify to %s held back (%s): turn %s from %s; not sent", mask(to), cap,
                            _turn_id(inbound), mask(inbound.sender))
        return allowed


def limited(notify: Notify, limiter: NotifyLimiter) -> Notify:
    """``notify``, sending only what ``limiter`` lets through (nothing at all when all is held)."""

    def send_allowed(inbound: Inbound, notifications: list[tuple[str, str]]) -> None:
        allowed = limiter.admitted(inbound, notifications)
        if allowed:
            notify(inbound, allowed)

    return send_allowed


def _turn_id(inbound: Inbound) -> str:
    """The turn's id, to find its route line (which names the flow and state), with the number
    masked: timeouts and broadcast starts have the sender's number in theirs."""
    return inbound.message_sid.replace(inbound.sender, mask(inbound.sender)) if inbound.sender else inbound.message_sid
