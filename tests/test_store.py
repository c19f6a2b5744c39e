"""One contract, every store: the same assertions run against each backend."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.store import CommitResult, Purged, Retention, Store, Turns, open_store
from bot.store.base import (
    BROADCAST_KEEP_SECONDS,
    DAY,
    PROCESS_STATUS_KEEP_SECONDS,
    BroadcastProgress,
    FlowResults,
    FlowsVersion,
    KeyedLocks,
    ProcessStatus,
    RejectedReload,
    RunRow,
    StoreHealth,
    StoreUnavailable,
)
from bot.store.listings import Page
from bot.store.redis import RedisStore
from bot.types import (
    ArmedTimeout,
    ConsentChange,
    ConsentMethod,
    ConsentStatus,
    Conversation,
    Inbound,
    MediaText,
    ReturnPoint,
    RunOutcome,
    RunUpdate,
    TraceStep,
    Turn,
    media_of,
)

OPTED_OUT, OPTED_IN = ConsentStatus.OPTED_OUT, ConsentStatus.OPTED_IN


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"
    opened = open_store(url, Retention(seconds=3600))
    yield opened
    await opened.close()


async def load(store: Turns, sender: str) -> Conversation:
    return (await store.snapshot(sender, "")).conversation


async def recorded(store: Turns, message_sid: str) -> tuple[str, ...] | None:
    return (await store.snapshot("+0", message_sid)).recorded_replies


def turn(conversation: Conversation, sid: str, *, replies: tuple[str, ...] = ("ok",),
         opt_out: bool | None = None, body: str = "hi", at: float | None = None) -> Turn:
    """A turn; ``opt_out`` True/False: the sender texted ``body`` to opt out or back in (a keyword)."""
    inbound = Inbound(message_sid=sid, sender=conversation.sender, body=body)
    at = time.time() if at is None else at
    consent = None if opt_out is None else \
        ConsentChange(conversation.sender, OPTED_OUT if opt_out else OPTED_IN, ConsentMethod.KEYWORD, body, sid, at)
    return Turn(inbound, conversation, conversation.version, replies, consent, at)


class TestTurns:
    """Turns: one snapshot read, one atomic compare-and-set write."""

    async def test_unknown_sender_is_idle_at_version_zero(self, store: Store) -> None:
        conversation = await load(store, "+15550000001")
        assert conversation == Conversation("+15550000001", updated_at=conversation.updated_at)
        assert conversation.version == 0 and not conversation.active

    async def test_commit_then_load_round_trips(self, store: Store) -> None:
        conversation = await load(store, "+15550000001")
        conversation.flow, conversation.state = "signup", "confirm"
        conversation.vars = {"name": "Zoë 🎉", "n": 3, "nested": {"a": [1, 2]}}
        assert await store.commit(turn(conversation, "SM1")) is CommitResult.COMMITTED
        loaded = await load(store, "+15550000001")
        assert (loaded.flow, loaded.state, loaded.vars, loaded.version) == (
            "signup", "confirm", {"name": "Zoë 🎉", "n": 3, "nested": {"a": [1, 2]}}, 1)

    async def test_compare_and_set_refuses_a_stale_version(self, store: Store) -> None:
        first = await load(store, "+15550000001")
        second = await load(store, "+15550000001")
        assert await store.commit(turn(first, "SM1")) is CommitResult.COMMITTED
        assert await store.commit(turn(second, "SM2")) is CommitResult.CONFLICT
        assert await recorded(store, "SM2") is None  # nothing of the losing turn was written
        again = await load(store, "+15550000001")
        assert await store.commit(turn(again, "SM2")) is CommitResult.COMMITTED
        assert (await load(store, "+15550000001")).version == 2

    async def test_message_sid_is_processed_once(self, store: Store) -> None:
        conversation = await load(store, "+15550000001")
        assert await store.commit(turn(conversation, "SM1", replies=("a", "b"))) is CommitResult.COMMITTED
        assert await recorded(store, "SM1") == ("a", "b")
        reloaded = await load(store, "+15550000001")
        assert await store.commit(turn(reloaded, "SM1", replies=("c",))) is CommitResult.DUPLICATE
        assert await recorded(store, "SM1") == ("a", "b")
        assert (await load(store, "+15550000001")).version == 1

    async def test_silence_is_recorded_too(self, store: Store) -> None:
        conversation = await load(store, "+15550000001")
        await store.commit(turn(conversation, "SM1", replies=()))
        assert await recorded(store, "SM1") == ()

    async def test_a_recorded_answer_keeps_its_pictures(self, store: Store) -> None:
        """A Twilio retry is answered from the record: with the same pictures (bot/store/replies.py)."""
        conversation = await load(store, "+15550000001")
        replies = (MediaText("Here's the map", ("https://c.example/map.png?a=1&b=2",)), "plain",
                   MediaText("", ("https://c.example/1.png", "https://c.example/2.png")))
        await store.commit(turn(conversation, "SM1", replies=replies))
        again = await recorded(store, "SM1")
        assert again == replies
        assert [media_of(reply) for reply in again or ()] == [media_of(reply) for reply in replies]

    async def test_the_engine_bookkeeping_round_trips_apart_from_the_variables(self, store: Store) -> None:
        conversation = await load(store, "+15550000001")
        conversation.flow, conversation.state = "quiz", "ask"
        conversation.vars = {"_timeout": "an author's own", "_return": [1]}
        conversation.timeout = ArmedTimeout(1_234.5, "ask")
        conversation.returns = [ReturnPoint("main", "quiz_step"), ReturnPoint("quiz", "inner")]
        conversation.channel = "+15550009999"
        conversation.language = "es"
        await store.commit(turn(conversation, "SM1"))
        loaded = await load(store, "+15550000001")
        assert loaded.vars == {"_timeout": "an author's own", "_return": [1]}
        assert (loaded.timeout, loaded.returns, loaded.channel, loaded.language) == (
            ArmedTimeout(1_234.5, "ask"), [ReturnPoint("main", "quiz_step"), ReturnPoint("quiz", "inner")],
            "+15550009999", "es")

    async def test_turns_committed_together_each_stand_alone(self, store: Store) -> None:
        """SQLite commits a moment's turns in one transaction: a duplicate or a conflict among them
        undoes only itself (the same holds, trivially, for the other stores)."""
        fresh = [await load(store, f"+1555000{n:04d}") for n in range(5)]
        stale = await load(store, "+15550000000")
        results = await asyncio.gather(
            *(store.commit(turn(conversation, f"SMg{n}")) for n, conversation in enumerate(fresh)),
            store.commit(turn(stale, "SMg-stale")),  # same sender as SMg0, same version: loses the race
            store.commit(turn(await load(store, "+15550009999"), "SMg1")))  # a duplicate MessageSid
        # Which twin of a pair wins is up to the backend's order (Redis spreads a burst over pooled
        # connections); that exactly one wins, and the loser writes nothing, is the contract.
        assert results[2:5] == [CommitResult.COMMITTED] * 3
        assert {results[0], results[5]} == {CommitResult.COMMITTED, CommitResult.CONFLICT}
        assert {results[1], results[6]} == {CommitResult.COMMITTED, CommitResult.DUPLICATE}
        stale_lost = results[5] is CommitResult.CONFLICT
        assert await recorded(store, "SMg-stale" if stale_lost else "SMg0") is None
        duplicate_lost = results[6] is CommitResult.DUPLICATE
        assert (await load(store, "+15550009999")).version == (0 if duplicate_lost else 1)
        assert (await load(store, "+15550000001")).version == (1 if duplicate_lost else 0)
        assert [(await load(store, f"+1555000{n:04d}")).version for n in (0, 2, 3, 4)] == [1] * 4


class TestLocks:
    """Per-sender order."""

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




async def move(store: Store, sender: str, flow: str | None, state: str | None, sid: str,
               updated_at: float | None = None) -> None:
    """A turn that leaves ``sender`` at ``flow``/``state`` (None, None: in no flow)."""
    conversation = await load(store, sender)
    conversation.flow, conversation.state = flow, state
    if updated_at is not None:
        conversation.updated_at = updated_at
    assert await store.commit(turn(conversation, sid)) is CommitResult.COMMITTED


class TestPositions:
    """Who is where: the console's live counts and an edit's impact (``Positions.state_counts``)."""

    async def test_counts_follow_conversations_from_state_to_state(self, store: Store) -> None:
        assert await store.state_counts("signup") == {}
        await move(store, "+1", "signup", "ask_name", "SM1")
        await move(store, "+2", "signup", "ask_name", "SM2")
        await move(store, "+3", "signup", "confirm", "SM3")
        await move(store, "+4", "order_status", "ask_number", "SM4")
        await move(store, "+5", None, None, "SM5")  # idle: counted nowhere
        assert await store.state_counts("signup") == {"ask_name": 2, "confirm": 1}
        assert await store.state_counts("order_status") == {"ask_number": 1}
        await move(store, "+1", "signup", "confirm", "SM6")  # moved on: counted once, where it is now
        await move(store, "+2", "order_status", "ask_number", "SM7")  # into another flow
        await move(store, "+3", None, None, "SM8")  # finished
        assert await store.state_counts("signup") == {"confirm": 1}
        assert await store.state_counts("order_status") == {"ask_number": 2}
        assert await store.state_counts("no_such_flow") == {}

    async def test_a_turn_that_changes_nothing_keeps_the_count(self, store: Store) -> None:
        await move(store, "+1", "signup", "ask_name", "SM1")
        loaded = await load(store, "+1")
        loaded.state = "confirm"  # not written: the turn leaves the stored conversation alone
        await store.commit(dataclasses.replace(turn(loaded, "SM2"), conversation_changed=False))
        assert await store.state_counts("signup") == {"ask_name": 1}

    async def test_since_counts_only_people_who_wrote_since(self, store: Store) -> None:
        now = time.time()
        await move(store, "+1", "signup", "ask_name", "SM1", updated_at=now - 1800)
        await move(store, "+2", "signup", "ask_name", "SM2", updated_at=now - 60)
        assert await store.state_counts("signup", since=now - 600) == {"ask_name": 1}
        assert await store.state_counts("signup", since=now - 3000) == {"ask_name": 2}
        assert await store.state_counts("signup", since=now + 1) == {}

    async def test_purged_and_swept_conversations_leave_the_counts(self, store: Store) -> None:
        now = time.time()
        await move(store, "+1", "signup", "ask_name", "SM1")
        await move(store, "+2", "signup", "ask_name", "SM2", updated_at=now - 2 * 3600)  # past the 1 h retention
        await move(store, "+3", "signup", "confirm", "SM3")
        await store.purge("+3")
        await store.sweep(now)
        assert await store.state_counts("signup") == {"ask_name": 1}


async def test_sqlite_counts_read_only_and_never_make_a_new_file(tmp_path: Path) -> None:
    """Counting opens its own read-only connection: a store file deleted under the bot is an
    unavailable store (the console says so), not a new empty database at its path."""
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        await move(store, "+1", "signup", "ask_name", "SM1")
        assert await store.state_counts("signup") == {"ask_name": 1}
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"bot.db{suffix}").unlink(missing_ok=True)
        with pytest.raises(StoreUnavailable, match="cannot be read"):
            await store.state_counts("signup")
        assert not (tmp_path / "bot.db").exists()
    finally:
        await store.close()


class TestConsent:
    """Opt-outs, by a turn or learnt outside one."""

    async def test_opt_out_and_back_in(self, store: Store) -> None:
        sender = "+15550000001"
        assert not await store.is_opted_out(sender)
        await store.commit(turn(await load(store, sender), "SM1", opt_out=True))
        assert await store.is_opted_out(sender)
        await store.commit(turn(await load(store, sender), "SM2"))  # None: unchanged
        assert await store.is_opted_out(sender)
        await store.commit(turn(await load(store, sender), "SM3", opt_out=False))
        assert not await store.is_opted_out(sender)
        assert not await store.is_opted_out("+15550000002")


    async def test_opt_out_learnt_from_twilio(self, store: Store) -> None:
        assert await store.set_consent(ConsentChange("+15550000009", OPTED_OUT, ConsentMethod.DELIVERY_ERROR))
        assert await store.is_opted_out("+15550000009")
        assert await store.set_consent(ConsentChange("+15550000009", OPTED_IN, ConsentMethod.OPERATOR))
        assert not await store.is_opted_out("+15550000009")


YEAR = 365.25 * 24 * 3600


def keyword(number: str, status: ConsentStatus, sid: str, at: float, word: str = "STOP") -> ConsentChange:
    return ConsentChange(number, status, ConsentMethod.KEYWORD, word, sid, at)


async def ledger_of(store: Store, since: float | None = None) -> list[ConsentChange]:
    return [change async for change in store.consent_changes(since)]


class TestConsentLedger:
    """The consent ledger: every change of a number's consent, append-only, kept for its own period."""

    async def test_a_turn_appends_a_row_only_when_the_status_changes(self, store: Store) -> None:
        number = "+15550000001"
        await store.commit(turn(await load(store, number), "SM1", opt_out=True, body="Stop!", at=1_000.0))
        await store.commit(turn(await load(store, number), "SM2", opt_out=True, body="STOP", at=1_001.0))  # again
        await store.commit(turn(await load(store, number), "SM3", at=1_002.0))  # no change of consent at all
        assert await store.consent_history(number) == [keyword(number, OPTED_OUT, "SM1", 1_000.0, "Stop!")]
        await store.commit(turn(await load(store, number), "SM4", opt_out=False, body="START", at=1_003.0))
        await store.commit(turn(await load(store, number), "SM5", opt_out=False, body="UNSTOP", at=1_004.0))
        assert await store.consent_history(number) == [keyword(number, OPTED_OUT, "SM1", 1_000.0, "Stop!"),
                                                        keyword(number, OPTED_IN, "SM4", 1_003.0, "START")]
        assert not await store.is_opted_out(number)
        # START from a number never seen: subscribed already, so nothing to record
        await store.commit(turn(await load(store, "+15550000002"), "SM6", opt_out=False, body="START"))
        assert await store.consent_history("+15550000002") == []
        assert [change.message_sid for change in await ledger_of(store)] == ["SM1", "SM4"]

    async def test_a_turn_that_is_not_written_writes_no_row(self, store: Store) -> None:
        number = "+15550000001"
        stale = await load(store, number)
        await store.commit(turn(await load(store, number), "SM1"))
        assert await store.commit(turn(stale, "SM2", opt_out=True, body="STOP")) is CommitResult.CONFLICT
        assert await store.consent_history(number) == [] and not await store.is_opted_out(number)
        await store.commit(turn(await load(store, number), "SM3", opt_out=True, body="STOP", at=1_000.0))
        await store.set_consent(ConsentChange(number, OPTED_IN, ConsentMethod.OPERATOR, "by phone", at=1_001.0))
        replayed = turn(await load(store, number), "SM3", opt_out=True, body="STOP", at=1_002.0)  # a Twilio retry
        assert await store.commit(replayed) is CommitResult.DUPLICATE
        assert [change.status for change in await store.consent_history(number)] == [OPTED_OUT, OPTED_IN]
        assert not await store.is_opted_out(number)

    async def test_set_consent_applies_and_records_a_change_once(self, store: Store) -> None:
        number = "+15550000009"
        refused = ConsentChange(number, OPTED_OUT, ConsentMethod.DELIVERY_ERROR,
                                "21610 in a status callback (failed)", "SM" + "a" * 32, 2_000.0)
        assert await store.set_consent(refused) is True
        again = ConsentChange(number, OPTED_OUT, ConsentMethod.DELIVERY_ERROR, "21610", "SM" + "b" * 32, 2_001.0)
        assert await store.set_consent(again) is False
        assert await store.is_opted_out(number)
        back = ConsentChange(number, OPTED_IN, ConsentMethod.OPERATOR, "consent opt-in by ops: by email", "", 2_002.0)
        assert await store.set_consent(back) is True
        assert await store.consent_history(number) == [refused, back]
        assert not await store.is_opted_out(number)
        assert await store.set_consent(ConsentChange("+15550000008", OPTED_IN, ConsentMethod.OPERATOR)) is False

    async def test_the_ledger_keeps_what_was_texted_as_it_was(self, store: Store) -> None:
        detail = '=HYPERLINK("x")\n"quoted", ../ 🎉 ' + "x" * 2_000
        change = ConsentChange("whatsapp:+15550000001", OPTED_OUT, ConsentMethod.PHRASE, detail, "SMw", 3_000.5)
        assert await store.set_consent(change)
        assert await store.consent_history("whatsapp:+15550000001") == [change]
        assert await ledger_of(store) == [change]

    async def test_purge_keeps_the_ledger_and_the_opt_out(self, store: Store) -> None:
        number = "+15550000001"
        await store.commit(turn(await load(store, number), "SM1", opt_out=True, body="STOP", at=1_000.0))
        await store.purge(number)
        assert await store.consent_history(number) == [keyword(number, OPTED_OUT, "SM1", 1_000.0)]
        assert await store.is_opted_out(number)

    async def test_history_and_export_are_oldest_first_and_export_reads_from_since(self, store: Store) -> None:
        a, b = "+15550000001", "+15550000002"
        changes = [keyword(a, OPTED_OUT, "SM1", 1_000.0), keyword(b, OPTED_OUT, "SM2", 1_500.0),
                   keyword(a, OPTED_IN, "SM3", 2_000.0, "START"), keyword(b, OPTED_IN, "SM4", 3_000.0, "START"),
                   keyword(a, OPTED_OUT, "SM5", 4_000.0)]
        for change in changes:
            assert await store.set_consent(change)
        assert await store.consent_history(a) == [changes[0], changes[2], changes[4]]
        assert await ledger_of(store) == changes
        assert await ledger_of(store, since=2_000.0) == changes[2:]  # inclusive
        assert await ledger_of(store, since=2_000.5) == changes[3:]
        assert await ledger_of(store, since=9_999.0) == []

    async def test_export_pages_through_a_long_ledger(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        from bot.store import redis as redis_store
        from bot.store import sqlite_consent

        monkeypatch.setattr(sqlite_consent, "PAGE", 3)
        monkeypatch.setattr(redis_store, "PAGE", 3)
        # equal times across page boundaries: none lost, none read twice, in the order recorded
        times = [1_000.0, 1_000.0, 1_000.0, 1_000.0, 1_001.0, 1_002.0, 1_002.0, 1_002.0, 1_003.0, 1_004.0]
        changes = [keyword(f"+1555000{n:04d}", OPTED_OUT, f"SM{n}", at) for n, at in enumerate(times)]
        for change in changes:
            await store.set_consent(change)
        assert await ledger_of(store) == changes
        assert await ledger_of(store, since=1_002.0) == changes[5:]

    async def test_retention_drops_only_rows_past_the_consent_period(self, store: Store) -> None:
        """Conversation retention (1 h here) never touches the ledger; its own period (5 years) does,
        and the opt-out itself is never dropped."""
        old, young = 1_000.0, 1_000.0 + 3 * YEAR
        gone = keyword("+15550000001", OPTED_OUT, "SM1", old)
        kept = keyword("+15550000002", OPTED_OUT, "SM2", young)
        await store.set_consent(gone)
        await store.set_consent(kept)
        swept = await store.sweep(old + 2 * 3600)  # past the conversation retention, not the consent one
        assert swept.consent_changes == 0 and await ledger_of(store) == [gone, kept]
        swept = await store.sweep(old + 1826 * 24 * 3600 + 60)
        assert swept.consent_changes == 1
        assert await ledger_of(store) == [kept]
        assert await store.consent_history("+15550000001") == []
        assert await store.consent_history("+15550000002") == [kept]
        assert await store.is_opted_out("+15550000001")  # the opt-out stays for good


def test_consent_retention_is_at_least_four_years() -> None:
    assert Retention().consent_seconds == 1826 * 24 * 3600
    Retention(consent_seconds=1461 * 24 * 3600)
    with pytest.raises(ValueError, match="at least 1461 days"):
        Retention(consent_seconds=1460 * 24 * 3600)


async def test_sqlite_refuses_to_change_or_delete_young_ledger_rows(tmp_path: Path) -> None:
    """Append-only whoever writes to the file: UPDATE is refused, and DELETE for rows under 4 years old."""
    import sqlite3

    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    await store.set_consent(ConsentChange("+1", OPTED_OUT, ConsentMethod.KEYWORD, "STOP", "SM1"))  # now
    await store.set_consent(ConsentChange("+2", OPTED_OUT, ConsentMethod.KEYWORD, "STOP", "SM2", 1_000.0))
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.db", isolation_level=None)) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE consent_ledger SET status = 'opted_in'")
        with pytest.raises(sqlite3.IntegrityError, match="at least 1461 days"):
            db.execute("DELETE FROM consent_ledger")
        assert db.execute("DELETE FROM consent_ledger WHERE number = '+2'").rowcount == 1  # old enough
        assert db.execute("SELECT number, status FROM consent_ledger").fetchall() == [("+1", "opted_out")]


def test_an_old_sqlite_database_gains_the_ledger_even_opened_by_several_workers_at_once(tmp_path: Path) -> None:
    import sqlite3
    import threading

    from tests.test_inbox import OLD_SQLITE_SCHEMA

    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SQLITE_SCHEMA)
        db.execute("INSERT INTO opt_outs VALUES ('+1', 500.0)")  # opted out before the ledger existed
        db.commit()
    opened: list[Store] = []
    problems: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(open_store(f"sqlite:///{path}"))
        except BaseException as error:  # noqa: BLE001 (reported below)
            problems.append(error)

    workers = [threading.Thread(target=open_one) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert problems == [] and len(opened) == 4

    async def scenario() -> None:
        store = opened[0]
        assert await store.is_opted_out("+1") and await store.consent_history("+1") == []
        await store.commit(turn(await load(store, "+1"), "SM1", opt_out=False, body="START", at=1_000.0))
        assert await opened[3].consent_history("+1") == [keyword("+1", OPTED_IN, "SM1", 1_000.0, "START")]
        for each in opened:
            await each.close()

    asyncio.run(scenario())


class TestForgetting:
    """Purge on request, sweep by retention."""

    async def test_purge_forgets_a_sender_but_keeps_their_opt_out(self, store: Store) -> None:
        sender = "+15550000001"
        conversation = await load(store, sender)
        conversation.flow, conversation.state, conversation.vars = "signup", "confirm", {"name": "Ada"}
        await store.commit(turn(conversation, "SM1", replies=("Hi Ada",), body="Ada"))
        await store.commit(turn(await load(store, sender), "SM2", replies=("bye",), opt_out=True, body="STOP"))
        other = await load(store, "+15550000002")
        await store.commit(turn(other, "SM3", replies=("kept",)))

        purged = await store.purge(sender)
        assert (purged.conversations, purged.transcript_lines, purged.replies_blanked) == (1, 4, 2)
        assert (await load(store, sender)).version == 0 and (await load(store, sender)).vars == {}
        assert await store.is_opted_out(sender)  # an opt-out survives any purge
        assert await recorded(store, "SM1") == ()  # still recognised as processed, text gone
        assert await recorded(store, "SM3") == ("kept",)
        assert (await load(store, "+15550000002")).version == 1


    async def test_sweep_keeps_message_ids_for_48_hours(self, store: Store) -> None:
        conversation = await load(store, "+15550000001")
        conversation.updated_at = 1_000.0
        old = turn(conversation, "SMold", opt_out=True, at=1_000.0)
        await store.commit(old)
        first = await store.sweep(1_000.0 + 2 * 3600)  # past the 1 h retention, within 48 h
        if not isinstance(store, RedisStore):  # (Redis does this by TTL: see TestRedisSpecifics)
            assert await recorded(store, "SMold") == ()  # still recognised; the text is gone
            assert (first.conversations, first.transcript_lines) == (1, 2)
            assert (await load(store, "+15550000001")).version == 0
        assert await store.is_opted_out("+15550000001")
        swept = await store.sweep(1_000.0 + 49 * 3600)
        if isinstance(store, RedisStore):  # Redis expires by TTL (checked below), not by sweep
            assert swept == Purged()
        else:
            assert await recorded(store, "SMold") is None
            assert swept == Purged()
        assert await store.is_opted_out("+15550000001")


DAY_ONE = 1_700_006_400.0  # 2023-11-15T00:00:00Z
FINISHED, EXPIRED, RESET = RunOutcome.FINISHED, RunOutcome.EXPIRED, RunOutcome.RESET


async def commit_runs(store: Store, sender: str, sid: str, *updates: RunUpdate) -> None:
    """A turn of ``sender`` carrying these run updates (what bot/results/tracking.py makes of a step)."""
    committed = dataclasses.replace(turn(await load(store, sender), sid), runs=updates)
    assert await store.commit(committed) is CommitResult.COMMITTED


def began(run_id: str, at: float, *, flow: str = "survey", state: str = "ask", expires: float = 3600.0) -> RunUpdate:
    return RunUpdate(run_id, flow, at, state, {}, at + expires, began=True, reached=(state,))


async def rows_of(store: Store, flow: str = "survey", **query: Any) -> list[RunRow]:
    return [row async for row in store.runs(flow, **query)]


class TestResults:
    """Results: counts per flow and day of a run's start, written with the turn; a record per run."""

    async def test_a_run_is_counted_as_it_begins_moves_and_ends(self, store: Store) -> None:
        t0 = DAY_ONE + 100
        await commit_runs(store, "+15550000001", "SM1", began("SM1/0", t0))
        await commit_runs(store, "+15550000001", "SM2", RunUpdate(
            "SM1/0", "survey", t0, "thanks", {"score": 4, "note": {"text": "Zoë 🎉"}}, t0 + 3600,
            reached=("thanks",), outcome=FINISHED, ended_at=t0 + 10))
        await commit_runs(store, "+15550000002", "SM3", began("SM3/0", t0 + 5))
        assert await store.flow_results("survey", now=t0 + 20) == \
            FlowResults("survey", 2, {"ask": 2, "thanks": 1}, {FINISHED: 1})
        assert (await store.flow_results("survey", now=t0 + 20)).in_progress == 1
        assert await rows_of(store, now=t0 + 20) == [
            RunRow("SM1/0", "survey", "+15550000001", t0, "thanks", {"score": 4, "note": {"text": "Zoë 🎉"}},
                   t0 + 3600, FINISHED, t0 + 10),
            RunRow("SM3/0", "survey", "+15550000002", t0 + 5, "ask", {}, t0 + 5 + 3600)]
        assert await store.flow_results("other", now=t0) == FlowResults("other")

    async def test_a_conflicting_turn_counts_nothing(self, store: Store) -> None:
        stale = await load(store, "+15550000001")
        await commit_runs(store, "+15550000001", "SM1", began("SM1/0", DAY_ONE))
        losing = dataclasses.replace(turn(stale, "SM2"), runs=(began("SM2/0", DAY_ONE),))
        assert await store.commit(losing) is CommitResult.CONFLICT
        assert (await store.flow_results("survey", now=DAY_ONE)).started == 1

    async def test_the_period_is_the_utc_days_runs_began_on(self, store: Store) -> None:
        for day in range(3):
            await commit_runs(store, f"+1555000000{day}", f"SM{day}", began(f"SM{day}/0", DAY_ONE + day * DAY + 60))
        first, second, third = (date(2023, 11, 15) + timedelta(days=day) for day in range(3))
        now = DAY_ONE + 10 * DAY
        assert (await store.flow_results("survey", second, second, now=now)).started == 1
        assert (await store.flow_results("survey", second, now=now)).started == 2
        assert (await store.flow_results("survey", until=second, now=now)).started == 2
        assert (await store.flow_results("survey", first, third, now=now)).started == 3
        assert [row.id for row in await rows_of(store, since=second, now=now)] == ["SM1/0", "SM2/0"]
        assert [row.id for row in await rows_of(store, until=first, now=now)] == ["SM0/0"]

    async def test_a_run_nobody_wrote_in_is_expired_once_its_time_passed(self, store: Store) -> None:
        await commit_runs(store, "+15550000001", "SM1", began("SM1/0", DAY_ONE, expires=600))
        assert (await store.flow_results("survey", now=DAY_ONE + 599)).count(EXPIRED) == 0
        assert (await rows_of(store, now=DAY_ONE + 599))[0].outcome is None
        assert (await store.flow_results("survey", now=DAY_ONE + 601)).count(EXPIRED) == 1
        row = (await rows_of(store, now=DAY_ONE + 601))[0]
        assert (row.outcome, row.ended_at) == (EXPIRED, DAY_ONE + 600)

    async def test_the_sweep_closes_lapsed_runs_once_and_keeps_the_counts(self, store: Store) -> None:
        await commit_runs(store, "+15550000001", "SM1", began("SM1/0", DAY_ONE, expires=600))
        await commit_runs(store, "+15550000002", "SM2", began("SM2/0", DAY_ONE, expires=6000))
        await store.sweep(DAY_ONE + 601)
        expected = FlowResults("survey", 2, {"ask": 2}, {EXPIRED: 1})
        assert await store.flow_results("survey", now=DAY_ONE + 601) == expected
        # A turn that still moved the closed run (another process's clock) counts nothing more.
        await commit_runs(store, "+15550000001", "SM3", RunUpdate(
            "SM1/0", "survey", DAY_ONE, "thanks", {}, DAY_ONE + 600, reached=("thanks",), outcome=FINISHED,
            ended_at=DAY_ONE + 601))
        assert await store.flow_results("survey", now=DAY_ONE + 601) == expected
        assert (await rows_of(store, now=DAY_ONE + 601))[0].outcome is EXPIRED
        await store.sweep(DAY_ONE + 6000 + 2 * 3600)  # both ended more than the 1 h retention ago
        assert await store.flow_results("survey", now=DAY_ONE + 601) == FlowResults(
            "survey", 2, {"ask": 2}, {EXPIRED: 2})  # the other one lapsed meanwhile: closed, counted
        if isinstance(store, RedisStore):  # records leave by TTL, the retention period's
            assert 0 < await store.results._redis.pttl(store.results.keys.run("SM1/0")) <= 3600 * 1000
        else:
            assert await rows_of(store) == []

    async def test_purge_forgets_the_numbers_runs_and_ends_the_open_one_reset(self, store: Store) -> None:
        sender = "+15550000001"
        await commit_runs(store, sender, "SM1", began("SM1/0", DAY_ONE))
        await commit_runs(store, sender, "SM2", RunUpdate("SM1/0", "survey", DAY_ONE, "ask", {}, DAY_ONE + 3600,
                                                          outcome=FINISHED, ended_at=DAY_ONE + 1))
        await commit_runs(store, sender, "SM3", began("SM3/0", DAY_ONE + 2))
        await commit_runs(store, "+15550000002", "SM4", began("SM4/0", DAY_ONE + 3))
        await store.purge(sender)
        assert [row.sender for row in await rows_of(store, now=DAY_ONE + 4)] == ["+15550000002"]
        assert await store.flow_results("survey", now=DAY_ONE + 4) == FlowResults(
            "survey", 3, {"ask": 3}, {FINISHED: 1, RESET: 1})

    async def test_runs_are_listed_oldest_first_a_page_at_a_time(self, store: Store) -> None:
        for n in range(7):
            await commit_runs(store, f"+1555000000{n}", f"SM{n}", began(f"SM{n}/0", DAY_ONE + n // 2))
        every = await rows_of(store, now=DAY_ONE)
        assert [(row.started_at, row.id) for row in every] == sorted((row.started_at, row.id) for row in every)
        assert len(every) == 7
        page = await rows_of(store, limit=3, now=DAY_ONE)
        rest = await rows_of(store, after=(page[-1].started_at, page[-1].id), now=DAY_ONE)
        assert page + rest == every


class TestTimers:
    """The deadline index of waiting states' timeouts."""

    async def test_deadline_index(self, store: Store) -> None:
        """Turns that enter or leave a timed wait keep the index the timeout scheduler reads."""
        conversation = await load(store, "+1")
        await store.commit(Turn(Inbound("SMd1", "+1"), conversation, 0, (), None, deadline=100.0,
                                deadline_changed=True))
        other = await load(store, "+2")
        await store.commit(Turn(Inbound("SMd2", "+2"), other, 0, (), None, deadline=50.0, deadline_changed=True))
        assert await store.due(99.0) == [("+2", 50.0)]
        assert await store.due(1000.0) == [("+2", 50.0), ("+1", 100.0)]
        await store.commit(Turn(Inbound("SMd3", "+2"), await load(store, "+2"), 1, (), None, deadline=None,
                                deadline_changed=True))
        assert await store.due(1000.0) == [("+1", 100.0)]
        await store.commit(Turn(Inbound("SMd4", "+1"), await load(store, "+1"), 1, (), None))  # unchanged
        assert await store.due(1000.0) == [("+1", 100.0)]

    async def test_drop_deadline_removes_only_that_entry(self, store: Store) -> None:
        """A timeout given up (it kept failing) leaves the index; a deadline armed since stays."""
        for index, (sender, at) in enumerate([("+1", 100.25), ("+2", 1_700_000_050.123456)]):
            await store.commit(Turn(Inbound(f"SMx{index}", sender), await load(store, sender), 0, (), None,
                                    deadline=at, deadline_changed=True))
        await store.drop_deadline("+1", 100.25)
        assert await store.due(2e9) == [("+2", 1_700_000_050.123456)]
        await store.drop_deadline("+2", 1_700_000_050.0)  # re-armed since: not the entry that was given up
        await store.drop_deadline("+3", 1.0)  # nothing there: nothing happens
        assert await store.due(2e9) == [("+2", 1_700_000_050.123456)]
        await store.drop_deadline(*(await store.due(2e9))[0])  # exactly as due() reported it
        assert await store.due(2e9) == []


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
        conversation = await load(first, "+1")
        conversation.flow, conversation.state = "f", "s"
        await first.commit(turn(conversation, "SM1"))
        await first.close()
        second = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
        assert (await load(second, "+1")).state == "s"
        assert await recorded(second, "SM1") == ("ok",)
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


class TestRedisSpecifics:
    async def test_keys_are_namespaced_and_personal_data_expires(self, redis_url: str) -> None:
        import redis.asyncio as aioredis

        store = open_store(redis_url, Retention(seconds=3600))
        conversation = await load(store, "+15550000001")
        await store.commit(turn(conversation, "SM1", opt_out=True))
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = sorted(await client.keys("*"))
            assert keys == ["textflow:consent:+15550000001", "textflow:consents", "textflow:consents:seq",
                            "textflow:conv:+15550000001", "textflow:log:+15550000001",
                            "textflow:optout:+15550000001", "textflow:optouts", "textflow:reply:SM1",
                            "textflow:schema", "textflow:schema:history",  # the keyspace's version (never expire)
                            "textflow:sid:SM1", "textflow:sids:+15550000001"]
            hour, two_days = 3600 * 1000, 48 * 3600 * 1000
            assert hour - 5000 < await client.pttl("textflow:conv:+15550000001") <= hour
            assert hour - 5000 < await client.pttl("textflow:log:+15550000001") <= hour
            assert hour - 5000 < await client.pttl("textflow:reply:SM1") <= hour  # the text: retention
            assert two_days - 5000 < await client.pttl("textflow:sid:SM1") <= two_days  # the id: >= 48 h
            assert await client.pttl("textflow:optout:+15550000001") == -1  # never expires
            assert await client.pttl("textflow:optouts") == -1  # nor the list of them (the console's)
            assert await client.pttl("textflow:schema") == -1
            for ledger in ("textflow:consent:+15550000001", "textflow:consents"):  # the sweep keeps its period
                assert await client.pttl(ledger) == -1
        finally:
            await client.aclose()
            await store.close()

    async def test_state_sets_forget_what_retention_dropped(self, redis_url: str) -> None:
        """Who is where lives in one sorted set per state (no SCAN to count): a conversation whose key
        expired is not counted, the sweep trims it, and leaving a flow leaves the set."""
        import redis.asyncio as aioredis

        store = open_store(redis_url, Retention(seconds=3600))
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            now = time.time()
            await move(store, "+1", "signup", "ask_name", "SM1", updated_at=now - 2 * 3600)
            await move(store, "+2", "signup", "ask_name", "SM2")
            assert await client.zcard("textflow:at:signup:ask_name") == 2
            assert await store.state_counts("signup") == {"ask_name": 1}  # before any sweep
            await store.sweep(now)
            assert await client.zrange("textflow:at:signup:ask_name", 0, -1) == ["+2"]
            await move(store, "+2", None, None, "SM3")
            assert await client.zcard("textflow:at:signup:ask_name") == 0
            assert await client.smembers("textflow:flows") == {"signup"}
        finally:
            await client.aclose()
            await store.close()

    async def test_a_crashed_holders_lock_frees_itself(self, redis_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        import redis.asyncio as aioredis

        from bot.store import redis as redis_store

        monkeypatch.setattr(redis_store, "LOCK_SECONDS", 0.3)
        client = aioredis.Redis.from_url(redis_url)
        await client.set("textflow:lock:+1", "crashed-process-token", px=300)  # as a killed process leaves it
        store = open_store(redis_url)
        started = asyncio.get_running_loop().time()
        async with store.lock("+1"):
            waited = asyncio.get_running_loop().time() - started
        assert 0.1 < waited < 2
        await client.aclose()
        await store.close()

    async def test_lock_serialises_across_store_instances(self, redis_url: str) -> None:
        first, second = open_store(redis_url), open_store(redis_url)  # as two processes would
        order: list[str] = []

        async def hold(store: Store, name: str) -> None:
            async with store.lock("+1"):
                order.append(f"{name} in")
                await asyncio.sleep(0.05)
                order.append(f"{name} out")

        await asyncio.gather(hold(first, "a"), hold(second, "b"))
        assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
        await first.close()
        await second.close()


async def test_redis_down_is_a_temporary_failure_not_a_crash() -> None:
    from bench.servers import free_port
    from bot.store import StoreBusy

    store = open_store(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with pytest.raises(StoreBusy, match="Redis unavailable"):
        await load(store, "+1")
    with pytest.raises(StoreBusy):
        async with store.lock("+1"):
            pass
    await store.close()


async def test_a_live_holder_keeps_its_redis_lock_past_the_ttl(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store import redis as redis_store

    monkeypatch.setattr(redis_store, "LOCK_SECONDS", 0.3)
    monkeypatch.setattr(redis_store, "LOCK_WAIT_SECONDS", 0.2)
    holder, other = open_store(redis_url), open_store(redis_url)
    try:
        async with holder.lock("+1"):
            await asyncio.sleep(0.8)  # well past the TTL: renewal keeps it
            from bot.store import StoreBusy
            with pytest.raises(StoreBusy, match="still held"):
                async with other.lock("+1"):
                    pass
        async with other.lock("+1"):  # released on exit: free at once
            pass
    finally:
        await holder.close()
        await other.close()


class TestOutboundRecords:
    """What we sent, and what Twilio reported."""

    async def test_outbound_messages_round_trip(self, store: Store) -> None:
        from bot.types import OutboundMessage

        message = OutboundMessage("reminders|+15550000001", "+15550000001", "Hi Ada", broadcast="reminders")
        await store.save_outbound(message)
        assert await store.outbound(message.id) == message
        message.state, message.sid = "accepted", "SM" + "a" * 32
        await store.save_outbound(message)
        assert await store.outbound_by_sid("SM" + "a" * 32) == message
        other = OutboundMessage("reminders|+15550000002", "+15550000002", "Hi Bo", broadcast="reminders")
        await store.save_outbound(other)
        await store.save_outbound(OutboundMessage("x", "+15550000003", "elsewhere"))
        assert [m.id for m in await store.broadcast_messages("reminders")] == [message.id, other.id]
        assert await store.outbound("nope") is None and await store.outbound_by_sid("SMnope") is None

    async def test_outbound_messages_keep_their_pictures(self, store: Store) -> None:
        from bot.types import OutboundMessage

        message = OutboundMessage("notify|SM1|0", "+15550000001", "Photo", media=("https://c.example/1.png",))
        await store.save_outbound(message)
        assert await store.outbound(message.id) == message



def process_status(process: str, written_at: float, *, rejected: bool = False) -> ProcessStatus:
    flows = FlowsVersion("0123456789ab", written_at - 10, ("order_status", "signup"))
    refused = RejectedReload(written_at - 5, "ba9876543210", (
        "flows/status.yaml:12:13: error: unknown state 'lokup' (did you mean 'lookup'?)",
        "flows/signup.yaml:3:1: warning: a «quoted» text ✓")) if rejected else None
    return ProcessStatus(process, written_at - 100, written_at, flows, reloads=2, rejected=refused)


class TestProcessStatuses:
    """One status entry per server process (``python -m bot status``), newest first, old ones forgotten."""

    async def test_an_entry_round_trips_with_its_refused_reload(self, store: Store) -> None:
        status = process_status("web-1:4242", 1_000_000.5, rejected=True)
        await store.record_status(status)
        assert await store.process_statuses() == [status]

    async def test_one_entry_per_process_the_most_recently_written_first(self, store: Store) -> None:
        now = time.time()
        await store.record_status(process_status("web-1:1", now - 30))
        await store.record_status(process_status("web-2:7", now - 20, rejected=True))
        await store.record_status(process_status("web-1:2", now - 50))
        later = dataclasses.replace(process_status("web-1:1", now), stopped_at=now)
        await store.record_status(later)  # replaces web-1:1's entry
        found = await store.process_statuses()
        assert [entry.process for entry in found] == ["web-1:1", "web-2:7", "web-1:2"]
        assert found[0] == later

    async def test_entries_silent_for_the_keeping_period_are_dropped_by_the_next_write(self, store: Store) -> None:
        now = time.time()
        await store.record_status(process_status("dead:1", now - PROCESS_STATUS_KEEP_SECONDS - 60))
        await store.record_status(process_status("quiet:2", now - PROCESS_STATUS_KEEP_SECONDS + 60))
        await store.record_status(process_status("live:3", now))
        assert [entry.process for entry in await store.process_statuses()] == ["live:3", "quiet:2"]


def broadcast_progress(name: str, written_at: float, *, sent: int = 3, finished: bool = False) -> BroadcastProgress:
    return BroadcastProgress(name, "reminder", 10, sent, 2, 1, 0, 10 - sent - 3, finished,
                             started_at=written_at - 60, written_at=written_at)


class TestBroadcasts:
    """Where each broadcast stands (the Operations page, ``/metrics``): one entry per broadcast, the
    ones heard from lately, newest first; old ones forgotten."""

    async def test_an_entry_round_trips(self, store: Store) -> None:
        now = time.time()
        progress = broadcast_progress("reminder:/srv/lists/Zoë's «list».csv", now, finished=True)
        await store.record_broadcast_progress(progress)
        assert await store.broadcasts(60) == [progress]

    async def test_one_entry_per_broadcast_the_most_recently_written_first(self, store: Store) -> None:
        now = time.time()
        await store.record_broadcast_progress(broadcast_progress("a", now - 30))
        await store.record_broadcast_progress(broadcast_progress("b", now - 20))
        later = broadcast_progress("a", now - 10, sent=5)
        await store.record_broadcast_progress(later)  # replaces a's entry
        assert await store.broadcasts(3600) == [later, broadcast_progress("b", now - 20)]

    async def test_only_those_written_within_the_window_are_read(self, store: Store) -> None:
        now = 1_700_000_000.0
        await store.record_broadcast_progress(broadcast_progress("quiet", now - 200))
        await store.record_broadcast_progress(broadcast_progress("live", now - 5))
        assert [entry.name for entry in await store.broadcasts(180, now)] == ["live"]
        assert [entry.name for entry in await store.broadcasts(300, now)] == ["live", "quiet"]
        assert await store.broadcasts(180, now + 3600) == []

    async def test_entries_silent_for_the_keeping_period_are_dropped_by_the_next_write(self, store: Store) -> None:
        now = time.time()
        await store.record_broadcast_progress(broadcast_progress("old", now - BROADCAST_KEEP_SECONDS - 60))
        await store.record_broadcast_progress(broadcast_progress("kept", now - BROADCAST_KEEP_SECONDS + 60))
        await store.record_broadcast_progress(broadcast_progress("new", now))
        found = await store.broadcasts(BROADCAST_KEEP_SECONDS * 2, now)
        assert [entry.name for entry in found] == ["new", "kept"]

    async def test_an_entry_from_a_newer_version_is_still_read(self) -> None:
        text = broadcast_progress("x", 5.0).to_json().replace('"flow"', '"from_the_future": 1, "flow"')
        assert BroadcastProgress.from_json(text) == broadcast_progress("x", 5.0)


async def test_sqlite_waits_for_another_writer_without_blocking_and_then_gives_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holding SQLite's write lock: commits wait from the event loop (other work
    goes on), succeed once it is released, and end in StoreBusy (503) if it never is."""
    import sqlite3

    from bot.store import StoreBusy
    from bot.store import sqlite as sqlite_store

    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as another server process mid-commit
    pending = asyncio.ensure_future(store.commit(turn(await load(store, "+1"), "SM1")))
    ticks = 0
    while ticks < 20:  # the loop keeps running while the commit waits
        await asyncio.sleep(0.005)
        ticks += 1
    assert not pending.done()
    other.execute("COMMIT")
    assert await pending is CommitResult.COMMITTED

    monkeypatch.setattr(sqlite_store, "LOCK_WAIT_SECONDS", 0.1)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreBusy, match="write lock held elsewhere"):
        await store.commit(turn(await load(store, "+2"), "SM2"))
    with pytest.raises(StoreBusy, match="busy"):
        await store.set_consent(ConsentChange("+3", OPTED_OUT, ConsentMethod.OPERATOR))
    other.execute("ROLLBACK")
    other.close()
    await store.close()


OLD_SHAPE_VARS = {"name": "Ada", "_timeout": {"at": 1_600.0, "state": "ask"}, "_return": [["main", "quiz_step"]],
                  "flow": {"channel": {"address": "+15550009999"}}}


def _assert_read_in_the_new_shape(conversation: Conversation) -> None:
    assert conversation.vars == {"name": "Ada", "flow": {"channel": {"address": "+15550009999"}}}
    assert conversation.timeout == ArmedTimeout(1_600.0, "ask")
    assert conversation.returns == [ReturnPoint("main", "quiz_step")]
    assert conversation.channel == "+15550009999"


async def test_sqlite_reads_conversations_saved_before_the_bookkeeping_had_its_column(tmp_path: Path) -> None:
    import json
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema and a row as an earlier version wrote them
        db.execute("CREATE TABLE conversations (sender TEXT PRIMARY KEY, flow TEXT, state TEXT, vars TEXT NOT NULL, "
                   "updated_at REAL NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID")
        db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
                   ("+1", "quiz", "ask", json.dumps(OLD_SHAPE_VARS), 1_000.0, 3))
    store = open_store(f"sqlite:///{path}")
    try:
        conversation = await load(store, "+1")
        _assert_read_in_the_new_shape(conversation)
        assert conversation.version == 3
        assert await store.commit(turn(conversation, "SM1")) is CommitResult.COMMITTED  # and saved the new way
        _assert_read_in_the_new_shape(await load(store, "+1"))
    finally:
        await store.close()


async def test_redis_reads_conversations_saved_before_the_bookkeeping_had_its_field(redis_url: str) -> None:
    import json

    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.hset("textflow:conv:+1", mapping={"version": 3, "data": json.dumps(
        {"flow": "quiz", "state": "ask", "vars": OLD_SHAPE_VARS, "updated_at": 1_000.0})})
    await client.aclose()
    store = open_store(redis_url)
    try:
        conversation = await load(store, "+1")
        _assert_read_in_the_new_shape(conversation)
        assert await store.commit(turn(conversation, "SM1")) is CommitResult.COMMITTED
        _assert_read_in_the_new_shape(await load(store, "+1"))
    finally:
        await store.close()


# -- health: whether a turn could be written now (issue 11, finding 9) ---------------------------------

@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make files (or folders) unwritable to this user, as a read-only copy or mount would. For an
    ordinary user that is chmod; root ignores permissions, so for root it is the immutable attribute
    (``chattr +i``), which stops everyone. Undone on the way out so the test can clean up."""
    modes = {path: path.stat().st_mode for path in paths}
    try:
        for path in paths:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
            else:
                path.chmod(modes[path] & ~0o222)
        yield
    finally:
        for path in paths:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
            path.chmod(modes[path])


async def make_sqlite_store(path: Path) -> None:
    """A store file with its schema and one turn, closed again."""
    store = open_store(f"sqlite:///{path}")
    await store.commit(turn(Conversation("+1"), "SM-first"))
    await store.close()


class TestHealth:
    """Health: whether a turn could be written now, and if not, why (``GET /healthz`` shows it)."""

    async def test_a_working_store_is_healthy(self, store: Store) -> None:
        assert await store.health() == StoreHealth()
        assert (await store.health()).ok
        await store.commit(turn(Conversation("+1"), "SMh1"))
        assert (await store.health()).problem is None


async def test_sqlite_that_cannot_be_written_is_refused_at_open_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await make_sqlite_store(path)
    with read_only(path), pytest.raises(StoreUnavailable) as refused:
        open_store(f"sqlite:///{path}")
    message = str(refused.value)
    assert str(path) in message and "writable" in message and "STORE_URL" in message, message
    with pytest.raises(StoreUnavailable, match="missing-folder"):
        open_store(f"sqlite:///{tmp_path / 'missing-folder' / 'bot.db'}")


async def test_sqlite_health_reports_a_deleted_file_and_refuses_to_write_to_it(tmp_path: Path) -> None:
    """Writes to a deleted file would be lost at the next restart (every opt-out with them)."""
    path = tmp_path / "bot.db"
    store = open_store(f"sqlite:///{path}")
    try:
        await store.commit(turn(Conversation("+1"), "SMd1"))
        for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        health = await store.health()
        assert not health.ok and str(path) in (health.problem or "") and "deleted" in (health.problem or "")
        with pytest.raises(StoreUnavailable, match="deleted"):
            await store.commit(turn(await load(store, "+2"), "SMd2", opt_out=True))
        with pytest.raises(StoreUnavailable, match="deleted"):
            await store.set_consent(ConsentChange("+3", OPTED_OUT, ConsentMethod.OPERATOR))
        with pytest.raises(StoreUnavailable, match="deleted"):  # the retention sweep, on a connection of its own
            await store.sweep(time.time())
        with pytest.raises(sqlite3.OperationalError, match="unable to open"):  # a console listing: gone too
            await store.recent_turns("+1")
    finally:
        await store.close()
    assert not path.exists(), "no connection opened after the start made a new, empty store at the path"


async def test_sqlite_health_reports_a_file_made_read_only_while_open(tmp_path: Path) -> None:
    """The open connection could still write, but the next start could not: say so now."""
    path = tmp_path / "bot.db"
    store = open_store(f"sqlite:///{path}")
    try:
        await store.commit(turn(Conversation("+1"), "SMr1"))
        with read_only(path):
            health = await store.health()
            assert not health.ok and "read-only" in (health.problem or "") and str(path) in (health.problem or "")
        assert (await store.health()).ok
    finally:
        await store.close()


async def test_redis_health_reports_an_unreachable_server() -> None:
    from bench.servers import free_port

    store = open_store(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        health = await asyncio.wait_for(store.health(), 10)
        assert not health.ok and "Redis" in (health.problem or "")
        with pytest.raises(StoreUnavailable, match="Redis unavailable"):
            await load(store, "+1")
    finally:
        await store.close()


async def test_closing_sqlite_waits_for_a_checkpoint_running_in_its_thread(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling the checkpoint task does not stop its thread: closing the connection under it
    crashed the whole process at shutdown (a segfault in a fresh-clone run)."""
    import sqlite3
    import threading

    from bot.store import sqlite as sqlite_store

    started, finished, problems = threading.Event(), threading.Event(), []

    def slow_checkpoint(db: sqlite3.Connection) -> None:
        started.set()
        threading.Event().wait(0.2)  # still checkpointing when the store is closed
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:
            problems.append(error)
        finished.set()

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_SECONDS", 0.01)
    monkeypatch.setattr(sqlite_store, "_checkpoint", slow_checkpoint)
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    await store.commit(turn(await load(store, "+1"), "SM1"))  # starts the checkpointer
    while not started.is_set():
        await asyncio.sleep(0.005)
    await store.close()
    assert await asyncio.to_thread(finished.wait, 5)
    assert problems == []  # the connection was still open when the checkpoint used it


async def place(store: Store, sender: str, flow: str | None, state: str | None, sid: str, updated_at: float,
                **changes: Any) -> None:
    """A committed turn leaving ``sender`` at ``flow``/``state`` (None, None: in no flow), last written at."""
    conversation = await load(store, sender)
    conversation.flow, conversation.state, conversation.updated_at = flow, state, updated_at
    assert await store.commit(dataclasses.replace(turn(conversation, sid), **changes)) is CommitResult.COMMITTED


async def every_page(read: Callable[[str | None], Awaitable[Page[Any]]]) -> list[list[Any]]:
    """All pages of a listing, following its cursors (which never carry a phone number)."""
    pages, cursor = [], None
    while True:
        page = await read(cursor)
        pages.append(page.items)
        if page.cursor is None:
            return pages
        assert "+1555" not in page.cursor and len(pages) < 50
        cursor = page.cursor


class TestListings:
    """The console's lists (``bot/store/listings.py``): who is in a flow, a sender's turns, opt-outs."""

    async def test_active_conversations_newest_first_filtered_and_paged(self, store: Store) -> None:
        now = time.time()
        await place(store, "+15550000001", "signup", "ask_name", "SM1", now - 50)
        await place(store, "+15550000002", "signup", "confirm", "SM2", now - 40)
        await place(store, "+15550000003", "order", "ask_number", "SM3", now - 30)
        await place(store, "+15550000004", None, None, "SM4", now - 20)  # idle: not listed
        await place(store, "+15550000005", "signup", "ask_name", "SM5", now - 10)
        await place(store, "+15550000006", "order", "ask_number", "SM6", now - 30)  # the same time as +3

        listed = await store.active_conversations()
        assert [(item.sender, item.flow, item.state) for item in listed.items] == [
            ("+15550000005", "signup", "ask_name"), ("+15550000006", "order", "ask_number"),
            ("+15550000003", "order", "ask_number"), ("+15550000002", "signup", "confirm"),
            ("+15550000001", "signup", "ask_name")]
        assert listed.cursor is None and listed.items[0].updated_at == pytest.approx(now - 10)
        assert [i.sender for i in (await store.active_conversations(flow="signup")).items] == [
            "+15550000005", "+15550000002", "+15550000001"]
        assert [i.sender for i in (await store.active_conversations("signup", "ask_name")).items] == [
            "+15550000005", "+15550000001"]
        assert [i.sender for i in (await store.active_conversations(state="ask_number")).items] == [
            "+15550000006", "+15550000003"]
        assert (await store.active_conversations(flow="no_such_flow")).items == []

        for size in (1, 2, 3):  # across pages (and the tie at now - 30), each once, in order
            def page_of(cursor: str | None, size: int = size) -> Awaitable[Page[Any]]:
                return store.active_conversations(limit=size, cursor=cursor)
            pages = await every_page(page_of)
            assert [item.sender for page in pages for item in page] == [item.sender for item in listed.items]
            assert all(len(page) <= size for page in pages)

    async def test_leaving_a_flow_leaves_the_list(self, store: Store) -> None:
        now = time.time()
        await place(store, "+15550000001", "signup", "ask_name", "SM1", now - 5)
        await place(store, "+15550000002", "signup", "ask_name", "SM2", now - 4)
        await place(store, "+15550000001", None, None, "SM3", now - 3)  # finished (or reset)
        await place(store, "+15550000002", "signup", "confirm", "SM4", now - 2)
        await store.purge("+15550000002")
        assert (await store.active_conversations()).items == []

    async def test_a_malformed_cursor_is_refused_by_name(self, store: Store) -> None:
        with pytest.raises(ValueError, match="not a page cursor"):
            await store.active_conversations(cursor="+15551234567")

    async def test_recent_turns_keep_each_turn_with_its_trace(self, store: Store) -> None:
        sender = "+15550000001"
        trace = (TraceStep("trigger HELP", "idle", "help:start"), TraceStep("next", "help:start", "idle"))
        await place(store, sender, "help", "start", "SM1", 100.0, trace=trace,
                    inbound=Inbound("SM1", sender, body='HELP <script>"x"\nline'),
                    replies=("Acme Orders", MediaText("map", ("https://c.example/map.png?a=1&b=2",))))
        await place(store, sender, None, None, "timeout:+15550000001:1.5", 200.0,
                    inbound=Inbound("timeout:+15550000001:1.5", sender), replies=())
        await place(store, "+15550000002", None, None, "SM3", 300.0)  # someone else's

        turns = await store.recent_turns(sender)
        assert [(t.message_sid, t.body, t.replies, t.trace) for t in turns] == [
            ("SM1", 'HELP <script>"x"\nline', ("Acme Orders", "map"), trace),
            ("timeout:+15550000001:1.5", "", (), ())]
        assert media_of(turns[0].replies[1]) == ("https://c.example/map.png?a=1&b=2",)
        assert [t.message_sid for t in await store.recent_turns(sender, limit=1)] == ["timeout:+15550000001:1.5"]
        assert await store.recent_turns("+15550000009") == []

        await store.purge(sender)
        assert all(not t.body and not t.replies for t in await store.recent_turns(sender))  # no texts left

    async def test_opt_outs_list_who_is_opted_out_now(self, store: Store) -> None:
        for n, at in ((1, 100.0), (2, 300.0), (3, 200.0), (4, 300.0)):
            await store.set_consent(keyword(f"+1555000000{n}", OPTED_OUT, f"SM{n}", at))
        await store.set_consent(keyword("+15550000003", OPTED_IN, "SM5", 400.0, "START"))  # back in
        await store.commit(turn(await load(store, "+15550000005"), "SM6", opt_out=True, body="STOP", at=500.0))

        listed = await store.opt_outs()
        assert [(item.number, item.at) for item in listed.items] == [
            ("+15550000005", 500.0), ("+15550000004", 300.0), ("+15550000002", 300.0), ("+15550000001", 100.0)]
        pages = await every_page(lambda cursor: store.opt_outs(limit=1, cursor=cursor))
        assert [item for page in pages for item in page] == listed.items


async def test_an_old_sqlite_turn_log_gains_traces_and_reads_without_them(tmp_path: Path) -> None:
    import sqlite3

    from tests.test_inbox import OLD_SQLITE_SCHEMA

    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SQLITE_SCHEMA)
        db.execute("INSERT INTO processed VALUES ('SM1', '+1', 'hi', '[\"hello\"]', 100.0)")
        db.commit()
    store = open_store(f"sqlite:///{path}")
    try:
        trace = (TraceStep("fallback", "idle", "idle"),)
        await store.commit(dataclasses.replace(turn(await load(store, "+1"), "SM2", at=200.0), trace=trace))
        assert [(t.message_sid, t.replies, t.trace) for t in await store.recent_turns("+1")] == [
            ("SM1", ("hello",), ()), ("SM2", ("ok",), trace)]
    finally:
        await store.close()


async def test_redis_lists_opt_outs_recorded_before_the_list_existed(redis_url: str) -> None:
    """Opt-outs of an older version were only their keys: the first listing adds them, once."""
    import redis.asyncio as aioredis

    store = RedisStore(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.set("textflow:optout:+15550000001", "100.0")
        await client.set("textflow:optout:+15550000002", "200.0")
        await store.set_consent(keyword("+15550000003", OPTED_OUT, "SM3", 300.0))
        assert [(item.number, item.at) for item in (await store.opt_outs()).items] == [
            ("+15550000003", 300.0), ("+15550000002", 200.0), ("+15550000001", 100.0)]
        await store.set_consent(keyword("+15550000001", OPTED_IN, "SM4", 400.0, "START"))
        assert [item.number for item in (await store.opt_outs()).items] == ["+15550000003", "+15550000002"]
    finally:
        await client.aclose()
        await store.close()
