"""How fast a broadcast sends: a steady number of messages a second, several in flight at once.

A Twilio account sends a fixed number of messages a second (its MPS: 1 for a long code, tens to
hundreds for short codes and Messaging Services), and each API call takes 100–300 ms, so one send
at a time can never go above 3–10 a second. ``Pacer`` hands out send times at ``rate`` a second
and the broadcast keeps up to ``in_flight`` sends going at once under it (``in_flight_for``: enough
for the rate when each call takes half a second). ``rate=None`` is unpaced: as fast as the API
answers, ``in_flight`` at a time.

Above ``1 / TICK_SECONDS`` a second the pacer wakes once per tick and lets that tick's sends go
together (at 100 a second: 5 every 50 ms), on the same schedule: the rate over a second is the
same, Twilio queues what comes within its second anyway, and sends that start together share their
store writes (one transaction for the tick's starts, one for their records: ``bot/broadcast_records.py``),
so the server's turns find SQLite's write lock taken 5 times less often. Below it, each send
waits for its own time, as it always did.

The pacer trusts its sleep (an injected sleep that moves a fake clock, or one that returns at
once, paces as asked), and makes up for a sleep that ran late by at most ``CATCH_UP_SECONDS`` (and
never more than one message's time): sleeping 2 ms for a 2 ms slot wakes up late by the event
loop's millisecond, and without it 500 a second would come out near 330. A longer delay (Twilio
throttling, every send slow) is not made up for with a burst; nor is a wait for sending hours
(``restart``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]

CATCH_UP_SECONDS = 0.05
TICK_SECONDS = 0.05  # above 20 a second, the sends of each 50 ms go together
ASSUMED_CALL_SECONDS = 0.5  # a slow Twilio API call: in_flight_for keeps the rate up even then
MAX_IN_FLIGHT = 100  # the SDK's HTTP client opens at most 100 connections at once (aiohttp's limit)
UNPACED_IN_FLIGHT = 32  # unpaced: enough to keep the API busy without holding a hundred turns at once


def in_flight_for(rate: float | None) -> int:
    """How many sends may be in flight at once by default: enough for ``rate`` when each API call
    takes ``ASSUMED_CALL_SECONDS`` (1 for rates up to 2 a second: one at a time, as ever)."""
    if rate is None:
        return UNPACED_IN_FLIGHT
    return max(1, min(MAX_IN_FLIGHT, math.ceil(rate * ASSUMED_CALL_SECONDS)))


class Pacer:
    """Send times ``1 / rate`` seconds apart (``rate`` None: no pacing)."""

    def __init__(self, rate: float | None, clock: Callable[[], float], sleep: Sleep) -> None:
        self.interval = 0.0 if rate is None else 1.0 / rate
        self.tolerance = min(self.interval, CATCH_UP_SECONDS)
        self.clock = clock
        self.sleep = sleep
        self.tick = TICK_SECONDS if self.interval < TICK_SECONDS else 0.0
        self._next: float | None = None  # the next send time; None: now
        self._before: float | None = None  # what _next was before the last slot, for give_back
        self._tick_ends = float("-inf")  # sends due before this go now: the tick woken for is under way

    async def slot(self) -> None:
        """Wait for the next send time (or, paced in ticks, for the tick it falls in)."""
        if not self.interval:
            return
        now = self.clock()
        due = self._next
        if due is not None and now < due and due >= self._tick_ends:
            await self.sleep(due - now)
            at = self._tick_from(due)
        elif due is not None and now < due:  # early, within the tick under way
            at = due
        else:  # late, or the first: at most `tolerance` of the lateness is made up for
            at = self._tick_from(now if due is None else max(due, now - self.tolerance))
        self._before, self._next = self._next, at + self.interval

    def _tick_from(self, at: float) -> float:
        # half a send's time short of the tick: sums of float intervals land a hair either side of it
        self._tick_ends = at + self.tick - self.interval / 2
        return at

    def give_back(self) -> None:
        """The last slot went unused (the recipient's hours had closed): the next send may take it."""
        self._next = self._before

    def restart(self) -> None:
        """After a wait for sending hours: the next send goes at once, the pace counts from there."""
        self._next = None
        self._tick_ends = float("-inf")


UNLIMITED = "unlimited"


def parse_rate(text: str) -> float | None:
    """A rate as operators write it (``--rate``, ``BROADCAST_RATE``): messages a second (``25``,
    ``0.5``), or ``unlimited`` (None: unpaced); ``ValueError`` says what is accepted."""
    if text.strip().lower() == UNLIMITED:
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not 0 < rate < math.inf:
        raise ValueError(f"must be messages per second above 0, such as 1 or 25, or {UNLIMITED} (got {text!r})")
    return rate
