"""A broadcast's pace (issue 17 item 4): messages a second as asked, from 1 to hundreds, several in
flight at once when Twilio's answers take their time, and unpaced on request.

The pacer on an injected clock (its sleeps move the clock; one test oversleeps each sleep as an event
loop does), then real broadcasts: through the real SDK to the fake Twilio API (bot/fake_twilio),
answering late as Twilio does, with the number of sends in flight counted around ``Outbox.send``;
and the command line's ``--rate``, ``--in-flight`` and ``BROADCAST_RATE``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.broadcast import Broadcast, Recipient
from bot.broadcast_pacing import MAX_IN_FLIGHT, TICK_SECONDS, Pacer, in_flight_for
from bot.fake_twilio import FakeTwilio
from bot.outbound import Outbox
from bot.quiet_hours import QuietHours
from bot.settings import SettingsError, load_settings
from bot.types import OutboundMessage
from tests.conftest import SHIPPED_FLOWS
from tests.test_broadcast import FakeClock, broadcast_parts, write_csv
from tests.test_outbound import outbound_env, output_of, run_bot, sqlite_url


async def _slots(rate: float | None, count: int, clock: FakeClock) -> list[float]:
    """When each of ``count`` slots was handed out, on ``clock``."""
    pacer = Pacer(rate, clock.time, clock.sleep)
    times = []
    for _ in range(count):
        await pacer.slot()
        times.append(clock.now)
    return times


@pytest.mark.parametrize("rate", [1.0, 2.5, 10.0, 20.0, 100.0, 300.0, 1000.0])
def test_the_pacer_hands_out_the_rate_asked(rate: float) -> None:
    clock = FakeClock(1_700_000_000.0)
    count = int(rate * 10) + 1  # ten seconds' worth
    times = asyncio.run(_slots(rate, count, clock))
    assert times[-1] - times[0] == pytest.approx(10.0, abs=TICK_SECONDS)  # (the last tick may go a tick early)
    # each second holds the rate, give or take a tick's sends (a float clock at 1.7e9 is exact to a µs)
    seconds = [int(round((at - times[0]) * rate) / rate + 1e-9) for at in times]
    per_second = [seconds.count(second) for second in range(10)]
    slack = 1 if rate <= 1 / TICK_SECONDS else rate * TICK_SECONDS + 1
    assert all(abs(sent - rate) <= slack for sent in per_second), per_second
    assert count - 1 <= sum(per_second) <= count  # (the last one in the first ten seconds, or a tick early)
    if rate <= 1 / TICK_SECONDS:  # one send at a time, each at its own time, as ever
        assert clock.sleeps == [pytest.approx(1 / rate)] * (count - 1)
    else:  # a sleep per tick, the tick's sends together
        assert len(clock.sleeps) == pytest.approx(10 / TICK_SECONDS, abs=1)
        assert max(per_tick := [times.count(at) for at in sorted(set(times))]) == round(rate * TICK_SECONDS), per_tick


def test_a_pacer_woken_late_each_time_still_keeps_the_rate() -> None:
    """An event loop wakes a sleeper a millisecond late or so; 500 a second must not become 333."""
    clock = FakeClock(1_700_000_000.0)
    exact = clock.sleep

    async def late(seconds: float) -> None:
        await exact(seconds + 0.0012)
    clock.sleep = late  # type: ignore[method-assign]
    for rate in (40.0, 500.0):
        times = asyncio.run(_slots(rate, int(rate * 10) + 1, clock))
        achieved = (len(times) - 1) / (times[-1] - times[0])
        assert achieved == pytest.approx(rate, rel=0.01), (rate, achieved)


def test_unpaced_never_waits_and_a_wait_for_hours_restarts_the_pace() -> None:
    clock = FakeClock(1_700_000_000.0)
    assert asyncio.run(_slots(None, 1000, clock)) == [clock.start] * 1000 and clock.sleeps == []

    async def restarted() -> None:
        pacer = Pacer(1.0, clock.time, clock.sleep)
        await pacer.slot()
        await clock.sleep(3600)  # waiting for someone's morning
        pacer.restart()
        await pacer.slot()  # at once: no second is owed
        await pacer.slot()
        pacer.give_back()  # that slot went unused (their hours had closed): the next send takes it
        await pacer.slot()
    asyncio.run(restarted())
    assert clock.sleeps == [3600, 1.0]


def test_in_flight_by_default_is_enough_for_the_rate_at_half_a_second_a_call() -> None:
    assert [in_flight_for(rate) for rate in (1 / 600, 1.0, 2.0, 3.0, 10.0, 100.0, 1000.0)] == [1, 1, 1, 2, 5, 50,
                                                                                              MAX_IN_FLIGHT]
    assert in_flight_for(None) == 32


class CountingOutbox:
    """The real ``Outbox``, counting the sends under way at once (its ``send`` only, as a broadcast uses it)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.now = self.most = 0

    async def send(self, message: OutboundMessage) -> OutboundMessage:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.outbox.send(message)
        finally:
            self.now -= 1


async def _broadcast(db: Path, fake: FakeTwilio, recipients: list[Recipient], rate: float | None,
                     in_flight: int | None = None) -> tuple[int, int]:
    """(messages accepted, most sends in flight at once), on the real clock."""
    async with broadcast_parts(db, fake) as (store, engine, outbox):
        assert outbox is not None
        counting = CountingOutbox(outbox)
        report = await Broadcast("paced", "reminder", store, engine, counting, rate=rate,  # type: ignore[arg-type]
                                 hours=QuietHours(any_time=True), in_flight=in_flight).run(recipients)
    return report.sent, counting.most


def test_a_slow_api_at_a_high_rate_gets_several_sends_in_flight(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """Twilio's answers take 100-300 ms: one send at a time could never go beyond 3-10 a second.
    At 200 a second with answers 200 ms late, sends overlap (about 40 at once), never beyond the
    default bound for the rate; each recipient is texted once."""
    fake_twilio.delay = 0.2
    recipients = [Recipient(i + 2, f"+1555093{i:04d}", {"name": f"P{i}"}) for i in range(120)]
    sent, most = asyncio.run(_broadcast(tmp_path / "bot.db", fake_twilio, recipients, 200.0))
    print(f"\n120 messages at 200/s, answers 200 ms late: at most {most} in flight at once")
    assert sent == 120 and len(fake_twilio.created) == 120
    assert len({attempt.to for attempt in fake_twilio.created}) == 120
    assert 10 <= most <= in_flight_for(200.0)


def test_in_flight_bounds_the_sends_at_once_unpaced(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    fake_twilio.delay = 0.05
    recipients = [Recipient(i + 2, f"+1555094{i:04d}", {"name": f"P{i}"}) for i in range(40)]
    sent, most = asyncio.run(_broadcast(tmp_path / "bot.db", fake_twilio, recipients, None, in_flight=4))
    assert sent == 40 and most == 4


def test_broadcast_rate_setting_and_the_command_lines_rate(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    assert load_settings({}).broadcast_rate == 1.0
    assert load_settings({"BROADCAST_RATE": "unlimited"}).broadcast_rate is None
    assert load_settings({"BROADCAST_RATE": " 25 "}).broadcast_rate == 25.0
    for bad in ("0", "-3", "fast", "inf"):
        with pytest.raises(SettingsError, match=rf"^BROADCAST_RATE must be messages per second above 0, such as 1 or "
                                                rf"25, or unlimited \(got '{bad}'\)$"):
            load_settings({"BROADCAST_RATE": bad})

    csv_path = write_csv(tmp_path / "people.csv", [{"phone": f"+1555095{i:04d}", "name": "Kim"} for i in range(30)])
    env = outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db"), FLOWS_DIR=str(SHIPPED_FLOWS),
                       BROADCAST_WINDOW="any", BROADCAST_RATE="0.001")  # the setting, unless --rate says otherwise
    refused = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "0", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "--rate must be messages per second above 0" in refused.stderr, \
        output_of(refused)
    refused = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--in-flight", "0", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and f"--in-flight must be 1 to {MAX_IN_FLIGHT} (got 0)" in refused.stderr, \
        output_of(refused)
    assert fake_twilio.attempts == []
    unpaced = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "unlimited", "--in-flight", "8",
                      cwd=tmp_path, env=env)
    assert unpaced.returncode == 0, output_of(unpaced)
    assert "30 row(s), unpaced" in unpaced.stderr
    assert unpaced.stdout.splitlines()[0] == "requested 30: sent 30, skipped 0, failed 0, in doubt 0"
    assert len(fake_twilio.created) == 30

    slow = write_csv(tmp_path / "more.csv", [{"phone": "+15550960001", "name": "Kim"}])
    by_setting = run_bot("broadcast", "--flow", "reminder", "--to", slow, "--dry-run", cwd=tmp_path, env=env)
    assert "1 row(s), 0.001 message(s) a second" in by_setting.stderr, output_of(by_setting)
