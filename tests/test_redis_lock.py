"""The Redis turn lock (bot/store/redis_lock.py) and how a turn's commit ends it, on a real Redis.

Two stores on one Redis stand for two server processes: each has its own connection, its own
in-process queue and its own tokens, so the only thing they share is what a second machine would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.engine import Engine
from bot.inbox import Inbox
from bot.store import CommitResult, open_store
from bot.store.redis import RedisStore
from bot.types import Inbound
from tests.conftest import counting_flow
from tests.test_inbox import flows_in
from tests.test_store import load, turn

SENDER = "+15550000001"
LOCK = f"textflow:lock:{SENDER}"


def redis_store(url: str) -> RedisStore:
    store = open_store(url)
    assert isinstance(store, RedisStore)
    return store


async def sent_through(store: RedisStore) -> None:
    """Wait until what ``store`` wrote on its turn connection without waiting (a lock's release) has
    been run by Redis: a reply on the same connection comes after it. Another client's EXISTS,
    on its own connection, could otherwise get there first."""
    await store._wire.call("PING")  # noqa: SLF001 - the turn connection itself is what is checked


async def test_a_committed_turn_frees_its_sender_in_the_commit(redis_url: str) -> None:
    """The commit script deletes the lock once the turn is saved: the next process need not wait
    for this one's release (and this one sends none)."""
    store, other = redis_store(redis_url), redis_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with store.lock(SENDER):
            assert await client.exists(LOCK)
            snapshot = await store.snapshot(SENDER, "SM1")
            assert await store.commit(turn(snapshot.conversation, "SM1")) is CommitResult.COMMITTED
            assert not await client.exists(LOCK)  # freed by the commit, inside the block
            async with asyncio.timeout(1):
                async with other.lock(SENDER):  # another process gets the sender at once
                    assert await client.get(LOCK) != ""
        await sent_through(other)
        assert not await client.exists(LOCK)
    finally:
        await client.aclose()
        await store.close()
        await other.close()


async def test_a_conflict_a_duplicate_and_owed_replies_keep_the_lock(redis_url: str) -> None:
    store = redis_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with store.lock(SENDER):
            conversation = (await store.snapshot(SENDER, "SM1")).conversation
            stale = dataclasses.replace(turn(conversation, "SM1"), expected_version=7)
            assert await store.commit(stale) is CommitResult.CONFLICT
            assert await client.exists(LOCK)  # the pipeline reads again under the lock
            owing = dataclasses.replace(turn(conversation, "SM1"), owed=("sent later, under the lock",))
            assert await store.commit(owing) is CommitResult.COMMITTED
            assert await client.exists(LOCK)  # its replies go out before the sender's next turn
        await sent_through(store)
        assert not await client.exists(LOCK)
        async with store.lock(SENDER):
            conversation = (await store.snapshot(SENDER, "SM1")).conversation
            assert await store.commit(turn(conversation, "SM1")) is CommitResult.DUPLICATE
            assert await client.exists(LOCK)
        await sent_through(store)
        assert not await client.exists(LOCK)
    finally:
        await client.aclose()
        await store.close()


async def test_a_commit_frees_only_the_lock_of_its_own_sender(redis_url: str) -> None:
    store = redis_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with store.lock(f"{SENDER} compliance"):  # the inbox's lane for STOP, START, HELP
            conversation = (await store.snapshot(SENDER, "SM1")).conversation
            assert await store.commit(turn(conversation, "SM1")) is CommitResult.COMMITTED
            assert not await client.exists(f"{LOCK} compliance")
        async with store.lock(SENDER + "2"):  # a longer number starting with this one: not its lock
            conversation = (await store.snapshot(SENDER, "SM2")).conversation
            assert await store.commit(turn(conversation, "SM2")) is CommitResult.COMMITTED
            assert await client.exists(f"{LOCK}2")
    finally:
        await client.aclose()
        await store.close()


async def test_a_cancelled_acquire_leaves_nothing_held(redis_url: str) -> None:
    """Cancelled while its SET NX is on the wire (a webhook given up on): the key would stay held
    for the whole TTL if the release were not sent after it."""
    store, other = redis_store(redis_url), redis_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await load(store, SENDER)  # connected, migrated

        async def take() -> None:
            async with store.lock(SENDER):
                await asyncio.sleep(10)

        taking = asyncio.create_task(take())
        await asyncio.sleep(0)  # the SET is queued; cancelled before its reply is read
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
        async with asyncio.timeout(1):
            async with other.lock(SENDER):
                pass
    finally:
        await client.aclose()
        await store.close()
        await other.close()


async def test_renewal_runs_only_for_a_turn_that_outlives_a_third_of_the_ttl(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store import redis as redis_store_module

    monkeypatch.setattr(redis_store_module, "LOCK_SECONDS", 0.3)
    store, other = redis_store(redis_url), redis_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)

    async def renewals() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_pexpire", {}).get("calls", 0))

    try:
        await load(store, SENDER)
        before = await renewals()
        for _ in range(5):
            async with store.lock(SENDER):
                await asyncio.sleep(0.02)  # a turn as long as most are (and then some)
        assert await renewals() == before
        async with store.lock(SENDER):
            await asyncio.sleep(0.8)  # well past the TTL: kept alive
            assert await client.get(LOCK)
        assert await renewals() - before >= 3
        async with asyncio.timeout(1):
            async with other.lock(SENDER):  # released at the end as usual
                pass
    finally:
        await client.aclose()
        await store.close()
        await other.close()


async def test_two_processes_texted_by_one_sender_apply_every_message_once_in_order(
        redis_url: str, tmp_path: Path) -> None:
    """Messages of one sender arriving at two processes at once (a load balancer spreads them):
    each is applied exactly once, one at a time, whichever process gets it."""
    steps = 40
    flows = flows_in(tmp_path, counting=counting_flow(steps))
    stores = [redis_store(redis_url), redis_store(redis_url)]
    inboxes = [Inbox(store, Engine(flows, fetcher=None)) for store in stores]  # type: ignore[arg-type]
    try:
        await inboxes[0].receive(Inbound("SM0", SENDER, "+15550001111", "COUNT"))
        received = await asyncio.gather(*(inboxes[n % 2].receive(Inbound(f"SM{n}", SENDER, "+15550001111", "tick"))
                                          for n in range(1, steps + 1)))
        said = sorted(int(r.replies[0]) for r in received)
        assert said == list(range(1, steps + 1))  # each count said once: none lost, none doubled
        conversation = (await stores[0].snapshot(SENDER, "SM-check")).conversation
        assert conversation.state == f"n{steps}" and conversation.version == steps + 1
    finally:
        for store in stores:
            await store.close()
