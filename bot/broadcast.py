"""Broadcasts: start a flow for every number in a CSV file, politely and exactly once.

Resumable by design: each recipient's message has a stable id (``broadcast|number``) recorded in
the store before and after the API call, so running the same broadcast again skips what Twilio
accepted, reports what is *in doubt* (a crash between the API's answer and our record) instead of
re-sending it, and sends the rest.

Each recipient is texted only in their sending hours (``bot/quiet_hours.py``): those whose hours
are open go first, in the CSV's order; the others wait, each until their own hours open, and are
counted in the summary.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import heapq
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.engine import Engine
from bot.inbox import Inbox
from bot.limits import NotifyLimiter, limited
from bot.outbound import Outbox, TwilioUnreachable, retrying, send_for_turn
from bot.phones import DEFAULT_REGION, InvalidNumber, is_assigned, normalise_number
from bot.quiet_hours import HoursError, QuietHours, SendWindow, zone_named
from bot.store import Store, StoreBusy
from bot.store.base import BroadcastProgress  # told by a run: kept in the store, read by /metrics
from bot.twilio_inbound import channel_of
from bot.twilio_media import sendable
from bot.types import Inbound, OutboundMessage, OutboundState, Skip, media_of

Sleep = Callable[[float], Awaitable[None]]
NO_HOURS = "no hours allowed in all its time zones"  # cannot happen with libphonenumber's data; never sent


class BroadcastError(ValueError):
    """A broadcast that cannot start (bad CSV, unknown flow); the text says how to fix it."""


@dataclass(frozen=True)
class Recipient:
    line: int
    phone: str
    variables: dict[str, str]
    timezone: str = ""  # the CSV's optional ``timezone`` column (also a flow variable), an IANA name


_Due = tuple[float, int, Recipient, SendWindow | None]  # when its hours open, its place in the CSV, who, hours


def read_recipients(path: Path, region: str = DEFAULT_REGION) -> list[Recipient]:
    """The CSV's rows: a header row, the number in column ``phone``, other columns as flow variables
    (``timezone``, when there, is also the recipient's time zone).

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
                               if key and key.strip() != "phone"},
                              (row.get("timezone") or "").strip())
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BroadcastError(f"{path}: cannot read it: {error}") from None


def _e164_if_possible(text: str, region: str) -> str:
    try:
        return normalise_number(text, region)
    except InvalidNumber:
        return text.strip()


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
    waits: list[tuple[float, str]] = field(default_factory=list)  # (when, as they read it): outside their hours
    refused: list[str] = field(default_factory=list)  # rows refused, each with its line and why

    def summary(self) -> str:
        lines = [f"requested {self.requested}: sent {self.sent}"
                 + (f" (+{self.sent_before} sent by an earlier run)" if self.sent_before else "")
                 + f", skipped {sum(self.skipped.values())}, failed {sum(self.failed.values())}, "
                   f"in doubt {len(self.in_doubt)}"]
        lines += [f"  skipped, {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        lines += [f"  refused {reason}" for reason in self.refused]
        lines += [f"  failed, {reason}: {count}" for reason, count in sorted(self.failed.items())]
        if self.waits:
            (first, first_text), (last, last_text) = min(self.waits), max(self.waits)
            until = first_text if first == last else f"{first_text} (the first) to {last_text} (the last)"
            lines.append(f"  waited for their sending hours (quiet hours): {len(self.waits)}, until {until}")
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
    hours: QuietHours = field(default_factory=QuietHours)  # when each recipient may be texted
    clock: Callable[[], float] = time.time
    sleep: Sleep = asyncio.sleep
    show: Callable[[str], None] = lambda line: None  # progress lines
    progress: Callable[[BroadcastProgress], None] | None = None  # the counts, after each recipient and at the end
    notify_limiter: NotifyLimiter = field(default_factory=NotifyLimiter)  # staff texts from the starts' notify
    region: str = DEFAULT_REGION  # DEFAULT_REGION: how numbers without a country code are read

    async def run(self, recipients: list[Recipient]) -> Report:
        if self.flow not in self.engine.flows.flows:
            raise BroadcastError(f"no flow {self.flow!r}; flows: {', '.join(sorted(self.engine.flows.flows))}")
        report = Report(requested=len(recipients))
        started = self.clock()
        queue, done = await self._admit(recipients, report, started)
        live = self.outbox is not None  # a dry run shows who would wait, and waits for nobody
        next_send = 0.0
        while queue:
            opens, position, recipient, window = heapq.heappop(queue)
            if live and window is not None and opens > (now := self.clock()):
                # the earliest opening in the queue: everyone left waits at least this long
                self.show(f"outside sending hours: waiting {dt.timedelta(seconds=round(opens - now))} until "
                          f"{window.when(opens)} [{window.describe()}], {len(queue) + 1} recipient(s) waiting")
                await self.sleep(opens - now)
                heapq.heappush(queue, (opens, position, recipient, window))  # checked again: the clock decides
                continue
            paced = await self._pace(next_send)
            if live and window is not None and not window.is_open(now := self.clock()):
                # its hours closed while those before it were sent: it waits for them to open again
                if (reopens := window.next_opening(now)) is not None:
                    heapq.heappush(queue, (reopens, position, recipient, window))
                    continue
                report.skipped[NO_HOURS] += 1
                done += 1
                self._progress(done, report)
                continue
            next_send = paced
            note = ""
            if window is not None:
                note = f" at {window.when(opens)}" if opens > started else " now"
                note += f" [{window.describe()}]"
                if opens > started:
                    report.waits.append((opens, window.when(opens)))
            message_id = f"{self.name}|{recipient.phone}"
            try:
                await self._one(recipient, message_id, report, note)
            except TwilioUnreachable as error:
                earlier = await self.store.outbound(message_id)
                if earlier is not None and earlier.state == OutboundState.SENDING:
                    report.in_doubt.append(recipient.phone)
                    done += 1  # settled, as in doubt: not waiting any more
                report.stopped = str(error)
                self._tell(done, report, finished=True)
                return report
            done += 1
            self._progress(done, report)
        self._tell(done, report, finished=True)
        return report

    async def _admit(self, recipients: list[Recipient], report: Report, now: float) -> tuple[list[_Due], int]:
        """Settle the rows that need no sending (invalid, refused, duplicate, handled by an earlier
        run) and queue the others by when their hours open, then by their place in the CSV."""
        seen: set[str] = set()
        queue: list[_Due] = []
        openings: dict[SendWindow, float | None] = {}  # many recipients share a window: work it out once
        done = 0
        for position, recipient in enumerate(recipients):
            try:
                recipient = replace(recipient, phone=normalise_number(recipient.phone, self.region))
                invalid = ""
            except InvalidNumber as error:
                invalid = f"invalid number ({error.reason})"
            message_id = f"{self.name}|{recipient.phone}"
            zone, refused = None, ""
            if recipient.timezone and not invalid:
                try:
                    zone = zone_named(recipient.timezone)
                except HoursError as error:
                    refused = f"row {recipient.line}: timezone {error}"
                    self.show(f"{refused}; skipped")
            if invalid:
                report.skipped[invalid] += 1
                await self._record(OutboundMessage(message_id, recipient.phone, "", self.name,
                                                   OutboundState.SKIPPED, reason=invalid))
            elif refused:  # not recorded: once the cell is fixed, running again sends it
                report.skipped["unknown time zone"] += 1
                report.refused.append(refused)
            elif recipient.phone in seen:
                report.skipped["duplicate row"] += 1
            else:
                seen.add(recipient.phone)
                if not is_assigned(recipient.phone):
                    report.not_in_use += 1
                earlier = await self.store.outbound(message_id)
                if earlier is None or earlier.state == OutboundState.PREPARED:
                    window = self.hours.window_for(recipient.phone, zone, self.region, now)
                    if window is not None and window not in openings:
                        openings[window] = window.next_opening(now)
                    opens = now if window is None else openings[window]
                    if opens is not None:
                        queue.append((opens, position, recipient, window))
                        continue
                    report.skipped[NO_HOURS] += 1
                else:  # handled by an earlier run: counted, not waited for
                    _count_earlier(earlier, report)
            done += 1
            self._progress(done, report)
        heapq.heapify(queue)
        return queue, done

    def _progress(self, done: int, report: Report) -> None:
        self.show(f"{done}/{report.requested}  sent {report.sent + report.sent_before}  "
                  f"skipped {sum(report.skipped.values())}  failed {sum(report.failed.values())}  "
                  f"in doubt {len(report.in_doubt)}")
        self._tell(done, report)

    def _tell(self, done: int, report: Report, *, finished: bool = False) -> None:
        if self.progress is not None:
            self.progress(BroadcastProgress(self.name, self.flow, report.requested, report.sent + report.sent_before,
                                            sum(report.skipped.values()), sum(report.failed.values()),
                                            len(report.in_doubt), report.requested - done, finished))

    async def _pace(self, next_send: float) -> float:
        now = self.clock()
        if now < next_send:
            await self.sleep(next_send - now)
            now = next_send
        return now + 1.0 / self.rate

    async def _one(self, recipient: Recipient, message_id: str, report: Report, note: str = "") -> None:
        earlier = await self.store.outbound(message_id)
        if earlier is not None and earlier.state != OutboundState.PREPARED:  # another run got there meanwhile
            _count_earlier(earlier, report)
            return
        message = earlier or await self._start_flow(recipient, message_id, report)
        if message is None:
            return
        if self.outbox is None:  # dry run
            report.sent += 1
            pictures = f" [+{len(message.media)} picture(s)]" if message.media else ""
            self.show(f"would send to {recipient.phone}{note}: {message.body}{pictures}")
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
        # One message, so its pictures are all the opening's (10 at most; WhatsApp delivers only one).
        media = sendable(url for reply in started.replies for url in media_of(reply))[:channel_of(phone).max_media]
        message = OutboundMessage(message_id, phone, body, self.name, media=media)
        await self._record(message)
        return message

    async def _record(self, message: OutboundMessage) -> None:
        if self.outbox is not None:
            await self.store.save_outbound(message)


def _count_earlier(earlier: OutboundMessage, report: Report) -> None:
    """Count a message an earlier run settled (sent, in doubt, skipped or failed): never sent again."""
    if earlier.state == OutboundState.ACCEPTED:
        report.sent_before += 1
    elif earlier.state == OutboundState.SENDING:
        report.in_doubt.append(earlier.to)
    elif earlier.state == OutboundState.SKIPPED:
        report.skipped[earlier.reason] += 1
    else:
        report.failed[earlier.reason] += 1


def default_name(flow: str, csv_path: Path) -> str:
    """A broadcast is identified by its flow and CSV file, so running it again resumes it."""
    return f"{flow}:{csv_path.resolve()}"


def progress_printer(stream: object = sys.stderr) -> Callable[[str], None]:
    interactive = getattr(stream, "isatty", lambda: False)()

    def show(line: str) -> None:
        if interactive and not line.startswith(("would send", "outside", "row ")):
            print(f"\r\033[K{line}", end="", file=stream, flush=True)  # type: ignore[call-overload]
        else:
            print(line, file=stream)  # type: ignore[call-overload]
    return show
