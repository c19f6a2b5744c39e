"""Firing waiting states' timeouts: each one on its own, a few at a time, retried, then given up.

Turns keep the deadline index in the store (``Timers``), so timeouts survive restarts, and a
firing is a turn with its own id (``Inbox.time_out``), so with several workers each fires once.
:class:`TimeoutScheduler` polls that index and fires what is due.

Why each firing is its own task: a timeout branch may look something up (seconds) or fail (the
lookup or the store raising). Fired one after another in one loop, a slow one delayed everybody
else's nudge and a failing one ended every pass before the entries behind it, for good, re-running
itself each second (issue 11, finding 5). Now firings run side by side, at most ``max_in_flight``
at once (so a burst of due timeouts cannot open a thousand lookups); a failure is retried after
each of ``retry_waits`` and then given up: its index entry is dropped (``Timers.drop_deadline``),
with one log line, so it neither blocks anyone nor fires every second forever. An entry still in
flight (running or waiting to retry) is skipped by later passes: it is never fired twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from bot import metrics
from bot.inbox import Deliver, Inbox
from bot.privacy import mask
from bot.store import Timers

log = logging.getLogger(__name__)

TIMEOUT_POLL_SECONDS = 1.0  # how often the index is read; a timeout fires at most this late
MAX_IN_FLIGHT = 20  # firings running at once (each may hold a lookup open)
RETRY_WAITS = (1.0, 5.0, 30.0)  # a failed firing is retried after each of these, then given up
CLOSE_WAIT_SECONDS = 15.0  # at shutdown, firings under way get this long to finish

Key = tuple[str, float]  # (sender, deadline): one entry of the index


class TimeoutScheduler:
    """Polls the deadline index and fires each due timeout in its own task (see the module doc)."""

    def __init__(self, inbox: Inbox, timers: Timers, deliver: Deliver | None, *,
                 poll_seconds: float = TIMEOUT_POLL_SECONDS, max_in_flight: int = MAX_IN_FLIGHT,
                 retry_waits: Sequence[float] = RETRY_WAITS, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``deliver`` sends what a timeout branch says (None: outbound messages are not configured).
        ``clock`` (the index's time) and ``sleep`` (the back-off) are injectable for tests."""
        self.inbox = inbox
        self.timers = timers
        self.deliver = deliver
        self.poll_seconds = poll_seconds
        self.max_in_flight = max_in_flight
        self.retry_waits = tuple(retry_waits)
        self.clock = clock
        self.sleep = sleep
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: dict[Key, asyncio.Task[None]] = {}  # every entry in flight, running or backing off
        self._backing_off: set[Key] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``poll_seconds`` until ``stop`` is set, then close."""
        try:
            while not stop.is_set():
                await self.poll()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_seconds)
        finally:
            await self.close()

    async def poll(self) -> int:
        """One pass: start a firing for each due entry not already in flight, while a slot is free.
        Returns how many it started; the rest are found again by the next pass."""
        try:
            # Entries in flight come first (oldest first): ask for enough to see new ones behind them.
            due = await self.timers.due(self.clock(), limit=len(self._tasks) + self.max_in_flight)
        except Exception:  # the store is down: the next pass asks again
            log.exception("reading the due wait timeouts failed")
            return 0
        started = 0
        for key in due:
            if key in self._tasks:
                continue  # running or waiting to retry: never fired twice at once
            if self._slots.locked():
                break
            await self._slots.acquire()  # free (just checked): taken at once, handed to the task
            task = asyncio.create_task(self._fire(key))
            self._tasks[key] = task
            task.add_done_callback(lambda _, key=key: self._forget(key))  # type: ignore[misc]
            started += 1
        return started

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the firings in flight now are done (or ``timeout`` passed)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks.values()), timeout=timeout)

    async def close(self) -> None:
        """At shutdown: retries waiting for their turn are dropped (the entry stays in the index,
        so the next start fires it again); firings under way may finish, for a while."""
        for key in list(self._backing_off):
            self._tasks[key].cancel()
        await self.drain(CLOSE_WAIT_SECONDS)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _forget(self, key: Key) -> None:
        self._tasks.pop(key, None)

    async def _fire(self, key: Key) -> None:
        """Fire one timeout, holding a slot only while a try runs (not while waiting to retry)."""
        sender, due_at = key
        waits = iter(self.retry_waits)
        attempts = 0
        holding = True  # poll() acquired the first slot for us
        try:
            while True:
                attempts += 1
                try:
                    fired = await self.inbox.time_out(sender, due_at, self.deliver)
                except Exception as error:  # noqa: BLE001 (logged once, when given up)
                    wait = next(waits, None)
                    if wait is None:
                        await self._give_up(key, attempts, error)
                        return
                    log.debug("wait timeout of %s failed (%s); retrying in %gs", mask(sender),
                              type(error).__name__, wait)
                else:
                    if fired.duplicate:  # fired elsewhere already, yet still indexed: stop the spinning
                        with contextlib.suppress(Exception):
                            await self.timers.drop_deadline(sender, due_at)
                    return
                self._slots.release()
                holding = False
                self._backing_off.add(key)
                try:
                    await self.sleep(wait)
                finally:
                    self._backing_off.discard(key)
                await self._slots.acquire()
                holding = True
        finally:
            if holding:
                self._slots.release()

    async def _give_up(self, key: Key, attempts: int, error: Exception) -> None:
        """Drop the entry (only if it still says this deadline: one armed since stays) and say so,
        once. The exception's type only: its text may hold what a person texted or their number."""
        sender, due_at = key
        metrics.timer_given_up()
        try:
            await self.timers.drop_deadline(sender, due_at)
            outcome = "its entry is dropped"
        except Exception as drop_error:  # noqa: BLE001 (said in the one line below)
            outcome = f"dropping its entry failed too ({type(drop_error).__name__}); it is tried again later"
        when = dt.datetime.fromtimestamp(due_at, dt.UTC).isoformat(timespec="seconds")
        log.error("wait timeout of %s due %s given up after %d attempts (%s): %s", mask(sender), when, attempts,
                  type(error).__name__, outcome)
