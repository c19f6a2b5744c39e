"""Broadcasts: start a flow for every number in a CSV file, politely and exactly once.

Resumable by design: each recipient's message has a stable id (``broadcast|number``) recorded in
the store before and after the API call, so running the same broadcast again skips what Twilio
accepted, reports what is *in doubt* (a crash between the API's answer and our record) instead of
re-sending it, and sends the rest.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.engine import Engine
from bot.inbox import Inbox
from bot.limits import NotifyLimiter, limited
from bot.outbound import Outbox, TwilioUnreachable, retrying, send_for_turn
from bot.phones import DEFAULT_REGION, InvalidNumber, is_assigned, normalise_number
from bot.store import Store, StoreBusy
from bot.types import Inbound, OutboundMessage, OutboundState, Skip

Sleep = Callable[[float], Awaitable[None]]


class BroadcastError(ValueError):
    """A broadcast that cannot start (bad CSV, unknown flow, bad window); the text says how to fix it."""


@dataclass(frozen=True)
class Recipient:
    line: int
    phone: str
    variables: dict[str, str]


def read_recipients(path: Path, region: str = DEFAULT_REGION) -> list[Recipient]:
    """The CSV's rows: a header row, the number in column ``phone``, other columns as flow variables.

    Numbers are read as people write them (``(415) 555-0123``, in ``region`` without a country
    code) and held in E.164; one that cannot be a number is kept as written, for the run to skip."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is not None:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]  # "name, phone, date"
            if reader.fieldnames is None or "phone" not in reader.fieldnames:
                raise BroadcastError(f"{path}: the first row must be a header with a 'phone' column "
                                     f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
            return [Recipient(reader.line_num, _e164_if_possible(row.get("phone") or "", region),
                              {key.strip(): (value or "").strip() for key, value in row.items()
                               if key and key.strip() != "phone"})
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BroadcastError(f"{path}: cannot read it: {error}") from None


def _e164_if_possible(text: str, region: str) -> str:
    try:
        return normalise_number(text, region)
    except InvalidNumber:
        return text.strip()


@dataclass(frozen=True)
class SendWindow:
    """Hours in which a broadcast may send (quiet hours outside), in a time zone."""

    start: dt.time
    end: dt.time
    zone: ZoneInfo

    @classmethod
    def parse(cls, window: str, timezone: str) -> SendWindow:
        try:
            start_text, end_text = window.split("-")
            start, end = dt.time.fromisoformat(start_text.strip()), dt.time.fromisoformat(end_text.strip())
        except ValueError:
            raise BroadcastError(f"BROADCAST_WINDOW must look like 09:00-20:00 (got {window!r})") from None
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BroadcastError(f"BROADCAST_TIMEZONE {timezone!r} is not a time zone "
                                 "(e.g. America/New_York)") from None
        return cls(start, end, zone)

    def seconds_until_open(self, now: float) -> float:
        local = dt.datetime.fromtimestamp(now, self.zone)
        inside = (self.start <= local.time() < self.end) if self.start <= self.end else \
            (local.time() >= self.start or local.time() < self.end)
        if inside:
            return 0.0
        day = local.date() if local.time() < self.start else local.date() + dt.timedelta(days=1)
        opening = dt.datetime.combine(day, self.start, tzinfo=self.zone)
        return opening.timestamp() - now  # real seconds, right across a daylight-saving change


@dataclass
class Report:
    requested: int = 0
    stopped: str = ""  # why the run stopped early (the Twilio API unreachable); run again to resume
    sent: int = 0
    sent_before: int = 0  # accepted by Twilio in an earlier run: not sent again
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    in_doubt: list[str] = field(default_factory=list)
    not_in_use: int = 0  # possible numbers no one has (555 numbers): sent, but worth a look

    def summary(self) -> str:
        lines = [f"requested {self.requested}: sent {self.sent}"
                 + (f" (+{self.sent_before} sent by an earlier run)" if self.sent_before else "")
                 + f", skipped {sum(self.skipped.values())}, failed {sum(self.failed.values())}, "
                   f"in doubt {len(self.in_doubt)}"]
        lines += [f"  skipped, {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        lines += [f"  failed, {reason}: {count}" for reason, count in sorted(self.failed.items())]
        if self.not_in_use:
            lines.append(f"  warning: {self.not_in_use} number(s) could be numbers but are not in use "
                         "anywhere (such as 555 numbers); sent anyway")
        if self.stopped:
            lines.append(f"  STOPPED EARLY: {self.stopped}. Run the same command again to resume.")
        if self.in_doubt:
            lines.append("  in doubt (the run stopped after Twilio was asked and before its answer was "
                         "recorded; not re-sent, check the Twilio console): " + ", ".join(self.in_doubt))
        return "\n".join(lines)


@dataclass
class Broadcast:
    name: str
    flow: str
    store: Store
    engine: Engine
    outbox: Outbox | None  # None for a dry run
    rate: float = 1.0  # messages per second
    window: SendWindow | None = None
    clock: Callable[[], float] = time.time
    sleep: Sleep = asyncio.sleep
    show: Callable[[str], None] = lambda line: None  # progress lines
    notify_limiter: NotifyLimiter = field(default_factory=NotifyLimiter)  # staff texts from the starts' notify
    region: str = DEFAULT_REGION  # DEFAULT_REGION: how numbers without a country code are read

    async def run(self, recipients: list[Recipient]) -> Report:
        if self.flow not in self.engine.flows.flows:
            raise BroadcastError(f"no flow {self.flow!r}; flows: {', '.join(sorted(self.engine.flows.flows))}")
        report = Report(requested=len(recipients))
        seen: set[str] = set()
        next_send = 0.0
        for done, recipient in enumerate(recipients, start=1):
            try:
                recipient = replace(recipient, phone=normalise_number(recipient.phone, self.region))
                invalid = ""
            except InvalidNumber as error:
                invalid = f"invalid number ({error.reason})"
            message_id = f"{self.name}|{recipient.phone}"
            if invalid:
                report.skipped[invalid] += 1
                await self._record(OutboundMessage(message_id, recipient.phone, "", self.name,
                                                   OutboundState.SKIPPED, reason=invalid))
            elif recipient.phone in seen:
                report.skipped["duplicate row"] += 1
            else:
                seen.add(recipient.phone)
                if not is_assigned(recipient.phone):
                    report.not_in_use += 1
                next_send = await self._pace(next_send)
                try:
                    await self._one(recipient, message_id, report)
                except TwilioUnreachable as error:
                    earlier = await self.store.outbound(message_id)
                    if earlier is not None and earlier.state == OutboundState.SENDING:
                        report.in_doubt.append(recipient.phone)
                    report.stopped = str(error)
                    return report
            self.show(f"{done}/{len(recipients)}  sent {report.sent + report.sent_before}  "
                      f"skipped {sum(report.skipped.values())}  failed {sum(report.failed.values())}  "
                      f"in doubt {len(report.in_doubt)}")
        return report

    async def _pace(self, next_send: float) -> float:
        while self.window is not None and (wait := self.window.seconds_until_open(self.clock())) > 0:
            self.show(f"outside the sending window ({self.window.start:%H:%M}-{self.window.end:%H:%M} "
                      f"{self.window.zone.key}); waiting {dt.timedelta(seconds=round(wait))}")
            await self.sleep(wait)
        now = self.clock()
        if now < next_send:
            await self.sleep(next_send - now)
            now = next_send
        return now + 1.0 / self.rate

    async def _one(self, recipient: Recipient, message_id: str, report: Report) -> None:
        earlier = await self.store.outbound(message_id)
        if earlier is not None and earlier.state != OutboundState.PREPARED:
            if earlier.state == OutboundState.ACCEPTED:
                report.sent_before += 1
            elif earlier.state == OutboundState.SENDING:
                report.in_doubt.append(recipient.phone)
            elif earlier.state == OutboundState.SKIPPED:
                report.skipped[earlier.reason] += 1
            else:
                report.failed[earlier.reason] += 1
            return
        message = earlier or await self._start_flow(recipient, message_id, report)
        if message is None:
            return
        if self.outbox is None:  # dry run
            report.sent += 1
            self.show(f"would send to {recipient.phone}: {message.body}")
            return
        result = await retrying(lambda: self.outbox.send(message), self.sleep)  # type: ignore[union-attr]
        if result.state == OutboundState.ACCEPTED:
            report.sent += 1
        elif result.state == OutboundState.SKIPPED:
            report.skipped[result.reason] += 1
        else:
            report.failed[result.reason] += 1

    async def _start_flow(self, recipient: Recipient, message_id: str, report: Report) -> OutboundMessage | None:
        """Put the recipient into the flow (saved once: the turn's id is the message id) and
        record the opening message as prepared. A dry run goes the same way and saves nothing."""
        phone = recipient.phone
        # A start may pass through states that notify staff: those texts go out once it is saved.
        notes: list[tuple[Inbound, list[tuple[str, str]]]] = []
        notify = limited(lambda record, notifications: notes.append((record, notifications)), self.notify_limiter)
        inbox = Inbox(self.store, self.engine, notify)
        try:
            started = await inbox.start(phone, self.flow, recipient.variables, f"broadcast:{message_id}",
                                        dry_run=self.outbox is None)
        except StoreBusy:
            report.failed["conversation changed while starting; run again"] += 1
            return None
        for record, notifications in notes:
            assert self.outbox is not None  # a dry run stops before anything is saved or notified
            await send_for_turn(self.outbox, record, "notify", notifications)
        if started.skipped is Skip.OPTED_OUT:
            report.skipped["opted out"] += 1
            await self._record(OutboundMessage(message_id, phone, "", self.name, OutboundState.SKIPPED,
                                               reason="opted out"))
            return None
        if started.skipped is Skip.SILENT:
            raise BroadcastError(f"flow {self.flow!r} says nothing when it starts; a broadcast needs an "
                                 "opening message in its start state")
        body = "\n".join(started.replies)  # a duplicate: started by a run that stopped right after
        message = OutboundMessage(message_id, phone, body, self.name)
        await self._record(message)
        return message

    async def _record(self, message: OutboundMessage) -> None:
        if self.outbox is not None:
            await self.store.save_outbound(message)


def default_name(flow: str, csv_path: Path) -> str:
    """A broadcast is identified by its flow and CSV file, so running it again resumes it."""
    return f"{flow}:{csv_path.resolve()}"


def progress_printer(stream: object = sys.stderr) -> Callable[[str], None]:
    interactive = getattr(stream, "isatty", lambda: False)()

    def show(line: str) -> None:
        if interactive and not line.startswith(("would send", "outside")):
            print(f"\r\033[K{line}", end="", file=stream, flush=True)  # type: ignore[call-overload]
        else:
            print(line, file=stream)  # type: ignore[call-overload]
    return show
