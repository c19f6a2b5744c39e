"""Simultaneous messages: none lost, none doubled, senders independent, twins answered once.

Run against the real server process (SQLite store, real HTTP on 127.0.0.1) and against the
in-process app (same store, its lifespan run as a server runs it), every request signed.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import create_app
from bot.flows.loader import load_flows
from bot.settings import Settings
from bot.store.base import KeyedLocks
from tests.conftest import ServerProcess, counting_flow, replies_of, write_flows
from tests.signed_webhooks import AUTH_TOKEN, new_message_sid, signed_request, twilio_form

STEPS = 20
SETTING_NAMES = ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT",
                 "DEV_MODE", "MAX_BODY_BYTES", "LOG_LEVEL", "ORDERS_API")

_senders = itertools.count(1)


def new_sender() -> str:
    """A sender no other test in this module uses (the process server is shared)."""
    return f"+1555{next(_senders):07d}"


# -- the two targets ------------------------------------------------------------------------

@dataclass
class Target:
    client: httpx.AsyncClient
    url: str  # the /sms URL, exactly as signed
    db: Path

    async def post(self, body: str, sender: str, message_sid: str | None = None) -> httpx.Response:
        content, headers = signed_request(self.url, twilio_form(body, sender, message_sid=message_sid))
        return await self.client.post(self.url, content=content, headers=headers)

    async def replies(self, body: str, sender: str, message_sid: str | None = None) -> list[str]:
        response = await self.post(body, sender, message_sid)
        assert response.status_code == 200, response.text
        return replies_of(response.text)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def state_of(self, sender: str) -> str | None:
        rows = self.query("SELECT state FROM conversations WHERE sender = ?", sender)
        return rows[0][0] if rows else None

    def processed_count(self, sender: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM processed WHERE sender = ?", sender)[0][0])


def _flows_folder(folder: Path) -> Path:
    return write_flows(folder / "flows", {"counting.yaml": counting_flow(STEPS)})


@pytest.fixture(scope="module")
def counting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """``python server.py`` with the counting flow and a SQLite store, for this module."""
    folder = tmp_path_factory.mktemp("counting-server")
    db = folder / "bot.db"
    server = ServerProcess({}, cwd=folder)  # cwd: no stray .env is read
    server.env = {name: value for name, value in server.env.items() if name not in SETTING_NAMES}
    server.env.update(TWILIO_AUTH_TOKEN=AUTH_TOKEN, STORE_URL=f"sqlite:///{db}",
                      FLOWS_DIR=str(_flows_folder(folder)), HOST="127.0.0.1", PORT=str(server.port),
                      LOG_LEVEL="warning")  # its output is only read at the end: keep it small
    process = None
    try:
        server.start()
        process = server.process
        yield server, db
    finally:
        process = process or server.process
        output = server.stop()
        if process is not None and process.stdout is not None:
            process.stdout.close()
    assert "Traceback" not in output, output


@pytest.fixture(params=["server process", "in-process app"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param == "server process":
        server, db = request.getfixturevalue("counting_server")
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
            yield Target(client, server.url + "/sms", db)
        return
    db = tmp_path / "bot.db"
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{db}",
                        flows_dir=str(_flows_folder(tmp_path)))
    app = create_app(settings, load_flows(settings.flows_dir))
    async with app.router.lifespan_context(app) as state:
        async def served(scope: Any, receive: Any, send: Any) -> None:
            # What an ASGI server does with the lifespan's state: a copy in every request's scope.
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            yield Target(client, "http://testserver/sms", db)
        # Every per-sender lock was released and dropped once the requests were done.
        assert len(state["inbox"].store._locks) == 0


# -- one sender, many messages at once --------------------------------------------------------

async def test_twenty_simultaneous_ticks_from_one_sender(target: Target) -> None:
    sender = new_sender()
    assert await target.replies("COUNT", sender) == ["0"]

    # Build (and sign) every request first, then fire them all at once.
    requests = [signed_request(target.url, twilio_form("tick", sender)) for _ in range(STEPS)]
    responses = await asyncio.gather(*(target.client.post(target.url, content=body, headers=headers)
                                       for body, headers in requests))

    assert [response.status_code for response in responses] == [200] * STEPS, [r.text for r in responses]
    replies = [replies_of(response.text) for response in responses]
    assert all(len(reply) == 1 for reply in replies), replies
    assert sorted(int(reply[0]) for reply in replies) == list(range(1, STEPS + 1)), replies

    assert target.state_of(sender) == f"n{STEPS}"
    assert target.processed_count(sender) == STEPS + 1  # COUNT and the 20 ticks, each once
    assert await target.replies("tick", sender) == ["overflow"]
    assert await target.replies("why", sender) == [f"at {STEPS}: done"]


async def test_many_senders_at_once_each_count_on_their_own(target: Target) -> None:
    senders = [new_sender() for _ in range(10)]
    ticks = 10
    starts = await asyncio.gather(*(target.replies("COUNT", sender) for sender in senders))
    assert starts == [["0"]] * len(senders)

    # Interleaved: s0, s1, ..., s9, s0, s1, ... all in flight together.
    order = [sender for _ in range(ticks) for sender in senders]
    requests = [(sender, *signed_request(target.url, twilio_form("tick", sender))) for sender in order]
    responses = await asyncio.gather(*(target.client.post(target.url, content=body, headers=headers)
                                       for _, body, headers in requests))

    assert all(response.status_code == 200 for response in responses), [r.text for r in responses]
    counted: dict[str, list[int]] = {sender: [] for sender in senders}
    for (sender, _, _), response in zip(requests, responses, strict=True):
        reply = replies_of(response.text)
        assert len(reply) == 1, reply
        counted[sender].append(int(reply[0]))
    for sender in senders:
        assert sorted(counted[sender]) == list(range(1, ticks + 1)), (sender, counted[sender])
        assert target.state_of(sender) == f"n{ticks}"
        assert target.processed_count(sender) == ticks + 1

    nexts = await asyncio.gather(*(target.replies("tick", sender) for sender in senders))
    assert nexts == [[str(ticks + 1)]] * len(senders)


# -- the same MessageSid twice at once ---------------------------------------------------------

@pytest.mark.parametrize("copies", [2, 10])
async def test_twin_message_sids_at_once_make_one_transition(target: Target, copies: int) -> None:
    sender = new_sender()
    assert await target.replies("COUNT", sender) == ["0"]
    rounds = 5
    for expected in range(1, rounds + 1):
        sid = new_message_sid()
        body, headers = signed_request(target.url, twilio_form("tick", sender, message_sid=sid))
        responses = await asyncio.gather(*(target.client.post(target.url, content=body, headers=headers)
                                           for _ in range(copies)))
        assert [response.status_code for response in responses] == [200] * copies
        assert [replies_of(response.text) for response in responses] == [[str(expected)]] * copies
        recorded = target.query("SELECT replies FROM processed WHERE message_sid = ?", sid)
        assert recorded == [(f'["{expected}"]',)]
        inbound = target.query("SELECT COUNT(*) FROM transcript WHERE message_sid = ? AND direction = 'in'",
                               sid)
        assert inbound == [(1,)]

    assert target.state_of(sender) == f"n{rounds}"
    assert target.processed_count(sender) == rounds + 1
    # A late retry of the last SID still gets its recorded reply, and moves nothing.
    assert await target.replies("tick", sender, message_sid=sid) == [str(rounds)]
    assert target.state_of(sender) == f"n{rounds}"
    assert await target.replies("tick", sender) == [str(rounds + 1)]


# -- the per-sender lock table ------------------------------------------------------------------

async def test_keyed_locks_do_not_grow() -> None:
    locks = KeyedLocks()
    holding: dict[str, int] = {}
    most: dict[str, int] = {}

    async def use(key: str) -> None:
        async with locks.hold(key):
            holding[key] = holding.get(key, 0) + 1
            most[key] = max(most.get(key, 0), holding[key])
            await asyncio.sleep(0)
            holding[key] -= 1

    async def fail(key: str) -> None:
        async with locks.hold(key):
            await asyncio.sleep(0)
            raise RuntimeError("handler failed")

    keys = [f"+1555{n:07d}" for n in range(500)]
    tasks = [use(key) for key in keys for _ in range(3)]
    results = await asyncio.gather(*tasks, *(fail(key) for key in keys[:50]), return_exceptions=True)
    assert sum(isinstance(result, RuntimeError) for result in results) == 50
    assert all(count == 1 for count in most.values())  # one holder per key at a time
    assert len(locks) == 0

    # A waiter cancelled while queued behind a holder leaves nothing behind either.
    release = asyncio.Event()

    async def hold_until_released() -> None:
        async with locks.hold("+15550000000"):
            await release.wait()

    holder = asyncio.create_task(hold_until_released())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(use("+15550000000"))
    await asyncio.sleep(0)
    assert len(locks) == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert len(locks) == 0

    # Keys used one after another never pile up.
    for key in keys:
        async with locks.hold(key):
            assert len(locks) == 1
    assert len(locks) == 0


async def test_keyed_locks_keep_one_holder_first_come_first_served_through_cancellations() -> None:
    """Random holders and waiters on a few keys, some cancelled while they wait or just as the key is
    handed to them: one holder per key at any time, waiters served in arrival order, nothing left."""
    import random

    locks = KeyedLocks()
    chooser = random.Random(17)
    holding: dict[str, int] = {}
    served: dict[str, list[int]] = {}

    async def use(key: str, number: int) -> None:
        async with locks.hold(key):
            holding[key] = holding.get(key, 0) + 1
            served.setdefault(key, []).append(number)
            try:
                assert holding[key] == 1
                for _ in range(chooser.randint(0, 3)):
                    await asyncio.sleep(0)
            finally:
                holding[key] -= 1

    tasks: list[asyncio.Task[None]] = []
    for number in range(600):
        tasks.append(asyncio.create_task(use(f"k{chooser.randint(0, 4)}", number)))
        if chooser.random() < 0.3:
            await asyncio.sleep(0)
        if chooser.random() < 0.15:
            chooser.choice(tasks).cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert not [result for result in results if isinstance(result, Exception)]  # never two holders
    assert len(locks) == 0
    assert all(order == sorted(order) for order in served.values())  # first come, first served
    # every task not cancelled was served (a task may also be cancelled while holding: served too)
    assert {number for order in served.values() for number in order} >= \
        {number for number, task in enumerate(tasks) if not task.cancelled()}
