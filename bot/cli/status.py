"""``python -m bot status``: which flows each running server process serves, and why a reload was refused.

Read from the store the servers share (STORE_URL), where each process writes its entry at
start-up, after every reload attempt, once a minute and when it stops (``bot/status.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from bot.cli.common import CommandError, Commands
from bot.settings import load_settings
from bot.status import Liveness, liveness, refusal_is_current, release_of, without_password
from bot.store import StoreBusy, open_store, sqlite_path
from bot.store.base import ProcessStatus
from bot.store.schema_versions import SchemaState


def add_commands(commands: Commands) -> None:
    status = commands.add_parser("status", help="the running servers' flows version and refused reloads",
                                 description=(
        "Show, for each server process that wrote to the store (STORE_URL), the version of the flows it "
        "serves (a hash of the flow files), when they were loaded, and its last refused hot reload with "
        "the file:line errors; most recently heard from first, with each entry's age. Processes write "
        "their entry at start-up, on every reload attempt, each minute and when they stop; an entry not "
        "rewritten for 3 minutes is a process that died or lost the store. Exit status 1 when no process "
        "has written one."))
    status.add_argument("--store", help="STORE_URL of the running server (default: from the settings)")
    status.add_argument("--json", action="store_true", help="print the entries as JSON (a list, newest first)")
    status.set_defaults(run=_status)


def _status(args: argparse.Namespace) -> int:
    store_url = args.store or load_settings().store_url
    if store_url.startswith("memory://"):
        raise CommandError("a memory:// store lives inside one process; point --store (or STORE_URL) at the "
                           "running server's SQLite file or Redis")
    path = sqlite_path(store_url)
    if path is not None and not Path(path).is_file():  # opening it would create an empty one
        raise CommandError(f"no SQLite store at {Path(path).absolute()} (STORE_URL {store_url}; sqlite:///NAME "
                           "is relative to the current folder, sqlite:////srv/NAME absolute)")
    shown = without_password(store_url)  # what is printed may be pasted into a ticket
    try:
        entries, schema = asyncio.run(_read(store_url))
    except StoreBusy as error:  # Redis down, the SQLite file unreadable
        raise CommandError(f"cannot read the store {shown}: {error}") from None
    if args.json:
        print(json.dumps([dataclasses.asdict(entry) for entry in entries], indent=2, ensure_ascii=False))
    elif not entries:
        print(f"no server process has recorded its status in {shown} (is the server running, with "
              f"this STORE_URL?); {schema.describe()}", file=sys.stderr)
    else:
        print(describe(entries, time.time()) + schema.describe())
    return 0 if entries else 1


async def _read(store_url: str) -> tuple[list[ProcessStatus], SchemaState]:
    try:
        store = open_store(store_url)
    except ValueError as error:  # a scheme no store has (postgres://…): the message says which exist
        raise CommandError(str(error)) from None
    try:
        return await store.process_statuses(), await store.schema_state()
    finally:
        await store.close()


def describe(entries: list[ProcessStatus], now: float) -> str:
    """The entries for a person, newest first; a note when live processes serve different flows."""
    lines: list[str] = []
    for entry in entries:
        lines += _entry_lines(entry, now)
        lines.append("")
    running = [entry for entry in entries if liveness(entry, now) is Liveness.RUNNING]
    live = {entry.flows.version for entry in running}
    if len(live) > 1:
        lines.append(f"note: live processes serve different flows ({', '.join(sorted(live))}): a reload "
                     "still under way, a refused one, or different files on different machines")
    releases = {release_of(entry) for entry in running}
    if len(releases) > 1:
        lines.append(f"note: live processes run different releases ({', '.join(sorted(releases))}): an upgrade "
                     "under way, or a process not restarted since one")
    return "\n".join(lines).rstrip("\n") + "\n"


def _entry_lines(entry: ProcessStatus, now: float) -> list[str]:
    alive = liveness(entry, now)
    if alive is Liveness.STOPPED and entry.stopped_at is not None:
        state = f"stopped {_when(entry.stopped_at, now)}"
    elif alive is Liveness.RUNNING:
        state = f"running, last heard from {_age(now - entry.written_at)} ago"
    else:
        state = (f"SILENT since {_when(entry.written_at, now)}: the process died, or cannot reach the store "
                 "(it writes every minute)")
    flows = entry.flows
    lines = [f"{entry.process}  {state}; started {_when(entry.started_at, now)}",
             f"  {release_of(entry)}",
             f"  flows version {flows.version}, loaded {_when(flows.loaded_at, now)}: "
             f"{', '.join(flows.flows) or '(none)'}",
             f"  hot reloads applied: {entry.reloads}"]
    rejected = entry.rejected
    if rejected is None:
        lines.append("  no reload refused")
        return lines
    verdict = (f"still serving {flows.version}; fix the files and save again" if refusal_is_current(entry)
               else f"fixed since: {flows.version} was loaded after it")
    lines.append(f"  last refused reload: {_when(rejected.at, now)}, files version {rejected.version or '?'} "
                 f"({verdict}):")
    lines += [f"    {problem}" for problem in rejected.problems]
    return lines


def _when(at: float, now: float) -> str:
    """A local time with its zone, and how long ago: '2025-06-01 09:30:05 CEST (2h 5m ago)'."""
    stamp = datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{stamp} ({_age(now - at)} ago)"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes}m"
    if seconds < 86400:
        return f"{hours}h {minutes % 60}m"
    return f"{days}d {hours % 24}h"
