"""One lock per key (a sender), in this process: every turn takes one, so taking a free one is cheap.

A turn's sender is nearly always free. Taking it records the key and nothing more: no lock object,
no generator-based context manager. Only a second turn of the same sender waits, on a future of its
own, queued first come first served; the holder hands the key to the first waiter still waiting
when it leaves. A key nobody holds or waits for is forgotten (no unbounded growth).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class KeyedLocks:
    """Mutual exclusion per key, first come first served, like one ``asyncio.Lock`` per key."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}  # held keys, each with its waiters

    def hold(self, key: str) -> _Holding:
        return _Holding(self, key)

    def __len__(self) -> int:
        return len(self._queues)

    def _release(self, key: str) -> None:
        waiters = self._queues[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # not cancelled meanwhile: it holds the key now
                waiter.set_result(None)
                return
        del self._queues[key]


class _Holding:
    __slots__ = ("_locks", "_key")

    def __init__(self, locks: KeyedLocks, key: str) -> None:
        self._locks, self._key = locks, key

    async def __aenter__(self) -> None:
        queues = self._locks._queues  # noqa: SLF001 - the lock table's own helper
        waiters = queues.get(self._key)
        if waiters is None:
            queues[self._key] = deque()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed the key just as it was cancelled: pass it on
                self._locks._release(self._key)  # noqa: SLF001
            elif waiter in waiters:
                waiters.remove(waiter)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._locks._release(self._key)  # noqa: SLF001
