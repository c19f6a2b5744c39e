"""Redis's failures as the store reports them: down, saturated or refusing writes is ``StoreUnavailable``.

Redis down or saturated, or refusing writes (a read-only replica, out of memory, unable to save:
MISCONF), is a temporary condition: the webhook says so (503, Twilio retries) instead of crashing
(500). Both clients the store uses (redis-py, and ``redis_wire.py`` for a turn's commands) raise
redis-py's exception classes, so one mapping serves both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store.base import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

#: What ``unavailable`` may turn into StoreUnavailable (catch these, then call it).
FAILURES = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, ResponseError)


def unavailable(error: Exception) -> StoreUnavailable | None:
    """The StoreUnavailable ``error`` means, or None when it is not a temporary condition (a bug)."""
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return StoreUnavailable(f"Redis unavailable: {error}")
    if isinstance(error, (ReadOnlyError, OutOfMemoryError)):
        return StoreUnavailable(f"Redis refuses writes: {error}")
    if isinstance(error, ResponseError) and str(error).startswith("MISCONF"):
        return StoreUnavailable(f"Redis refuses writes: {error}")
    return None


def unavailable_is_busy(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Wrap a RedisStore method: its first call migrates the keyspace (``RedisStore.ready``), and
    Redis's temporary failures are raised as StoreUnavailable."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if args and not getattr(args[0], "_schema_ready", True):  # a RedisStore's first call: migrate
                await args[0].ready()  # type: ignore[attr-defined]
            return await method(*args, **kwargs)
        except FAILURES as error:
            busy = unavailable(error)
            if busy is None:
                raise
            raise busy from error
    return wrapper
