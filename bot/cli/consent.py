"""``python -m bot consent``: the consent ledger for the people who run the bot.

A number's history, the whole ledger as CSV, and operators' own entries (a revocation received by
email or phone). This output is evidence for its operator: full numbers and what people texted are
shown, never logged. What people texted is tainted: control characters are escaped on a terminal,
and a CSV cell that a spreadsheet would run as a formula is defused.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import metrics
from bot.cli.common import CommandError, Commands, opened_output
from bot.phones import InvalidNumber, normalise_number
from bot.settings import load_settings
from bot.spreadsheet import csv_cell
from bot.store import open_store
from bot.types import ConsentChange, ConsentMethod, ConsentStatus

CSV_HEADER = ("at", "number", "status", "how", "detail", "message_sid")
HISTORY_HEADER = ("at (UTC)", "status", "how", "message_sid", "detail")
OPERATOR_COMMANDS = {"opt-out": ConsentStatus.OPTED_OUT, "opt-in": ConsentStatus.OPTED_IN}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def add_commands(commands: Commands) -> None:
    consent = commands.add_parser(
        "consent", help="a number's consent history, the consent ledger as CSV, or record a change",
        usage="%(prog)s NUMBER\n       %(prog)s export [--since DATE] [-o FILE]\n"
              "       %(prog)s opt-out NUMBER [--note TEXT]\n       %(prog)s opt-in NUMBER [--note TEXT]",
        description=(
            "The consent ledger records every change of a number's consent (opted_out / opted_in): when, "
            "how (a keyword, a phrase, Twilio's OptOutType, a 21610 delivery error, an operator) and the "
            "MessageSid. It is kept for CONSENT_RETENTION_DAYS, whatever RETENTION says, and `purge` keeps it. "
            "NUMBER: print its history. export: the ledger as CSV (header row; the full E.164 number in its "
            "own column), to stdout or FILE. opt-out / opt-in NUMBER: record a change received another way "
            "(email, phone), as an operator. Numbers may be written as people write them: (415) 555-0123 is "
            "read in DEFAULT_REGION."))
    consent.add_argument("what", metavar="NUMBER|export|opt-out|opt-in", help=argparse.SUPPRESS)
    consent.add_argument("number", nargs="?", help=argparse.SUPPRESS)
    consent.add_argument("--since", metavar="DATE", help="export: changes from this day (YYYY-MM-DD, UTC) or "
                         "ISO 8601 time (2024-05-01T09:30:00Z) on")
    consent.add_argument("-o", "--output", type=Path, metavar="FILE", help="export: write the CSV here")
    consent.add_argument("--note", default="", metavar="TEXT",
                         help="opt-out/opt-in: how the request came (kept in the ledger)")
    consent.add_argument("--store", metavar="URL", help="STORE_URL (default: from the settings)")
    consent.set_defaults(run=_consent)


def _consent(args: argparse.Namespace) -> int:
    settings = load_settings()
    store_url = args.store or settings.store_url
    if args.what == "export":
        _refuse_options(args, "export", number=True, note=True)
        return asyncio.run(_export(store_url, parse_since(args.since), args.output))
    if args.what in OPERATOR_COMMANDS:
        _refuse_options(args, args.what, since=True, output=True)
        if not args.number:
            raise CommandError(f"consent {args.what} needs the NUMBER")
        number = _number(args.number, settings.default_region)
        return asyncio.run(_record(store_url, number, args.what, args.note))
    _refuse_options(args, "NUMBER", number=True, since=True, output=True, note=True)
    return asyncio.run(_history(store_url, _number(args.what, settings.default_region)))


def _refuse_options(args: argparse.Namespace, command: str, *, number: bool = False, since: bool = False,
                    output: bool = False, note: bool = False) -> None:
    given = [name for name, refused, value in (
        (f"the argument {args.number!r}", number, args.number), ("--since", since, args.since),
        ("-o", output, args.output), ("--note", note, args.note)) if refused and value]
    if given:
        raise CommandError(f"`consent {command}` does not take {', '.join(given)}; see python -m bot consent --help")


def _number(text: str, region: str) -> str:
    try:
        return normalise_number(text, region)
    except InvalidNumber as error:
        raise CommandError(f"{text!r} is not a phone number: {error.reason}") from None


def parse_since(text: str | None) -> float | None:
    """``--since``: a day (midnight UTC) or an ISO 8601 time (UTC unless it has an offset)."""
    if text is None:
        return None
    try:
        if _DATE.fullmatch(text.strip()):
            moment = datetime.strptime(text.strip(), "%Y-%m-%d")
        else:
            moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--since {text!r} is not a date: write YYYY-MM-DD or an ISO 8601 time such as "
                           "2024-05-01T09:30:00Z (UTC unless it has an offset)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def iso(at: float) -> str:
    """ISO 8601 in UTC, to the millisecond: 2024-05-01T09:30:00.123Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def printable(text: str) -> str:
    """Control characters (newlines, terminal escapes, direction overrides) shown escaped."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


# -- NUMBER: the history ----------------------------------------------------------------------------

async def _history(store_url: str, number: str) -> int:
    store = open_store(store_url)
    try:
        changes = await store.consent_history(number)
        opted_out = await store.is_opted_out(number)
    finally:
        await store.close()
    print(f"{number}: {'opted out' if opted_out else 'not opted out'}")
    if not changes:
        print("no consent changes recorded" + (" (opted out before the ledger began)" if opted_out else ""))
        return 0
    table = [HISTORY_HEADER, *((iso(change.at), str(change.status), str(change.how), change.message_sid or "-",
                                printable(change.detail)) for change in changes)]
    widths = [max(len(row[column]) for row in table) for column in range(4)]
    for row in table:
        print("  ".join(row[column].ljust(widths[column]) for column in range(4)) + "  " + row[4])
    return 0


# -- export: CSV ------------------------------------------------------------------------------------


async def _export(store_url: str, since: float | None, output: Path | None) -> int:
    store = open_store(store_url)
    count = 0
    try:
        with opened_output(output) as out:
            writer = csv.writer(out)
            writer.writerow(CSV_HEADER)
            async for change in store.consent_changes(since):
                writer.writerow([iso(change.at), csv_cell(change.number), str(change.status), str(change.how),
                                 csv_cell(change.detail), csv_cell(change.message_sid)])
                count += 1
    finally:
        await store.close()
    if output is not None:
        print(f"wrote {count} consent change(s) to {output}", file=sys.stderr)
    return 0


# -- opt-out / opt-in: an operator's entry --------------------------------------------------------------

def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no user name in this environment (a container)
        return "unknown user"


async def _record(store_url: str, number: str, command: str, note: str) -> int:
    detail = f"python -m bot consent {command} by {_operator()}" + (f": {note}" if note else "")
    change = ConsentChange(number, OPERATOR_COMMANDS[command], ConsentMethod.OPERATOR, detail)
    store = open_store(store_url)
    try:
        changed = await store.set_consent(change)
    finally:
        await store.close()
    if changed:
        # counted by this process: served by /metrics only when it shares the server's PROMETHEUS_MULTIPROC_DIR
        metrics.consent_changed(change.opted_out, ConsentMethod.OPERATOR)
        print(f"recorded: {number} {change.status} at {iso(change.at)} ({printable(detail)})")
    else:
        print(f"{number} is already {'opted out' if change.opted_out else 'opted in'}: nothing recorded")
    return 0
