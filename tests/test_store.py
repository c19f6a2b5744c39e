"""One contract, every store: the same assertions run against each backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import CommitResult, Store, open_store
from bot.store.base import KeyedLocks
from bot.types import Conversation, Inbound, Turn


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"
    opened = open_store(url)
    yield opened
    await opened.close()


def turn(conversation: Conversation, sid: str, *, replies: tuple[str, ...] = ("ok",),
         opt_out: bool | None = None, body: str = "hi") -> Turn:
    inbound = Inbound(message_sid=sid, sender=conversation.sender, body=body)
    return Turn(inbound, conversation, conversation.version, replies, opt_out)


class TestStoreContract:
    async def test_unknown_sender_is_idle_at_version_zero(self, store: Store) -> None:
        conversation = await store.load("+15550000001")
        assert conversation == Conversation("+15550000001", updated_at=conversation.updated_at)
        assert conversation.version == 0 and not conversation.active

    async def test_commit_then_load_round_trips(self, store: Store) -> None:
        conversation = await store.load("+15550000001")
        conversation.flow, conversation.state = "signup", "confirm"
        conversation.vars = {"name": "Zoë 🎉", "n": 3, "nested": {"a": [1, 2]}}
        assert await store.commit(turn(conversation, "SM1")) is CommitResult.COMMITTED
        loaded = await store.load("+15550000001")
        assert (loaded.flow, loaded.state, loaded.vars, loaded.version) == (
            "signup", "confirm", {"name": "Zoë 🎉", "n": 3, "nested": {"a": [1, 2]}}, 1)

    async def test_compare_and_set_refuses_a_stale_version(self, store: Store) -> None:
        first = await store.load("+15550000001")
        second = await store.load("+15550000001")
        assert await store.commit(turn(first, "SM1")) is CommitResult.COMMITTED
        assert await store.commit(turn(second, "SM2")) is CommitResult.CONFLICT
        assert await store.recorded_replies("SM2") is None  # nothing of the losing turn was written
        again = await store.load("+15550000001")
        assert await store.commit(turn(again, "SM2")) is CommitResult.COMMITTED
        assert (await store.load("+15550000001")).version == 2

    async def test_message_sid_is_processed_once(self, store: Store) -> None:
        conversation = await store.load("+15550000001")
        assert await store.commit(turn(conversation, "SM1", replies=("a", "b"))) is CommitResult.COMMITTED
        assert await store.recorded_replies("SM1") == ("a", "b")
        reloaded = await store.load("+15550000001")
        assert await store.commit(turn(reloaded, "SM1", replies=("c",))) is CommitResult.DUPLICATE
        assert await store.recorded_replies("SM1") == ("a", "b")
        assert (await store.load("+15550000001")).version == 1

    async def test_silence_is_recorded_too(self, store: Store) -> None:
        conversation = await store.load("+15550000001")
        await store.commit(turn(conversation, "SM1", replies=()))
        assert await store.recorded_replies("SM1") == ()

    async def test_opt_out_and_back_in(self, store: Store) -> None:
        sender = "+15550000001"
        assert not await store.is_opted_out(sender)
        await store.commit(turn(await store.load(sender), "SM1", opt_out=True))
        assert await store.is_opted_out(sender)
        await store.commit(turn(await store.load(sender), "SM2"))  # None: unchanged
        assert await store.is_opted_out(sender)
        await store.commit(turn(await store.load(sender), "SM3", opt_out=False))
        assert not await store.is_opted_out(sender)
        assert not await store.is_opted_out("+15550000002")

    async def test_lock_serialises_one_sender_and_not_others(self, store: Store) -> None:
        order: list[str] = []

        async def hold(sender: str, name: str) -> None:
            async with store.lock(sender):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        await asyncio.gather(hold("+1", "a"), hold("+1", "b"), hold("+2", "c"))
        assert order.index("a out") < order.index("b in")  # same sender: one at a time
        assert order.index("c in") < order.index("a out")  # other sender: concurrently


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
        conversation = await first.load("+1")
        conversation.flow, conversation.state = "f", "s"
        await first.commit(turn(conversation, "SM1"))
        await first.close()
        second = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
        assert (await second.load("+1")).state == "s"
        assert await second.recorded_replies("SM1") == ("ok",)
        await second.close()

    asyncio.run(scenario())


def test_open_store_urls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported STORE_URL scheme 'postgres'"):
        open_store("postgres://x")
    store = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert store.path == f"{tmp_path}/abs.db"  # type: ignore[attr-defined]
    asyncio.run(store.close())


async def test_keyed_locks_forget_released_keys() -> None:
    locks = KeyedLocks()

    async def use(key: str) -> None:
        async with locks.hold(key):
            await asyncio.sleep(0)

    await asyncio.gather(*(use(f"+1555{i % 50}") for i in range(500)))
    assert len(locks) == 0
