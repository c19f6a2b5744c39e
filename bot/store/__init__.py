"""Where conversations, opt-outs, processed messages and transcripts live.

``open_store(url)`` picks the backend from ``STORE_URL``: ``sqlite:///path`` (default) or
``memory://`` (tests and the simulator).
"""

from __future__ import annotations

from bot.store.base import (
    CommitResult,
    Consent,
    Forgetting,
    Locks,
    OutboundRecords,
    Purged,
    Retention,
    Store,
    StoreBusy,
    Timers,
    Turns,
)


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite://`` STORE_URL names (None for other stores): sqlite:///bot.db is relative
    to the working directory, sqlite:////srv/bot.db absolute."""
    if not url.startswith("sqlite://"):
        return None
    return url.removeprefix("sqlite://").removeprefix("/") or "bot.db"


def open_store(url: str, retention: Retention = Retention()) -> Store:
    path = sqlite_path(url)
    if path is not None:
        from bot.store.sqlite import SqliteStore

        return SqliteStore(path, retention)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from bot.store.redis import RedisStore

        return RedisStore(url, retention)
    if url.startswith("memory://"):
        from bot.store.memory import MemoryStore

        return MemoryStore(retention)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ValueError(f"unsupported STORE_URL scheme {scheme!r}: use sqlite:///bot.db, redis://host:6379/0 "
                     "or memory://")


__all__ = ["CommitResult", "Consent", "Forgetting", "Locks", "OutboundRecords", "Purged", "Retention", "Store",
           "StoreBusy", "Timers", "Turns", "open_store", "sqlite_path"]
