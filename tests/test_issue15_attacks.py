"""Issue 15's new code attacked as a hostile or unlucky operator, store or stop would: each test pins
a defect found that way (its docstring says what broke and why it matters), against real stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.app import _migrated
from bot.backup import BackupError, backup, restore
from bot.inbox import Inbox
from bot.owed_delivery import BATCH, OwedDelivery
from bot.store import Store, open_store, redis_migrations
from bot.store.owed import RETRY_SECONDS
from bot.store.redis import RedisStore
from bot.store.schema_versions import SchemaUnreadable
from bot.store.serving_lock import StoreInUse, serving
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Inbound
from tests.store_fixtures.make_store import number
from tests.test_migrations import old_keyspace
from tests.test_owed_replies import OURS, SENDER, Sends, inbox_for

# -- replies owed across a restart -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
async def stored(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    """A store that keeps owed records as JSON, and its URL."""
    url = f"sqlite:///{tmp_path / 'bot.db'}" if request.param == "sqlite" else str(request.getfixturevalue("redis_url"))
    opened = open_store(url)
    yield opened, url
    await opened.close()


async def owe_unreadable(url: str, sid: str, record: str) -> None:
    """A damaged owed record (edited by hand, or half restored), claimable before any other."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db, db:
            db.execute("INSERT INTO owed_replies (message_sid, sender, record, at, claimed_until) "
                       "VALUES (?, ?, ?, 0, 0)", (sid, SENDER, record))
        return
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.hset("textflow:owed", sid, record)
        await client.zadd("textflow:owed:claims", {sid: 0})
    finally:
        await client.aclose()


async def owe_one(inbox: Inbox, store: Store, sender: str = SENDER) -> None:
    """A real owed record: a timeout fired while Twilio could not be reached (tried again later)."""
    await inbox.receive(Inbound(f"SM{sender}", sender, OURS, "VISIT"))
    [(due_sender, due_at)] = [entry for entry in await store.due(time.time() + 5) if entry[0] == sender]
    await inbox.time_out(due_sender, due_at, Sends(reachable=False))


async def test_an_unreadable_owed_record_is_dropped_and_holds_back_nothing(
        stored: tuple[Store, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Broke: one owed record that is not valid JSON (or not an object) made every claim raise, and
    rolled it back on SQLite: the batch it sat in — every reply owed after it — was never sent, the
    delivery loop logging the same traceback every 2 s forever; on Redis a purge raised too, so a
    person's data could not be erased. Now it is dropped with an error line, the rest are sent."""
    store, url = stored
    await owe_one(inbox_for(store, tmp_path), store)
    await owe_unreadable(url, "SMbroken", "{not json")
    await owe_unreadable(url, "SMnull", "null")
    later = time.time() + RETRY_SECONDS + 1
    [owed] = await store.claim_owed(later, later + 60)
    assert owed.record.sender == SENDER and owed.replies == ("No answer, so nothing is booked.",)
    assert caplog.text.count("cannot be read") == 2
    assert await store.claim_owed(later + 10_000, later + 20_000) != []  # only the real one comes back
    await owe_unreadable(url, "SMbroken2", '{"sid": 1}')
    await store.purge(SENDER)  # a purge goes through
    assert await store.claim_owed(later + 10_000, later + 20_000) == []


async def test_a_stopping_process_claims_no_more_owed_replies_and_releases_the_rest(tmp_path: Path) -> None:
    """Broke: the delivery loop checked the stop only between passes, and a pass runs until the
    backlog is empty. With a backlog (after a Twilio outage) a stopping server went on claiming
    and sending past the lifespan's 15 s wait, through an outbox already closed (which opens a new
    HTTP client nobody closes), and the claims it took after releasing what it owed made the next
    process wait a minute for them. Now a stop ends the pass after the send under way, and what it
    claimed but did not send is released for the next process at once."""
    store = open_store("memory://")
    inbox = inbox_for(store, tmp_path)
    senders = [number(index) for index in range(25)]
    for sender in senders:
        await owe_one(inbox, store, sender)
    stop = asyncio.Event()
    sent: list[str] = []

    async def deliver(record: Inbound, replies: tuple[str, ...]) -> bool:
        sent.append(record.sender)
        stop.set()  # SIGTERM arrives while the first one is being sent
        return True

    delivery = OwedDelivery(inbox, store, deliver, clock=lambda: time.time() + RETRY_SECONDS + 1)
    await asyncio.wait_for(delivery.run(stop), 5)
    assert len(sent) == 1
    # The rest of the batch it had claimed is released, claimable now; the last 5 it never claimed.
    assert len(await store.claim_owed(time.time(), time.time() + 60, 100)) == BATCH - 1


# -- Redis schema versions ---------------------------------------------------------------------------


async def test_a_redis_schema_version_that_is_no_number_is_refused_with_the_fix(redis_url: str) -> None:
    """Broke: a ``version`` field set by hand to something not a number ("two", "2.0") raised a bare
    ValueError: the server refused to start with "error: STORE_URL: invalid literal for int()" (the
    URL is fine), and a server started while Redis was down answered every webhook 500 with a
    traceback. Now it is refused like a newer schema, saying which field and how to fix it."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(redis_url)
    try:
        await client.hset("textflow:schema", "version", "two")
        with pytest.raises(SchemaUnreadable, match="HDEL textflow:schema version"):
            await _migrated(store)  # the start-up check: refused, not "serving anyway"
        with pytest.raises(SchemaUnreadable):
            await store.snapshot(SENDER, "")  # a webhook: 503, with the reason
    finally:
        await client.aclose()
        await store.close()


async def test_a_redis_migration_resumed_after_a_redis_restart_skips_no_key(redis_url: str) -> None:
    """Broke: a migration stopped part-way kept its SCAN cursor and carried on from it at the next
    start. But a cursor is only meaningful to the Redis run that gave it (Redis seeds its key hash
    afresh at every start), so after a Redis restart (or a failover) in between, the resumed pass
    skipped keys it had never seen: opt-outs missing from the console's list, people missing from
    the per-state counts, silently. Now a cursor saved by another run starts the pass over."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await old_keyspace(client, 300)
        cursor, seen = 0, 0
        while seen == 0 or cursor == 0:  # a cursor part-way through, past keys the migration never converted
            cursor, keys = await client.scan(cursor, match="textflow:optout:*", count=50)
            seen += len(keys)
        other_run = "0" * 40  # the run id of the Redis that was restarted since
        await client.hset("textflow:schema", "cursor:1:0", f"{cursor} {other_run}")
        await redis_migrations.migrate(client, "textflow")
        store = RedisStore(redis_url)
        try:
            assert len((await store.opt_outs(limit=500)).items) == 300
            assert await store.state_counts("signup") == {"confirm": 300}
        finally:
            await store.close()
    finally:
        await client.aclose()


async def test_a_conversation_saved_as_json_null_does_not_stop_the_redis_migration(redis_url: str) -> None:
    """Broke: migration 1 read each old conversation's JSON inside a pcall, but then indexed it as a
    table: a conversation whose data decodes to null or a number (corrupted, or written by hand)
    raised inside the Lua script, so the migration failed at every call and the bot answered every
    webhook 500, for every sender, because of one key. Now such a conversation is left unplaced."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(redis_url)
    try:
        await old_keyspace(client, 3)
        for index, data in enumerate(["null", "5", json.dumps("text")]):
            await client.hset(f"textflow:conv:{number(900 + index)}", mapping={"data": data, "version": 1})
        await store.ready()
        assert await redis_migrations.version_of(client, "textflow") == redis_migrations.LATEST
        assert await store.state_counts("signup") == {"confirm": 3}
    finally:
        await client.aclose()
        await store.close()


# -- backups and restores ------------------------------------------------------------------------------


def make_store(database: Path, opted_out: str | None = None) -> None:
    async def create() -> None:
        store = open_store(f"sqlite:///{database}")
        if opted_out is not None:
            await store.set_consent(ConsentChange(opted_out, ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR, "test"))
        await store.close()

    asyncio.run(create())


def test_a_backup_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Broke: the backup file was created by SQLite with the umask's mode, 0644 under the usual 022:
    every phone number, transcript and consent record of the store readable by every user of the
    machine (a backup folder is rarely as closed as the service's own). Now it is 0600."""
    database = tmp_path / "bot.db"
    make_store(database, SENDER)
    previous = os.umask(0o022)
    try:
        backup(database, tmp_path / "backup.db")
    finally:
        os.umask(previous)
    assert (tmp_path / "backup.db").stat().st_mode & 0o077 == 0


def test_restoring_a_store_reached_through_a_symbolic_link_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    """Broke: with the store a symbolic link (bot.db -> /data/bot.db, a bigger disk), restore
    replaced the link with a regular file beside it, so the store moved to the link's disk and
    the file at /data stayed the old one; and the serving lock was taken per spelling of the path,
    so a server serving through the link did not stop a restore naming the file itself. Now both
    follow the link to the file."""
    data, served = tmp_path / "data", tmp_path / "srv"
    data.mkdir()
    served.mkdir()
    real = data / "bot.db"
    make_store(real, SENDER)
    (served / "bot.db").symlink_to(real)
    backup(served / "bot.db", tmp_path / "backup.db")
    with serving(f"sqlite:///{served / 'bot.db'}"), pytest.raises(StoreInUse):
        restore(tmp_path / "backup.db", real)
    before = real.stat().st_ino
    restore(tmp_path / "backup.db", served / "bot.db")
    assert (served / "bot.db").is_symlink() and (served / "bot.db").resolve() == real
    assert real.stat().st_ino != before  # the restored copy is the file now
    assert [path.name for path in served.iterdir() if "before-restore" in path.name] == []
    assert len([path for path in data.iterdir() if "before-restore" in path.name]) == 1


def test_a_restore_does_not_send_again_an_answer_sent_after_the_backup(tmp_path: Path) -> None:
    """Broke: a backup taken while answers were still owed (a deferred answer being sent, timeouts
    waiting for Twilio to come back) kept those records; the store sent them after the backup,
    but a restore put them back, and the copy's outbound records (as old as the backup) did not
    show them sent: the restored bot texted each person the same, by then stale, answer again.
    Now a restore drops what the replaced store no longer owes, and keeps what it still owes."""
    database = tmp_path / "bot.db"
    later = time.time() + RETRY_SECONDS + 1

    async def owe_two() -> None:
        store = open_store(f"sqlite:///{database}")
        inbox = inbox_for(store, tmp_path)
        for sender in (number(1), number(2)):
            await owe_one(inbox, store, sender)
        await store.close()

    async def send_the_first() -> None:
        store = open_store(f"sqlite:///{database}")
        claimed = {owed.record.sender: owed.record.message_sid for owed in await store.claim_owed(later, later + 60)}
        await store.settle_owed(claimed[number(1)])  # handed to Twilio after the backup
        await store.release_owed([claimed[number(2)]])  # still owed: Twilio unreachable
        await store.close()

    async def owed_after_restore() -> list[str]:
        store = open_store(f"sqlite:///{database}")
        try:
            return [owed.record.sender for owed in await store.claim_owed(later + 60, later + 120)]
        finally:
            await store.close()

    asyncio.run(owe_two())
    backup(database, tmp_path / "backup.db")
    asyncio.run(send_the_first())
    assert restore(tmp_path / "backup.db", database).owed_sent == 1
    assert asyncio.run(owed_after_restore()) == [number(2)]


async def test_a_backup_never_takes_the_name_of_one_of_the_stores_own_files(tmp_path: Path) -> None:
    """Broke: ``backup bot.db-wal --force`` (a slip of tab completion) replaced the WAL of the store
    being served with the backup: the server went on writing its unlinked WAL, and at the next
    crash or power loss every turn and STOP it had acknowledged since its last checkpoint was gone,
    while the backup said it succeeded. Now the store's -wal, -shm, -journal and serving lock are
    refused as a backup's name, as the store itself is."""
    database = tmp_path / "bot.db"
    store = open_store(f"sqlite:///{database}")
    try:
        await store.set_consent(ConsentChange(SENDER, ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR, "test"))
        for suffix in ("-wal", "-shm", "-journal", ".serving"):
            with pytest.raises(BackupError, match="one of the store's own files"):
                backup(database, Path(f"{database}{suffix}"), force=True)
        assert await store.is_opted_out(SENDER)
    finally:
        await store.close()
