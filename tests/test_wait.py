"""Time you can test: the simulator's clock, ``Simulation.wait`` firing what comes due as the
server's timer loop does, and conversations expiring on that clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.flows.loader import FlowSet, load_flows
from bot.flows.schema import parse_duration
from bot.inbox import Inbox
from bot.simulator import EndlessTimers, SimulatedClock, format_duration, simulation
from bot.store import open_store
from bot.store.memory import MemoryStore
from bot.timers import TimeoutScheduler
from bot.types import Inbound
from tests.conftest import write_flows

SENDER = "+15551234567"
STAFF = "+15550000000"

# A chain: no answer in 10 minutes -> a chase (and staff are told), 20 minutes more -> give up.
CHASE = """\
flow: chase
triggers: [PARCEL]
start: ask
states:
  ask:
    say: "Is anyone home to sign for the parcel? Reply YES or NO."
    replies:
      - answer: "yes"
        say: "Great, the driver is on the way."
        go: end
    otherwise: "Please reply YES or NO."
    timeout: {after: 10m, go: chase}
  chase:
    say: "Still there? Reply YES if someone can sign."
    notify: {to: "+15550000000", say: "{{ sender }} has not answered about the parcel."}
    replies:
      - answer: "yes"
        say: "Great, the driver is on the way."
        go: end
    timeout: {after: 20m, go: give_up}
  give_up:
    say: "We'll try again tomorrow."
"""

QUIZ = """\
flow: quiz
triggers: [QUIZ]
start: ask
expires_after: 30m
states:
  ask:
    say: "Capital of France?"
    replies:
      - any_of: [paris]
        say: "Right!"
        go: end
    otherwise: "Not quite. Capital of France?"
"""

# Two reminders an hour apart in the same state, then the timeout an hour after the last.
NUDGE = """\
flow: nudge
triggers: [NUDGE]
start: ask
expires_after: 1d
states:
  ask:
    say: "Reply YES to confirm."
    replies:
      - answer: "yes"
        say: "Confirmed."
        go: end
    otherwise: "Reply YES to confirm."
    remind: {after: 1h, say: "Just a reminder: reply YES to confirm.", times: 2}
    timeout: {after: 1h, go: gave_up}
  gave_up:
    say: "No answer: we'll call you."
"""

# A timeout that would come after the conversation expired.
LATE = """\
flow: late
triggers: [LATE]
start: ask
expires_after: 1h
states:
  ask:
    say: "Reply YES."
    replies:
      - answer: "yes"
        go: end
    otherwise: "Reply YES."
    timeout: {after: 2h, go: nudge}
  nudge:
    say: "Too late."
"""

ASK = "Is anyone home to sign for the parcel? Reply YES or NO."
CHASED = "Still there? Reply YES if someone can sign."
GAVE_UP = "We'll try again tomorrow."


@pytest.fixture
def flows(tmp_path: Path) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", {"chase.yaml": CHASE, "quiz.yaml": QUIZ, "nudge.yaml": NUDGE,
                                                       "late.yaml": LATE}))


async def test_a_wait_fires_a_chain_of_timeouts_in_order_each_at_its_own_time(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        assert (await sim.text("PARCEL", SENDER)).replies == (ASK,)
        began = sim.clock.now
        fired = await sim.wait(3600)
        assert [(f.after, f.replies) for f in fired] == [(600.0, (CHASED,)), (1800.0, (GAVE_UP,))]
        assert fired[0].notified == ((STAFF, f"{SENDER} has not answered about the parcel."),)
        assert fired[1].notified == ()
        assert [(step.before, step.after) for step in fired[0].trace] == [("chase:ask", "chase:chase")]
        assert sim.clock.now == began + 3600
        assert await sim.wait(3600) == []  # the flow ended: nothing more is due


async def test_what_a_timeout_arms_counts_from_when_it_fired(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await sim.text("PARCEL", SENDER)
        assert [f.replies for f in await sim.wait(parse_duration("15m"))] == [(CHASED,)]
        assert await sim.wait(parse_duration("14m")) == []  # the chase's 20m started at 10m: due at 30m
        [gave_up] = await sim.wait(60)
        assert (gave_up.after, gave_up.replies) == (60.0, (GAVE_UP,))


async def test_reminders_re_armed_in_the_same_state_then_the_timeout_all_fire_in_one_wait(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await sim.text("NUDGE", SENDER)
        fired = await sim.wait(parse_duration("1d"))
        reminder = "Just a reminder: reply YES to confirm."
        assert [(f.after, f.replies) for f in fired] == [
            (3600.0, (reminder,)), (7200.0, (reminder,)), (10800.0, ("No answer: we'll call you.",))]
        assert [(step.before, step.after) for f in fired for step in f.trace] == [
            ("nudge:ask", "nudge:ask"), ("nudge:ask", "nudge:ask"), ("nudge:ask", "nudge:gave_up")]


async def test_no_timer_fires_after_the_conversation_expired(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await sim.text("LATE", SENDER)
        assert await sim.wait(parse_duration("3h")) == []
        assert (await sim.text("yes", SENDER)).replies == (flows.program.fallback,)


async def test_an_answer_in_time_cancels_the_timeout(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await sim.text("PARCEL", SENDER)
        assert await sim.wait(300) == []
        assert (await sim.text("yes", SENDER)).replies == ("Great, the driver is on the way.",)
        assert await sim.wait(86400) == []


async def test_a_wait_with_nothing_due_only_moves_the_clock(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        began = sim.clock.now
        assert await sim.wait(0) == []
        assert await sim.wait(90) == []  # nobody is in a conversation
        await sim.text("QUIZ", SENDER)
        assert await sim.wait(60) == []  # waiting, with no timeout
        assert sim.clock.now == began + 150
        with pytest.raises(ValueError, match="forward"):
            await sim.wait(-1)


async def test_a_conversation_expires_during_a_wait_as_on_the_server(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await sim.text("QUIZ", SENDER)
        assert await sim.wait(parse_duration("29m")) == []
        assert (await sim.text("lyon", SENDER)).replies == ("Not quite. Capital of France?",)
        assert await sim.wait(parse_duration("29m")) == []  # 29m after the last message: still on
        assert (await sim.text("paris", SENDER)).replies == ("Right!",)

        await sim.text("QUIZ", SENDER)
        assert await sim.wait(parse_duration("31m")) == []  # expiring sends nothing...
        assert (await sim.text("paris", SENDER)).replies == (flows.program.fallback,)  # ...the next text starts fresh


async def test_turns_are_dated_by_the_simulated_clock(flows: FlowSet) -> None:
    """The pipeline's record of a turn (transcript, consent ledger) reads the same clock as the
    engine, so what the store holds agrees with the conversation's own times."""
    clock = SimulatedClock(1_700_000_000.0)
    async with simulation(flows, clock=clock) as sim:
        await sim.text("PARCEL", SENDER)
        await sim.wait(3600)
        await sim.text("STOP", SENDER)
        assert isinstance(sim.timers, MemoryStore)
        history = await sim.timers.consent_history(SENDER)
        transcript = sim.timers.transcript
    assert sorted({at for _, _, _, at in transcript}) == [1_700_000_000.0, 1_700_000_600.0, 1_700_001_800.0,
                                                          1_700_003_600.0]
    assert [change.at for change in history] == [1_700_003_600.0]


async def test_a_wait_fires_what_the_servers_timer_loop_fires(flows: FlowSet) -> None:
    """The same conversation, once with ``wait`` and once with the server's ``TimeoutScheduler``
    polling each (simulated) second: the same texts, each at most one poll later."""
    async with simulation(flows, clock=SimulatedClock(0.0)) as sim:
        await sim.text("PARCEL", SENDER)
        waited = [(f.after, f.replies) for f in await sim.wait(3600)]

    clock = SimulatedClock(0.0)
    async with simulation(flows, clock=clock) as server:
        sent: list[tuple[float, tuple[str, ...]]] = []

        async def deliver(record: Inbound, replies: tuple[str, ...]) -> None:
            sent.append((clock.now, replies))

        inbox: Inbox = server.inbox
        scheduler = TimeoutScheduler(inbox, server.timers, deliver, clock=clock)
        await server.text("PARCEL", SENDER)
        for _ in range(3600):
            clock.now += 1.0
            await scheduler.poll()
            await scheduler.drain()
    assert sent == waited  # whole-second deadlines: the poll of that very second fires them


async def test_an_endless_cycle_of_timeouts_is_stopped(flows: FlowSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.simulator.MAX_FIRINGS_PER_WAIT", 1)
    async with simulation(flows) as sim:
        await sim.text("PARCEL", SENDER)
        with pytest.raises(EndlessTimers, match="more than 1 timeouts and reminders fired within 1h"):
            await sim.wait(3600)


async def test_a_wait_fires_the_timeouts_of_everyone_in_the_store(flows: FlowSet, tmp_path: Path) -> None:
    """As the server does: a store kept between chats (--store) fires other numbers' timeouts too."""
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    async with simulation(flows, store_url=store_url) as sim:
        await sim.text("PARCEL", SENDER)
        await sim.text("PARCEL", "+15557654321")
        fired = await sim.wait(600)
    assert sorted((f.sender, f.replies) for f in fired) == [("+15551234567", (CHASED,)), ("+15557654321", (CHASED,))]
    store = open_store(store_url)
    try:
        assert await store.due(float("inf")) != []  # the chases wait 20 minutes more, kept in the store
    finally:
        await store.close()


@pytest.mark.parametrize(("seconds", "written"), [
    (0, "0s"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (86400 + 61, "1d1m1s"), (0.5, "0.5s"), (1.25, "1.25s"),
])
def test_format_duration_writes_what_parse_duration_reads(seconds: float, written: str) -> None:
    assert format_duration(seconds) == written
    assert parse_duration(written) == seconds
