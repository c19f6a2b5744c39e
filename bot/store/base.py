"""The store contract every backend keeps (see tests/test_store.py, run against each one)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from bot.types import Conversation, Turn


class CommitResult(enum.Enum):
    COMMITTED = "committed"
    CONFLICT = "conflict"  # the conversation changed since it was loaded: load again and redo the turn
    DUPLICATE = "duplicate"  # this MessageSid was already processed: answer the recorded replies


class Store(Protocol):
    async def load(self, sender: str) -> Conversation:
        """The sender's conversation; a fresh idle one (version 0) when there is none."""

    async def is_opted_out(self, sender: str) -> bool: ...

    async def recorded_replies(self, message_sid: str) -> tuple[str, ...] | None:
        """What was answered to this MessageSid, or None if it was never processed."""

    async def commit(self, turn: Turn) -> CommitResult:
        """Write a turn atomically: conversation (compare-and-set on version), opt-out,
        the MessageSid with its replies, and the transcript."""

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        """Hold while handling one message, so a sender's messages go one at a time."""

    async def close(self) -> None: ...


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it (no unbounded growth)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
