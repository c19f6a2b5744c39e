"""Is the SQLite store's file writable, and still the one the bot opened? Checked once when it
opens (a real write), on every write (the file's identity) and by ``health()`` (for /healthz).

SQLite opens a file it may not write read-only without a word, and an open file that was deleted
still takes writes (lost at the next restart): both must show before someone's STOP is lost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

from bot.store.base import StoreUnavailable
from bot.store.sqlite_sweep import transaction


def gone(path: str, opened: tuple[int, int]) -> StoreUnavailable | None:
    """Why the file at ``path`` is no longer the one opened (deleted or replaced while the bot ran:
    every write from now on would vanish at the next restart, opt-outs with it), or None."""
    try:
        if identity(path) == opened:
            return None
        what = "was replaced by another file"
    except OSError as error:
        what = f"was deleted or cannot be reached ({error.strerror})"
    return StoreUnavailable(f"the SQLite store {os.path.abspath(path)} {what} while the bot ran: what it "
                            "writes now would be lost. Put the file back (or restore a backup) and restart the bot.")


def probe_write(db: sqlite3.Connection) -> None:
    """A real write that changes nothing (the header's user_version, rewritten as it is): a
    read-only file, folder or disk, or a full one, fails here rather than in someone's STOP."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.execute(f"PRAGMA user_version = {version}")


def write_once(db: sqlite3.Connection) -> None:
    with transaction(db):
        probe_write(db)


def identity(path: str) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def read_only(path: str) -> str | None:
    """Why the bot could not open its store read-write after a restart (while the open file may
    still take writes), or None."""
    full = os.path.abspath(path)
    if not os.access(full, os.W_OK):
        return (f"the SQLite store {full} is read-only: the bot can write it only until it restarts. "
                "Make it writable by the user running the bot, or point STORE_URL at a writable file.")
    folder = os.path.dirname(full)
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"the folder {folder} of the SQLite store is read-only: SQLite keeps its -wal and -shm "
                "files there, so a restart would fail. Make it writable by the user running the bot.")
    return None


def cannot_open(path: str, error: sqlite3.Error) -> StoreUnavailable:
    """The store refused at start-up: the file, what SQLite said, and the fix."""
    return StoreUnavailable(
        f"the SQLite store {os.path.abspath(path)} cannot be written ({error}). Make the file and its folder "
        "writable by the user running the bot (SQLite keeps its -wal and -shm files in that folder), free "
        "some disk space, or point STORE_URL at a writable file.")


def unavailable(path: str, error: BaseException) -> BaseException:
    """SQLite's own failures (read-only, disk full, I/O error, a corrupt file) are the store being
    unavailable: 503, so Twilio retries. Any other error is a bug and stays what it is (500)."""
    if type(error) in (sqlite3.OperationalError, sqlite3.DatabaseError):
        return StoreUnavailable(f"the SQLite store {os.path.abspath(path)} cannot be written: {error}")
    return error


def roll_back(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # after an I/O error SQLite may have rolled back itself
            db.execute("ROLLBACK")
