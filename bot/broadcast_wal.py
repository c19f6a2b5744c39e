"""Keeps a SQLite store's write-ahead log small while a broadcast writes to it without pause.

SQLite in WAL mode appends every commit to ``bot.db-wal`` and copies it into the database in a
*checkpoint*; the log starts again from its beginning only after a checkpoint that copied all of
it. The store checkpoints in a thread of its own (``SqliteStore._checkpoint_periodically``), while
the event loop goes on committing: under a broadcast's thousands of commits a second some commit
always lands during the checkpoint, so no checkpoint ever copies the whole log and it never starts
again. Measured before this module: 2 GB of log after 150,000 messages (a million would leave
about 13 GB on disk until the run ends), its index mapped into the broadcast's memory (tens of MB),
every read slower as the index grows.

``WalKeeper`` runs a checkpoint on the event loop itself every ``every`` seconds: meanwhile this
process commits nothing, so the checkpoint copies the log up to its end (unless the server commits
at that very moment, and then the next one will) and the next commit starts the log again. One
second of a broadcast's log takes a few milliseconds to copy: the sends wait that long once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

EVERY_SECONDS = 1.0


class WalKeeper:
    """Checkpoints the SQLite file at ``path`` on the event loop, every ``every`` seconds."""

    def __init__(self, path: str, every: float = EVERY_SECONDS) -> None:
        self.every = every
        # busy_timeout 0: a checkpoint another connection is running means this one is skipped
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self.checkpoints = 0  # complete ones, for the benchmark
        self.seconds = 0.0

    def checkpoint(self) -> bool:
        """One checkpoint now; whether it copied the whole log."""
        started = time.perf_counter()
        try:
            busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:  # the store's own checkpoint will do; never worth a broadcast
            log.debug("checkpoint skipped: %s", error)
            return False
        self.seconds += time.perf_counter() - started
        complete = not busy and frames == copied
        self.checkpoints += complete
        return bool(complete)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.checkpoint()

    def close(self) -> None:
        self._db.close()


@contextlib.asynccontextmanager
async def keeping_wal_small(path: str | None) -> AsyncIterator[WalKeeper | None]:
    """A ``WalKeeper`` at work while the block runs, for a SQLite store (``path``; None: another store)."""
    if path is None:
        yield None
        return
    keeper = WalKeeper(path)
    task = asyncio.create_task(keeper.run())
    try:
        yield keeper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        keeper.close()
