"""Wait timeouts fire each on its own (issue 11, finding 5: one wait timeout can stall everyone's).

Before, the app's timer loop fired due timeouts one after another and one exception ended the pass:
a timeout that kept failing blocked every later one for good (and was re-run every second), and a
slow lookup in one person's timeout branch delayed everybody else's. These tests run real engines,
inboxes and stores (memory and SQLite); a firing "fails" through a store whose write raises for one
sender, so an exception really escapes ``Inbox.time_out``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import FlowSet, load_flows
from bot.inbox import Inbox
from bot.privacy import mask
from bot.settings import Settings
from bot.store import Store, open_store
from bot.types import Inbound, Turn
from tests.conftest import write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

# The timeout branch looks something up for the person before nudging them.
SURVEY = """\
flow: survey
triggers: [SURVEY]
start: ask
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        go: thanks
    otherwise: "1 to 5, please."
    timeout: {after: 10m, go: nudge}
  nudge:
    fetch: {url: "/nudge/{{ sender }}", save: info, timeout: 10s}
    say: "Still there? {{ info.text }}"
  thanks: {say: "Thanks!"}
"""

FAILING = "+15550000001"  # its timeout's write to the store raises
SLOW = "+15550000002"  # its timeout's lookup takes as long as the test says
PROMPT = "+15550000003"  # nothing wrong: its nudge must go out on time
NUDGE = "Still there? Rate us 1-5 any time."
ARMED_AT = 1_000.0
DUE_AT = ARMED_AT + 600


class GatedFetcher:
    """Answers every lookup at once, except the slow senders' (default: ``SLOW``): theirs wait for ``gate``."""

    def __init__(self, slow: Callable[[str], bool] = lambda sender: sender == SLOW) -> None:
        self.slow = slow
        self.gate = asyncio.Event()
        self.calls: dict[str, int] = {}

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        sender = "+" + url.rsplit("%2B", 1)[-1]
        self.calls[sender] = self.calls.get(sender, 0) + 1
        if self.slow(sender):
            await self.gate.wait()
        return {"text": "Rate us 1-5 any time."}


class FailingWrites:
    """A store whose write of ``sender``'s timeout turns raises (a disk error, a broken connection),
    so the exception escapes ``Inbox.time_out``; everything else goes to the real store."""

    def __init__(self, store: Store, sender: str) -> None:
        self._store = store
        self.sender = sender
        self.failed = 0

    async def commit(self, turn: Turn) -> Any:
        if turn.inbound.sender == self.sender and turn.inbound.message_sid.startswith("timeout:"):
            self.failed += 1
            raise RuntimeError("disk I/O error")
        return await self._store.commit(turn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def flows(tmp_path: Path) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", {"survey.yaml": SURVEY}))


async def arm(store: Store, flows: FlowSet, fetcher: GatedFetcher, senders: list[str],
              clock: Callable[[], float]) -> None:
    """Put each sender in the waiting state, armed at ``clock()`` (a timeout due 10 min later)."""
    inbox = Inbox(store, Engine(flows, fetcher, env={}, clock=clock))
    for sender in senders:
        await inbox.receive(Inbound(f"SMarm{sender[1:]:0>30}", sender, BOT_NUMBER, "SURVEY"))


async def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("with_failing", [True, False], ids=["failing-and-slow", "slow"])
async def test_one_wait_timeout_cannot_stall_everyones(store: Store, flows: FlowSet, fake_twilio: FakeTwilio,
                                                       tmp_path: Path, with_failing: bool) -> None:
    """Through the app as it runs: the failing timeout is due first, the slow one next, the prompt
    one last. The prompt one's nudge goes out at once, while the slow lookup still waits; the slow
    one's follows when its lookup answers; the failing one never blocks either."""
    fetcher = GatedFetcher()
    past = time.time() - 700
    for offset, sender in enumerate([FAILING, SLOW, PROMPT] if with_failing else [SLOW, PROMPT]):  # due 100 s ago
        await arm(store, flows, fetcher, [sender], lambda offset=offset: past + offset)  # type: ignore[misc]
    failing = FailingWrites(store, FAILING)
    settings = Settings(twilio_auth_token=AUTH_TOKEN, flows_dir=str(tmp_path / "flows"), reload_flows=False,
                        twilio_account_sid=ACCOUNT_SID, twilio_from="+15550007777",
                        twilio_api_base_url=fake_twilio.url)
    app = create_app(settings, flows, store=failing, fetcher=fetcher)  # type: ignore[arg-type]

    def nudged(sender: str) -> bool:
        return any(message.to == sender for message in fake_twilio.created)

    async with app.router.lifespan_context(app):
        try:
            started = time.monotonic()
            assert await wait_until(lambda: nudged(PROMPT), 3.0), "the prompt sender's nudge never went out"
            assert time.monotonic() - started < 1.5
            assert not nudged(SLOW)  # its lookup is still running
            assert failing.failed == (1 if with_failing else 0)  # tried once; the retry waits a second
            fetcher.gate.set()
            assert await wait_until(lambda: nudged(SLOW), 3.0)
            assert fetcher.calls[SLOW] == 1  # in flight across many polls, fired once
        finally:
            fetcher.gate.set()  # before the app stops: shutting down waits for firings under way
    assert [(m.to, m.from_, m.body) for m in fake_twilio.created if m.to != FAILING] == [
        (PROMPT, BOT_NUMBER, NUDGE), (SLOW, BOT_NUMBER, NUDGE)]


# -- the scheduler itself, driven with a fast poll, an injected clock and an injected sleep ---------------


class Deliveries:
    """A ``Deliver`` that records who was sent what, and when (monotonic)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...], float]] = []

    async def __call__(self, record: Inbound, replies: tuple[str, ...]) -> None:
        self.sent.append((record.sender, replies, time.monotonic()))

    def to(self, sender: str) -> list[tuple[str, ...]]:
        return [replies for who, replies, _ in self.sent if who == sender]


class RecordedSleep:
    """The scheduler's back-off sleep: records each wait and lets it pass at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def test_one_wait_timeout_cannot_stall_everyones_in_the_scheduler(store: Store, flows: FlowSet) -> None:
    from bot.timers import TimeoutScheduler

    fetcher = GatedFetcher()
    await arm(store, flows, fetcher, [FAILING, SLOW, PROMPT], lambda: ARMED_AT)
    failing = FailingWrites(store, FAILING)
    engine = Engine(flows, fetcher, env={}, clock=lambda: DUE_AT + 1)
    deliveries = Deliveries()
    sleep = RecordedSleep()
    scheduler = TimeoutScheduler(Inbox(failing, engine), failing, deliveries,  # type: ignore[arg-type]
                                 poll_seconds=0.01, clock=lambda: DUE_AT + 1, sleep=sleep)
    stop = asyncio.Event()
    started = time.monotonic()
    running = asyncio.create_task(scheduler.run(stop))
    try:
        assert await wait_until(lambda: bool(deliveries.to(PROMPT)), 2.0)
        assert deliveries.sent[0][2] - started < 1.0  # on time, whatever the other two do
        assert await wait_until(lambda: failing.failed == 4, 2.0)  # tried, then retried 3 times
        await asyncio.sleep(0.2)  # many more passes
        assert fetcher.calls[SLOW] == 1  # still in flight: never fired twice
        assert deliveries.to(SLOW) == []
        fetcher.gate.set()
        assert await wait_until(lambda: bool(deliveries.to(SLOW)), 2.0)
    finally:
        fetcher.gate.set()
        stop.set()
        await running
    assert deliveries.to(PROMPT) == deliveries.to(SLOW) == [(NUDGE,)]
    assert failing.failed == 4
    assert await store.due(DUE_AT + 1) == []  # the failing one was dropped from the index


async def test_a_failing_timeout_is_retried_with_back_off_then_dropped_with_one_log_line(
        store: Store, flows: FlowSet, caplog: pytest.LogCaptureFixture) -> None:
    from bot.timers import RETRY_WAITS, TimeoutScheduler

    fetcher = GatedFetcher()
    await arm(store, flows, fetcher, [FAILING], lambda: ARMED_AT)
    failing = FailingWrites(store, FAILING)
    sleep = RecordedSleep()
    scheduler = TimeoutScheduler(Inbox(failing, Engine(flows, fetcher, env={}, clock=lambda: DUE_AT)),  # type: ignore[arg-type]
                                 failing, Deliveries(), clock=lambda: DUE_AT + 1, sleep=sleep)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG, logger="bot.timers")
    assert await scheduler.poll() == 1
    await scheduler.drain()
    assert RETRY_WAITS == (1.0, 5.0, 30.0)
    assert sleep.waits == [1.0, 5.0, 30.0]
    assert failing.failed == fetcher.calls[FAILING] == 4
    given_up = [record for record in caplog.records if record.name == "bot.timers" and record.levelno >= logging.INFO]
    assert len(given_up) == 1
    assert not any(record.exc_info for record in caplog.records)  # no traceback per attempt
    line = given_up[0].getMessage()
    assert mask(FAILING) in line and FAILING not in line and "4 attempts" in line and "RuntimeError" in line
    assert await store.due(DUE_AT + 1) == []
    for _ in range(3):  # no refiring once dropped
        assert await scheduler.poll() == 0
        await scheduler.drain()
    assert failing.failed == 4


async def test_timeouts_fire_a_bounded_number_at_a_time(store: Store, flows: FlowSet) -> None:
    from bot.timers import TimeoutScheduler

    fetcher = GatedFetcher(slow=lambda sender: True)  # every lookup waits
    senders = [f"+1555100{n:04d}" for n in range(12)]
    await arm(store, flows, fetcher, senders, lambda: ARMED_AT)
    deliveries = Deliveries()
    scheduler = TimeoutScheduler(Inbox(store, Engine(flows, fetcher, env={}, clock=lambda: DUE_AT + 1)),
                                 store, deliveries, max_in_flight=5, clock=lambda: DUE_AT + 1)
    for _ in range(4):
        await scheduler.poll()
        await asyncio.sleep(0.02)
    assert sum(fetcher.calls.values()) == 5  # five lookups under way, the rest wait for a slot
    fetcher.gate.set()
    for _ in range(3):
        await scheduler.poll()
        await scheduler.drain()
    assert sorted(who for who, _, _ in deliveries.sent) == senders
    assert await store.due(DUE_AT + 1) == []
