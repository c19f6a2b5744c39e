"""The scale-out store: Redis, shared by several server processes or machines.

Every key is namespaced (``textflow:conv:+1555…``, ``redis_keys.py``); a turn is written by one Lua
script (``redis_scripts.COMMIT``), so the compare-and-set on the conversation version, the
MessageSid record, the opt-out (with its consent ledger entry, ``redis_consent.py``), the transcript,
the flow runs (``redis_results.py``) and the replies owed (``redis_owed.py``) land together or not at
all. Personal data carries TTLs from the retention setting; opt-outs carry none, and the consent
ledger none either: the sweep removes its entries past the consent retention period.

A turn's own commands (the sender's lock, ``redis_lock.py``; the snapshot and the commit,
``redis_turns.py``) go over a lean auto-pipelined connection (``redis_wire.py``): two trips (the
lock with the snapshot, ``read_ahead.py``; the commit, which frees the lock), a few tens of µs of
CPU. Everything else (the console, sweeps, migrations, owed replies, operational records) uses
redis-py's pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager
from datetime import date

import redis.asyncio as aioredis

from bot.store import redis_listings as listings
from bot.store import redis_migrations
from bot.store.base import (
    BroadcastProgress,
    CommitResult,
    FlowResults,
    ProcessStatus,
    Purged,
    Retention,
    RunKey,
    RunRow,
    Snapshot,
    StoreBusy,
    StoreHealth,
)
from bot.store.listings import ConversationSummary, OptOut, Page, TurnRecord
from bot.store.owed import Owed
from bot.store.read_ahead import take
from bot.store.redis_consent import entry as consent_entry
from bot.store.redis_consent import read_entry
from bot.store.redis_errors import unavailable_is_busy
from bot.store.redis_keys import KeyBuilder
from bot.store.redis_lock import TurnLocks
from bot.store.redis_owed import RedisOwed
from bot.store.redis_records import RedisRecords
from bot.store.redis_results import RedisResults
from bot.store.redis_scripts import DROP_DEADLINE, PURGE, SET_CONSENT
from bot.store.redis_turns import RedisTurns
from bot.store.redis_wire import RedisWire
from bot.store.schema_versions import SchemaState
from bot.types import ConsentChange, OutboundMessage, Turn

__all__ = ["KeyBuilder", "RedisStore"]

LOCK_SECONDS = 5.0  # a crashed process's lock frees itself this soon; a live holder's turn renews it
LOCK_WAIT_SECONDS = 12.0  # then answer 503: Twilio gives up on a webhook after 15 s anyway
MAX_CONNECTIONS = 64  # per process, redis-py's pool (a turn's commands use their own connection)
POOL_WAIT_SECONDS = 10.0
HEALTH_SECONDS = 2.0  # a probe waits no longer: a load balancer's own timeout is a few seconds
PAGE = 1000  # consent ledger entries per read of an export
SWEEP_BATCH = 500  # consent ledger entries removed per transaction by the retention sweep


class RedisStore:
    def __init__(self, url: str, retention: Retention = Retention(), prefix: str = "textflow") -> None:
        self.url = url
        self.retention = retention
        self.keys = KeyBuilder(prefix)
        # A blocking pool: under a burst, requests queue for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(url, decode_responses=True, max_connections=MAX_CONNECTIONS,
                                                        timeout=POOL_WAIT_SECONDS)
        self._redis = aioredis.Redis.from_pool(pool)  # owns the pool: close() disconnects it
        self._purge = self._redis.register_script(PURGE)
        self._drop_deadline = self._redis.register_script(DROP_DEADLINE)
        self._set_consent = self._redis.register_script(SET_CONSENT)
        self.results = RedisResults(self._redis, prefix)
        self.owed = RedisOwed(self._redis, prefix)
        self.records = RedisRecords(self._redis, self.keys, retention.dedup_seconds)
        # An older keyspace is migrated forward before anything reads it (redis_migrations.py): by
        # the first call that reaches Redis, so a server started while Redis is down still starts.
        self._schema_ready = False
        self._migrating = asyncio.Lock()
        self._wire = RedisWire(url)
        self._locks = TurnLocks(self._wire, self.ready)
        self._turns = RedisTurns(self._wire, self.keys, retention, self._locks, self.results, self.owed)

    async def ready(self) -> None:
        """Migrate the keyspace forward if it is older than this release (once per process; every
        other call waits for it). Raises SchemaTooNew for a keyspace from a newer release."""
        async with self._migrating:
            if not self._schema_ready:
                await redis_migrations.migrate(self._redis, self.keys.prefix)
                self._schema_ready = True

    @unavailable_is_busy
    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        return await self._turns.snapshot(sender, message_sid)

    @unavailable_is_busy
    async def is_opted_out(self, sender: str) -> bool:
        return bool(await self._redis.exists(self.keys.opt_out(sender)))

    @unavailable_is_busy
    async def commit(self, turn: Turn) -> CommitResult:
        return await self._turns.commit(turn)

    @unavailable_is_busy
    async def flow_results(self, flow: str, since: date | None = None, until: date | None = None,
                           now: float | None = None) -> FlowResults:
        return await self.results.flow_results(flow, since, until, now)

    def runs(self, flow: str, since: date | None = None, until: date | None = None, *, after: RunKey | None = None,
             limit: int | None = None, now: float | None = None) -> AsyncIterator[RunRow]:
        return self.results.runs(flow, since, until, after, limit, now)

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        # ``sender`` is the lane (the sender, or the sender and " compliance": bot/inbox.py). The
        # turn named before it (read_ahead.py) is read with the SET NX if it is this lane's sender's.
        ahead = take()
        reads = (ahead, self._turns.reads(*ahead)) if ahead is not None and (
            sender == ahead[0] or sender.startswith(f"{ahead[0]} ")) else None
        # The module's values read at each call (the tests shorten them).
        return self._locks.hold(self.keys.lock(sender), LOCK_SECONDS, LOCK_WAIT_SECONDS, reads)

    @unavailable_is_busy
    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        found = await self._redis.zrangebyscore(self.keys.deadlines(), "-inf", now, start=0, num=limit,
                                                withscores=True)
        return [(str(entry[0]), float(entry[1])) for entry in found]

    @unavailable_is_busy
    async def drop_deadline(self, sender: str, at: float) -> None:
        await self._drop_deadline(keys=[self.keys.deadlines()], args=[sender, repr(at)])

    @unavailable_is_busy
    async def state_counts(self, flow: str, since: float = 0.0) -> dict[str, int]:
        # Members stay in a state's set after their conversation's key expired, until the sweep trims
        # them: what the retention period dropped is never counted.
        since = max(since, time.time() - self.retention.seconds)
        states = sorted(str(state) for state in await self._redis.smembers(self.keys.states_of(flow)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for state in states:
                pipe.zcount(self.keys.at_state(flow, state), repr(since), "+inf")
            counts = await pipe.execute() if states else []
        return {state: int(count) for state, count in zip(states, counts, strict=True) if count}

    @unavailable_is_busy
    async def purge(self, sender: str) -> Purged:
        conversations, lines, blanked = await self._purge(
            keys=[self.keys.conversation(sender), self.keys.transcript(sender), self.keys.sender_messages(sender),
                  self.keys.deadlines()],
            args=[self.keys.reply(""), sender])
        await self.results.forget(sender)
        await self.owed.forget(sender)
        return Purged(int(conversations), int(lines), int(blanked))

    @unavailable_is_busy
    async def sweep(self, now: float | None = None) -> Purged:
        """Every personal key carries its TTL (Redis sweeps those by itself); consent ledger entries
        past the consent retention period leave here, a batch at a time."""
        now = time.time() if now is None else now
        await self._trim_positions(now - self.retention.seconds)
        await self.results.sweep(now, self.retention.seconds)
        await self.owed.drop_untried_since(now - self.retention.seconds)
        cutoff = now - self.retention.consent_seconds
        dropped = 0
        while old := [str(member) for member in await self._redis.zrangebyscore(
                self.keys.consent_ledger(), "-inf", f"({cutoff!r}", start=0, num=SWEEP_BATCH)]:
            async with self._redis.pipeline(transaction=True) as pipe:
                for member in old:
                    pipe.zrem(self.keys.consent_history(read_entry(member).number), member)
                pipe.zrem(self.keys.consent_ledger(), *old)
                await pipe.execute()
            dropped += len(old)
            if len(old) < SWEEP_BATCH:
                break
        return Purged(consent_changes=dropped)

    async def _trim_positions(self, cutoff: float) -> None:
        """Drop from the state sets those whose person wrote last before ``cutoff``: their
        conversation's key has expired (or soon will), so the sets do not grow forever."""
        for flow in sorted(str(name) for name in await self._redis.smembers(self.keys.counted_flows())):
            states = [str(state) for state in await self._redis.smembers(self.keys.states_of(flow))]
            async with self._redis.pipeline(transaction=False) as pipe:
                for state in states:
                    pipe.zremrangebyscore(self.keys.at_state(flow, state), "-inf", f"({cutoff!r}")
                await pipe.execute()

    @unavailable_is_busy
    async def save_outbound(self, message: OutboundMessage) -> None:
        await self.records.save_outbound(message)

    @unavailable_is_busy
    async def outbound(self, message_id: str) -> OutboundMessage | None:
        return await self.records.outbound(message_id)

    @unavailable_is_busy
    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None:
        return await self.records.outbound_by_sid(sid)

    @unavailable_is_busy
    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]:
        return await self.records.broadcast_messages(broadcast)

    @unavailable_is_busy
    async def set_consent(self, change: ConsentChange) -> bool:
        number = change.number
        changed = await self._set_consent(
            keys=[self.keys.opt_out(number), self.keys.consent_history(number), self.keys.consent_ledger(),
                  self.keys.consent_sequence(), self.keys.opt_outs()],
            args=["1" if change.opted_out else "0", repr(change.at), consent_entry(change)])
        return bool(changed)

    @unavailable_is_busy
    async def active_conversations(self, flow: str | None = None, state: str | None = None, limit: int = 50,
                                   cursor: str | None = None) -> Page[ConversationSummary]:
        return await listings.active_conversations(self._redis, self.keys, flow, state, limit, cursor,
                                                   time.time() - self.retention.seconds)

    @unavailable_is_busy
    async def recent_turns(self, sender: str, limit: int = 100) -> list[TurnRecord]:
        return await listings.recent_turns(self._redis, self.keys, sender, limit)

    @unavailable_is_busy
    async def opt_outs(self, limit: int = 100, cursor: str | None = None) -> Page[OptOut]:
        return await listings.opt_outs(self._redis, self.keys, limit, cursor)

    @unavailable_is_busy
    async def consent_history(self, number: str) -> list[ConsentChange]:
        members = await self._redis.zrange(self.keys.consent_history(number), 0, -1)
        return [read_entry(str(member)) for member in members]

    async def consent_changes(self, since: float | None = None) -> AsyncIterator[ConsentChange]:
        # Paged by score: the next page starts at the last score read, skipping the entries of that
        # score already read (entries with equal times are ordered by their sequence number).
        low, skip = (since if since is not None else float("-inf")), 0
        while True:
            found = await self._ledger_page(low, skip)
            for member, _ in found:
                yield read_entry(member)
            if len(found) < PAGE:
                return
            last = found[-1][1]
            same = sum(1 for _, score in found if score == last)
            low, skip = last, (skip + same if last == low else same)

    @unavailable_is_busy
    async def _ledger_page(self, low: float, skip: int) -> list[tuple[str, float]]:
        found = await self._redis.zrangebyscore(self.keys.consent_ledger(), repr(low), "+inf", start=skip, num=PAGE,
                                                withscores=True)
        return [(str(entry[0]), float(entry[1])) for entry in found]

    @unavailable_is_busy
    async def claim_owed(self, now: float, until: float, limit: int = 20) -> list[Owed]:
        return await self.owed.claim(now, until, limit)

    @unavailable_is_busy
    async def settle_owed(self, message_sid: str) -> None:
        await self.owed.settle(message_sid)

    @unavailable_is_busy
    async def release_owed(self, message_sids: Collection[str], at: float | None = None) -> None:
        await self.owed.release(message_sids, time.time() if at is None else at)

    @unavailable_is_busy
    async def schema_state(self) -> SchemaState:
        return await redis_migrations.state(self._redis, self.keys.prefix)

    @unavailable_is_busy
    async def record_status(self, status: ProcessStatus) -> None:
        await self.records.record_status(status)

    @unavailable_is_busy
    async def process_statuses(self) -> list[ProcessStatus]:
        return await self.records.process_statuses()

    @unavailable_is_busy
    async def record_broadcast_progress(self, progress: BroadcastProgress) -> None:
        await self.records.record_broadcast_progress(progress)

    @unavailable_is_busy
    async def broadcasts(self, active_within: float, now: float | None = None) -> list[BroadcastProgress]:
        return await self.records.broadcasts((time.time() if now is None else now) - active_within)

    async def health(self) -> StoreHealth:
        """A real write, within HEALTH_SECONDS: Redis down, unreachable, or refusing writes shows."""
        try:
            await asyncio.wait_for(self._write_probe(), HEALTH_SECONDS)
        except StoreBusy as error:
            return StoreHealth(str(error))
        except TimeoutError:
            return StoreHealth(f"Redis unavailable: no answer within {HEALTH_SECONDS:g}s")
        return StoreHealth()

    @unavailable_is_busy
    async def _write_probe(self) -> None:
        await self._redis.set(self.keys.health(), repr(time.time()), px=60_000)

    async def close(self) -> None:
        self._wire.close()
        await self._redis.aclose()
