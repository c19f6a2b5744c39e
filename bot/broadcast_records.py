"""A broadcast's outbound records, written a batch at a time so that replies never wait for them.

Every message a broadcast sends is recorded before its API call (``sending``: from here the
outcome is unknown until Twilio answers) and after it (``accepted``, ``failed``…). On SQLite each
record written on its own is a transaction holding the file's write lock, and the server's turns
(the replies people are waiting for) need that lock too: three writes a message at 100 messages a
second kept the lock busy often enough to show in the replies' p99. ``BatchedRecords`` stands
between ``Outbox`` and the store and writes every record asked for within ``LINGER_SECONDS`` in one
short transaction (a group commit, as the store's turns have): a caller's ``save_outbound`` still returns
only once its record is written, so "recorded before the API call" still holds, and a crash still
leaves at most the messages in flight in doubt. The rest (reads, the opt-out, consent) goes
straight to the store.

The store writes a batch with ``save_outbounds`` when it has one (SQLite: one transaction); any
other store gets one ``save_outbound`` after another.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from bot.outbound import SendingStore
from bot.types import ConsentChange, OutboundMessage

LINGER_SECONDS = 0.005  # a record waits this long for others to share its transaction


@runtime_checkable
class BatchWrites(Protocol):
    async def save_outbounds(self, messages: Sequence[OutboundMessage]) -> None:
        """Insert or replace each by ``id``, all in one transaction."""


class BatchedRecords:
    """``SendingStore`` for a broadcast's ``Outbox``: records written in batches (see the module)."""

    def __init__(self, store: SendingStore, *, linger: float = LINGER_SECONDS) -> None:
        self.store = store
        self.linger = linger
        self._queue: list[tuple[OutboundMessage, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions written, and records in them: for the benchmark
        self.written = 0

    async def save_outbound(self, message: OutboundMessage) -> None:
        """Returns once the record is written, with those asked for meanwhile."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((dataclasses.replace(message), future))  # the caller goes on changing its message
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(future)  # a caller cancelled does not take the batch's write with it

    async def _write(self) -> None:
        await asyncio.sleep(self.linger)  # the records of this moment join in (Twilio's answers to a
        # tick's sends come back within milliseconds of each other)
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._save([message for message, _ in batch])
            except Exception as error:  # noqa: BLE001 (each waiting send gets the store's error)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _save(self, messages: list[OutboundMessage]) -> None:
        self.batches += 1
        self.written += len(messages)
        if isinstance(self.store, BatchWrites):
            await self.store.save_outbounds(messages)
        else:
            for message in messages:
                await self.store.save_outbound(message)

    # -- everything else, straight to the store --------------------------------------------------

    async def outbound(self, message_id: str) -> OutboundMessage | None:
        return await self.store.outbound(message_id)

    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None:
        return await self.store.outbound_by_sid(sid)

    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]:
        return await self.store.broadcast_messages(broadcast)

    async def is_opted_out(self, sender: str) -> bool:
        return await self.store.is_opted_out(sender)

    async def set_consent(self, change: ConsentChange) -> bool:
        return await self.store.set_consent(change)

    async def consent_history(self, number: str) -> list[ConsentChange]:
        return await self.store.consent_history(number)

    def consent_changes(self, since: float | None = None) -> AsyncIterator[ConsentChange]:
        return self.store.consent_changes(since)
