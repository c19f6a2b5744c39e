"""Broadcasts (issue 6): start a flow for every number of a CSV, exactly once, politely.

Mostly in-process through ``bot.broadcast.Broadcast`` with an injected clock and sleep (so a
realistic 1 message/s costs no real time), plus ``python -m bot broadcast`` as real subprocesses:
``--rate 1000`` end to end with delivery reports and ``report``, ``--dry-run``, and a ``kill -9``
mid-run followed by a resume. Every message goes through the REAL twilio SDK to the fake Twilio API
(bot/fake_twilio/) on 127.0.0.1; the creates it saw are what is counted.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.testclient import TestClient

from bot.actions import HttpFetcher
from bot.app import create_app
from bot.broadcast import Broadcast, Recipient, Report, Waits, default_name, read_recipients
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.outbound import Outbox
from bot.phones import normalise_number
from bot.quiet_hours import HoursError, QuietHours, SendWindow
from bot.settings import Settings
from bot.store.sqlite import SqliteStore
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, OutboundMessage
from tests.conftest import SHIPPED_FLOWS, SignedClient, demo_fetcher
from tests.signed_webhooks import AUTH_TOKEN, BOT_NUMBER, twilio_form
from tests.test_outbound import (
    clean_env,
    outbound_env,
    output_of,
    post_signed,
    run_bot,
    server_process,
    sqlite_url,
    store_at,
)

FLOWS = load_flows(SHIPPED_FLOWS)
INVALID = "invalid number (too short)"  # why "12345" is skipped: the reason, from libphonenumber
CONFIRMED = "Thanks, see you then!"
CANCELLED = "OK, your appointment is cancelled. Text AGENT if you'd like to rebook."
PROMPT = "Please reply YES to confirm your appointment or NO to cancel it."



def operator_opt_out(number: str) -> ConsentChange:
    return ConsentChange(number, ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR, "test")

def reminder(name: str, date: str) -> str:
    """flows/reminder.yaml's opening message for a CSV row."""
    return (f"Hi {name or 'there'}, this is Acme reminding you of your appointment on "
            f"{date or 'your booked date'}. Reply YES to confirm or NO to cancel.")


def write_csv(path: Path, rows: list[dict[str, str]],
              header: tuple[str, ...] = ("phone", "name", "date", "notes")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


class FakeClock:
    """time.time and asyncio.sleep for a Broadcast: sleeping moves the clock, instantly."""

    def __init__(self, start: float, on_sleep: Callable[[float], None] | None = None) -> None:
        self.now = start
        self.start = start
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@dataclass
class Run:
    report: Report
    shown: list[str] = field(default_factory=list)


Parts = tuple[SqliteStore, Engine, Outbox | None]


@asynccontextmanager
async def broadcast_parts(db: Path, fake: FakeTwilio | None) -> AsyncIterator[Parts]:
    """The store, engine and outbox a broadcast run uses (as the CLI builds them), closed after."""
    store = store_at(db)
    outbox = Outbox(store, fake.outbound_settings()) if fake is not None else None
    async with httpx.AsyncClient() as client:
        try:
            yield store, Engine(FLOWS, HttpFetcher(client, "http://127.0.0.1:9")), outbox
        finally:
            if outbox is not None:
                await outbox.close()
            await store.close()


async def run_broadcast(db: Path, fake: FakeTwilio | None, name: str, recipients: list[Recipient],
                        clock: FakeClock, *, rate: float = 1.0, hours: QuietHours | None = None,
                        show: Callable[[str], None] | None = None) -> Run:
    shown: list[str] = []

    def record(line: str) -> None:
        shown.append(line)
        if show is not None:
            show(line)
    async with broadcast_parts(db, fake) as (store, engine, outbox):
        run = Broadcast(name, "reminder", store, engine, outbox, rate=rate, hours=hours or QuietHours(),
                        clock=clock.time, sleep=clock.sleep, show=record)
        report = await run.run(recipients)
    return Run(report, shown)


def webhook_app(db: Path) -> TestClient:
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=sqlite_url(db), flows_dir=str(SHIPPED_FLOWS),
                        reload_flows=False)
    return TestClient(create_app(settings, FLOWS, fetcher=demo_fetcher()))


async def stored(db: Path, call: Callable[[SqliteStore], object]) -> object:
    store = store_at(db)
    try:
        return await call(store)  # type: ignore[misc]
    finally:
        await store.close()


def look(db: Path, call: Callable[[SqliteStore], object]) -> object:
    return asyncio.run(stored(db, call))  # type: ignore[arg-type]


# -- 200 numbers: opt-outs (here and at Twilio), invalid numbers, duplicate rows, a 20429 burst ----

def test_broadcast_of_200_numbers(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    valid = [f"+1555020{i:04d}" for i in range(175)]
    names = {number: f"Person {i}" for i, number in enumerate(valid)}
    dates = {number: f"Tue {i % 28 + 1} Dec, {9 + i % 8}:00" for i, number in enumerate(valid)}
    names[valid[3]] = "O'Brien & Sons"  # SMS text: nothing HTML-escaped
    names[valid[4]] = ""  # an empty column falls back to the flow's default ("Hi there")
    dates[valid[5]] = ""
    opted_out_here = valid[10:20]  # valid[10] by texting STOP, the others recorded in the store
    opted_out_at_twilio = valid[30:35]  # Twilio answers 21610
    # Before issue 12, "5550200999", "(555) 020-0999" and "++15550200999" were in this list: national
    # formats are now read in DEFAULT_REGION (US), so they gave way to impossible numbers; two of the
    # duplicates below are national formats of numbers listed in E.164.
    invalid_because = {"+1 555 02": "too short", "555-0100": "too short: a local number, without its area code",
                       "+05550200999": "invalid country code", "+1555abc0999": "letters in the number",
                       "": "not a phone number", "+": "not a phone number", "+12345678901234567": "too long",
                       "+999 1234567": "invalid country code", "123456789012345678901": "too long",
                       "1-800-FLOWERS": "letters in the number"}
    invalid = list(invalid_because)
    duplicates = [valid[i] for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 30, 100, 174)] + ["(555) 020-0050",
                                                                                    "555.020.0051"]
    rows = [{"phone": number, "name": names[number], "date": dates[number],
             "notes": "vip" if i % 7 == 0 else ""}
            for i, number in enumerate(valid)]
    rows[40:40] = [{"phone": number, "name": "Nobody", "date": "never"} for number in invalid[:5]]
    rows[120:120] = [{"phone": number, "name": "Nobody", "date": "never"} for number in invalid[5:]]
    for position, number in zip(range(60, 200, 9), duplicates, strict=False):
        same = normalise_number(number)
        rows.insert(position, {"phone": number, "name": names[same], "date": dates[same]})
    assert len(rows) == 200
    csv_path = write_csv(tmp_path / "people.csv", rows)
    recipients = read_recipients(csv_path)
    name = default_name("reminder", csv_path)

    with webhook_app(db) as client:  # one of them texted STOP earlier
        assert "unsubscribed" in " ".join(SignedClient(client).replies("STOP", opted_out_here[0])).lower()
    for number in opted_out_here[1:]:
        look(db, lambda store, number=number: store.set_consent(operator_opt_out(number)))
    fake_twilio.opt_out(*opted_out_at_twilio)

    def burst(line: str) -> None:  # Twilio starts refusing mid-run: the next 5 creates get 429 / 20429
        if line.startswith("60/200 "):
            fake_twilio.throttle(5)
    clock = FakeClock(start=1_700_000_000.0)
    started = time.monotonic()
    run = asyncio.run(run_broadcast(db, fake_twilio, name, recipients, clock, rate=1.0, show=burst))
    seconds = time.monotonic() - started
    report = run.report

    expected = [number for number in valid
                if number not in opted_out_here and number not in opted_out_at_twilio]
    created = fake_twilio.created
    per_number = Counter(attempt.to for attempt in created)
    throttled = [attempt for attempt in fake_twilio.attempts if attempt.error_code == 20429]
    refused_21610 = [attempt for attempt in fake_twilio.attempts if attempt.error_code == 21610]
    counts = {
        "requested": report.requested, "sent": report.sent, "skipped": dict(report.skipped),
        "failed": dict(report.failed), "in doubt": len(report.in_doubt), "creates at the fake": len(created),
        "unique numbers created": len(per_number),
        "duplicates (creates - unique)": len(created) - len(per_number),
        "20429 refusals": len(throttled), "21610 refusals": len(refused_21610),
        "simulated seconds": round(clock.now - clock.start, 1), "real seconds": round(seconds, 2),
    }
    print("\nbroadcast of 200 numbers:", counts)
    print(report.summary())

    # everyone valid and not opted out: exactly one create, with their own columns filled in
    assert per_number == Counter(expected), "each valid number exactly once, nobody else"
    assert len(created) - len(per_number) == 0
    for attempt in created:
        assert attempt.from_ == BOT_NUMBER
        assert attempt.body == reminder(names[attempt.to], dates[attempt.to])
    bodies = {attempt.to: attempt.body for attempt in created}
    assert bodies[valid[3]].startswith("Hi O'Brien & Sons, this is Acme")
    assert bodies[valid[4]].startswith("Hi there, this is Acme")
    assert "appointment on your booked date." in bodies[valid[5]]
    assert bodies[valid[0]] == ("Hi Person 0, this is Acme reminding you of your appointment on "
                                "Tue 1 Dec, 9:00. Reply YES to confirm or NO to cancel.")

    # nothing even tried for numbers opted out here, or invalid; Twilio's opt-outs tried once each
    tried = {attempt.to for attempt in fake_twilio.attempts}
    assert not tried & set(opted_out_here)
    assert not tried & {number.replace(" ", "") for number in invalid}
    assert sorted(attempt.to for attempt in refused_21610) == sorted(opted_out_at_twilio)

    # the 20429 burst: five refusals of one message, retried with growing waits, then sent once
    assert len(throttled) == 5 and len({attempt.to for attempt in throttled}) == 1
    assert per_number[throttled[0].to] == 1
    backoff = [1.0, 2.0, 4.0, 8.0, 16.0]
    assert any(clock.sleeps[i:i + 5] == backoff for i in range(len(clock.sleeps))), clock.sleeps

    # the report, by reason
    assert (report.requested, report.sent, report.sent_before, report.in_doubt) == (200, 160, 0, [])
    invalid_reasons = Counter(f"invalid number ({reason})" for reason in invalid_because.values())
    assert report.skipped == Counter({"duplicate row": 15, "opted out": 10}) + invalid_reasons
    assert sum(report.failed.values()) == 5 and all(reason.startswith("21610") for reason in report.failed)
    summary = report.summary()
    assert summary.splitlines()[0] == "requested 200: sent 160, skipped 35, failed 5, in doubt 0"
    assert "  skipped, duplicate row: 15" in summary and "  skipped, invalid number (too long): 2" in summary
    assert "  warning: 175 number(s) could be numbers but are not in use anywhere" in summary  # all 555, once each
    assert "  skipped, opted out: 10" in summary and "  failed, 21610" in summary
    assert run.shown[-1] == "200/200  sent 160  skipped 35  failed 5  in doubt 0"
    assert len(run.shown) == 200  # a progress line per row

    # paced at 1 message/s on the injected clock (175 numbers reach the pacing), without real waiting
    assert clock.now - clock.start >= 174.0
    assert seconds < 60  # pacing for real would take 174 s or more

    # Twilio's opt-outs are now known here; the records say what happened to each
    assert all(look(db, lambda store, number=number: store.is_opted_out(number))
               for number in opted_out_at_twilio)
    records = look(db, lambda store: store.broadcast_messages(name))
    assert Counter(record.state for record in records) == Counter(  # type: ignore[attr-defined]
        {"accepted": 160, "skipped": 20, "failed": 5})
    accepted = {record.sid for record in records if record.state == "accepted"}  # type: ignore[attr-defined]
    assert accepted == {attempt.sid for attempt in created}

    # running it again resumes it: nothing is sent twice
    attempts_before = len(fake_twilio.attempts)
    again = asyncio.run(run_broadcast(db, fake_twilio, name, recipients, FakeClock(start=1_700_001_000.0)))
    print("resumed run:", again.report.summary().splitlines()[0])
    assert len(fake_twilio.attempts) == attempts_before
    assert (again.report.sent, again.report.sent_before) == (0, 160)
    assert again.report.skipped == report.skipped and again.report.failed == report.failed

    # their replies continue the flow through the webhook
    with webhook_app(db) as client:
        signed = SignedClient(client)
        assert signed.replies("YES", valid[0]) == [CONFIRMED]
        assert signed.replies("no", valid[1]) == [CANCELLED]
        assert signed.replies("maybe", valid[2]) == [PROMPT]
        assert signed.replies("Yes!", valid[2]) == [CONFIRMED]
        # opted out at Twilio: the bot keeps quiet
        assert signed.replies("maybe", opted_out_at_twilio[0]) == []


# -- CLI end to end: --rate 1000, delivery reports to a running server, report, replies ----------

@pytest.mark.slow  # real processes end to end: the bot, the broadcast CLI, delivery reports
def test_cli_broadcast_then_delivery_report_then_replies(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    numbers = [f"+1555040{i:04d}" for i in range(11)]
    undelivered, failed, opted_out_at_twilio = numbers[1], numbers[2], numbers[3]
    rows = [{"phone": number, "name": f"Guest {i}", "date": "Fri 6 Dec, 15:30"}
            for i, number in enumerate(numbers)]
    rows.append({"phone": "12345", "name": "Typo", "date": "?"})
    csv_path = write_csv(tmp_path / "people.csv", rows, header=("name", "phone", "date"))
    fake_twilio.fail_delivery(undelivered, 30003)
    fake_twilio.fail_delivery(failed, 30007, status="failed")
    fake_twilio.opt_out(opted_out_at_twilio)
    fake_twilio.callback_interval = 0.02  # reports come a moment after the API's answer, as Twilio's do

    server = server_process({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": sqlite_url(db)},
                            cwd=tmp_path).start()
    try:
        env = outbound_env(fake_twilio, sqlite_url(db), PUBLIC_URL=server.url, FLOWS_DIR=str(SHIPPED_FLOWS),
                           BROADCAST_WINDOW="any")  # a real clock: not at the mercy of the hour the tests run
        result = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "1000",
                         cwd=tmp_path, env=env)
        print("\n" + result.stdout)
        assert result.returncode == 1, output_of(result)  # one failure (21610) makes the exit status 1
        assert result.stdout.splitlines()[0] == "requested 12: sent 10, skipped 1, failed 1, in doubt 0", \
            output_of(result)
        assert f"  skipped, {INVALID}: 1" in result.stdout
        assert "  failed, 21610" in result.stdout
        assert "12/12  sent 10  skipped 1  failed 1  in doubt 0" in result.stderr, output_of(result)
        named = re.search(r"broadcast '(.+?)'", result.stderr)
        assert named is not None, output_of(result)
        name = named.group(1)
        assert name == default_name("reminder", csv_path)

        created = fake_twilio.created
        assert Counter(attempt.to for attempt in created) == Counter(number for number in numbers
                                                                     if number != opted_out_at_twilio)
        assert {attempt.status_callback for attempt in created} == {f"{server.url}/sms/status"}
        assert all(attempt.body == reminder(f"Guest {numbers.index(attempt.to)}", "Fri 6 Dec, 15:30")
                   for attempt in created)

        callbacks = fake_twilio.wait_for_callbacks(timeout=10)
        assert len(callbacks) == 8 * 3 + 3 + 2 and {callback.status_code for callback in callbacks} == {204}

        shown = run_bot("report", name, cwd=tmp_path, env=env)
        print(shown.stdout)
        assert shown.returncode == 0, output_of(shown)
        lines = shown.stdout.splitlines()
        assert lines[0] == f"broadcast {name}: 12 recipients"
        assert "  sent (accepted by Twilio): 10" in lines
        assert "  skipped: 1" in lines and "  failed: 1" in lines
        delivery = lines[lines.index("delivery reported by Twilio:") + 1:]
        assert {"  delivered: 8", "  undelivered: 1", "  failed: 1"} <= set(delivery), shown.stdout
        assert "(no report yet)" not in shown.stdout
        [codes] = [line for line in lines if line.startswith("error codes: ")]
        assert set(codes.removeprefix("error codes: ").split(", ")) == {"30003 x1", "30007 x1", "21610 x1"}

        unknown = run_bot("report", "no-such-broadcast", cwd=tmp_path, env=env)
        assert unknown.returncode == 2, output_of(unknown)
        assert "no broadcast named 'no-such-broadcast'" in unknown.stderr, output_of(unknown)

        # a recipient answers: the running server continues their reminder
        response = post_signed(f"{server.url}/sms", twilio_form("YES", numbers[0]))
        assert response.status_code == 200, response.text
        assert f"<Message>{CONFIRMED}</Message>" in response.text, response.text
    finally:
        output = server.stop()
    assert "Traceback" not in output, output


def test_cli_dry_run_sends_nothing(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    numbers = [f"+1555050{i:04d}" for i in range(4)]
    rows = [{"phone": number, "name": f"Guest {i}", "date": "Mon 9 Dec"} for i, number in enumerate(numbers)]
    rows += [{"phone": "not-a-number", "name": "x"},
             {"phone": numbers[0], "name": "Guest 0", "date": "Mon 9 Dec"}]
    csv_path = write_csv(tmp_path / "people.csv", rows)
    look(db, lambda store: store.set_consent(operator_opt_out(numbers[3])))
    env = outbound_env(fake_twilio, sqlite_url(db), FLOWS_DIR=str(SHIPPED_FLOWS))
    result = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--dry-run", "--rate", "1000",
                     cwd=tmp_path, env=env)
    print("\n" + result.stdout)
    assert result.returncode == 0, output_of(result)
    assert fake_twilio.attempts == []
    assert "(dry run: nothing is sent)" in result.stderr
    # when (now, or when their hours open: the real clock) and in which zones: 555 numbers have none,
    # so DEFAULT_REGION US's zones, 08:00 Honolulu to 21:00 New York
    opening = re.escape(reminder('Guest 1', 'Mon 9 Dec'))
    assert re.search(rf"would send to \{numbers[1]} (now|at [-\d: ]+ \S+) \[08:00-21:00 11 zones, America/Adak … "
                     rf"Pacific/Honolulu, zone unknown: DEFAULT_REGION US\]: {opening}\n", result.stderr), \
        output_of(result)
    assert "sending hours: 08:00-21:00 in each recipient's time zone" in result.stderr
    assert result.stdout.splitlines()[0] == "requested 6: sent 3, skipped 3, failed 0, in doubt 0", \
        output_of(result)
    assert "  skipped, opted out: 1" in result.stdout and "  skipped, duplicate row: 1" in result.stdout

    # nothing recorded, nobody put into the flow
    name = default_name("reminder", csv_path)
    assert look(db, lambda store: store.broadcast_messages(name)) == []
    assert look(db, lambda store: store.snapshot(numbers[0], "")).conversation.flow is None

    assert fake_twilio.attempts == []


# -- kill -9 mid-run, then resume: no duplicates; a send in doubt is reported, not re-sent ----------

@pytest.mark.slow  # kill -9 of a real broadcast process, then a resume
def test_kill_mid_run_then_resume_sends_each_number_once(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    numbers = [f"+1555060{i:04d}" for i in range(60)]
    csv_path = write_csv(tmp_path / "people.csv",
                         [{"phone": number, "name": f"P{i}", "date": "Wed 11 Dec"}
                          for i, number in enumerate(numbers)])
    env = outbound_env(fake_twilio, sqlite_url(db), FLOWS_DIR=str(SHIPPED_FLOWS), BROADCAST_WINDOW="any")
    args = [sys.executable, "-m", "bot", "broadcast", "--flow", "reminder", "--to", str(csv_path)]
    with (tmp_path / "first-run.log").open("w") as log:
        process = subprocess.Popen([*args, "--rate", "20"], cwd=tmp_path, env=clean_env(**env),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while len(fake_twilio.created) < 15:
                assert process.poll() is None, (tmp_path / "first-run.log").read_text()
                assert time.monotonic() < deadline, "the first run did not get going"
                time.sleep(0.005)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    first_run = Counter(attempt.to for attempt in fake_twilio.created)
    assert 15 <= len(first_run) < 40, "killed mid-run"

    # as after a crash between Twilio's answer and the local record: a send whose outcome is unknown
    name = default_name("reminder", csv_path)
    in_doubt = numbers[-1]
    assert in_doubt not in first_run
    look(db, lambda store: store.save_outbound(
        OutboundMessage(f"{name}|{in_doubt}", in_doubt, reminder("P59", "Wed 11 Dec"), name, "sending")))

    resumed = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "1000",
                      cwd=tmp_path, env=env)
    print("\nkilled after", len(first_run), "creates; resumed run:\n" + resumed.stdout)
    assert resumed.returncode == 1, output_of(resumed)  # something is in doubt

    per_number = Counter(attempt.to for attempt in fake_twilio.created)
    duplicates = len(fake_twilio.created) - len(per_number)
    records = {record.to: record for record in look(db, lambda store: store.broadcast_messages(name))}  # type: ignore[attr-defined]
    doubtful = {number for number, record in records.items() if record.state == "sending"}
    print(f"creates {len(fake_twilio.created)}, unique {len(per_number)}, duplicates {duplicates}, "
          f"in doubt {sorted(doubtful)}")
    assert duplicates == 0
    assert max(per_number.values()) == 1
    assert in_doubt in doubtful and per_number[in_doubt] == 0, "in doubt: not re-sent"
    # the kill itself may have left one more in doubt (killed during its API call); all others exactly once
    assert len(doubtful) <= 2
    assert {number for number in numbers if per_number[number] == 1} | doubtful == set(numbers)
    assert all(records[number].state == "accepted" for number in numbers if number not in doubtful)

    first_line = resumed.stdout.splitlines()[0]
    sent_now = len(per_number) - len(first_run)
    match = re.fullmatch(r"requested 60: sent (\d+) \(\+(\d+) sent by an earlier run\), skipped 0, failed 0, "
                         r"in doubt (\d+)", first_line)
    assert match is not None, output_of(resumed)
    assert int(match.group(1)) == sent_now and int(match.group(3)) == len(doubtful)
    assert int(match.group(2)) == 60 - len(doubtful) - sent_now
    assert "in doubt (the run stopped after Twilio was asked" in resumed.stdout and in_doubt in resumed.stdout


def test_prepared_message_is_not_sent_to_someone_who_opted_out_since(fake_twilio: FakeTwilio,
                                                                     tmp_path: Path) -> None:
    """The opt-out is checked when sending, not only when the message was prepared (a run that
    stopped after preparing, resumed after the person texted STOP)."""
    db = tmp_path / "bot.db"
    numbers = ["+15550700001", "+15550700002"]
    csv_path = write_csv(tmp_path / "people.csv",
                         [{"phone": number, "name": "Ann", "date": "Thu"} for number in numbers])
    name = default_name("reminder", csv_path)
    look(db, lambda store: store.save_outbound(OutboundMessage(f"{name}|{numbers[0]}", numbers[0],
                                                               reminder("Ann", "Thu"), name)))
    with webhook_app(db) as client:
        SignedClient(client).replies("STOP", numbers[0])
    run = asyncio.run(run_broadcast(db, fake_twilio, name, read_recipients(csv_path),
                                    FakeClock(1_700_000_000.0)))
    assert [attempt.to for attempt in fake_twilio.attempts] == [numbers[1]]
    assert (run.report.sent, run.report.skipped) == (1, Counter({"opted out": 1}))


# -- quiet hours, with an injected clock ----------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(("local_start", "expected_wait", "opens"), [
    # 06:30 EDT: the window opens at 09:00 the same day
    (dt.datetime(2024, 3, 15, 6, 30), 2.5 * 3600, dt.datetime(2024, 3, 15, 9, 0)),
    # 20:30 EDT, after the window closed: 09:00 the next day
    (dt.datetime(2024, 3, 15, 20, 30), 12.5 * 3600, dt.datetime(2024, 3, 16, 9, 0)),
    # the night clocks go back (3 Nov 2024, 02:00 EDT -> 01:00 EST): 13 real hours until 09:00 EST
    (dt.datetime(2024, 11, 2, 21, 0), 13 * 3600, dt.datetime(2024, 11, 3, 9, 0)),
    # the night clocks go forward (10 Mar 2024, 02:00 EST -> 03:00 EDT): 11 real hours until 09:00 EDT
    (dt.datetime(2024, 3, 9, 21, 0), 11 * 3600, dt.datetime(2024, 3, 10, 9, 0)),
], ids=["morning", "evening", "dst-ends", "dst-starts"])
def test_quiet_hours_wait_for_the_window(fake_twilio: FakeTwilio, tmp_path: Path, local_start: dt.datetime,
                                         expected_wait: float, opens: dt.datetime) -> None:
    hours = QuietHours.from_settings("09:00-20:00", "America/New_York")
    assert hours.window is not None
    window = hours.window
    numbers = ["+15550800001", "+15550800002", "+15550800003"]
    recipients = [Recipient(i + 2, number, {"name": "Kim", "date": "Sat"})
                  for i, number in enumerate(numbers)]
    creates_when_sleeping: list[int] = []
    clock = FakeClock(local_start.replace(tzinfo=NEW_YORK).timestamp(),
                      on_sleep=lambda seconds: creates_when_sleeping.append(len(fake_twilio.attempts)))
    run = asyncio.run(run_broadcast(tmp_path / "bot.db", fake_twilio, "quiet", recipients, clock, rate=1.0,
                                    hours=hours))

    print(f"\n{local_start:%Y-%m-%d %H:%M} New York: slept {clock.sleeps}; shown {run.shown[0]!r}")
    assert clock.sleeps[0] == pytest.approx(expected_wait)  # in the window's time zone, real seconds
    assert creates_when_sleeping[0] == 0, "nothing is sent before the window opens"
    wait_hours, minutes = divmod(round(expected_wait) // 60, 60)
    assert run.shown[0] == (f"outside sending hours: waiting {wait_hours}:{minutes:02d}:00 until "
                           f"{opens:%Y-%m-%d %H:%M} America/New_York [09:00-20:00 America/New_York, "
                           "BROADCAST_WINDOW], 3 recipient(s) waiting")
    woke = dt.datetime.fromtimestamp(clock.start + clock.sleeps[0], NEW_YORK)
    assert woke.replace(tzinfo=None) == opens, f"the run woke at {woke} local time, not when the window opens"
    assert window.seconds_until_open(clock.now) == 0
    assert [attempt.to for attempt in fake_twilio.created] == numbers
    assert run.report.sent == 3
    assert clock.sleeps[1:] == [1.0, 1.0]  # then paced at 1/s, no more waiting


def test_quiet_hours_are_in_the_configured_time_zone(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """10:30 UTC is 06:30 in New York: a UTC window sends at once, a New York one waits."""
    moment = dt.datetime(2024, 3, 15, 10, 30, tzinfo=dt.UTC).timestamp()
    recipients = [Recipient(2, "+15550810001", {"name": "Kim"})]
    utc_clock = FakeClock(moment)
    utc = asyncio.run(run_broadcast(tmp_path / "a.db", fake_twilio, "utc", recipients, utc_clock,
                                    hours=QuietHours.from_settings("09:00-20:00", "")))
    assert utc_clock.sleeps == [] and utc.report.sent == 1
    assert not any(line.startswith("outside") for line in utc.shown)
    ny_clock = FakeClock(moment)
    asyncio.run(run_broadcast(tmp_path / "b.db", fake_twilio, "ny", recipients, ny_clock,
                              hours=QuietHours.from_settings("09:00-20:00", "America/New_York")))
    assert ny_clock.sleeps == [2.5 * 3600]


def test_overnight_window_and_bad_window_settings() -> None:
    night = SendWindow.parse("22:00-06:00", "Europe/Berlin")
    def at(hour: int, minute: int = 0) -> float:
        return dt.datetime(2024, 6, 1, hour, minute, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    assert night.seconds_until_open(at(23)) == 0 and night.seconds_until_open(at(5, 59)) == 0
    assert night.seconds_until_open(at(12)) == 10 * 3600
    with pytest.raises(HoursError, match="BROADCAST_WINDOW must look like 09:00-20:00"):
        SendWindow.parse("9am to 8pm", "UTC")
    with pytest.raises(HoursError, match="BROADCAST_TIMEZONE 'Mars/Olympus' is not a time zone"):
        SendWindow.parse("09:00-20:00", "Mars/Olympus")
    with pytest.raises(HoursError, match="BROADCAST_TIMEZONE 'Mars/Olympus' is not a time zone"):
        QuietHours.from_settings("", "Mars/Olympus")  # the fallback zone, without a window
    with pytest.raises(HoursError, match="BROADCAST_WINDOW '09:00-09:00' is empty; to send at any time"):
        SendWindow.parse("09:00-09:00", "UTC")  # before: a run that waited forever


# -- quiet hours in each recipient's own time (TCPA: 08:00-21:00 where they are) -------------------

def utc_at(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def sent_times(fake: FakeTwilio, clock: FakeClock) -> tuple[Callable[[str], None], dict[str, str]]:
    """A ``show`` that notes, after each send, when (UTC, HH:MM:SS) Twilio was asked to text whom."""
    when: dict[str, str] = {}
    before = len(fake.created)

    def note(line: str) -> None:
        for attempt in fake.created[before:]:
            when.setdefault(str(attempt.to), f"{dt.datetime.fromtimestamp(clock.now, dt.UTC):%d %H:%M:%S}")
    return note, when


def test_each_recipient_is_texted_in_their_own_hours(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """12:30 UTC on 15 March 2024 is 08:30 in New York, 07:30 in Chicago, 05:30 in Los Angeles, 02:30 in
    Honolulu and 21:30 in Tokyo. New York is texted at once; each other recipient when their own 08:00
    comes, earliest first (the CSV's order among equals), so nobody waits behind anybody else."""
    db = tmp_path / "bot.db"
    rows = [{"phone": "(415) 555-0123", "name": "La"},  # Los Angeles: 15:00 UTC
            {"phone": "212-555-0123", "name": "Ny"},  # New York: now
            {"phone": "+1 808 555 0123", "name": "Hi"},  # Honolulu: 18:00 UTC
            {"phone": "208.555.0123", "name": "Id"},  # Boise and Los Angeles: 08:00 in both, 15:00 UTC
            {"phone": "555 020 0001", "name": "Un"},  # no zone: every US zone's hours, from 18:00 UTC
            {"phone": "(212) 555-0124", "name": "Tk", "timezone": " Asia/Tokyo "},  # the column wins: 23:00 UTC
            {"phone": "312 555 0123", "name": "Ch"}]  # Chicago: 13:00 UTC
    csv_path = write_csv(tmp_path / "people.csv", rows, header=("phone", "name", "date", "timezone"))
    recipients = read_recipients(csv_path)
    assert recipients[5].timezone == "Asia/Tokyo" and recipients[5].variables["timezone"] == "Asia/Tokyo"
    name = default_name("reminder", csv_path)
    start = utc_at(2024, 3, 15, 12, 30)
    clock = FakeClock(start)
    note, when = sent_times(fake_twilio, clock)
    run = asyncio.run(run_broadcast(db, fake_twilio, name, recipients, clock, show=note))
    print("\n" + "\n".join(line for line in run.shown if not line[0].isdigit()) + "\n" + run.report.summary())

    assert when == {"+12125550123": "15 12:30:00", "+13125550123": "15 13:00:00", "+14155550123": "15 15:00:00",
                    "+12085550123": "15 15:00:01", "+18085550123": "15 18:00:00", "+15550200001": "15 18:00:01",
                    "+12125550124": "15 23:00:00"}
    assert [attempt.to for attempt in fake_twilio.created] == list(when)  # in that order, each once
    assert clock.sleeps == [1800.0, 7200.0, 1.0, 10799.0, 1.0, 17999.0]  # each wait is for the next opening
    for recipient in recipients:  # and each was texted inside their own hours
        window = QuietHours().window_for(recipient.phone, ZoneInfo(recipient.timezone) if recipient.timezone else None,
                                         "US", start)
        assert window is not None
        sent = dt.datetime.strptime(f"2024-03-{when[recipient.phone]}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
        assert window.is_open(sent.timestamp()), (recipient.phone, window.describe(), sent)
    waits = [line for line in run.shown if line.startswith("outside")]
    assert run.shown[:2] == ["1/7  sent 1  skipped 0  failed 0  in doubt 0", waits[0]]
    assert waits[0] == ("outside sending hours: waiting 0:30:00 until 2024-03-15 08:00 America/Chicago "
                        "[08:00-21:00 America/Chicago, from the number], 6 recipient(s) waiting")
    assert waits[2] == ("outside sending hours: waiting 2:59:59 until 2024-03-15 08:00 Pacific/Honolulu "
                        "[08:00-21:00 Pacific/Honolulu, from the number], 3 recipient(s) waiting")
    assert len(waits) == 4 and run.shown[-1] == "7/7  sent 7  skipped 0  failed 0  in doubt 0"
    report = run.report
    assert (report.sent, report.skipped, report.failed, report.not_in_use) == (7, Counter(), Counter(), 1)
    assert len(report.waits) == 6
    assert ("  waited for their sending hours (quiet hours): 6, until 2024-03-15 08:00 America/Chicago (the first) "
            "to 2024-03-16 08:00 Asia/Tokyo (the last)") in report.summary().splitlines()

    # run again at 06:00 UTC the next day (quiet hours in the US): all done, nobody is waited for
    attempts = len(fake_twilio.attempts)
    again_clock = FakeClock(utc_at(2024, 3, 16, 6, 0))
    again = asyncio.run(run_broadcast(db, fake_twilio, name, recipients, again_clock))
    assert (again.report.sent, again.report.sent_before, again.report.waits) == (0, 7, Waits())
    assert again_clock.sleeps == [] and len(fake_twilio.attempts) == attempts


def test_hours_that_close_while_others_are_sent_wait_for_the_next_morning(fake_twilio: FakeTwilio,
                                                                         tmp_path: Path) -> None:
    """One message every 10 minutes from 20:40 in New York: the third's turn comes at 21:00, when its
    hours have closed, so it waits for 08:00 instead of going out late."""
    numbers = ["+12125550131", "+12125550132", "+12125550133"]
    clock = FakeClock(dt.datetime(2024, 3, 15, 20, 40, tzinfo=NEW_YORK).timestamp())
    note, when = sent_times(fake_twilio, clock)
    run = asyncio.run(run_broadcast(tmp_path / "bot.db", fake_twilio, "late", [
        Recipient(i + 2, number, {"name": "Kim"}) for i, number in enumerate(numbers)], clock, rate=1 / 600,
        show=note))
    assert when == {numbers[0]: "16 00:40:00", numbers[1]: "16 00:50:00", numbers[2]: "16 12:00:00"}  # UTC
    assert clock.sleeps == [600.0, 600.0, 11 * 3600.0]
    waited = (clock.now, "2024-03-16 08:00 America/New_York")
    assert run.report.sent == 3 and run.report.waits == Waits(1, waited, waited)  # one recipient waited: this long


def test_a_sleep_that_wakes_early_never_sends_early(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """The clock decides, not the sleep: woken 10 minutes before the hours open (a wall clock set
    back meanwhile), the run waits again instead of texting at 07:50."""
    clock = FakeClock(dt.datetime(2024, 3, 15, 7, 0, tzinfo=NEW_YORK).timestamp())
    exact = clock.sleep

    async def early(seconds: float) -> None:
        await exact(seconds - 600 if seconds > 600 else seconds)
    clock.sleep = early  # type: ignore[method-assign]
    note, when = sent_times(fake_twilio, clock)
    asyncio.run(run_broadcast(tmp_path / "bot.db", fake_twilio, "early", [Recipient(2, "+12125550171", {})], clock,
                              show=note))
    assert clock.sleeps == [3000.0, 600.0]  # asked for 3600 s, slept 3000; then the last 600
    assert when == {"+12125550171": "15 12:00:00"}  # 08:00 in New York


def test_timezone_column_cells_that_are_not_zones_refuse_their_row(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """A ``timezone`` cell must be an IANA name: otherwise that row is refused, named in the summary,
    and not recorded, so that once the cell is fixed, running the broadcast again texts it."""
    db = tmp_path / "bot.db"
    header = ("phone", "name", "timezone")
    rows = [{"phone": "+12125550141", "name": "Ok", "timezone": "America/New_York"},
            {"phone": "+12125550142", "name": "Typo", "timezone": "Eastern"},
            {"phone": "(415) 555-0143", "name": "Blank", "timezone": ""},  # no cell: the number's zone
            {"phone": "+12125550144", "name": "Odd", "timezone": "../../etc/passwd"},
            {"phone": "+12125550145", "name": "Long", "timezone": "x" * 2000}]
    csv_path = write_csv(tmp_path / "people.csv", rows, header=header)
    name = default_name("reminder", csv_path)
    clock = FakeClock(utc_at(2024, 3, 15, 16, 0))  # 12:00 in New York, 09:00 in Los Angeles
    run = asyncio.run(run_broadcast(db, fake_twilio, name, read_recipients(csv_path), clock))
    print("\n" + run.report.summary())

    assert [attempt.to for attempt in fake_twilio.created] == ["+12125550141", "+14155550143"]
    assert run.report.skipped == Counter({"unknown time zone": 3})
    summary = run.report.summary().splitlines()
    assert "  skipped, unknown time zone: 3" in summary
    assert ("  refused row 3: timezone 'Eastern' is not a time zone; use an IANA name such as America/New_York"
            in summary)
    assert "  refused row 5: timezone '../../etc/passwd' is not a time zone; use an IANA name such as " \
           "America/New_York" in summary
    assert f"  refused row 6: timezone {'x' * 60!r} is not a time zone; use an IANA name such as " \
           "America/New_York" in summary  # cut short, not 2,000 characters
    assert "row 3: timezone 'Eastern' is not a time zone; use an IANA name such as America/New_York; skipped" \
        in run.shown
    assert look(db, lambda store: store.outbound(f"{name}|+12125550142")) is None

    rows[1]["timezone"] = "America/Chicago"  # fixed
    again = asyncio.run(run_broadcast(db, fake_twilio, name, read_recipients(write_csv(csv_path, rows,
                                                                                       header=header)),
                                      FakeClock(utc_at(2024, 3, 15, 17, 0))))
    assert [attempt.to for attempt in fake_twilio.created][2:] == ["+12125550142"]
    assert (again.report.sent, again.report.sent_before) == (1, 2)


def test_broadcast_window_and_timezone_replace_the_recipients_own_hours(fake_twilio: FakeTwilio,
                                                                       tmp_path: Path) -> None:
    recipients = [Recipient(2, "+12125550151", {"name": "Ny"}),
                  Recipient(3, "+12125550152", {"name": "Tk", "timezone": "Asia/Tokyo"}, "Asia/Tokyo")]
    start = utc_at(2024, 3, 15, 3, 0)  # 23:00 in New York, 12:00 in Tokyo, 04:00 in Berlin
    # a window: one for everyone, in BROADCAST_TIMEZONE; Tokyo's own open hours do not count
    clock = FakeClock(start)
    note, when = sent_times(fake_twilio, clock)
    asyncio.run(run_broadcast(tmp_path / "a.db", fake_twilio, "window", recipients, clock, show=note,
                              hours=QuietHours.from_settings("10:00-11:00", "Europe/Berlin")))
    assert when == {"+12125550151": "15 09:00:00", "+12125550152": "15 09:00:01"}  # 10:00 in Berlin
    assert clock.sleeps == [6 * 3600.0, 1.0]
    # any: no quiet hours at all
    clock = FakeClock(start)
    run = asyncio.run(run_broadcast(tmp_path / "b.db", fake_twilio, "any", recipients, clock,
                                    hours=QuietHours.from_settings("any", "")))
    assert clock.sleeps == [1.0] and run.report.sent == 2 and run.report.waits == Waits()
    # BROADCAST_TIMEZONE alone: only for numbers whose zone is unknown
    clock = FakeClock(utc_at(2024, 3, 15, 1, 0))  # 06:30 in Kolkata, 21:00 in New York
    note, when = sent_times(fake_twilio, clock)
    asyncio.run(run_broadcast(tmp_path / "c.db", fake_twilio, "fallback", [
        Recipient(2, "+12125550153", {}), Recipient(3, "+15550200002", {})], clock, show=note,
        hours=QuietHours.from_settings("", "Asia/Kolkata")))
    assert when == {"+15550200002": "15 02:30:00", "+12125550153": "15 12:00:00"}


def test_dry_run_shows_each_recipients_zone_and_when_and_waits_for_nobody(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    recipients = [Recipient(2, "+12125550161", {"name": "Ny"}), Recipient(3, "(415) 555-0162", {"name": "La"}),
                  Recipient(4, "+15550200003", {"name": "Un"}),
                  Recipient(5, "+12125550164", {"name": "Tk"}, "Asia/Tokyo")]
    clock = FakeClock(utc_at(2024, 3, 15, 12, 30))
    run = asyncio.run(run_broadcast(db, None, "dry", recipients, clock))
    shown = [line.split(": Hi ")[0] for line in run.shown if line.startswith("would send")]
    print("\n" + "\n".join(shown))
    assert shown == [
        "would send to +12125550161 now [08:00-21:00 America/New_York, from the number]",
        "would send to +14155550162 at 2024-03-15 08:00 America/Los_Angeles [08:00-21:00 America/Los_Angeles, "
        "from the number]",
        "would send to +15550200003 at 2024-03-15 08:00 Pacific/Honolulu [08:00-21:00 11 zones, America/Adak … "
        "Pacific/Honolulu, zone unknown: DEFAULT_REGION US]",
        "would send to +12125550164 at 2024-03-16 08:00 Asia/Tokyo [08:00-21:00 Asia/Tokyo, timezone column]"]
    assert clock.sleeps == [1.0, 1.0, 1.0]  # paced as ever, and no waiting for anyone's hours
    assert ("  waited for their sending hours (quiet hours): 3, until 2024-03-15 08:00 America/Los_Angeles "
            "(the first) to 2024-03-16 08:00 Asia/Tokyo (the last)") in run.report.summary().splitlines()
    assert look(db, lambda store: store.broadcast_messages("dry")) == []


# -- the CSV ----------------------------------------------------------------------------------------

def test_csv_columns_become_variables(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("\ufeffname,phone,date\nAda,+1 555 123 4567,\"Tue 3 Dec, 10:00\"\n", encoding="utf-8")
    assert read_recipients(path) == [Recipient(2, "+15551234567",
                                               {"name": "Ada", "date": "Tue 3 Dec, 10:00"})]


def test_csv_header_with_spaces_after_the_commas(tmp_path: Path) -> None:
    """A hand-written header such as ``name, phone, date`` passes the header check (which ignores
    the spaces), so the numbers must be read from that column too."""
    path = tmp_path / "people.csv"
    path.write_text("name, phone, date\nAda, +15551234567, Tue\n", encoding="utf-8")
    assert read_recipients(path) == [Recipient(2, "+15551234567", {"name": "Ada", "date": "Tue"})]


def test_csv_in_national_format_is_sent_in_e164(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """Issue 12: numbers as people write them in a spreadsheet, read in DEFAULT_REGION (US) and sent
    in E.164; the same number written twice is one recipient, an impossible one is skipped with why."""
    db = tmp_path / "bot.db"
    rows = [{"phone": "(415) 555-0123", "name": "Ada", "date": "Tue"},
            {"phone": "415.555.0124", "name": "Bo", "date": "Wed"},
            {"phone": "+1 415 555 0123", "name": "Ada again", "date": "Tue"},
            {"phone": "(415) 555-01", "name": "Typo", "date": "?"},
            {"phone": "555 020 0001", "name": "Cy", "date": "Thu"}]
    csv_path = write_csv(tmp_path / "people.csv", rows)
    recipients = read_recipients(csv_path)
    assert [recipient.phone for recipient in recipients] == ["+14155550123", "+14155550124", "+14155550123",
                                                             "(415) 555-01", "+15550200001"]
    name = default_name("reminder", csv_path)
    run = asyncio.run(run_broadcast(db, fake_twilio, name, recipients, FakeClock(start=1_700_000_000.0)))

    assert [attempt.to for attempt in fake_twilio.created] == ["+14155550123", "+14155550124", "+15550200001"]
    assert fake_twilio.created[0].body == reminder("Ada", "Tue")
    assert (run.report.sent, dict(run.report.skipped)) == (
        3, {"duplicate row": 1, "invalid number (too short)": 1})
    assert run.report.not_in_use == 1  # area code 555: possible, not assigned; sent, and said in the report
    assert "warning: 1 number(s) could be numbers but are not in use" in run.report.summary()
    records = look(db, lambda store: store.broadcast_messages(name))
    assert sorted((record.to, record.state) for record in records) == [  # type: ignore[attr-defined]
        ("(415) 555-01", "skipped"), ("+14155550123", "accepted"), ("+14155550124", "accepted"),
        ("+15550200001", "accepted")]


def test_csv_numbers_are_read_in_the_region_given(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "people.csv", [{"phone": "07911 123456", "name": "Ann"}])
    assert [recipient.phone for recipient in read_recipients(path, "GB")] == ["+447911123456"]


def test_csv_without_a_phone_column_is_refused(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("number,name\n+15551234567,Ada\n", encoding="utf-8")
    result = run_bot("broadcast", "--flow", "reminder", "--to", path, cwd=tmp_path,
                     env=outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db"),
                                      FLOWS_DIR=str(SHIPPED_FLOWS)))
    assert result.returncode == 2, output_of(result)
    assert "header with a 'phone' column (found: number, name)" in result.stderr
    assert fake_twilio.attempts == []
