"""Broadcasts: start a flow for every number in a CSV file, politely and exactly once.

Resumable by design: each recipient's message has a stable id (``broadcast|number``) recorded in
the store before and after the API call, so running the same broadcast again skips what Twilio
accepted, reports what is *in doubt* (a crash between the API's answer and our record) instead of
re-sending it, and sends the rest.

Each recipient is texted only in their sending hours (``bot/quiet_hours.py``): those whose hours
are open go first, in the CSV's order; the others wait, each until their own hours open, and are
counted in the summary.

A run reads the CSV twice, never holding it (``bot/broadcast_csv.py``): first it settles the rows
that need no sending (invalid, refused, duplicate, handled by an earlier run) and queues the others
in a few bytes each (``bot/broadcast_queue.py``); then it sends in the queue's order, reading each
row again when its turn comes, paced at ``rate`` with up to ``in_flight`` sends at once
(``bot/broadcast_pacing.py``), its records written in batches (``bot/broadcast_records.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.broadcast_csv import BroadcastError, CsvRecipients, ListedRecipients, Recipient, Recipients, read_recipients
from bot.broadcast_pacing import Pacer, in_flight_for
from bot.broadcast_priority import yield_cpu
from bot.broadcast_queue import Due, NumberSet, SendQueue, number_key
from bot.broadcast_report import Report, Waits
from bot.engine import Engine
from bot.inbox import Inbox
from bot.limits import NotifyLimiter, limited
from bot.outbound import Outbox, TwilioUnreachable, retrying, send_for_turn
from bot.phones import DEFAULT_REGION, InvalidNumber, read_number
from bot.quiet_hours import HoursError, QuietHours, SendWindow, zone_named
from bot.store import OutboundRecords, Store, StoreBusy
from bot.store.base import BroadcastProgress  # told by a run: kept in the store, read by /metrics
from bot.twilio_inbound import channel_of
from bot.twilio_media import sendable
from bot.types import Inbound, OutboundMessage, OutboundState, Skip, media_of

__all__ = ["Broadcast", "BroadcastError", "BroadcastProgress", "CsvRecipients", "ProgressLine", "Recipient",
           "Report", "Waits", "default_name", "progress_printer", "read_recipients"]

Sleep = Callable[[float], Awaitable[None]]
NO_HOURS = "no hours allowed in all its time zones"  # cannot happen with libphonenumber's data; never sent
PENDING_SKIPS = 1000  # records of rows skipped while reading the CSV, written together
READ_NOTE_EVERY = 50_000  # rows read between two notes on where the first pass is


class ProgressLine(str):
    """A "done/requested  sent …" line; ``last`` when every recipient is settled."""

    last: bool = False


@dataclass
class _Run:
    """One run's moving parts, shared by the loop that hands out sends and the sends in flight."""

    report: Report
    started: float
    done: int = 0
    stopped: bool = False  # no more sends: Twilio unreachable, or an error
    error: Exception | None = None  # raised once the sends in flight are over
    when_texts: dict[tuple[int, float], str] = field(default_factory=dict)  # (cohort, opening) as read


@dataclass
class Broadcast:
    name: str
    flow: str
    store: Store
    engine: Engine
    outbox: Outbox | None  # None for a dry run
    rate: float | None = 1.0  # messages per second; None: unpaced (as fast as the API answers)
    hours: QuietHours = field(default_factory=QuietHours)  # when each recipient may be texted
    clock: Callable[[], float] = time.time
    sleep: Sleep = asyncio.sleep
    show: Callable[[str], None] = lambda line: None  # progress lines
    phase: Callable[[str], None] = lambda line: None  # where a long run is: reading the CSV, then sending
    progress: Callable[[BroadcastProgress], None] | None = None  # the counts, after each recipient and at the end
    notify_limiter: NotifyLimiter = field(default_factory=NotifyLimiter)  # staff texts from the starts' notify
    region: str = DEFAULT_REGION  # DEFAULT_REGION: how numbers without a country code are read
    in_flight: int | None = None  # sends at once at most (None: enough for `rate`, in_flight_for)
    records: OutboundRecords | None = None  # where its own records go (the CLI: the outbox's BatchedRecords)

    async def run(self, recipients: Sequence[Recipient] | Recipients) -> Report:
        if self.flow not in self.engine.flows.flows:
            raise BroadcastError(f"no flow {self.flow!r}; flows: {', '.join(sorted(self.engine.flows.flows))}")
        source = ListedRecipients(recipients) if isinstance(recipients, Sequence) else recipients
        run = _Run(Report(requested=len(source)), self.clock())
        queue = await self._admit(source, run)
        await self._send_all(source, queue, run)
        self._tell(run, finished=True)
        return run.report

    async def _admit(self, source: Recipients, run: _Run) -> SendQueue:
        """Settle the rows that need no sending (invalid, refused, duplicate, handled by an earlier
        run) and queue the others by when their hours open, then by their place in the CSV."""
        report, now = run.report, run.started
        seen = NumberSet(len(source))
        queue = SendQueue()
        openings: dict[SendWindow, float | None] = {}  # many recipients share a window: work it out once
        skips: list[asyncio.Future[None]] = []
        for read, recipient in enumerate(source.scan(), 1):
            if read % READ_NOTE_EVERY == 0:
                self.phase(ProgressLine(f"reading the CSV: {read}/{report.requested} rows"))
            try:
                (phone, in_use), invalid = read_number(recipient.phone, self.region), ""
            except InvalidNumber as error:
                phone, in_use, invalid = recipient.phone, False, f"invalid number ({error.reason})"
            zone, refused = None, ""
            if recipient.timezone and not invalid:
                try:
                    zone = zone_named(recipient.timezone)
                except HoursError as error:
                    refused = f"row {recipient.line}: timezone {error}"
                    self.show(f"{refused}; skipped")
            if invalid:
                report.skipped[invalid] += 1
                if self.outbox is not None:
                    skips.append(asyncio.ensure_future(self._records.save_outbound(OutboundMessage(
                        f"{self.name}|{phone}", phone, "", self.name, OutboundState.SKIPPED, reason=invalid))))
                    if len(skips) >= PENDING_SKIPS:
                        await asyncio.gather(*skips)
                        skips.clear()
            elif refused:  # not recorded: once the cell is fixed, running again sends it
                report.skipped["unknown time zone"] += 1
                report.refuse(refused)
            elif not seen.add(number_key(phone)):
                report.skipped["duplicate row"] += 1
            else:
                if not in_use:
                    report.not_in_use += 1
                earlier = await self.store.outbound(f"{self.name}|{phone}")
                if earlier is None or earlier.state == OutboundState.PREPARED:
                    window = self.hours.window_for(phone, zone, self.region, now)
                    if window is not None and window not in openings:
                        openings[window] = window.next_opening(now)
                    opens = now if window is None else openings[window]
                    if opens is not None:
                        queue.add(phone, window, opens)
                        continue
                    report.skipped[NO_HOURS] += 1
                else:  # handled by an earlier run: counted, not waited for
                    report.count_earlier(earlier)
            queue.skip()
            run.done += 1
            self._progress(run)
        await asyncio.gather(*skips)
        self.phase(f"read {report.requested} rows: {len(queue)} to text, {run.done} settled without texting")
        return queue

    async def _send_all(self, source: Recipients, queue: SendQueue, run: _Run) -> None:
        """Hand out the sends in the queue's order, paced, each in a task of its own (at most
        ``in_flight`` at once); return once every send handed out is over."""
        live = self.outbox is not None  # a dry run shows who would wait, and waits for nobody
        pacer = Pacer(self.rate, self.clock, self.sleep)
        slots = asyncio.Semaphore(1 if not live else self.in_flight or in_flight_for(self.rate))
        sends: set[asyncio.Task[None]] = set()
        while not run.stopped and (due := queue.pop()) is not None:
            window = queue.window(due)
            if live and window is not None and due.opens > self.clock():
                # the earliest opening in the queue: everyone left waits at least this long (the
                # sends in flight end first: their progress is told before the wait)
                if sends:
                    await asyncio.wait(set(sends))
                    if run.stopped:
                        break
                now = self.clock()
                self.show(f"outside sending hours: waiting {dt.timedelta(seconds=round(due.opens - now))} until "
                          f"{window.when(due.opens)} [{window.describe()}], {len(queue)} recipient(s) waiting")
                await self.sleep(due.opens - now)
                queue.put_back(due)  # checked again: the clock decides
                pacer.restart()
                continue
            await slots.acquire()
            if run.stopped:
                slots.release()
                break
            await pacer.slot()
            if live and window is not None and not window.is_open(now := self.clock()):
                # its hours closed while those before it were sent: it waits for them to open again
                pacer.give_back()
                slots.release()
                if (reopens := window.next_opening(now)) is not None:
                    queue.put_back(due, reopens)
                    continue
                queue.take(due)
                run.report.skipped[NO_HOURS] += 1
                run.done += 1
                self._progress(run)
                continue
            queue.take(due)
            send = asyncio.create_task(self._send(source.recipient(due.position), queue.phone(due),
                                                  self._note(run, due, window), run, slots))
            sends.add(send)
            send.add_done_callback(sends.discard)
        if sends:
            await asyncio.wait(set(sends))
        if run.error is not None:
            raise run.error

    def _note(self, run: _Run, due: Due, window: SendWindow | None) -> str:
        """When the recipient is texted, for the dry run's lines; counts those who waited."""
        if window is None:
            return ""
        opens = due.opens
        if opens > run.started:
            text = run.when_texts.get((due.cohort, opens))
            if text is None:
                text = run.when_texts[(due.cohort, opens)] = window.when(opens)
            run.report.waits.add(opens, text)
        if self.outbox is not None:
            return ""
        return (f" at {window.when(opens)}" if opens > run.started else " now") + f" [{window.describe()}]"

    async def _send(self, recipient: Recipient, phone: str, note: str, run: _Run,
                    slots: asyncio.Semaphore) -> None:
        message_id = f"{self.name}|{phone}"
        report = run.report
        try:
            await self._one(recipient, phone, message_id, report, note)
        except TwilioUnreachable as error:
            earlier = await self.store.outbound(message_id)
            if earlier is not None and earlier.state == OutboundState.SENDING:
                report.in_doubt.append(phone)
                run.done += 1  # settled, as in doubt: not waiting any more
            if not run.stopped:
                run.stopped, report.stopped = True, str(error)
            return
        except Exception as error:  # noqa: BLE001 (raised by run() once the other sends are over)
            run.stopped = True
            run.error = run.error or error
            return
        finally:
            slots.release()
        run.done += 1
        self._progress(run)

    def _progress(self, run: _Run) -> None:
        report = run.report
        line = ProgressLine(f"{run.done}/{report.requested}  sent {report.sent + report.sent_before}  "
                            f"skipped {sum(report.skipped.values())}  failed {sum(report.failed.values())}  "
                            f"in doubt {len(report.in_doubt)}")
        line.last = run.done == report.requested
        self.show(line)
        self._tell(run)

    def _tell(self, run: _Run, *, finished: bool = False) -> None:
        if self.progress is not None:
            report = run.report
            self.progress(BroadcastProgress(self.name, self.flow, report.requested, report.sent + report.sent_before,
                                            sum(report.skipped.values()), sum(report.failed.values()),
                                            len(report.in_doubt), report.requested - run.done, finished))

    @property
    def _records(self) -> OutboundRecords:
        return self.records if self.records is not None else self.store

    async def _one(self, recipient: Recipient, phone: str, message_id: str, report: Report, note: str) -> None:
        yield_cpu()  # replies first (bot/broadcast_priority.py)
        earlier = await self.store.outbound(message_id)
        if earlier is not None and earlier.state != OutboundState.PREPARED:  # another run got there meanwhile
            report.count_earlier(earlier)
            return
        message = earlier or await self._start_flow(recipient, phone, message_id, report)
        if message is None:
            return
        if self.outbox is None:  # dry run
            report.sent += 1
            pictures = f" [+{len(message.media)} picture(s)]" if message.media else ""
            self.show(f"would send to {phone}{note}: {message.body}{pictures}")
            return
        outbox = self.outbox
        yield_cpu()
        report.count_sent(await retrying(lambda: outbox.send(message), self.sleep))

    async def _start_flow(self, recipient: Recipient, phone: str, message_id: str,
                          report: Report) -> OutboundMessage | None:
        """Put the recipient into the flow (saved once: the turn's id is the message id) and make
        the opening message, for ``Outbox.send`` to record as it sends it. Run again after a stop
        right after the start, the start is found saved and says the same. A dry run goes the
        same way and saves nothing."""
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
            if self.outbox is not None:
                await self._records.save_outbound(OutboundMessage(message_id, phone, "", self.name,
                                                                  OutboundState.SKIPPED, reason="opted out"))
            return None
        if started.skipped is Skip.SILENT:
            raise BroadcastError(f"flow {self.flow!r} says nothing when it starts; a broadcast needs an "
                                 "opening message in its start state")
        body = "\n".join(started.replies)  # a duplicate: started by a run that stopped right after
        # One message, so its pictures are all the opening's (10 at most; WhatsApp delivers only one).
        media = sendable(url for reply in started.replies for url in media_of(reply))[:channel_of(phone).max_media]
        return OutboundMessage(message_id, phone, body, self.name, media=media)


def default_name(flow: str, csv_path: Path) -> str:
    """A broadcast is identified by its flow and CSV file, so running it again resumes it."""
    return f"{flow}:{csv_path.resolve()}"


PROGRESS_EVERY_SECONDS = 2.0  # a log file gets a progress line this often, a terminal ten times as often


def progress_printer(stream: object = sys.stderr, clock: Callable[[], float] = time.monotonic) -> Callable[[str], None]:
    """``Broadcast.show`` for a terminal or a log: notes (would send, waiting, a refused row) all
    printed, progress lines at most every ``PROGRESS_EVERY_SECONDS`` (a tenth of it on a terminal,
    where each overwrites the last) and the last one always: a million recipients, a few hundred lines."""
    interactive = getattr(stream, "isatty", lambda: False)()
    every = PROGRESS_EVERY_SECONDS / 10 if interactive else PROGRESS_EVERY_SECONDS
    shown = [float("-inf")]

    def show(line: str) -> None:
        if isinstance(line, ProgressLine):
            if not line.last and clock() - shown[0] < every:
                return
            shown[0] = clock()
        if interactive and not line.startswith(("would send", "outside", "row ", "read ")):
            print(f"\r\033[K{line}", end="", file=stream, flush=True)  # type: ignore[call-overload]
        else:
            print(line, file=stream)  # type: ignore[call-overload]
    return show
