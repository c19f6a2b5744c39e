"""Versioned store schemas: a store made by an older release opens, migrated, with nothing lost.

The stores in ``tests/store_fixtures`` were made by the code of commit 8be0cad, the last before
schema versions (``make_store.py`` says how): a SQLite file, and a Redis keyspace kept as JSON and
loaded into a real Redis here. Each is opened by today's code and must hold every conversation
where it was, every opt-out and consent record, every turn (a Twilio retry still gets the recorded
answer), its timers and outbound records, and carry on the conversations. Later shapes (each
version since) are made by migrating a new store part of the way, then opened the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.engine import Engine
from bot.flows.loader import load_flows
from bot.inbox import Inbox
from bot.store import Store, open_store, redis_migrations, sqlite_schema
from bot.store.redis import RedisStore
from bot.store.schema_versions import SchemaTooNew
from bot.store.sqlite import SqliteStore
from bot.types import Inbound
from tests.conftest import ROOT
from tests.store_fixtures.make_store import OUR_NUMBER, Orders, number

FIXTURES = Path(__file__).parent / "store_fixtures"
SQLITE_FIXTURE = FIXTURES / "sqlite-8be0cad.db"
REDIS_FIXTURE = FIXTURES / "redis-8be0cad.json"
FLOWS = load_flows(FIXTURES / "flows")


def expected_of(fixture: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{fixture}.expected.json").read_text(encoding="utf-8"))


async def assert_everything_kept(store: Store, expected: dict[str, Any]) -> None:
    """What the fixture's store held when it was made, read through today's store interface."""
    for sender in expected["conversations"]:
        conversation = (await store.snapshot(sender, "")).conversation
        assert conversation.version > 0, sender
        assert [conversation.flow, conversation.state] == expected["in_flow"].get(sender, [None, None]), sender
    assert (await store.snapshot(number(20), "")).conversation.vars["name"] == "Bo"
    for index in range(32, 41):
        assert await store.is_opted_out(number(index)) == (number(index) in expected["opted_out"]), index
    history = [change for sender in expected["consent_numbers"] for change in await store.consent_history(sender)]
    assert len(history) == expected["consent_records"]
    listed = {item.number for item in (await store.opt_outs(limit=100)).items}
    assert listed == set(expected["opted_out"])
    # Every turn is still recorded: a Twilio retry of the very first message gets its answer again.
    first = await store.snapshot(number(0), f"SM{1:032d}")
    assert first.recorded_replies == ("What's your order number? (6 digits, like 123456)",)
    for sid in range(1, expected["turns"] + 1):
        assert (await store.snapshot("+0", f"SM{sid:032d}")).recorded_replies is not None, sid
    due = {sender for sender, _ in await store.due(10**12)}
    assert due == {number(index) for index in range(24, 28)}  # the visit flow's timed waits
    for message_id in expected["outbound"]:
        assert await store.outbound(message_id) is not None
    assert [entry.process for entry in await store.process_statuses()] == ["fixture-host:1"]


async def carry_on(store: Store) -> None:
    """The migrated conversations go on where they were, with today's engine, a minute after the
    fixture was made (its conversations would have expired since, as they should)."""
    made = max([(await store.snapshot(number(index), "")).conversation.updated_at for index in range(32)])
    inbox = Inbox(store, Engine(FLOWS, Orders(), clock=lambda: made + 60))

    async def text(sender: str, body: str, sid: str) -> tuple[str, ...]:
        return (await inbox.receive(Inbound(sid, sender, OUR_NUMBER, body))).replies

    assert await text(number(20), "YES", "SMafter1") == (
        "You're signed up, Bo! We'll text you when your orders ship.", "Reply STOP at any time to opt out.")
    assert await text(number(28), "yes", "SMafter2") == ("Thanks, see you then!",)
    assert await text(number(10), "654321", "SMafter3") == (
        "Order 654321 is shipped. It left our warehouse today.",)
    assert await text(number(32), "hello", "SMafter4") == ()  # opted out: never texted
    [(sender, due_at)] = [entry for entry in await store.due(10**12) if entry[0] == number(24)]
    fired = await inbox.time_out(sender, due_at, None)
    assert fired.replies == ("No answer, so nothing is booked. Text VISIT any time.",)


# -- SQLite ----------------------------------------------------------------------------------------

def sqlite_copy(tmp_path: Path) -> Path:
    path = tmp_path / "bot.db"
    shutil.copy(SQLITE_FIXTURE, path)
    return path


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_sqlite_store_made_before_schema_versions_is_migrated_with_nothing_lost(tmp_path: Path) -> None:
    path = sqlite_copy(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert sqlite_schema.version_of(db) == 0
        before = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                  for table in ("conversations", "processed", "opt_outs", "consent_ledger", "deadlines", "outbound",
                                "runs")}
    store = SqliteStore(path)
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert sqlite_schema.version_of(db) == sqlite_schema.LATEST
            assert [version for version, *_ in sqlite_schema.history(db)] == list(range(1, sqlite_schema.LATEST + 1))
            after = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in before}
        assert after == before
        await assert_everything_kept(store, expected_of("sqlite-8be0cad"))
        await carry_on(store)
    finally:
        await store.close()


@pytest.mark.parametrize("shape", range(1, sqlite_schema.LATEST))
async def test_each_later_sqlite_shape_is_migrated_with_nothing_lost(tmp_path: Path, shape: int) -> None:
    """A store at each version since (made by migrating the fixture only that far, as the release
    of that version would have left it), opened by today's code."""
    path = sqlite_copy(tmp_path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        sqlite_schema.migrate(db, str(path), target=shape)
        assert sqlite_schema.version_of(db) == shape
    store = SqliteStore(path)
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert sqlite_schema.version_of(db) == sqlite_schema.LATEST
        await assert_everything_kept(store, expected_of("sqlite-8be0cad"))
    finally:
        await store.close()


def test_a_failed_sqlite_migration_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One transaction: a step failing after others were applied undoes them all."""
    path = sqlite_copy(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        shape_before = sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=str)

    def failing(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error (made up)")

    monkeypatch.setitem(sqlite_schema._STEPS, sqlite_schema.LATEST, failing)
    with pytest.raises(Exception, match="disk I/O error"):
        SqliteStore(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert sqlite_schema.version_of(db) == 0
        assert sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=str) == shape_before
    monkeypatch.undo()
    asyncio.run(SqliteStore(path).close())  # and the next start migrates it whole


def test_a_sqlite_store_from_a_newer_release_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = sqlite_copy(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {sqlite_schema.LATEST + 1}")
    digest = file_digest(path)
    with pytest.raises(SchemaTooNew) as refused:
        SqliteStore(path)
    message = str(refused.value)
    assert f"schema version {sqlite_schema.LATEST + 1}" in message and "newer release" in message
    assert str(path) in message and "Nothing was changed" in message
    assert file_digest(path) == digest


def run_bot(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_server_and_the_cli_refuse_a_newer_store_with_the_reason(tmp_path: Path) -> None:
    path = sqlite_copy(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {sqlite_schema.LATEST + 5}")
    settings = {"STORE_URL": f"sqlite:///{path}", "DEV_MODE": "1", "FLOWS_DIR": str(FIXTURES / "flows")}
    server = run_bot(str(ROOT / "server.py"), cwd=tmp_path, **settings)
    assert server.returncode == 1
    assert "error: the store" in server.stderr and "newer release" in server.stderr
    assert "Traceback" not in server.stderr
    command = run_bot("-m", "bot", "consent", number(32), cwd=tmp_path, **settings)
    assert command.returncode == 1, command.stderr
    assert "error: the store" in command.stderr and "newer release" in command.stderr
    assert "Traceback" not in command.stderr


def test_a_cli_command_migrates_the_store_it_opens(tmp_path: Path) -> None:
    path = sqlite_copy(tmp_path)
    done = run_bot("-m", "bot", "consent", number(32), cwd=tmp_path, STORE_URL=f"sqlite:///{path}")
    assert done.returncode == 0, done.stderr
    assert "opted_out" in done.stdout or "opted out" in done.stdout
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert sqlite_schema.version_of(db) == sqlite_schema.LATEST
    status = run_bot("-m", "bot", "status", "--store", f"sqlite:///{path}", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"store schema version {sqlite_schema.LATEST} (this release knows up to {sqlite_schema.LATEST}); " \
           "migrated from 0 to" in status.stdout  # for operators: where the store stands, and since when


async def test_every_store_tells_its_schema_state(store_url: str) -> None:
    store = open_store(store_url)
    try:
        state = await store.schema_state()
        if store_url.startswith("memory://"):
            assert (state.version, state.latest) == (0, 0)
        else:
            assert state.version == state.latest > 0
            assert [applied.version for applied in state.history] == list(range(1, state.latest + 1))
            assert "textflow" in state.history[-1].applied_by
    finally:
        await store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"


# -- Redis -----------------------------------------------------------------------------------------

async def load_keyspace(url: str, fixture: Path) -> None:
    """The fixture's keys into the (empty) database, with their times to live."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for key, entry in json.loads(fixture.read_text(encoding="utf-8")).items():
                kind, value = entry["type"], entry["value"]
                if kind == "string":
                    pipe.set(key, value)
                elif kind == "hash":
                    pipe.hset(key, mapping=value)
                elif kind == "list":
                    pipe.rpush(key, *value)
                elif kind == "set":
                    pipe.sadd(key, *value)
                else:
                    pipe.zadd(key, {member: score for member, score in value})
                if entry["pttl"] > 0:
                    pipe.pexpire(key, entry["pttl"])
            await pipe.execute()
    finally:
        await client.aclose()


async def test_a_redis_keyspace_made_before_schema_versions_is_migrated_with_nothing_lost(redis_url: str) -> None:
    await load_keyspace(redis_url, REDIS_FIXTURE)
    store = RedisStore(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await redis_migrations.version_of(client, "textflow") == 0
        await assert_everything_kept(store, expected_of("redis-8be0cad"))  # its first call migrates
        assert await redis_migrations.version_of(client, "textflow") == redis_migrations.LATEST
        history = await redis_migrations.history(client, "textflow")
        assert [entry["version"] for entry in history] == list(range(1, redis_migrations.LATEST + 1))
        await carry_on(store)
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.parametrize("shape", range(1, redis_migrations.LATEST))
async def test_each_later_redis_shape_is_migrated_with_nothing_lost(redis_url: str, shape: int) -> None:
    await load_keyspace(redis_url, REDIS_FIXTURE)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(redis_url)
    try:
        await redis_migrations.migrate(client, "textflow", target=shape)
        assert await redis_migrations.version_of(client, "textflow") == shape
        await assert_everything_kept(store, expected_of("redis-8be0cad"))
        assert await redis_migrations.version_of(client, "textflow") == redis_migrations.LATEST
    finally:
        await client.aclose()
        await store.close()


async def old_keyspace(client: aioredis.Redis, people: int) -> None:
    """The shape of the oldest releases: opt-outs only as their keys, conversations without the
    per-state placement (no 'at' field), none of the lists and counts built since."""
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        for index in range(people):
            data = {"flow": "signup", "state": "confirm", "vars": {"name": "Bo"}, "updated_at": now - index}
            pipe.hset(f"textflow:conv:{number(index)}", mapping={"data": json.dumps(data), "version": 2})
            pipe.set(f"textflow:optout:{number(5000 + index)}", repr(2000.0 + index))
        await pipe.execute()


async def test_a_redis_migration_stopped_part_way_carries_on_from_where_it_stopped(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await old_keyspace(client, 400)
        batches: list[int] = []

        def crash_after_three(version: int, keys: int) -> None:
            batches.append(keys)
            if len(batches) == 3:
                raise KeyboardInterrupt("the process is killed")

        with pytest.raises(KeyboardInterrupt):
            await redis_migrations.migrate(client, "textflow", batch=50, after_batch=crash_after_three)
        assert await redis_migrations.version_of(client, "textflow") == 0
        saved = await client.hget("textflow:schema", "cursor:1:0")
        assert saved not in (None, "0", "done")  # where the next start carries on from
        await client.delete("textflow:schema:lock")  # a killed process's lock would expire; skip the wait
        resumed: list[int] = []
        await redis_migrations.migrate(client, "textflow", batch=50, after_batch=lambda _, keys: resumed.append(keys))
        assert await redis_migrations.version_of(client, "textflow") == redis_migrations.LATEST
        assert sum(batches[:3]) + sum(resumed) >= 800  # every key seen (SCAN may return one twice)
        store = RedisStore(redis_url)
        try:
            assert len((await store.opt_outs(limit=500)).items) == 400
            assert (await store.state_counts("signup")) == {"confirm": 400}
            conversation = (await store.snapshot(number(7), "")).conversation
            assert (conversation.flow, conversation.state, conversation.vars) == ("signup", "confirm", {"name": "Bo"})
        finally:
            await store.close()
    finally:
        await client.aclose()


async def test_processes_opening_an_old_keyspace_at_once_migrate_it_once(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await old_keyspace(client, 300)
        stores = [RedisStore(redis_url) for _ in range(4)]
        try:
            await asyncio.gather(*(store.ready() for store in stores))
            history = await redis_migrations.history(client, "textflow")
            assert [entry["version"] for entry in history] == list(range(1, redis_migrations.LATEST + 1))
            assert await client.exists("textflow:schema:lock") == 0
        finally:
            for store in stores:
                await store.close()
    finally:
        await client.aclose()


async def test_a_redis_keyspace_from_a_newer_release_is_refused_and_left_untouched(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = open_store(redis_url)
    try:
        await old_keyspace(client, 3)
        await client.hset("textflow:schema", "version", str(redis_migrations.LATEST + 1))
        keys_before = sorted(await client.keys("*"))
        with pytest.raises(SchemaTooNew, match="newer release"):
            await store.snapshot(number(1), "")
        with pytest.raises(SchemaTooNew):
            await store.is_opted_out(number(1))
        assert sorted(await client.keys("*")) == keys_before
        assert await client.hexists(f"textflow:conv:{number(1)}", "at") == 0  # not converted
    finally:
        await client.aclose()
        await store.close()
