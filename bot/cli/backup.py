"""``python -m bot backup FILE`` and ``python -m bot restore FILE``: the SQLite store's backups
(``bot/backup.py``). Redis keeps its own: both commands point to the README instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.backup import BackupError, backup, restore
from bot.cli.common import CommandError, Commands
from bot.settings import load_settings
from bot.status import without_password
from bot.store import sqlite_path
from bot.store.serving_lock import StoreInUse

REDIS_POINTER = ('README.md, "Running in production", "Backups": persist Redis with appendonly yes and RDB '
                 "snapshots, and back it up by copying its RDB file (redis-cli --rdb FILE)")


def add_commands(commands: Commands) -> None:
    save = commands.add_parser("backup", help="copy the SQLite store to FILE, also while the bot serves",
                               description=(
        "Copy the SQLite store (STORE_URL) to FILE with SQLite's online backup: consistent while the bot "
        "serves, without stopping it. The copy is checked (integrity check) before it takes FILE's name, "
        "and a line says what it holds. An existing FILE is never replaced without --force. For a Redis "
        "store, back up Redis itself (see the README's \"Running in production\")."))
    save.add_argument("file", type=Path, metavar="FILE", help="the backup file to write")
    save.add_argument("--force", action="store_true", help="replace FILE if it exists")
    save.add_argument("--store", help="STORE_URL (default: from the settings)")
    save.set_defaults(run=_backup)

    put_back = commands.add_parser("restore", help="replace the SQLite store with a backup (server stopped)",
                                   description=(
        "Put the backup FILE in place of the SQLite store (STORE_URL). Refused while a server or a broadcast "
        "uses the store: stop it first (systemctl stop textflow). FILE is checked first; the store it replaces "
        "is kept next to it as <store>.before-restore-<time>, never deleted. A backup made by an older release "
        "is migrated to this one's schema, and the consent changes (opt-outs) the replaced store recorded after the "
        "backup are carried into it."))
    put_back.add_argument("file", type=Path, metavar="FILE", help="the backup file (made by python -m bot backup)")
    put_back.add_argument("--store", help="STORE_URL (default: from the settings)")
    put_back.set_defaults(run=_restore)


def _backup(args: argparse.Namespace) -> int:
    database = _database(args, "backup")
    try:
        summary = backup(database, args.file, force=args.force)
    except BackupError as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"cannot write the backup {args.file}: {error.strerror or error}") from None
    print(f"backed up {database} to {summary.line()}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    database = _database(args, "restore")
    try:
        restored = restore(args.file, database)
    except (BackupError, StoreInUse) as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"cannot restore {args.file} to {database}: {error.strerror or error}") from None
    summary = restored.summary
    print(f"restored {args.file} to {summary.line()}")
    if restored.backup_version < summary.schema_version:
        print(f"migrated it from schema version {restored.backup_version} (an older release's) to "
              f"{summary.schema_version}")
    carried = restored.carried
    if carried is not None and carried.problem is not None:
        print(f"warning: cannot read the consent ledger of the store it replaced ({carried.problem}): people who "
              "opted out after the backup may not be opted out now. Check them before starting the bot: "
              f"python -m bot consent export --store sqlite:///{restored.kept[0] if restored.kept else '…'}",
              file=sys.stderr)
    elif carried is not None and not carried.changes:
        print("the store it replaced recorded no consent change after the backup")
    elif carried is not None:
        print(f"carried over {carried.changes} consent change(s) the store it replaced recorded after the backup "
              f"({carried.opted_out} more number(s) opted out): nobody who opted out since is texted")
    if restored.owed_sent:
        print(f"{restored.owed_sent} answer(s) still owed in the backup were sent since by the store it replaced: "
              "not sent again")
    if restored.kept:
        print(f"the store it replaced is kept as {', '.join(str(path) for path in restored.kept)}")
    print("start the bot again (systemctl start textflow)")
    return 0


def _database(args: argparse.Namespace, what: str) -> Path:
    store_url = args.store or load_settings().store_url
    path = sqlite_path(store_url)
    if path is not None:
        return Path(path)
    if store_url.startswith(("redis://", "rediss://", "unix://")):
        raise CommandError(f"the store is Redis ({without_password(store_url)}): {what} only works on a SQLite "
                           f"store; Redis keeps its own backups. See {REDIS_POINTER}.")
    raise CommandError(f"{what}: STORE_URL {without_password(store_url)} is not a SQLite store "
                       "(sqlite:///bot.db); only a SQLite store is backed up by this command")
