"""Where broadcasts stand, kept in the store: a broadcast runs in a process of its own (``python -m
bot broadcast``), and the server's Operations page and ``/metrics`` read its progress there.

``ProgressRecorder`` is the broadcast's ``progress`` hook. The hook is called after every recipient,
which may be hundreds of times a second; the store is written at most once a second (the latest
counts), and once more when the run ends, so a broadcast never waits for its own bookkeeping. While
nothing changes (everyone left waits for their sending hours, perhaps overnight), the entry is
rewritten every minute, so its age tells a run under way from one that was killed. A store that
fails or is slow costs a log line, never the broadcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.store.base import BroadcastProgress, Broadcasts

log = logging.getLogger(__name__)

WRITE_EVERY_SECONDS = 1.0  # the store is written at most this often while the counts change
HEARTBEAT_SECONDS = 60.0  # and at least this often while they do not
WRITE_SECONDS = 5.0  # a store that does not answer by then is skipped: the next write tries again
#: An entry under way not rewritten for this long belongs to a run that was killed or lost the store.
SILENT_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS


class Standing(enum.StrEnum):
    """How a recorded broadcast stands, as the Operations page says it."""

    RUNNING = "running"
    FINISHED = "finished"  # every recipient settled
    STOPPED = "stopped early"  # the run ended with recipients left (Twilio unreachable, an error): run it again
    SILENT = "silent"  # under way by its last word, but no word for SILENT_AFTER_SECONDS: killed, or lost the store


def standing(progress: BroadcastProgress, now: float) -> Standing:
    if progress.finished:
        return Standing.FINISHED if progress.waiting == 0 else Standing.STOPPED
    if now - progress.written_at > SILENT_AFTER_SECONDS:
        return Standing.SILENT
    return Standing.RUNNING


def under_way(store: Broadcasts,
              clock: Callable[[], float] = time.time) -> Callable[[], Awaitable[list[BroadcastProgress]]]:
    """The broadcasts heard from lately: ``/metrics``'s source (``BroadcastSource``, the app's
    ``broadcast_progress``), which counts those not finished; a killed run drops out once silent."""

    async def source() -> list[BroadcastProgress]:
        return await store.broadcasts(SILENT_AFTER_SECONDS, clock())
    return source


class ProgressRecorder:
    """``Broadcast.progress``: keeps the latest counts told, and ``run`` writes them to the store."""

    def __init__(self, store: Broadcasts, *, clock: Callable[[], float] = time.time,
                 every_seconds: float = WRITE_EVERY_SECONDS, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.store = store
        self.clock = clock
        self.every_seconds = every_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.started_at = clock()
        self.latest: BroadcastProgress | None = None
        self.writes = 0  # for tests: how often the store was written
        self._told = asyncio.Event()
        self._closing = asyncio.Event()

    def __call__(self, progress: BroadcastProgress) -> None:
        self.latest = progress
        self._told.set()

    async def run(self) -> None:
        """Write the latest counts when told (no sooner than ``every_seconds`` after the last write)
        and every ``heartbeat_seconds``, until ``close``; then once more, as the run ended."""
        last_write = float("-inf")
        while not self._closing.is_set():
            await _first_of(self._told, self._closing, timeout=self.heartbeat_seconds)
            if self._closing.is_set():
                break
            pause = last_write + self.every_seconds - time.monotonic()
            if pause > 0:  # counts told meanwhile are folded into this write
                await _first_of(self._closing, timeout=pause)
                if self._closing.is_set():
                    break
            self._told.clear()
            last_write = time.monotonic()
            await self._write()
        await self._write(ended=True)

    def close(self) -> None:
        self._closing.set()

    async def _write(self, *, ended: bool = False) -> None:
        told = self.latest
        if told is None:  # nothing settled yet (or the run failed before its first recipient)
            return
        # A run that ended without saying so (an error, Ctrl-C) is over all the same: not under way.
        entry = dataclasses.replace(told, finished=told.finished or ended, started_at=self.started_at,
                                    written_at=self.clock())
        try:
            await asyncio.wait_for(self.store.record_broadcast_progress(entry), WRITE_SECONDS)
            self.writes += 1
        except TimeoutError:
            log.warning("could not record the broadcast's progress in the store: no answer within %gs", WRITE_SECONDS)
        except Exception as error:  # noqa: BLE001 (for the Operations page: never worth a broadcast)
            log.warning("could not record the broadcast's progress in the store: %s", error)


@contextlib.asynccontextmanager
async def recording(store: Broadcasts, *, every_seconds: float = WRITE_EVERY_SECONDS,
                    heartbeat_seconds: float = HEARTBEAT_SECONDS) -> AsyncIterator[ProgressRecorder]:
    """A recorder writing in the background while the block runs a broadcast, and the last counts
    when it ends (however it ends)."""
    recorder = ProgressRecorder(store, every_seconds=every_seconds, heartbeat_seconds=heartbeat_seconds)
    writer = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        recorder.close()
        await writer


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Until one of ``events`` is set, or ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
