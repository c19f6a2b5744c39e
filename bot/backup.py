"""Backing up the SQLite store while the bot serves it, and putting a backup back in its place.

``backup`` copies the store with SQLite's online backup API inside one read transaction: in WAL
mode a reader never blocks the server's writes, and the copy is the store as it was at one moment,
every committed turn in it whole and none half written. (Without that transaction each step would
see the server's latest commit and start the copy over: on a busy bot it would never finish.) The
copy is checked (``PRAGMA integrity_check``) before it takes its name, so a file with the backup's
name is always a complete, checked store.

``restore`` checks the backup the same way, refuses while anyone serves the target
(``bot/store/serving_lock.py``, then SQLite's own locks), migrates the copy to this release's
schema (``bot/store/sqlite_schema.py``), carries into it the consent changes the current store
recorded after the backup (``bot/backup_consent.py``: nobody who said STOP since is texted again),
keeps the current file under ``<target>.before-restore-<time>``, and renames the copy into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.backup_consent import Carried, carry_consent
from bot.store.base import StoreUnavailable
from bot.store.serving_lock import SUFFIX, StoreInUse, exclusive
from bot.store.sqlite import SqliteStore
from bot.store.sqlite_schema import LATEST

#: Pages copied per step (4 MiB with SQLite's 4 KiB pages), with a pause between steps: the copy
#: leaves the disk to the server now and then.
PAGES_PER_STEP = 1024
PAUSE_SECONDS = 0.005
#: The tables every textflow store has had since its first release.
REQUIRED_TABLES = ("conversations", "processed", "opt_outs")
SIDE_FILES = ("-wal", "-journal")  # SQLite's files that belong to a database's content
SQLITE_HEADER = b"SQLite format 3\x00"


class BackupError(Exception):
    """A backup or restore refused or failed; the message says what and how to fix it."""


@dataclass(frozen=True)
class StoreSummary:
    """What a store file holds, counted (no number, no text: safe to print and paste)."""

    path: Path
    size: int
    schema_version: int
    conversations: int
    opt_outs: int
    consent_records: int  # 0 in a store from before the consent ledger
    turns: int

    def line(self) -> str:
        return (f"{self.path}: {_size(self.size)}, schema version {self.schema_version}, integrity ok; "
                f"{self.conversations} conversations, {self.opt_outs} opt-outs, "
                f"{self.consent_records} consent records, {self.turns} turns")


@dataclass(frozen=True)
class Restored:
    summary: StoreSummary  # the store now in place
    backup_version: int  # the backup's schema version (lower than the summary's: migrated on the way)
    kept: list[Path]  # the files of the store it replaced, under new names (none: there was none)
    carried: Carried | None  # the consent changes carried from the store it replaced (None: there was none)
    owed_sent: int = 0  # replies owed in the backup that the store it replaced had sent since: not sent again


def backup(database: Path, to: Path, *, force: bool = False) -> StoreSummary:
    """Copy the store at ``database`` to ``to`` while it may be serving; never replaces ``to``
    unless ``force``. The copy is written next to ``to``, checked, flushed to disk and renamed."""
    if not database.is_file():
        raise BackupError(f"no SQLite store at {database.absolute()} (STORE_URL sqlite:///NAME is relative to the "
                          "current folder, sqlite:////srv/NAME absolute)")
    if to.is_dir():
        raise BackupError(f"{to} is a folder: name the backup file, e.g. {to / 'bot-backup.db'}")
    store_files = {f"{os.path.realpath(database)}{suffix}" for suffix in (*SIDE_FILES, "-shm", SUFFIX)}
    if os.path.realpath(to) in store_files:  # replacing its WAL under a server loses what that held
        raise BackupError(f"{to} is one of the store's own files (SQLite's -wal, -shm or -journal, or the serving "
                          "lock): name another file for the backup")
    if to.exists():
        if to.samefile(database):
            raise BackupError(f"{to} is the store itself: name another file for the backup")
        if not force:
            raise BackupError(f"{to} exists: choose another name, or add --force to replace it")
    if not to.parent.is_dir():
        raise BackupError(f"no folder {to.parent.absolute()} to write the backup in")
    with _partial(to, "backup") as partial:
        try:
            _copy(database, partial)
        except sqlite3.DatabaseError as error:
            raise BackupError(f"cannot copy {database}: {error}") from None
        summary = checked(partial, database)
        _flush(partial)
        _publish(partial, to, force)
    return _renamed(summary, to)


def restore(source: Path, database: Path, *, now: float | None = None) -> Restored:
    """Put the backup ``source`` in place of the store at ``database``: refused while a server or
    a broadcast serves it (``StoreInUse``); the store replaced is kept, never deleted."""
    if not source.is_file():
        raise BackupError(f"no file {source.absolute()} to restore")
    # The file itself, not a symbolic link to it: replacing the link would leave the store where it
    # points unchanged, and the restored one beside the link (on whatever disk that is).
    database = Path(os.path.realpath(database))
    if database.exists() and source.samefile(database):
        raise BackupError(f"{source} is the store itself (STORE_URL): nothing to restore")
    if not database.parent.is_dir():
        raise BackupError(f"no folder {database.parent.absolute()} for the store (STORE_URL)")
    with exclusive(database), _partial(database, "restore") as partial:
        if not _is_sqlite(source):
            raise BackupError(f"{source} is not a textflow store: it is not an SQLite database")
        try:
            _copy(source, partial)
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{source} is not a textflow store: {error}") from None
        version = checked(partial, source).schema_version
        if version > LATEST:
            raise BackupError(f"{source} has schema version {version}, newer than this release knows ({LATEST}): "
                              "it was made by a newer release of textflow; restore it with that release. Nothing "
                              "was changed.")
        try:
            asyncio.run(_migrate(partial))  # to this release's tables, as the bot would when it opens it
        except (StoreUnavailable, sqlite3.Error) as error:
            raise BackupError(f"{source} cannot be brought to this release's schema: {error}") from None
        carried, owed_sent = None, 0
        if database.exists():
            _settle(database)
            carried = carry_consent(database, partial)  # nobody who opted out since the backup is texted
            owed_sent = _forget_owed_sent_since(database, partial)  # nobody is answered twice
        summary = summary_of(partial)
        _same_owner(partial, database)
        _flush(partial)
        kept = _swap(partial, database, time.time() if now is None else now)
    return Restored(_renamed(summary, database), version, kept, carried, owed_sent)


def _forget_owed_sent_since(replaced: Path, restored: Path) -> int:
    """Drop from the restored copy the replies it owes that the replaced store no longer owes: they
    were sent (or refused, or purged) after the backup, and the copy's outbound records, as old as
    the backup, would not show it, so the bot would text each again, a stale answer, at its start.
    Nothing is dropped when the replaced store cannot say (damaged, or from before owed replies)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{replaced.resolve().as_uri()}?mode=ro", uri=True)) as source:
            still = {sid for (sid,) in source.execute("SELECT message_sid FROM owed_replies")}
    except sqlite3.Error:
        return 0
    with contextlib.closing(sqlite3.connect(restored)) as db, db:
        sent = [(sid,) for (sid,) in db.execute("SELECT message_sid FROM owed_replies") if sid not in still]
        db.executemany("DELETE FROM owed_replies WHERE message_sid = ?", sent)
    return len(sent)


def checked(path: Path, named: Path) -> StoreSummary:
    """Integrity-check the store file at ``path`` (called ``named`` in messages), make it a file
    of its own (no -wal beside it), and count what it holds."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        problems = [row[0] for row in db.execute("PRAGMA integrity_check(10)")]
        if problems != ["ok"]:
            raise BackupError(f"{named} failed SQLite's integrity check: {'; '.join(problems)}")
        missing = [table for table in REQUIRED_TABLES if table not in _tables(db)]
        if missing:
            raise BackupError(f"{named} is not a textflow store: it has no {', '.join(missing)} table")
        db.execute("PRAGMA journal_mode=DELETE")  # the bot turns WAL on again when it opens it
        return _summary(db, path)
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{named} is not a readable textflow store: {error}") from None
    finally:
        db.close()


def summary_of(path: Path) -> StoreSummary:
    """What the (checked) store file at ``path`` holds."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return _summary(db, path)


def _summary(db: sqlite3.Connection, path: Path) -> StoreSummary:
    tables = _tables(db)

    def count(table: str) -> int:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) if table in tables else 0

    return StoreSummary(path, path.stat().st_size, int(db.execute("PRAGMA user_version").fetchone()[0]),
                        count("conversations"), count("opt_outs"), count("consent_ledger"), count("processed"))


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def _migrate(path: Path) -> None:
    await SqliteStore(path).close()


def _copy(source: Path, to: Path) -> None:
    """The online backup, read-only on ``source``, in steps within one read transaction."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=5)
    dst = sqlite3.connect(to, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the snapshot is taken here
        src.backup(dst, pages=PAGES_PER_STEP, progress=lambda *_: time.sleep(PAUSE_SECONDS))
        src.execute("COMMIT")
    finally:
        dst.close()
        src.close()


def _swap(partial: Path, database: Path, now: float) -> list[Path]:
    """Keep the current (settled) store under a new name, then rename the restored copy into place; the
    files kept. The old store's WAL goes with it: applied to the restored file, it would corrupt it."""
    kept_name = _kept_name(database, now)
    kept: list[Path] = []
    if database.exists():
        try:
            os.link(database, kept_name)  # the store stays at its path until the restored copy replaces it
        except OSError:
            os.rename(database, kept_name)
        kept.append(kept_name)
    for suffix in SIDE_FILES:  # none once settled; a damaged store's, or a WAL left without its file
        side = Path(f"{database}{suffix}")
        if side.exists():
            os.rename(side, Path(f"{kept_name}{suffix}"))
            kept.append(Path(f"{kept_name}{suffix}"))
    Path(f"{database}-shm").unlink(missing_ok=True)  # the index of a WAL moved away: no content of its own
    os.replace(partial, database)
    _flush_folder(database.parent)
    return kept


def _settle(database: Path) -> None:
    """Refuse when any other process has the store open (even one without the serving lock: a
    ``python -m bot`` command), and fold its WAL into the file, so what is kept is one whole file.
    A damaged store (the reason for a restore) is kept as it is, with its WAL."""
    db = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # needs every other connection closed
        db.execute("BEGIN EXCLUSIVE")
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            raise StoreInUse(f"another process has the SQLite store {database.absolute()} open (a server or a "
                             "python -m bot command): stop it, then run restore again. Nothing was changed.") from None
    except sqlite3.DatabaseError:
        pass
    finally:
        db.close()


def _kept_name(database: Path, now: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    kept = database.with_name(f"{database.name}.before-restore-{stamp}")
    n = 1
    while any(Path(f"{kept}{suffix}").exists() for suffix in ("", *SIDE_FILES)):
        n += 1
        kept = database.with_name(f"{database.name}.before-restore-{stamp}-{n}")
    return kept


@contextlib.contextmanager
def _partial(beside: Path, what: str) -> Iterator[Path]:
    """A temporary file in the folder of ``beside`` (so the final rename is atomic), removed
    with its side files unless it was renamed."""
    partial = beside.with_name(f".{beside.name}.{what}-{os.getpid()}.partial")
    try:
        # Every number and transcript is in it: readable by its owner only, whatever the umask (SQLite
        # would create it 0644 under the usual 022). A restore gives it the replaced store's mode.
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield partial
    finally:
        for suffix in ("", *SIDE_FILES, "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)


def _publish(partial: Path, to: Path, force: bool) -> None:
    if force:
        os.replace(partial, to)
    else:
        try:
            os.link(partial, to)  # unlike a rename, never replaces a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{to} exists: choose another name, or add --force to replace it") from None
        except OSError:  # a file system without hard links
            if to.exists():
                raise BackupError(f"{to} exists: choose another name, or add --force to replace it") from None
            os.replace(partial, to)
    _flush_folder(to.parent)


def _renamed(summary: StoreSummary, path: Path) -> StoreSummary:
    return StoreSummary(path, path.stat().st_size, summary.schema_version, summary.conversations,
                        summary.opt_outs, summary.consent_records, summary.turns)


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _same_owner(partial: Path, database: Path) -> None:
    """The restored file gets the replaced store's owner and mode: restored by root, it must
    still be writable by the user the bot runs as."""
    if not database.exists():
        return
    found = database.stat()
    os.chmod(partial, found.st_mode & 0o7777)
    with contextlib.suppress(PermissionError):
        os.chown(partial, found.st_uid, found.st_gid)


def _flush(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flush_folder(folder: Path) -> None:
    """A rename is durable once its folder is flushed."""
    _flush(folder)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    scaled = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if scaled < 1024:
            return f"{scaled:.1f} {unit}"
        scaled /= 1024
    return f"{scaled:.1f} TiB"
