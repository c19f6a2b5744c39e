"""Commands that text people through Twilio's API: send, broadcast, and a broadcast's report."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from bot.actions import HttpFetcher
from bot.broadcast import Broadcast, BroadcastError, default_name, progress_printer
from bot.broadcast_csv import CsvRecipients, open_recipients
from bot.broadcast_pacing import MAX_IN_FLIGHT, UNLIMITED, parse_rate
from bot.broadcast_priority import DEFAULT_NICE, lower_priority, parse_nice
from bot.broadcast_progress import recording
from bot.broadcast_records import BatchedRecords
from bot.broadcast_wal import keeping_wal_small
from bot.cli.common import CommandError, Commands, add_flows_option, load_for
from bot.engine import Engine
from bot.flows.loader import FlowSet
from bot.heap import LongLivedObjects
from bot.limits import NotifyLimiter
from bot.outbound import Outbox, TwilioUnreachable, retrying
from bot.phones import InvalidNumber, normalise_and_warn, normalise_sender
from bot.privacy import mask
from bot.quiet_hours import HoursError, QuietHours
from bot.settings import Settings, load_settings
from bot.store import open_store, sqlite_path
from bot.store.serving_lock import RestoreUnderWay, serving
from bot.twilio_media import MAX_MEDIA, is_media_url
from bot.types import OutboundMessage, OutboundState

T = TypeVar("T")


def add_commands(commands: Commands) -> None:
    send = commands.add_parser("send", help="send one text message now", description=(
        "Send a text through Twilio's API (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM or "
        "TWILIO_MESSAGING_SERVICE_SID needed). Opted-out numbers are never texted."))
    send.add_argument("--to", required=True, help="the number to text: +14155550123, or (415) 555-0123 in "
                      "DEFAULT_REGION")
    send.add_argument("text", help="the message (may be \"\" with --media)")
    send.add_argument("--from", dest="from_number", default="", help="send from this number (default: TWILIO_FROM)")
    send.add_argument("--media", action="append", default=[], metavar="URL",
                      help=f"attach a picture (MMS) that Twilio fetches from this https:// address; repeat for up "
                           f"to {MAX_MEDIA} (WhatsApp shows only the first)")
    send.set_defaults(run=_send)

    broadcast = commands.add_parser("broadcast", help="start a flow for every number in a CSV", description=(
        "Start FLOW for each recipient of a CSV file (header row; number in column 'phone'; other "
        "columns become flow variables such as {{ name }}). Skips opted-out and invalid numbers, "
        "paces itself, retries 'too many requests', and resumes where it stopped when run again: a "
        "message Twilio accepted is never sent twice. Each recipient is texted only 08:00-21:00 in their "
        "own time zone (a 'timezone' column, else the number's), unless BROADCAST_WINDOW says otherwise; "
        "the others wait until their hours open. A CSV of any length is read as a stream (a million rows "
        "take a few tens of MB); killed at any point, the same command resumes it."))
    broadcast.add_argument("--flow", required=True, help="the flow to start")
    broadcast.add_argument("--to", required=True, type=Path, dest="csv", help="CSV file of recipients")
    broadcast.add_argument("--name", help="the broadcast's name (default: flow and CSV file path)")
    broadcast.add_argument("--rate", help=f"messages per second, such as 1 (a long code) or 100 (your Twilio "
                           f"account's MPS), or {UNLIMITED}: as fast as the API answers (default BROADCAST_RATE, "
                           f"else 1)")
    broadcast.add_argument("--in-flight", type=int, metavar="N", help="sends waiting for Twilio's answer at once, "
                           f"at most (default: enough for --rate when a call takes half a second; {MAX_IN_FLIGHT} "
                           "at most; 32 unlimited)")
    broadcast.add_argument("--nice", metavar="N", help="run at this CPU priority, 0 (as started) to 19 (the "
                           "lowest), so the server's replies to texts on the same machine go first (default "
                           f"BROADCAST_NICE, else {DEFAULT_NICE})")
    broadcast.add_argument("--dry-run", action="store_true", help="show what would be sent, when, and each "
                           "recipient's time zone; send nothing")
    add_flows_option(broadcast)
    broadcast.set_defaults(run=_broadcast)

    report = commands.add_parser("report", help="a broadcast's delivery counts", description=(
        "Show how a broadcast's messages fared: sent, skipped, failed, in doubt, and the delivery "
        "statuses Twilio reported (delivered, undelivered with error codes, …)."))
    report.add_argument("broadcast", help="the broadcast's name (as printed by broadcast)")
    report.set_defaults(run=_report)


# -- send, broadcast, report -------------------------------------------------------------------

def _send(args: argparse.Namespace) -> int:
    settings = load_settings()
    settings.outbound.require("send")
    if len(args.media) > MAX_MEDIA:
        raise CommandError(f"--media given {len(args.media)} times: Twilio sends at most {MAX_MEDIA} pictures "
                           "in one message")
    for url in args.media:
        if not is_media_url(url):
            raise CommandError(f"--media {url!r} is not a web address Twilio can fetch a picture from "
                               "(https://…)")
    if not args.text and not args.media:
        raise CommandError("nothing to send: give a text, or a picture with --media")
    return asyncio.run(_send_one(settings, args))


async def _send_one(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings.store_url)
    outbox = Outbox(store, settings.outbound, status_callback=settings.status_callback_url)
    try:
        message = OutboundMessage(f"send|{uuid.uuid4().hex}", _recipient(args.to, settings.default_region), args.text,
                                  from_number=_sender(args.from_number, settings.default_region),
                                  media=tuple(args.media))
        result = await retrying(lambda: outbox.send(message), asyncio.sleep)
    except TwilioUnreachable as error:
        raise CommandError(str(error)) from None
    finally:
        await outbox.close()
        await store.close()
    if result.state == OutboundState.ACCEPTED:
        print(f"sent to {mask(result.to)}: {result.sid}")
        return 0
    print(f"not sent to {mask(result.to)}: {result.state}, {result.reason}", file=sys.stderr)
    return 1


def _recipient(to: str, region: str) -> str:
    """``--to`` in E.164, with a warning when no one has that number; an impossible one as it is,
    for ``Outbox.send`` to refuse and record with the reason."""
    try:
        return normalise_and_warn(to, region, what="--to")
    except InvalidNumber:
        return to


def _sender(from_number: str, region: str) -> str:
    try:
        return normalise_sender(from_number, region)
    except InvalidNumber as error:
        raise CommandError(f"--from {from_number!r} is not a phone number: {error.reason}") from None


def _overridden(setting: T, raw: str | None, parse: Callable[[str], T], flag: str) -> T:
    """A setting, or the command line's ``flag`` instead, read by the setting's own parser."""
    if raw is None:
        return setting
    try:
        return parse(raw)
    except ValueError as error:
        raise CommandError(f"{flag} {error}") from None


def _broadcast(args: argparse.Namespace) -> int:
    settings = load_settings()
    nice = _overridden(settings.broadcast_nice, args.nice, parse_nice, "--nice")
    # First, before anything starts a thread: a thread's nice is inherited (bot/broadcast_priority.py)
    priority = lower_priority(nice)
    if not args.dry_run:
        settings.outbound.require("broadcast")
    rate = _overridden(settings.broadcast_rate, args.rate, parse_rate, "--rate")
    if args.in_flight is not None and not 1 <= args.in_flight <= MAX_IN_FLIGHT:
        raise CommandError(f"--in-flight must be 1 to {MAX_IN_FLIGHT} (got {args.in_flight})")
    try:
        hours = QuietHours.from_settings(settings.broadcast_window, settings.broadcast_timezone)
        recipients = open_recipients(args.csv)
    except (BroadcastError, HoursError) as error:
        raise CommandError(str(error)) from None
    try:
        flows = load_for(args)
        name = args.name or default_name(args.flow, args.csv)
        # Held while it runs, as the server does: a restore refuses to replace the store under it
        with serving(settings.store_url), asyncio.Runner(loop_factory=_event_loop()) as runner:
            return runner.run(_run_broadcast(settings, flows, name, args, hours, recipients, rate,
                                             priority))
    except RestoreUnderWay as error:
        raise CommandError(str(error)) from None
    finally:
        recipients.close()


def _event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (uvicorn[standard] brings it, and the server runs on it): a broadcast's
    sends are mostly the event loop's work, and it does that work in less CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    return uvloop.new_event_loop


async def _run_broadcast(settings: Settings, flows: FlowSet, name: str, args: argparse.Namespace,
                         hours: QuietHours, recipients: CsvRecipients, rate: float | None, priority: str) -> int:
    store = open_store(settings.store_url)
    # The broadcast's records, before and after each API call, written in batches (bot/broadcast_records.py)
    records = BatchedRecords(store)
    outbox = None if args.dry_run else Outbox(records, settings.outbound,
                                              status_callback=settings.status_callback_url)
    async with httpx.AsyncClient() as client:
        engine = Engine(flows, HttpFetcher(client, settings.local_base_url))
        run = Broadcast(name, args.flow, store, engine, outbox, rate=rate, hours=hours,
                        show=(show := progress_printer()), phase=show,
                        notify_limiter=NotifyLimiter(settings.notify_per_sender_per_hour, settings.notify_per_hour),
                        region=settings.default_region, in_flight=args.in_flight, records=records)
        print(f"broadcast {name!r}{' (dry run: nothing is sent)' if args.dry_run else ''}", file=sys.stderr)
        print(f"sending hours: {hours.describe(settings.default_region)}", file=sys.stderr)
        print(f"{len(recipients)} row(s), {'unpaced' if rate is None else f'{rate:g} message(s) a second'}",
              file=sys.stderr)
        print(priority, file=sys.stderr)
        try:
            # Where it stands, for the server's Operations page and /metrics (a dry run is not a broadcast)
            # (and its SQLite log kept small however long it runs: bot/broadcast_wal.py)
            async with recording(store) as recorder, \
                    keeping_wal_small(None if args.dry_run else sqlite_path(settings.store_url)):
                run.progress = None if args.dry_run else recorder
                # What lives as long as the run (flows, engine, libraries) out of the collector's way
                long_lived = LongLivedObjects()
                long_lived.freeze()
                try:
                    report = await run.run(recipients)
                finally:
                    long_lived.release()
        except BroadcastError as error:
            raise CommandError(str(error)) from None
        finally:
            if outbox is not None:
                await outbox.close()
            await store.close()
    print(file=sys.stderr)
    print(report.summary())
    if report.stopped:
        return 2
    return 0 if not report.failed and not report.in_doubt else 1


def _report(args: argparse.Namespace) -> int:
    settings = load_settings()
    return asyncio.run(_show_report(settings.store_url, args.broadcast))


async def _show_report(store_url: str, name: str) -> int:
    store = open_store(store_url)
    try:
        messages = await store.broadcast_messages(name)
    finally:
        await store.close()
    if not messages:
        raise CommandError(f"no broadcast named {name!r} in {store_url}")
    states = Counter(message.state for message in messages)
    statuses = Counter(message.status or "(no report yet)" for message in messages
                       if message.state == OutboundState.ACCEPTED)
    errors = Counter(message.error_code for message in messages if message.error_code)
    print(f"broadcast {name}: {len(messages)} recipients")
    labels = {OutboundState.ACCEPTED: "sent (accepted by Twilio)", OutboundState.SKIPPED: "skipped",
              OutboundState.FAILED: "failed", OutboundState.SENDING: "in doubt",
              OutboundState.PREPARED: "not sent yet"}
    for state, label in labels.items():
        if states[state]:
            print(f"  {label}: {states[state]}")
    if statuses:
        print("delivery reported by Twilio:")
        for status, count in statuses.most_common():
            print(f"  {status}: {count}")
    if errors:
        print("error codes: " + ", ".join(f"{code} x{count}" for code, count in errors.most_common()))
    return 0


