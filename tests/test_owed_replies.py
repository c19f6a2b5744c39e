"""Replies owed by a committed turn (a deferred answer, a timeout's) survive a stop until sent, once.

The turn and its owed replies are one commit; the process that committed sends them and settles
the record. A stop (or Twilio unreachable) in between leaves the record, and the next process to
start sends it — every message exactly once, since a message already handed to Twilio is known
by its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers import free_port
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.inbox import Inbox, Patience
from bot.outbound import Outbox, send_for_turn
from bot.owed_delivery import OwedDelivery
from bot.store import Store, open_store
from bot.store.owed import CLAIM_SECONDS, RETRY_SECONDS
from bot.types import Inbound, OutboundState
from tests.conftest import write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN
from tests.test_inbox import SLOW  # a flow whose lookup answers {{ result.value }}
from tests.test_server_process import running, server_process, text

SENDER = "+15557654321"
OURS = "+15550001111"

VISIT = """\
flow: visit
triggers: [VISIT]
start: ask_day
states:
  ask_day:
    say: "Which day suits you? Reply 1 or 2."
    replies:
      - pattern: '^[12]$'
        go: booked
    timeout:
      after: 1s
      go: gave_up
  booked:
    say: "Booked."
  gave_up:
    say: "No answer, so nothing is booked."
"""


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'bot.db'}"}.get(request.param) or \
        request.getfixturevalue("redis_url")
    opened = open_store(url)
    yield opened
    await opened.close()


class SlowOrders:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def get_json(self, url: str, timeout: float, **_: Any) -> Any:
        await self.release.wait()
        return {"value": "shipped"}


class Sends:
    """A deliver that records what it was asked to send, failing (Twilio unreachable) when told."""

    def __init__(self, reachable: bool = True) -> None:
        self.reachable = reachable
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    async def __call__(self, record: Inbound, replies: tuple[str, ...]) -> bool:
        if not self.reachable:
            return False
        self.sent.append((record.message_sid, replies))
        return True


def inbox_for(store: Store, tmp_path: Path, orders: Any = None) -> Inbox:
    flows = load_flows(write_flows(tmp_path / "flows", {"visit.yaml": VISIT, "slow.yaml": SLOW}))
    return Inbox(store, Engine(flows, orders or SlowOrders()))


async def test_a_timeouts_replies_are_owed_until_sent_and_then_forgotten(store: Store, tmp_path: Path) -> None:
    inbox = inbox_for(store, tmp_path)
    await inbox.receive(Inbound("SM1", SENDER, OURS, "VISIT"))
    [(sender, due_at)] = await store.due(time.time() + 5)
    unreachable = Sends(reachable=False)
    await inbox.time_out(sender, due_at, unreachable)
    now = time.time()
    assert await store.claim_owed(now, now + CLAIM_SECONDS) == []  # to be tried again later, not yet
    [owed] = await store.claim_owed(now + RETRY_SECONDS + 1, now + 1000)
    assert owed.record.sender == SENDER and owed.record.to == OURS and owed.record.body == ""  # never the text
    assert owed.replies == ("No answer, so nothing is booked.",)
    assert await store.claim_owed(now + RETRY_SECONDS + 1, now + 1000) == []  # claimed: nobody else gets it
    await store.settle_owed(owed.record.message_sid)
    assert await store.claim_owed(now + 10_000, now + 20_000) == []


async def test_a_restarted_process_sends_what_a_stopped_one_owed_once(store: Store, tmp_path: Path) -> None:
    """The first process commits a deferred answer and cannot send it (Twilio unreachable), then
    stops: it releases what it still owes. The next one sends it at start, once."""
    orders = SlowOrders()
    first = inbox_for(store, tmp_path, orders)
    unreachable = Sends(reachable=False)
    patience = Patience(0.05, "One moment...", unreachable)
    answered = await first.receive(Inbound("SM1", SENDER, OURS, "SLOW"), patience)
    assert answered.replies == ("One moment...",) and answered.deferred
    orders.release.set()
    await asyncio.wait(first.pending())
    await first.release_owed()  # the stop

    second = inbox_for(store, tmp_path)
    sends = Sends()
    delivery = OwedDelivery(second, store, sends)
    assert await delivery.poll() == 1
    assert sends.sent == [("SM1", ("The answer is shipped.",))]
    assert await delivery.poll() == 0
    assert await OwedDelivery(inbox_for(store, tmp_path), store, sends, clock=lambda: time.time() + 1e6).poll() == 0
    assert sends.sent == [("SM1", ("The answer is shipped.",))]


async def test_a_message_handed_to_twilio_before_the_stop_is_not_sent_again(tmp_path: Path, fake_twilio: Any) -> None:
    """A turn owing two texts got the first out, then the process stopped: the next sends the second only."""
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        record = Inbound("SM9", SENDER, OURS)
        await send_for_turn(outbox, record, "later", [(SENDER, "first")])  # index 0, recorded as sent
        settled = await send_for_turn(outbox, record, "later", [(SENDER, "first"), (SENDER, "second")])
        assert settled
        assert [attempt.body for attempt in fake_twilio.attempts] == ["first", "second"]
        assert (await store.outbound("later|SM9|1")).state is OutboundState.ACCEPTED  # type: ignore[union-attr]
    finally:
        await outbox.close()
        await store.close()


async def test_a_purge_forgets_what_is_owed_to_the_number(store: Store, tmp_path: Path) -> None:
    inbox = inbox_for(store, tmp_path)
    await inbox.receive(Inbound("SM1", SENDER, OURS, "VISIT"))
    [(sender, due_at)] = await store.due(time.time() + 5)
    await inbox.time_out(sender, due_at, Sends(reachable=False))
    await store.purge(SENDER)
    assert await store.claim_owed(time.time() + 10_000, time.time() + 20_000) == []


async def test_the_retention_sweep_drops_what_nobody_tried_to_send_for_the_whole_period(
        store: Store, tmp_path: Path) -> None:
    """A record owed while no process with outbound settings ran holds a number and texts: kept
    while it may still be sent, dropped once untried for the retention period."""
    inbox = inbox_for(store, tmp_path)
    for sid, sender in (("SM1", SENDER), ("SM2", "+15557654322")):
        await inbox.receive(Inbound(sid, sender, OURS, "VISIT"))
    for sender, due_at in await store.due(time.time() + 5):
        await inbox.time_out(sender, due_at, Sends(reachable=False))
    later = time.time() + store.retention.seconds  # type: ignore[attr-defined]
    [first, _] = await store.claim_owed(later, later)  # both untried since "later"
    await store.release_owed([first.record.message_sid], later + store.retention.seconds + 100)  # type: ignore[attr-defined]
    await store.sweep(later + store.retention.seconds + 10)  # type: ignore[attr-defined]
    remaining = await store.claim_owed(later + 10**9, later + 10**9)
    assert [owed.record.message_sid for owed in remaining] == [first.record.message_sid]


def owed_rows(path: Path) -> list[tuple[str, float]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT message_sid, claimed_until FROM owed_replies").fetchall()


def wait_for(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_timeout_due_at_a_stop_is_sent_after_the_restart_exactly_once(tmp_path: Path) -> None:
    """Real processes: the server fires a timeout while Twilio cannot be reached, so its reply is
    owed; SIGTERM stops it. Restarted with Twilio back, it sends the reply once; restarted again,
    nothing more."""
    flows = write_flows(tmp_path / "flows", {"visit.yaml": VISIT})
    database = tmp_path / "bot.db"
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        common = {"STORE_URL": f"sqlite:///{database}", "FLOWS_DIR": str(flows), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                  "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_FROM": OURS}
        dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: Twilio unreachable
        with running(server_process(tmp_path, TWILIO_API_BASE_URL=dead_url, **common)) as first:
            assert text(first, "VISIT", SENDER) == ["Which day suits you? Reply 1 or 2."]
            wait_for(lambda: len(owed_rows(database)) == 1)  # fired, committed, could not be sent
        assert first.output.count("stopped cleanly") == 1  # type: ignore[attr-defined]
        [(_, claimed_until)] = owed_rows(database)
        assert claimed_until <= time.time()  # released at the stop: the next process sends it at once
        assert twilio.attempts == []

        with running(server_process(tmp_path, TWILIO_API_BASE_URL=twilio.url, **common)):
            wait_for(lambda: owed_rows(database) == [])
        with running(server_process(tmp_path, TWILIO_API_BASE_URL=twilio.url, **common)):
            time.sleep(2.5)  # more than one pass of the owed replies and the timers
        sent = [(attempt.to, attempt.body) for attempt in twilio.attempts]
        assert sent == [(SENDER, "No answer, so nothing is booked.")]
