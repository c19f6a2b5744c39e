"""The Redis keyspace's schema version, and the migrations that bring an older keyspace to it.

The version is the ``version`` field of the ``<prefix>:schema`` hash (absent: 0, every keyspace from
before versions were kept). Opening the store migrates forward before anything is served. A
migration walks the keyspace with SCAN, a batch at a time, each batch one Lua script (so a key is
converted whole or not at all, and converting it twice changes nothing), and records its SCAN
cursor in the schema hash after every batch: a process killed part-way leaves a keyspace the next
start carries on from where it stopped — *resumable*, as one transaction over millions of keys
cannot be.

One process migrates at a time: it holds ``<prefix>:schema:lock`` (renewed after each batch, so a
dead migrator's lock frees itself in seconds); the others wait for the version to arrive. Each
migration applied is kept in the ``<prefix>:schema:history`` list, for operators.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bot.store.base import StoreUnavailable
from bot.store.schema_versions import (
    Applied,
    Migration,
    SchemaState,
    SchemaTooNew,
    SchemaUnreadable,
    check_sequence,
    migrated_by,
)

log = logging.getLogger("bot.store")

BATCH = 500  # keys per SCAN step and per script
LOCK_MS = 15_000  # a migrator that dies frees the lock this soon
WAIT_SECONDS = 300.0  # how long a process waits for another one's migration before giving up

# KEYS: the opt-out list, then opt-out keys; ARGV: the prefix of opt-out keys. Opt-outs recorded
# before the console's list existed join it (each key holds its time), each only while it is one.
_LIST_OPT_OUTS = """
for i = 2, #KEYS do
  local at = redis.call('GET', KEYS[i])
  if at then redis.call('ZADD', KEYS[1], tonumber(at) or 0, string.sub(KEYS[i], #ARGV[1] + 1)) end
end
return #KEYS - 1
"""

# KEYS: conversation keys; ARGV: the key prefix, the conversation key prefix. A conversation last
# written before the per-state counts existed (no 'at' field) is placed at its state, scored by its
# last write, as its next turn would place it (bot/store/redis.py _PLACE); one that has the field is
# left alone, so a batch run twice, or a turn in between, changes nothing.
_PLACE_CONVERSATIONS = """
local placed = 0
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'at') == 0 then
    local data = redis.call('HGET', KEYS[i], 'data')
    local at_key = ''
    if data then
      local ok, conversation = pcall(cjson.decode, data)
      ok = ok and type(conversation) == 'table'  -- 'null' or '5' decode, but cannot be indexed
      local flow, state = ok and conversation['flow'], ok and conversation['state']
      if type(flow) == 'string' and flow ~= '' and type(state) == 'string' and state ~= '' then
        local sender = string.sub(KEYS[i], #ARGV[2] + 1)
        at_key = ARGV[1] .. ':at:' .. flow .. ':' .. state
        redis.call('ZADD', at_key, tonumber(conversation['updated_at']) or 0, sender)
        redis.call('SADD', ARGV[1] .. ':states:' .. flow, state)
        redis.call('SADD', ARGV[1] .. ':flows', flow)
        placed = placed + 1
      end
    end
    redis.call('HSET', KEYS[i], 'at', at_key)
  end
end
return placed
"""

# KEYS: the lock; ARGV: our token, milliseconds. Renew or release the lock only while it is ours.
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@dataclass(frozen=True)
class Scan:
    """One pass over the keys matching ``pattern`` (after the prefix), a script per batch."""

    pattern: str
    script: str
    arguments: Callable[[str], list[str]]  # the script's ARGV, from the prefix
    extra_keys: Callable[[str], list[str]]  # KEYS before the batch's own


MIGRATIONS = (
    Migration(1, "the shape of every release before schema versions, made whole: opt-outs recorded before "
                 "the console's list join it, conversations last written before per-state counts are counted"),
    Migration(2, "owed replies: a deferred answer or a timeout's replies survive a restart until sent"),
)
_SCANS: dict[int, tuple[Scan, ...]] = {
    1: (Scan("optout:*", _LIST_OPT_OUTS, lambda prefix: [f"{prefix}:optout:"], lambda prefix: [f"{prefix}:optouts"]),
        Scan("conv:*", _PLACE_CONVERSATIONS, lambda prefix: [prefix, f"{prefix}:conv:"], lambda prefix: [])),
    2: (),  # new keys only: nothing to convert
}
LATEST = check_sequence(MIGRATIONS)


async def version_of(client: aioredis.Redis, prefix: str) -> int:
    raw = await client.hget(f"{prefix}:schema", "version")
    try:
        return int(raw or 0)
    except ValueError:  # set by hand: refused with the fix, not a crash (500 on every webhook)
        raise SchemaUnreadable(
            f"the {url_of(client)} keyspace's schema version ({prefix}:schema, field version) is {raw!r}, not a "
            f"number. Remove the field (HDEL {prefix}:schema version: the migrations run again from the start, "
            "which changes nothing already done) or set the number it had.") from None


async def migrate(client: aioredis.Redis, prefix: str, target: int = LATEST, *, batch: int = BATCH,
                  after_batch: Callable[[int, int], None] | None = None) -> list[Migration]:
    """Bring the keyspace to ``target`` (tests name an earlier one to make older shapes); the
    migrations applied. ``after_batch(version, keys)`` is told of each batch done (tests stop a
    migration part-way with it). Raises SchemaTooNew for a keyspace from a newer release, and
    StoreUnavailable when another process's migration takes too long (Redis's own errors pass)."""
    found = await _checked_version(client, prefix)
    if found >= target:
        return []
    lock, token = f"{prefix}:schema:lock", uuid.uuid4().hex
    deadline = time.monotonic() + WAIT_SECONDS
    while not await client.set(lock, token, nx=True, px=LOCK_MS):
        if await _checked_version(client, prefix) >= target:
            return []  # another process migrated meanwhile
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"another process has been migrating the Redis keyspace {prefix}:* for over "
                                   f"{WAIT_SECONDS:g}s ({lock} is held); try again once it is done")
        await asyncio.sleep(0.1)
    try:
        found = await _checked_version(client, prefix)  # again, holding the lock
        due = [migration for migration in MIGRATIONS if found < migration.version <= target]
        for migration in due:
            await _apply(client, prefix, migration, batch, _Progress(client, lock, token, after_batch))
        if due:
            log.warning("Redis keyspace %s:*: schema migrated from version %d to %d (%s)", prefix, found, target,
                        "; ".join(f"{migration.version}: {migration.description}" for migration in due))
        return due
    finally:
        await client.eval(_RELEASE, 1, lock, token)  # type: ignore[misc]


async def _apply(client: aioredis.Redis, prefix: str, migration: Migration, batch: int, progress: _Progress) -> None:
    """Run one migration's scans from where a previous attempt stopped, then record it done."""
    schema = f"{prefix}:schema"
    for number, scan in enumerate(_SCANS[migration.version]):
        field = f"cursor:{migration.version}:{number}"
        saved = await client.hget(schema, field)
        if saved == "done":
            continue
        # A SCAN cursor means something only to the server run that gave it (Redis hashes keys with a
        # seed drawn at each start): one saved before a restart, or unreadable, starts the pass over
        # (each batch's script changes nothing twice) rather than skip keys it never visited.
        run = await _run_id(client)
        cursor_text, _, saved_run = str(saved or "").partition(" ")
        cursor = int(cursor_text) if cursor_text.isdigit() and saved_run == run else 0
        script = client.register_script(scan.script)
        while True:
            cursor, keys = await client.scan(cursor, match=f"{prefix}:{scan.pattern}", count=batch)
            if keys:
                await script(keys=[*scan.extra_keys(prefix), *keys], args=scan.arguments(prefix))
            await client.hset(schema, field, "done" if cursor == 0 else f"{cursor} {run}")  # where to carry on from
            await progress.batch_done(migration.version, len(keys))
            if cursor == 0:
                break
    entry = json.dumps({"version": migration.version, "description": migration.description,
                        "applied_at": time.time(), "applied_by": migrated_by()})
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(schema, "version", migration.version)
        cursors = [f"cursor:{migration.version}:{number}" for number in range(len(_SCANS[migration.version]))]
        if cursors:
            pipe.hdel(schema, *cursors)
        pipe.rpush(f"{prefix}:schema:history", entry)
        await pipe.execute()


async def _run_id(client: aioredis.Redis) -> str:
    """This Redis server run's id ('' where INFO is not allowed: a saved cursor is then trusted)."""
    try:
        return str((await client.info("server")).get("run_id", ""))
    except ResponseError:
        return ""


@dataclass(frozen=True)
class _Progress:
    """After each batch: the lock renewed (or the migration stopped, if another process took it),
    and the test's hook told."""

    client: aioredis.Redis
    lock: str
    token: str
    after_batch: Callable[[int, int], None] | None

    async def batch_done(self, version: int, keys: int) -> None:
        if not await self.client.eval(_RENEW, 1, self.lock, self.token, str(LOCK_MS)):  # type: ignore[misc]
            raise StoreUnavailable("the Redis schema migration lost its lock (it took over "
                                   f"{LOCK_MS / 1000:g}s between two batches); start again to carry on")
        if self.after_batch is not None:
            self.after_batch(version, keys)


async def _checked_version(client: aioredis.Redis, prefix: str) -> int:
    found = await version_of(client, prefix)
    if found > LATEST:
        raise SchemaTooNew(url_of(client), found, LATEST)
    return found


def url_of(client: aioredis.Redis) -> str:
    """The keyspace as the refusal names it: host, port and database, never a password."""
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return f"redis {where}/{kwargs.get('db', 0)}"


async def state(client: aioredis.Redis, prefix: str) -> SchemaState:
    """The keyspace's version and the migrations it records, for operators."""
    applied = tuple(Applied(int(str(entry["version"])), str(entry["description"]), float(str(entry["applied_at"])),
                            str(entry["applied_by"])) for entry in await history(client, prefix))
    return SchemaState(await version_of(client, prefix), LATEST, applied)


async def history(client: aioredis.Redis, prefix: str) -> list[dict[str, object]]:
    return [json.loads(entry) for entry in await client.lrange(f"{prefix}:schema:history", 0, -1)]
