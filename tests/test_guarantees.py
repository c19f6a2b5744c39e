"""Several real server processes on one store: nothing lost, doubled or raced.

Two ``server.py`` processes share a store (Redis, and SQLite on one machine) behind a pretend
load balancer (both use one PUBLIC_URL, as behind a real one); 50 senders text 20 messages each
through a counting flow, all at once, alternating between the processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ServerProcess, counting_flow, replies_of, write_flows
from tests.signed_webhooks import AUTH_TOKEN, new_message_sid, signed_request, twilio_form

pytestmark = pytest.mark.slow  # real processes, bursts, kill -9

PUBLIC_URL = "https://bot.example.test"
FAILURES: Counter[str] = Counter()
SENDERS = 50
MESSAGES = 20


@pytest.fixture(params=["redis", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'shared.db'}"


def start_servers(tmp_path: Path, store_url: str, count: int = 2, workers: int = 1) -> list[ServerProcess]:
    flows = write_flows(tmp_path / "flows", {"counting.yaml": counting_flow(MESSAGES)})
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_URL": PUBLIC_URL, "STORE_URL": store_url,
           "FLOWS_DIR": str(flows), "LOG_LEVEL": "warning", "RELOAD_FLOWS": "0",
           "DEV_MODE": "0",
           "WORKERS": str(workers)}
    return [ServerProcess(env, cwd=tmp_path).start() for _ in range(count)]


@pytest.fixture
def servers(tmp_path: Path, store_url: str) -> Iterator[list[ServerProcess]]:
    started = start_servers(tmp_path, store_url)
    yield started
    for server in started:
        server.stop()


def sender(n: int) -> str:
    return f"+1555{n:07d}"


IN_FLIGHT = 64  # requests at once; httpx's pool gets quadratic with thousands queued in it
_in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def post(client: httpx.AsyncClient, server: ServerProcess, body: str, who: str,
               sid: str | None = None) -> tuple[int, list[str], str]:
    """One signed webhook; returns (status, replies, message sid). Status 0: connection failed."""
    form = twilio_form(body, who, message_sid=sid or new_message_sid())
    content, headers = signed_request(PUBLIC_URL + "/sms", form)
    gate = _in_flight.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(IN_FLIGHT))
    try:
        async with gate:
            response = await client.post(server.url + "/sms", content=content, headers=headers)
    except httpx.HTTPError as error:
        FAILURES[type(error).__name__] += 1
        return 0, [], form["MessageSid"]
    replies = replies_of(response.text) if response.status_code == 200 else []
    return response.status_code, replies, form["MessageSid"]


async def start_counting(client: httpx.AsyncClient, server: ServerProcess, senders: range) -> None:
    for n in senders:
        status, replies, _ = await post(client, server, "COUNT", sender(n))
        assert (status, replies) == (200, ["0"])


def stored_state(store_url: str, who: str) -> tuple[str | None, int]:
    """(state, number of processed MessageSids) for a sender, read straight from the store."""
    if store_url.startswith("redis://"):
        client = redis.Redis.from_url(store_url, decode_responses=True)
        try:
            data = client.hget(f"textflow:conv:{who}", "data")
            return (json.loads(data)["state"] if data else None), int(client.scard(f"textflow:sids:{who}"))
        finally:
            client.close()
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
        row = db.execute("SELECT state FROM conversations WHERE sender = ?", (who,)).fetchone()
        processed = db.execute("SELECT COUNT(*) FROM processed WHERE sender = ?", (who,)).fetchone()[0]
    return (row[0] if row else None), int(processed)


async def burst(servers: list[ServerProcess], *, twins: bool) -> dict[str, list[tuple[int, list[str], str]]]:
    """50 senders x 20 ticks at once, alternating between the servers (twins: each MessageSid twice,
    the two copies to different servers at the same moment)."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await start_counting(client, servers[0], range(SENDERS))
        calls = []
        for round_ in range(MESSAGES):
            for n in range(SENDERS):
                target = servers[(n + round_) % len(servers)]
                if twins:
                    sid = new_message_sid()
                    twin = servers[(n + round_ + 1) % len(servers)]
                    calls += [post(client, target, "tick", sender(n), sid), post(client, twin, "tick", sender(n), sid)]
                else:
                    calls.append(post(client, target, "tick", sender(n)))
        results = await asyncio.gather(*calls)
    by_sender: dict[str, list[tuple[int, list[str], str]]] = {}
    for index, result in enumerate(results):
        n = (index // 2 if twins else index) % SENDERS
        by_sender.setdefault(sender(n), []).append(result)
    return by_sender


async def test_burst_through_two_processes(servers: list[ServerProcess], store_url: str) -> None:
    by_sender = await burst(servers, twins=False)
    statuses = Counter(status for results in by_sender.values() for status, _, _ in results)
    assert statuses == {200: SENDERS * MESSAGES}, statuses
    for who, results in by_sender.items():
        counts = sorted(int(replies[0]) for _, replies, _ in results)
        assert counts == list(range(1, MESSAGES + 1)), (who, counts)  # every transition once, none lost
        assert stored_state(store_url, who) == (f"n{MESSAGES}", MESSAGES + 1)
    print(f"\nburst: sent {SENDERS * MESSAGES}, acknowledged {statuses[200]}, 5xx "
          f"{sum(v for k, v in statuses.items() if k >= 500)}")


async def test_burst_through_uvicorn_workers(tmp_path: Path, store_url: str) -> None:
    """WORKERS=2: one server.py, two worker processes sharing the port (and the store)."""
    [server] = start_servers(tmp_path, store_url, count=1, workers=2)
    try:
        pids: set[int] = set()
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for _ in range(200):  # the second worker may still be starting when the first answers
                pids.add((await client.get(server.url + "/healthz/details")).json()["pid"])
                if len(pids) == 2:
                    break
                await asyncio.sleep(0.05)
        assert len(pids) == 2, pids  # both workers answer
        by_sender = await burst([server], twins=True)
    finally:
        server.stop()
    for who, results in by_sender.items():
        assert all(status == 200 for status, _, _ in results)
        counts = sorted({int(replies[0]) for _, replies, _ in results})
        assert counts == list(range(1, MESSAGES + 1)), (who, counts)
        assert stored_state(store_url, who) == (f"n{MESSAGES}", MESSAGES + 1)


async def test_twilio_retries_to_the_other_process(servers: list[ServerProcess], store_url: str) -> None:
    by_sender = await burst(servers, twins=True)
    statuses = Counter(status for results in by_sender.values() for status, _, _ in results)
    assert statuses == {200: 2 * SENDERS * MESSAGES}, (statuses, FAILURES)
    for who, results in by_sender.items():
        replies_by_sid: dict[str, set[tuple[str, ...]]] = {}
        for _, replies, sid in results:
            replies_by_sid.setdefault(sid, set()).add(tuple(replies))
        assert all(len(answers) == 1 for answers in replies_by_sid.values())  # twins got the same answer
        counts = sorted(int(next(iter(answers))[0]) for answers in replies_by_sid.values())
        assert counts == list(range(1, MESSAGES + 1)), (who, counts)
        assert stored_state(store_url, who) == (f"n{MESSAGES}", MESSAGES + 1)
    print(f"\ntwins: sent {2 * SENDERS * MESSAGES} ({SENDERS * MESSAGES} MessageSids twice), acknowledged "
          f"{statuses[200]}, stored transitions {SENDERS * MESSAGES}, duplicates applied 0")


async def test_kill_9_mid_burst_loses_nothing_acknowledged(tmp_path: Path, store_url: str) -> None:
    servers = start_servers(tmp_path, store_url)
    try:
        async def killer() -> None:
            await asyncio.sleep(0.4)
            assert servers[1].process is not None
            os.kill(servers[1].process.pid, signal.SIGKILL)

        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await start_counting(client, servers[0], range(SENDERS))
            calls = [post(client, servers[(n + round_) % 2], "tick", sender(n))
                     for round_ in range(MESSAGES) for n in range(SENDERS)]
            results, _ = await asyncio.gather(asyncio.gather(*calls), killer())
        acknowledged = {sid for status, _, sid in results if status == 200}
        failed = sum(status != 200 for status, _, _ in results)
        assert failed > 0, "the kill came too late to interrupt anything"
        assert not any(500 <= status for status, _, _ in results), Counter(status for status, _, _ in results)

        servers[1].stop()
        servers[1] = ServerProcess(servers[1].env | {}, cwd=tmp_path)
        servers[1].env["PORT"] = str(servers[1].port)
        servers[1].start()
        async with httpx.AsyncClient(timeout=30) as client:
            for n in range(SENDERS):
                who = sender(n)
                state, processed = stored_state(store_url, who)
                count = int((state or "n0")[1:])
                assert processed == count + 1, (who, state, processed)  # nothing half-written
                ours = [sid for (status, _, sid), index in zip(results, range(len(results)), strict=True)
                        if index % SENDERS == n and status == 200]
                assert count >= len(ours)
                for sid in ours:  # every acknowledged message is stored
                    status, replies, _ = await post(client, servers[n % 2], "tick", who, sid)
                    assert status == 200  # a retry of it is recognised, not applied again
                assert stored_state(store_url, who)[1] == processed
                if count < MESSAGES:  # the sender's next message works
                    status, replies, _ = await post(client, servers[1], "tick", who)
                    assert (status, replies) == (200, [str(count + 1)])
        print(f"\nkill -9: sent {len(results)}, acknowledged {len(acknowledged)}, failed {failed}")
    finally:
        for server in servers:
            server.stop()
