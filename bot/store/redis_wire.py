"""A lean Redis connection for the turn's few commands: auto-pipelined, parsed by hiredis.

redis-py's asyncio client spends 60-100 µs of CPU per command (a pool checkout under a condition,
a timeout context per read, retries, event hooks), more than the rest of a turn. A turn sends
three small commands (``bot/store/redis_lock.py``, ``bot/store/redis_turns.py``), so they get a
connection of their own: one long-lived socket per store; the commands issued within a tenth of a
millisecond (at most one pass of the event loop) go out in one ``write``, so under load several
turns share a system call and Redis reads them in one go; and the replies, which Redis sends in
order, are handed to the callers' futures as hiredis parses them. Everything else (the console,
sweeps, migrations) stays on redis-py.

Errors keep redis-py's exception classes, so the store maps them as it always did: a lost or
refused connection is a ``redis.exceptions.ConnectionError``, a stalled Redis a ``TimeoutError``,
an error reply the class of its code (``READONLY`` → ``ReadOnlyError``, ``OOM``, ``NOSCRIPT``…).
Commands are for short work only: one waiting ``STALL_SECONDS`` for its reply drops the connection.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis.asyncio.connection import RedisSSLContext, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_SECONDS = 5.0  # connecting (and the handshake) takes no longer, or the call fails: 503
STALL_SECONDS = 10.0  # commands waiting this long with no reply at all: the connection is dropped (503)
#: A command waits in this process at most this long for others to share its write (or to the end
#: of the loop's pass). Waiting for the whole pass made Redis and the bot take turns: Redis idle while
#: the bot worked through a pass, the bot idle while Redis worked through the batch (13% idle at
#: full load); 0.1 ms keeps the batching (about 4 turns a write) and overlaps the two.
BATCH_SECONDS = 0.0001

#: A command's word as the wire takes it (numbers are sent as their text).
Word = str | bytes | int | float

#: hiredis's own: a command's words (str, int, float) as RESP bytes (its stub types the tuple too narrowly).
_pack = cast(Callable[[tuple[Any, ...]], bytes], hiredis.pack_command)

_ERRORS: dict[str, type[ResponseError] | type[RedisConnectionError]] = {
    "NOSCRIPT": NoScriptError, "READONLY": ReadOnlyError, "OOM": OutOfMemoryError, "LOADING": BusyLoadingError,
    "NOAUTH": AuthenticationError, "WRONGPASS": AuthenticationError,
}


def is_error(reply: Any) -> bool:
    """Whether a reply left in a list by :meth:`RedisWire.pipeline` (``raised``) is an error reply."""
    return isinstance(reply, hiredis.ReplyError)


def error_of(reply: hiredis.ReplyError) -> Exception:
    """An error reply as redis-py raises it (the store's error mapping reads those classes)."""
    message = str(reply)
    return _ERRORS.get(message.split(" ", 1)[0], ResponseError)(message)


@dataclass(frozen=True)
class Script:
    """A Lua script called by its SHA1 (EVALSHA); sent whole once if Redis does not know it yet."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


class _Waiting:
    """A caller waiting for ``count`` replies (1, or a pipeline's several); no future: nobody waits."""

    __slots__ = ("future", "count", "replies")

    def __init__(self, future: asyncio.Future[Any] | None, count: int) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []


class _Connection(asyncio.Protocol):
    """One socket: writes what was queued in batches (``BATCH_SECONDS``), resolves replies in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[_Waiting] = deque()
        self.out: list[bytes] = []
        self.flushing = False
        self.first = 0.0  # when the oldest command waiting in ``out`` was queued
        self.lost: Exception | None = None
        self.replies = 0  # replies received so far (the stall watch compares it between checks)
        self.watch: asyncio.TimerHandle | None = None
        self.watched = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, packed: bytes, count: int = 1) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self.queue(packed, _Waiting(future, count))
        return future

    def queue(self, packed: bytes, waiting: _Waiting) -> None:
        if self.lost is not None:
            raise self.lost
        self.waiting.append(waiting)
        out = self.out
        out.append(packed)
        if len(out) == 1:  # the first of a batch: out at the end of this pass of the loop at the latest
            self.first = self.loop.time()
            if not self.flushing:
                self.flushing = True
                self.loop.call_soon(self.flush)
        elif self.loop.time() - self.first >= BATCH_SECONDS and self.transport is not None:
            self.transport.write(b"".join(out))  # the batch is old enough: Redis starts on it now
            out.clear()
        if self.watch is None:
            self.watched = self.replies
            self.watch = self.loop.call_later(STALL_SECONDS, self.check_stall)

    def flush(self) -> None:
        self.flushing = False
        if self.out and self.transport is not None and self.lost is None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while (reply := self.reader.gets()) is not False:
            self.replies += 1
            if not waiting:  # out of step with Redis: nothing read from here on could be trusted
                self.fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                if self.transport is not None:
                    self.transport.abort()
                return
            head = waiting[0]
            if head.count == 1:
                waiting.popleft()
                if head.future is not None and not head.future.done():  # a cancelled caller's: dropped
                    head.future.set_result(reply)
                continue
            head.replies.append(reply)
            if len(head.replies) == head.count:
                waiting.popleft()
                if head.future is not None and not head.future.done():
                    head.future.set_result(head.replies)

    def check_stall(self) -> None:
        """Replies came since the last check, or nothing is waiting: fine. Otherwise Redis (or the
        network) stalled: drop the connection so callers get an error (503) instead of hanging."""
        self.watch = None
        if not self.waiting or self.lost is not None:
            return
        if self.replies == self.watched:
            self.fail(RedisTimeoutError(f"Redis sent no reply for {STALL_SECONDS:g}s"))
            if self.transport is not None:
                self.transport.abort()
            return
        self.watched = self.replies
        self.watch = self.loop.call_later(STALL_SECONDS, self.check_stall)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        while self.waiting:
            waiting = self.waiting.popleft()
            if waiting.future is not None and not waiting.future.done():
                waiting.future.set_exception(self.lost)
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None

    def close(self) -> None:
        self.fail(RedisConnectionError("Redis connection closed"))
        if self.transport is not None:
            self.transport.close()


class RedisWire:
    """A turn's commands to Redis, on one connection opened on first use (again after a loss).

    ``url`` is what redis-py accepts for the rest of the store: ``redis://[user:password@]host:port/db``,
    ``rediss://`` (TLS, with redis-py's ``ssl_*`` query options) or ``unix:///path?db=N``.
    """

    def __init__(self, url: str) -> None:
        self._options: dict[str, Any] = dict(parse_url(url))
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._scripts: dict[str, Script] = {}

    async def call(self, *args: Word) -> Any:
        """One command; its reply (text, number, list or None), or its error raised."""
        connection = self._connection if self._connection is not None and self._connection.lost is None \
            else await self._connect()
        reply = await connection.send(_pack(args))
        if isinstance(reply, hiredis.ReplyError):
            raise error_of(reply)
        return reply

    def send(self, *args: Word) -> None:
        """A command whose reply nobody waits for (a lock's release: Redis runs it before anything
        sent after it on this connection). Dropped when not connected: what it undoes expires."""
        connection = self._connection
        if connection is not None and connection.lost is None:
            connection.queue(_pack(args), _Waiting(None, 1))

    async def pipeline(self, *commands: tuple[Word, ...], raised: int | None = None) -> list[Any]:
        """Several commands in one write; their replies. An error reply is raised, or with ``raised``
        only among the first ``raised`` replies (the others' stay in the list, ``is_error``)."""
        connection = self._connection if self._connection is not None and self._connection.lost is None \
            else await self._connect()
        replies: list[Any] = await connection.send(b"".join(_pack(c) for c in commands),
                                                   len(commands))
        for reply in replies if raised is None else replies[:raised]:
            if isinstance(reply, hiredis.ReplyError):
                raise error_of(reply)
        return replies

    async def evalsha(self, script: Script, keys: list[str], args: list[Word]) -> Any:
        """Run a Lua script by SHA1; if Redis does not know it (a restart, SCRIPT FLUSH), send it whole."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.call("EVAL", script.source, len(keys), *keys, *args)

    def register(self, script: Script) -> Script:
        """Load ``script`` on every new connection with the handshake, so its first call finds it."""
        self._scripts[script.sha] = script
        return script

    async def _connect(self) -> _Connection:
        async with self._connecting:  # one connect at a time; those waiting use its connection
            if self._connection is not None and self._connection.lost is None:
                return self._connection
            try:
                self._connection = await asyncio.wait_for(self._open(), CONNECT_SECONDS)
            except TimeoutError as error:
                raise RedisTimeoutError(f"no connection to Redis within {CONNECT_SECONDS:g}s") from error
            except OSError as error:
                raise RedisConnectionError(f"cannot connect to Redis: {error}") from error
            return self._connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        options = self._options
        kind = options.get("connection_class")
        if kind is UnixDomainSocketConnection:
            _, connection = await loop.create_unix_connection(lambda: _Connection(loop), options["path"])
        else:
            context = None
            if kind is SSLConnection:  # the URL's ssl_* options, as redis-py's own connection reads them
                settings: dict[str, Any] = {"cert_reqs": "required", "check_hostname": True}
                settings.update((name.removeprefix("ssl_"), value) for name, value in options.items()
                                if name.startswith("ssl_"))
                context = RedisSSLContext(**settings).get()
            _, connection = await loop.create_connection(
                lambda: _Connection(loop), options.get("host", "localhost"), options.get("port", 6379), ssl=context)
        handshake: list[tuple[str | int, ...]] = []
        if options.get("password"):
            handshake.append(("AUTH", *([options["username"]] if options.get("username") else []),
                              options["password"]))
        if options.get("db"):
            handshake.append(("SELECT", int(options["db"])))
        handshake += [("SCRIPT", "LOAD", script.source) for script in self._scripts.values()]
        if handshake:
            try:
                replies = await connection.send(b"".join(_pack(c) for c in handshake), len(handshake))
            except BaseException:
                connection.close()
                raise
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    connection.close()
                    raise error_of(reply)
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
