"""Sending the replies a committed turn still owes when the process that owed them stopped first.

A turn answered later (a deferred answer, a timeout) keeps its replies in the store until they are
sent (``bot/store/owed.py``). The process that committed it sends them at once; this loop, run by
every server process, picks up the ones whose claim lapsed or was released — after a restart, a
crash, or a send that found Twilio unreachable — and sends them through the same pipeline
(``Inbox.send_owed``: under the sender's lock, each message at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bot.inbox import Deliver, Inbox
from bot.store.owed import CLAIM_SECONDS, OwedReplies

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often the store is asked for owed replies nobody is sending
BATCH = 20  # claimed at a time


class OwedDelivery:
    def __init__(self, inbox: Inbox, store: OwedReplies, deliver: Deliver, *, poll_seconds: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.inbox = inbox
        self.store = store
        self.deliver = deliver
        self.poll_seconds = poll_seconds
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """From start-up (what a previous process left first) until ``stop``."""
        while not stop.is_set():
            await self.poll(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_seconds)

    async def poll(self, stop: asyncio.Event | None = None) -> int:
        """Send what is owed and unclaimed now, a batch at a time; how many turns' replies were sent.
        Once ``stop`` is set it claims no more, and releases what it claimed but has not sent yet:
        a stopping process must not go on sending (its outbox is closed), nor sit on claims the
        next process would otherwise wait a minute for."""
        sent = 0
        while True:
            now = self.clock()
            try:
                claimed = await self.store.claim_owed(now, now + CLAIM_SECONDS, BATCH)
            except Exception:  # noqa: BLE001 - the store is down: the next pass asks again
                log.exception("reading the replies still owed failed")
                return sent
            for index, owed in enumerate(claimed):
                if stop is not None and stop.is_set():
                    with contextlib.suppress(Exception):  # the store is gone: the claims lapse by themselves
                        await self.store.release_owed([later.record.message_sid for later in claimed[index:]])
                    return sent + index
                try:
                    await self.inbox.send_owed(owed, self.deliver)
                except Exception:  # noqa: BLE001 - still owed: tried again once the claim lapses
                    log.exception("sending replies still owed failed")
            sent += len(claimed)
            if len(claimed) < BATCH or (stop is not None and stop.is_set()):
                return sent
