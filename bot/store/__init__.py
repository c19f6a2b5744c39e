"""Where conversations, opt-outs, processed messages and transcripts live.

``open_store(url)`` picks the backend from ``STORE_URL``: ``sqlite:///path`` (default) or
``memory://`` (tests and the simulator).
"""

from __future__ import annotations

from bot.store.base import CommitResult, Store


def open_store(url: str) -> Store:
    if url.startswith("sqlite://"):
        from bot.store.sqlite import SqliteStore

        # sqlite:///bot.db is relative to the working directory, sqlite:////srv/bot.db absolute
        path = url.removeprefix("sqlite://").removeprefix("/") or "bot.db"
        return SqliteStore(path)
    if url.startswith("memory://"):
        from bot.store.memory import MemoryStore

        return MemoryStore()
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ValueError(f"unsupported STORE_URL scheme {scheme!r}: use sqlite:///bot.db or memory://")


__all__ = ["CommitResult", "Store", "open_store"]
