"""The per-sender turn lock on Redis: one process at a time handles a sender, anywhere.

The lock is a key (``textflow:lock:+1555…``) set with ``SET NX PX`` to a token of the holder's
own, so it expires by itself when its process dies (``LOCK_SECONDS``). Its cost is kept to what the
guarantee needs:

* Waiters in the same process queue in it (``KeyedLocks``) instead of polling Redis; only a sender
  held by another process is polled (from 2 ms, backing off to 50 ms).
* A turn that outlives a third of the TTL (a slow ``fetch``) has it renewed: one timer per store
  ticks while anything is held and renews the holds that old. The millisecond turns that are nearly
  all of them cost a set entry (no timer, no task, no trip).
* A committed turn that owes nothing more releases the lock inside its commit script
  (``redis_scripts.COMMIT``): :func:`held_for_commit` hands the commit this task's hold. Only a
  COMMITTED result ends the hold (a conflict or a duplicate keeps it: the pipeline reads again),
  and a turn with replies owed keeps it until they are sent, under the lock, in order.
* The turn's snapshot may be read in the same write as the ``SET NX`` (``read_ahead.py``): Redis
  runs a connection's commands in order, so when the ``SET NX`` took the lock the reads after it
  are under the lock, and the snapshot uses them (:func:`read_with_lock`) instead of a second trip.
  When the lock was held elsewhere they are dropped, and read again once it is ours.
* Otherwise the release (delete while it is still our token) is sent without waiting for its reply:
  Redis runs a connection's commands in order, so this process's next ``SET NX`` on the key comes
  after it; if it is lost with the connection, the TTL frees the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from bot.store.base import StoreBusy
from bot.store.keyed_locks import KeyedLocks
from bot.store.redis_errors import FAILURES, unavailable
from bot.store.redis_scripts import RELEASE, RENEW
from bot.store.redis_wire import RedisWire, Script, Word, is_error

#: This process's part of every token (new in a forked child, so no two processes ever share one).
_PROCESS = [os.urandom(8).hex()]
os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, os.urandom(8).hex()))

FIRST_POLL = 0.002  # seconds between tries for a sender another process holds, doubling…
LONGEST_POLL = 0.05  # …up to this


_HELD: ContextVar[Hold | None] = ContextVar("textflow_redis_turn_lock", default=None)

#: What a lock reads in the same write as its ``SET NX`` (``read_ahead.py``): a name for the reads
#: (whoever asks for them again knows them by it) and their commands.
Reads = tuple[object, tuple[tuple[Word, ...], ...]]


class Hold:
    """One turn's hold on a sender's lock."""

    __slots__ = ("key", "token", "ttl_ms", "released", "renewed", "renewing", "ahead")

    def __init__(self, key: str, token: str, ttl_ms: int) -> None:
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms
        self.released = False  # by the commit script, or the release sent at the end
        self.renewed = 0.0  # when it was taken or last renewed (the loop's clock)
        self.renewing: asyncio.Task[None] | None = None
        self.ahead: tuple[object, list[Any]] | None = None  # reads answered with the lock, not yet used


def read_with_lock(name: object) -> list[Any] | None:
    """The replies of the reads named ``name`` that this task's hold made with its ``SET NX`` (so
    under the lock), once: None if it made none by that name, or they were used already."""
    hold = _HELD.get()
    if hold is None or hold.ahead is None or hold.ahead[0] != name:
        return None
    replies = hold.ahead[1]
    hold.ahead = None
    return replies


def held_for_commit(key: str) -> Hold | None:
    """This task's hold on ``key`` (a sender's lock) or on a lane of it (``key`` + " compliance"),
    if it still has it: the turn being committed is that sender's, under that lock."""
    hold = _HELD.get()
    if hold is None or hold.released or not hold.key.startswith(key):
        return None
    return hold if len(hold.key) == len(key) or hold.key[len(key)] == " " else None


class TurnLocks:
    """Per-sender locks across processes, on ``wire`` (``migrate`` runs before the first one)."""

    def __init__(self, wire: RedisWire, migrate: Callable[[], Awaitable[None]]) -> None:
        self._wire = wire
        self._migrate = migrate
        self._migrated = False
        self._release = wire.register(Script(RELEASE))
        self._renew = wire.register(Script(RENEW))
        self._local = KeyedLocks()  # this process's turns of one sender queue here, not on Redis
        self._tokens = itertools.count(1)  # a token: the process's random part and a count (no uuid per turn)
        self._holds: set[Hold] = set()  # held now: what the renewal watch looks at
        self._watch: asyncio.TimerHandle | None = None  # ticks while anything is held

    def hold(self, key: str, seconds: float, wait: float, reads: Reads | None = None) -> _Holding:
        """``async with``: hold ``key`` (TTL ``seconds``), waiting up to ``wait`` for another holder;
        ``reads`` are sent with the first ``SET NX`` (:func:`read_with_lock` has their replies if it
        took the lock, after a wait they are read again by whoever needs them)."""
        return _Holding(self, key, seconds, wait, reads)

    def released(self, hold: Hold) -> None:
        """The commit script deleted the key: the hold ends there."""
        hold.released = True
        self._forget(hold)

    def _forget(self, hold: Hold) -> None:
        self._holds.discard(hold)
        if hold.renewing is not None:
            hold.renewing.cancel()
            hold.renewing = None

    async def _acquire(self, key: str, seconds: float, wait: float, reads: Reads | None) -> Hold:
        hold = Hold(key, f"{_PROCESS[0]}:{next(self._tokens)}", int(seconds * 1000))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = FIRST_POLL
        try:
            if not self._migrated:
                await self._migrate()
                self._migrated = True
            take = ("SET", key, hold.token, "NX", "PX", hold.ttl_ms)
            if reads is None:
                taken = await self._wire.call(*take) is not None
            else:  # read in the same write; used only if this SET took the lock (read after it)
                replies = await self._wire.pipeline(take, *reads[1], raised=1)
                taken = replies[0] is not None
                if taken and not any(is_error(reply) for reply in replies[1:]):  # else read (and raised) again
                    hold.ahead = (reads[0], replies[1:])
            while not taken:
                left = deadline - loop.time()
                if left <= 0:
                    raise StoreBusy(f"lock {key} still held after {wait:g}s")
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, LONGEST_POLL)
                taken = await self._wire.call(*take) is not None
        except asyncio.CancelledError:
            self._send_release(hold)  # the SET may have gone through: do not leave it to the TTL
            raise
        except FAILURES as error:
            busy = unavailable(error)
            if busy is None:
                raise
            raise busy from error
        hold.renewed = loop.time()
        self._holds.add(hold)
        if self._watch is None:
            self._watch = loop.call_later(hold.ttl_ms / 6000, self._tick)
        return hold

    def _send_release(self, hold: Hold) -> None:
        if not hold.released:
            hold.released = True
            self._forget(hold)
            self._wire.send("EVALSHA", self._release.sha, 1, hold.key, hold.token)

    def _tick(self) -> None:
        """Every sixth of the TTL while anything is held: renew each hold a third of its TTL old, so
        each is renewed at most half its TTL after it was taken or last renewed. One timer for all
        holds, not one per turn (a timer costs a few µs to arm and cancel)."""
        self._watch = None
        if not self._holds:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for hold in self._holds:
            if hold.renewing is None and now - hold.renewed >= hold.ttl_ms / 3000:
                hold.renewing = loop.create_task(self._renew_once(hold))
        self._watch = loop.call_later(min(hold.ttl_ms for hold in self._holds) / 6000, self._tick)

    async def _renew_once(self, hold: Hold) -> None:
        """Extend the TTL while the key is still ours; Redis unreachable for a moment: try again at the
        next tick. Lost (it expired meanwhile): stop; the commit's compare-and-set keeps the data right."""
        with contextlib.suppress(*FAILURES):
            if await self._wire.evalsha(self._renew, [hold.key], [hold.token, hold.ttl_ms]):
                hold.renewed = asyncio.get_running_loop().time()
            else:
                self._holds.discard(hold)
        hold.renewing = None


class _Holding:
    """The ``async with`` of :meth:`TurnLocks.hold` (a class: cheaper than a generator per turn)."""

    __slots__ = ("_locks", "_key", "_seconds", "_wait", "_reads", "_hold", "_held", "_local")

    def __init__(self, locks: TurnLocks, key: str, seconds: float, wait: float, reads: Reads | None) -> None:
        self._locks = locks
        self._key = key
        self._seconds = seconds
        self._wait = wait
        self._reads = reads
        self._hold: Hold | None = None
        self._held: Token[Hold | None] | None = None
        self._local = locks._local.hold(key)

    async def __aenter__(self) -> None:
        await self._local.__aenter__()
        try:
            self._hold = await self._locks._acquire(self._key, self._seconds, self._wait, self._reads)
        except BaseException:
            await self._local.__aexit__(None, None, None)
            raise
        self._held = _HELD.set(self._hold)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._held is not None:
            _HELD.reset(self._held)
        if self._hold is not None:
            self._locks._send_release(self._hold)
        await self._local.__aexit__(kind, error, traceback)
