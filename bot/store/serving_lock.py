"""Who is serving a SQLite store right now: the lock that lets ``python -m bot restore`` refuse.

Every process that writes a SQLite store for long (the server's workers, a broadcast) holds a
shared ``flock`` on a file next to the database (``bot.db.serving``) for as long as it serves;
restore takes it exclusively, without waiting, and refuses while anyone holds it. Replacing the
file under a running server would lose what it writes next (or worse: its WAL, applied to the
restored file). ``flock`` belongs to the open file, so the kernel releases it when the process
ends, even by ``kill -9``: a crashed server never blocks a restore. (``flock`` is local to one
machine; keep the store on a local disk, as SQLite itself asks.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from bot.store import sqlite_path
from bot.store.base import StoreUnavailable

SUFFIX = ".serving"
#: A server starting while a restore runs waits this long for it to finish (a restore takes seconds).
WAIT_FOR_RESTORE_SECONDS = 10.0
_POLL_SECONDS = 0.1


class StoreInUse(Exception):
    """A server or a broadcast serves the store: restore must not replace it now."""


class RestoreUnderWay(StoreUnavailable):
    """A restore holds the store: the bot must not open it until the restore is done."""


def lock_file(database: str | Path) -> Path:
    """The lock file of the database at ``database``: its real path (symbolic links followed, so a
    server and a restore that name the store differently share one lock) plus ``.serving``."""
    return Path(f"{os.path.realpath(database)}{SUFFIX}")


@contextlib.contextmanager
def serving(store_url: str | None, wait_seconds: float = WAIT_FOR_RESTORE_SECONDS) -> Iterator[None]:
    """Hold the shared serving lock of the SQLite store ``store_url`` names while the block runs;
    nothing for another store (Redis, memory) or None. Waits up to ``wait_seconds`` for a restore
    under way (blocking: called before anything is served), then raises ``RestoreUnderWay``."""
    database = sqlite_path(store_url) if store_url else None
    if database is None:
        yield
        return
    descriptor = _open(lock_file(database))
    try:
        deadline = time.monotonic() + wait_seconds
        while not _try(descriptor, fcntl.LOCK_SH):
            if time.monotonic() > deadline:
                raise RestoreUnderWay(
                    f"a restore is replacing the SQLite store {os.path.abspath(database)} (it holds "
                    f"{lock_file(database)}): start the bot again once it has finished")
            time.sleep(_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # closing the file releases the lock


@contextlib.contextmanager
def exclusive(database: str | Path) -> Iterator[None]:
    """Hold the serving lock alone while the block runs (restore); ``StoreInUse`` at once when a
    server or a broadcast holds it."""
    lock = lock_file(database)
    descriptor = _open(lock)
    try:
        if not _try(descriptor, fcntl.LOCK_EX):
            raise StoreInUse(
                f"a server or a broadcast is using the SQLite store {os.path.abspath(database)} (it holds "
                f"{lock}). Stop it first (systemctl stop textflow, and wait for broadcasts to finish), then "
                "run restore again. Nothing was changed.")
        yield
    finally:
        os.close(descriptor)


def _open(lock: Path) -> int:
    # Read-only is enough for flock, and lets a server running as another user share a lock file
    # that root created during a restore.
    try:
        return os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise StoreUnavailable(f"cannot open the lock file {os.path.abspath(lock)} of the SQLite store "
                               f"({error.strerror}): make its folder writable by the user running the "
                               "bot (SQLite keeps its -wal and -shm files there too)") from None


def _try(descriptor: int, mode: int) -> bool:
    try:
        fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
