"""bot/store/redis_turns.py on a real Redis: a conversation read back by orjson only where it means
what json.loads means, and the snapshot read with the lock when the turn was named ahead."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from redis.exceptions import ResponseError

from bot.store import CommitResult, open_store
from bot.store.json_text import dumps_record
from bot.store.read_ahead import read_ahead
from bot.store.redis_turns import read_record
from bot.types import Conversation, Inbound, Turn
from tests.test_json_text import VALUES, meaning
from tests.test_store import turn


def _record(variables: Any) -> dict[str, Any]:
    return {"flow": "signup", "state": "ask", "vars": variables, "engine": {"timeout": None, "runs": []},
            "updated_at": 1_700_000_000.25}


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_a_stored_record_reads_back_as_json_loads_reads_it(variables: Any) -> None:
    written = dumps_record(_record(variables), "vars")
    text = written.decode() if isinstance(written, bytes) else written
    assert json.dumps(read_record(text)) == meaning(text)


def test_what_orjson_would_read_otherwise_goes_to_json_loads() -> None:
    """Integers beyond 64 bits (orjson reads them as floats), NaN, lone surrogates: written by
    json.dumps (a space after the first key), so read by json.loads, whatever wrote them."""
    for variables in ({"big": 2 ** 70}, {"small": -(2 ** 63) - 1}, {"n": math.nan}, {"s": "\ud800"}):
        text = json.dumps(_record(variables))
        assert text.startswith('{"flow": ')
        assert json.dumps(read_record(text)) == json.dumps(json.loads(text))
    assert read_record(json.dumps(_record({"big": 2 ** 70})))["vars"]["big"] == 2 ** 70
    # A record from a release before orjson (json.dumps, other key orders) reads as it always did.
    assert read_record('{"state": "ask", "flow": "signup", "vars": {}}') == {"state": "ask", "flow": "signup",
                                                                         "vars": {}}


async def test_variables_orjson_cannot_read_alike_round_trip_through_redis(redis_url: str) -> None:
    store = open_store(redis_url)
    try:
        conversation = Conversation("+15550000001", "signup", "ask",
                                    {"big": 2 ** 70, "u64": 2 ** 64 - 1, "n": math.inf, "s": "Zoë 🎉"})
        made = Turn(Inbound("SM1", conversation.sender, "+15550001111", "hi"), conversation, 0, ("ok",), None,
                    1_700_000_000.0)
        await store.commit(made)
        loaded = (await store.snapshot(conversation.sender, "SM2")).conversation
        assert loaded.vars == {"big": 2 ** 70, "u64": 2 ** 64 - 1, "n": math.inf, "s": "Zoë 🎉"}
        assert isinstance(loaded.vars["big"], int) and isinstance(loaded.vars["u64"], int)
    finally:
        await store.close()


# -- the lock and the snapshot in one trip (bot/store/read_ahead.py) -------------------------------------

SENDER = "+15550000001"


async def _reads(client: aioredis.Redis) -> int:
    """Redis's read events so far (a write of pipelined commands is one), less this INFO's own."""
    return int((await client.info("stats"))["total_reads_processed"])


async def _trips(client: aioredis.Redis, work: Callable[[], Awaitable[object]]) -> int:
    await asyncio.sleep(0.02)
    before = await _reads(client)
    await work()
    await asyncio.sleep(0.02)  # a release sent without waiting has been read
    return await _reads(client) - before - 1


async def test_a_turn_named_ahead_reads_its_snapshot_with_the_lock(redis_url: str) -> None:
    store = open_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with store.lock(SENDER):  # the connection opened, the keyspace checked
            conversation = (await store.snapshot(SENDER, "SM1")).conversation
            assert await store.commit(turn(conversation, "SM1", replies=("hello",))) is CommitResult.COMMITTED

        async def named(sid: str) -> object:
            read_ahead(SENDER, sid)
            async with store.lock(SENDER):
                return await store.snapshot(SENDER, sid)

        async def unnamed(sid: str) -> object:
            async with store.lock(SENDER):
                return await store.snapshot(SENDER, sid)

        assert await _trips(client, lambda: unnamed("SM1")) == 3  # lock, snapshot, release
        assert await _trips(client, lambda: named("SM1")) == 2  # lock with snapshot, release
        read_ahead(SENDER, "SM1")
        async with store.lock(SENDER):
            snapshot = await store.snapshot(SENDER, "SM1")
            assert (snapshot.recorded_replies, snapshot.conversation.version) == (("hello",), 1)
            again = await store.snapshot(SENDER, "SM1")  # a redo after a conflict reads again
            assert again == snapshot
        # Named for one lock only, and only for its own sender's lane.
        read_ahead(SENDER, "SM2")
        assert await _trips(client, lambda: unnamed("SM2")) == 2
        assert await _trips(client, lambda: unnamed("SM2")) == 3
        read_ahead("+15550000002", "SM2")
        assert await _trips(client, lambda: unnamed("SM2")) == 3
    finally:
        await client.aclose()
        await store.close()


async def test_what_was_read_ahead_while_another_process_held_the_lock_is_read_again(redis_url: str) -> None:
    """The reads go with the SET NX; when it finds the lock held, they were not read under it: the
    snapshot reads again once the lock is ours, and sees what the holder committed meanwhile."""
    store, other = open_store(redis_url), open_store(redis_url)
    try:
        async with other.lock(SENDER):
            conversation = (await other.snapshot(SENDER, "SM1")).conversation

            async def waiting() -> Any:
                read_ahead(SENDER, "SM2")
                async with store.lock(SENDER):
                    return await store.snapshot(SENDER, "SM2")

            task = asyncio.create_task(waiting())
            await asyncio.sleep(0.05)  # its SET NX and reads went out, and found the lock held
            assert not task.done()
            conversation.state = "confirm"
            assert await other.commit(turn(conversation, "SM1")) is CommitResult.COMMITTED  # frees the lock
        snapshot = await asyncio.wait_for(task, 5)
        assert (snapshot.conversation.state, snapshot.conversation.version) == ("confirm", 1)
    finally:
        await store.close()
        await other.close()


async def test_a_read_ahead_redis_refuses_is_read_again_under_the_lock(redis_url: str) -> None:
    """A read that fails with the SET NX (here a key of the wrong type) is not used: the snapshot
    reads again under the lock and fails as it always did, and the lock is given back."""
    store = open_store(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with store.lock("+15550000009"):  # the keyspace checked first
            pass
        await client.set(f"textflow:conv:{SENDER}", "not a hash")
        read_ahead(SENDER, "SM1")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            async with store.lock(SENDER):
                assert await client.exists(f"textflow:lock:{SENDER}")
                await store.snapshot(SENDER, "SM1")
        await asyncio.sleep(0.02)  # the release is sent without waiting for its reply
        assert not await client.exists(f"textflow:lock:{SENDER}")
    finally:
        await client.aclose()
        await store.close()
