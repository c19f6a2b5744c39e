"""STOP always works, at once: compliance words never queue behind a slow turn, and nothing is
sent to a number after its STOP was received (other than the STOP confirmation itself).

Every sending path runs for real: turns through ``Inbox`` on a real store, messages through the
real ``Outbox`` and the real twilio SDK to the fake Twilio API on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.broadcast import Broadcast, Recipient
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.inbox import Inbox, Patience
from bot.outbound import Outbox, send_for_turn
from bot.quiet_hours import QuietHours
from bot.store import Store, open_store
from bot.types import Inbound, OutboundMessage, Turn
from tests.conftest import write_flows

PERSON = "+15551239876"
BOT = "+15550001111"

SLOW_FLOWS = {
    "slow.yaml": """\
flow: slow
triggers: [SLOW]
start: lookup
states:
  lookup:
    fetch: {url: "/slow", save: result, timeout: 10s}
    say: "The answer is {{ result.value }}."
""",
    "page.yaml": """\
flow: page
triggers: [PAGE]
start: lookup
states:
  lookup:
    fetch: {url: "/slow", save: result, timeout: 10s}
    notify: {to: "{{ sender }}", say: "Your page: {{ result.value }}"}
""",
    "nudge.yaml": """\
flow: nudge
triggers: [NUDGE]
start: ask
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        go: end
    otherwise: "1 to 5, please."
    timeout: {after: 1s, go: remind}
  remind:
    fetch: {url: "/slow", save: result, timeout: 10s}
    say: "Still there? {{ result.value }}"
""",
}

#: The ways a turn can text someone besides the STOP confirmation.
PATHS = ("twiml", "deferred", "timeout", "notify", "broadcast", "send")
#: Where the slow turn is suspended when the STOP arrives.
POINTS = ("during the lookup", "before its commit", "before its delivery")
STOP_WORDS = st.sampled_from(["STOP", "stop", " Stop! ", "UNSUBSCRIBE", "Cancel", "ＳＴＯＰ", "quit."])


class Gate:
    """A point where the slow turn waits until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go_on = asyncio.Event()

    async def pass_through(self) -> None:
        self.reached.set()
        await self.go_on.wait()


class SlowFetcher:
    """The lookup of the slow turn: it waits at the gate (when the test chose this point)."""

    def __init__(self, gate: Gate | None) -> None:
        self.gate = gate

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        if self.gate is not None:
            await self.gate.pass_through()
        else:
            await asyncio.sleep(0.05)  # slower than the webhook's patience in these tests
        return {"value": "42"}


class GatedStore:
    """The real store, with the slow turn's first commit held at the gate (when chosen)."""

    def __init__(self, inner: Store, gate: Gate | None, slow_sid: str) -> None:
        self.inner, self.gate, self.slow_sid = inner, gate, slow_sid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, turn: Turn) -> Any:
        if self.gate is not None and turn.inbound.message_sid == self.slow_sid and not self.gate.go_on.is_set():
            await self.gate.pass_through()
        return await self.inner.commit(turn)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    yield store
    await store.close()


async def _no_sleep(seconds: float) -> None:
    return None


class Scenario:
    """One sending path with a STOP arriving at one point of its slow turn."""

    def __init__(self, store: Store, fake: FakeTwilio, tmp_path: Path, path: str, point: str) -> None:
        self.path, self.point = path, point
        # A TwiML answer leaves with its turn's commit: it has no later point of its own.
        has_point = not (path == "twiml" and point == "before its delivery")
        self.gates = {name: Gate() if name == point and has_point else None for name in POINTS}
        self.slow_sid = "SMslow" + path
        self.store = GatedStore(store, self.gates["before its commit"], self.slow_sid)
        flows = load_flows(write_flows(tmp_path / f"flows-{path}-{point.replace(' ', '-')}", SLOW_FLOWS))
        self.outbox = Outbox(store, fake.outbound_settings(from_number=BOT))
        self.notified: list[tuple[Inbound, list[tuple[str, str]]]] = []
        self.clock = [1_000.0]
        self.engine = Engine(flows, SlowFetcher(self.gates["during the lookup"]), env={}, clock=lambda: self.clock[0])
        self.inbox = Inbox(self.store, self.engine, lambda record, notes: self.notified.append((record, notes)))
        self.stop_received_at: float | None = None
        self.replies_after_stop: list[str] = []

    async def _delivery_point(self) -> None:
        gate = self.gates["before its delivery"]
        if gate is not None and not gate.go_on.is_set():
            await gate.pass_through()

    async def deliver(self, record: Inbound, replies: tuple[str, ...]) -> None:
        await self._delivery_point()
        await send_for_turn(self.outbox, record, "later", [(record.sender, text) for text in replies])

    async def slow_turn(self) -> None:
        """The turn that is slow, by path; TwiML replies it returns after the STOP are counted."""
        if self.path == "twiml":
            received = await self.inbox.receive(Inbound(self.slow_sid, PERSON, to=BOT, body="SLOW"))
            self._count(received.replies)
        elif self.path == "deferred":
            patience = Patience(0.01, "One moment…", self.deliver)
            received = await self.inbox.receive(Inbound(self.slow_sid, PERSON, to=BOT, body="SLOW"), patience)
            self._count(tuple(reply for reply in received.replies if reply != "One moment…"))
            await asyncio.gather(*self.inbox.pending())
        elif self.path == "notify":
            await self.inbox.receive(Inbound(self.slow_sid, PERSON, to=BOT, body="PAGE"))
            for record, notes in self.notified:
                await self._delivery_point()
                await send_for_turn(self.outbox, record, "notify", notes)
        elif self.path == "timeout":
            self.clock[0] += 2
            [(sender, due_at)] = await self.store.due(self.clock[0])
            await self.inbox.time_out(sender, due_at, self.deliver)
        elif self.path == "broadcast":
            scenario = self

            class GatedOutbox:  # the broadcast's send waits at the delivery point
                async def send(self, message: OutboundMessage) -> OutboundMessage:
                    await scenario._delivery_point()
                    return await scenario.outbox.send(message)

            broadcast = Broadcast("b", "slow", self.store, self.engine, GatedOutbox(),  # type: ignore[arg-type]
                                  rate=1000.0, sleep=_no_sleep,
                                  hours=QuietHours(any_time=True))  # a real clock: no quiet hours
            await broadcast.run([Recipient(2, PERSON, {})])
        else:  # send: the operator's `python -m bot send`, after the STOP
            await self.outbox.send(OutboundMessage("send|" + PERSON, PERSON, "A message from the shop"))

    def _count(self, replies: tuple[str, ...]) -> None:
        if self.stop_received_at is not None:
            self.replies_after_stop.extend(replies)

    async def run(self, stop_word: str) -> tuple[str, ...]:
        if self.path == "timeout":  # the person waits in a timed state, and the timeout's lookup is slow
            self.slow_sid = f"timeout:{PERSON}:{self.clock[0] + 1.0!r}"
            self.store.slow_sid = self.slow_sid
            await self.inbox.receive(Inbound("SMnudge", PERSON, to=BOT, body="NUDGE"))
        elif self.path == "broadcast":
            self.slow_sid = "broadcast:b|" + PERSON
            self.store.slow_sid = self.slow_sid
        gate = self.gates[self.point]
        # `send` is a command an operator runs: it comes after the STOP, whatever the point.
        slow = asyncio.create_task(self.slow_turn()) if self.path != "send" else None
        if slow is not None and gate is not None:
            await asyncio.wait_for(gate.reached.wait(), 5)
        elif slow is not None:
            await asyncio.sleep(0)  # no gate on this path at this point: STOP lands mid-turn anyway
        self.stop_received_at = time.time()
        started = time.perf_counter()
        stop = await asyncio.wait_for(self.inbox.receive(Inbound("SMstop", PERSON, to=BOT, body=stop_word)), 2)
        answered_in = time.perf_counter() - started
        for pending in self.gates.values():
            if pending is not None:
                pending.go_on.set()
        await asyncio.wait_for(slow if slow is not None else self.slow_turn(), 10)
        assert answered_in < 1.0, f"the STOP waited {answered_in:.2f}s behind the slow turn"
        return stop.replies


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("point", POINTS)
async def test_nothing_is_sent_after_stop(path: str, point: str, opened: Store, fake_twilio: FakeTwilio,
                                          tmp_path: Path) -> None:
    """Every sending path, with a STOP at every point where the slow turn waits: the STOP is
    confirmed at once, and nothing else reaches the number after it."""
    await _check(Scenario(opened, fake_twilio, tmp_path, path, point), "STOP", fake_twilio)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), point=st.sampled_from(POINTS), stop_word=STOP_WORDS)
async def test_nothing_after_stop_property(path: str, point: str, stop_word: str, fake_twilio: FakeTwilio,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same guarantee for any STOP word, path and point hypothesis picks."""
    folder = tmp_path_factory.mktemp("stop")
    fake_twilio.reset()
    store = open_store(f"sqlite:///{folder / 'bot.db'}")
    try:
        await _check(Scenario(store, fake_twilio, folder, path, point), stop_word, fake_twilio)
    finally:
        await store.close()


async def _check(scenario: Scenario, stop_word: str, fake: FakeTwilio) -> None:
    try:
        stop_replies = await scenario.run(stop_word)
    finally:
        await scenario.outbox.close()
    assert stop_replies == ("You are unsubscribed. Reply START to come back.",)  # confirmed at once
    assert scenario.replies_after_stop == []  # no TwiML answer after the STOP
    sent_after = [attempt.body for attempt in fake.created if attempt.to == PERSON]
    assert sent_after == [], f"sent to the number after its STOP: {sent_after}"


async def test_a_stop_queued_behind_a_slow_turn_is_answered_at_once_and_nothing_follows(
        opened: Store, fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """The review's reproduction: a lookup holds the sender's turn longer than the webhook's
    patience; the STOP webhook got "One moment…", its confirmation was then skipped as "opted
    out", and the slow answer was still sent after the STOP."""
    scenario = Scenario(opened, fake_twilio, tmp_path, "deferred", "during the lookup")
    gate = scenario.gates["during the lookup"]
    assert gate is not None
    patience = Patience(0.01, "One moment…", scenario.deliver)
    slow = asyncio.create_task(scenario.inbox.receive(Inbound("SMslow", PERSON, to=BOT, body="SLOW"), patience))
    await asyncio.wait_for(gate.reached.wait(), 5)
    assert (await slow).replies == ("One moment…",)  # the slow turn is now answered later
    stop = await asyncio.wait_for(scenario.inbox.receive(Inbound("SMstop", PERSON, to=BOT, body="STOP"), patience), 2)
    assert stop.replies == ("You are unsubscribed. Reply START to come back.",)
    assert not stop.deferred
    gate.go_on.set()
    await asyncio.gather(*scenario.inbox.pending())
    await scenario.outbox.close()
    assert [attempt.body for attempt in fake_twilio.created if attempt.to == PERSON] == []
    assert (await opened.snapshot(PERSON, "")).opted_out


async def test_help_beside_a_slow_turn_does_not_make_it_look_up_twice(opened: Store, tmp_path: Path) -> None:
    """HELP is answered at once too, and leaves the conversation as it was: the slow turn does not
    conflict, so its lookup (which may have side effects) runs once."""
    calls: list[str] = []
    gate = Gate()

    class CountingFetcher:
        async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
            calls.append(url)
            await gate.pass_through()
            return {"value": "42"}

    flows = load_flows(write_flows(tmp_path / "flows", SLOW_FLOWS))
    inbox = Inbox(opened, Engine(flows, CountingFetcher(), env={}))
    slow = asyncio.create_task(inbox.receive(Inbound("SM1", PERSON, to=BOT, body="SLOW")))
    await asyncio.wait_for(gate.reached.wait(), 5)
    helped = await asyncio.wait_for(inbox.receive(Inbound("SM2", PERSON, to=BOT, body="HELP")), 2)
    assert helped.replies[0].startswith("Test Program")
    gate.go_on.set()
    assert (await slow).replies == ("The answer is 42.",)
    assert calls == ["/slow"]
