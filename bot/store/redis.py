"""The scale-out store: Redis, shared by several server processes or machines.

Every key is namespaced (``textflow:conv:+1555…``); a turn is written by one Lua script, so
the compare-and-set on the conversation version, the MessageSid record, the opt-out (with its
consent ledger entry) and the transcript land together or not at all. Personal data carries TTLs
from the retention setting; opt-outs carry none, and the consent ledger none either: the sweep
removes its entries past the consent retention period.

The ledger is two sorted sets scored by time holding the same members (a sequence number and the
change as JSON): one per number (``textflow:consent:+1555…``, its history) and one for all
(``textflow:consents``, the export and the sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store import redis_listings as listings
from bot.store import redis_migrations
from bot.store.base import (
    BROADCAST_KEEP_SECONDS,
    PROCESS_STATUS_KEEP_SECONDS,
    BroadcastProgress,
    CommitResult,
    FlowResults,
    KeyedLocks,
    ProcessStatus,
    Purged,
    Retention,
    RunKey,
    RunRow,
    Snapshot,
    StoreBusy,
    StoreHealth,
    StoreUnavailable,
)
from bot.store.listings import ConversationSummary, OptOut, Page, TurnRecord, dump_trace
from bot.store.owed import CLAIM_SECONDS, Owed, owed_by
from bot.store.records import bookkeeping, conversation_from_record
from bot.store.redis_owed import OWE, RedisOwed
from bot.store.redis_results import APPLY_RUNS, RedisResults
from bot.store.replies import dump_replies, load_replies
from bot.store.schema_versions import SchemaState
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Conversation, OutboundMessage, Turn, media_of

P = ParamSpec("P")
R = TypeVar("R")

LOCK_SECONDS = 5.0  # a crashed process's lock frees itself this soon; a live holder keeps renewing it
LOCK_WAIT_SECONDS = 12.0  # then answer 503: Twilio gives up on a webhook after 15 s anyway
MAX_CONNECTIONS = 64  # per process
POOL_WAIT_SECONDS = 10.0
HEALTH_SECONDS = 2.0  # a probe waits no longer: a load balancer's own timeout is a few seconds
PAGE = 1000  # consent ledger entries per read of an export
SWEEP_BATCH = 500  # consent ledger entries removed per transaction by the retention sweep


@dataclass(frozen=True)
class KeyBuilder:
    """Predictable, namespaced key names (one place, so tests and operators can find data)."""

    prefix: str = "textflow"

    def conversation(self, sender: str) -> str:
        return f"{self.prefix}:conv:{sender}"

    def message(self, message_sid: str) -> str:
        """Marks a MessageSid as processed (kept >= 48 h for de-duplication)."""
        return f"{self.prefix}:sid:{message_sid}"

    def reply(self, message_sid: str) -> str:
        """What we answered to it (personal data: kept for the retention period)."""
        return f"{self.prefix}:reply:{message_sid}"

    def sender_messages(self, sender: str) -> str:
        return f"{self.prefix}:sids:{sender}"

    def opt_out(self, sender: str) -> str:
        return f"{self.prefix}:optout:{sender}"

    def transcript(self, sender: str) -> str:
        return f"{self.prefix}:log:{sender}"

    def lock(self, sender: str) -> str:
        return f"{self.prefix}:lock:{sender}"

    def outbound(self, message_id: str) -> str:
        return f"{self.prefix}:out:{message_id}"

    def outbound_sid(self, sid: str) -> str:
        return f"{self.prefix}:outsid:{sid}"

    def broadcast(self, name: str) -> str:
        return f"{self.prefix}:broadcast:{name}"

    def deadlines(self) -> str:
        return f"{self.prefix}:deadlines"

    def consent_history(self, number: str) -> str:
        """A number's consent ledger entries, by time (append-only; no TTL)."""
        return f"{self.prefix}:consent:{number}"

    def consent_ledger(self) -> str:
        """Every number's consent ledger entries, by time: the export, and the retention sweep."""
        return f"{self.prefix}:consents"

    def consent_sequence(self) -> str:
        return f"{self.prefix}:consents:seq"

    def opt_outs(self) -> str:
        """Who is opted out now, by when (the console's list; kept with the opt-out keys, no TTL)."""
        return f"{self.prefix}:optouts"

    def at_state(self, flow: str, state: str) -> str:
        """Who is at a flow's state: senders scored by when they last wrote (the console's counts)."""
        return f"{self.prefix}:at:{flow}:{state}"

    def states_of(self, flow: str) -> str:
        """The states of a flow anyone was ever counted at, so counting needs no SCAN."""
        return f"{self.prefix}:states:{flow}"

    def counted_flows(self) -> str:
        """The flows anyone was ever counted in: what the sweep trims."""
        return f"{self.prefix}:flows"

    def health(self) -> str:
        """Written by each health check (expires in a minute): proof that a write goes through."""
        return f"{self.prefix}:health"

    def process_statuses(self) -> str:
        """Each server process's status (``host:pid`` → JSON): ``python -m bot status``."""
        return f"{self.prefix}:processes"

    def process_written(self) -> str:
        """When each process last wrote its status, by time: the old entries leave by it."""
        return f"{self.prefix}:processes:written"

    def broadcast_progress(self) -> str:
        """Where each broadcast stands (its name → JSON): the console's Operations page, ``/metrics``."""
        return f"{self.prefix}:broadcasts"

    def broadcast_written(self) -> str:
        """When each broadcast's entry was last written, by time: read by it, and the old ones leave by it."""
        return f"{self.prefix}:broadcasts:written"


# Sets ('1') or clears ('0') the opt-out (and its entry in the list of opt-outs, by time) and appends
# the ledger entry, only when the status changes (returns 1; 0: unchanged, nothing written). A member
# is a sequence number and the change as JSON.
_CONSENT = """
local function change_consent(opt_out, history, ledger, sequence, flag, at, entry, opted_out)
  if (flag == '1') == (redis.call('EXISTS', opt_out) == 1) then return 0 end
  local number = cjson.decode(entry)['number']
  if flag == '1' then
    redis.call('SET', opt_out, at)
    redis.call('ZADD', opted_out, at, number)
  else
    redis.call('DEL', opt_out)
    redis.call('ZREM', opted_out, number)
  end
  local member = string.format('%015d', redis.call('INCR', sequence)) .. ' ' .. entry
  redis.call('ZADD', history, at, member)
  redis.call('ZADD', ledger, at, member)
  return 1
end
"""

# KEYS: opt-out, the number's ledger, all ledgers, ledger sequence, opt-outs; ARGV: 1/0, time, entry JSON
_SET_CONSENT = _CONSENT + """
return change_consent(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], KEYS[5])
"""

# Who is where (the console's counts): a conversation in a flow is a member of its state's sorted set
# (at_state), scored by when the person last wrote; the conversation's hash names that set in 'at'
# (empty: in no flow), so the next write or a purge knows which set to leave. A conversation last
# written before these sets existed joins them at its next turn.
_PLACE = """
local function place(conversation, sender, at_key, states, state, flows, flow, score)
  local before = redis.call('HGET', conversation, 'at')
  if before and before ~= '' and before ~= at_key then redis.call('ZREM', before, sender) end
  if at_key ~= '' then
    redis.call('ZADD', at_key, score, sender)
    redis.call('SADD', states, state)
    redis.call('SADD', flows, flow)
  end
  redis.call('HSET', conversation, 'at', at_key)
end
"""

# KEYS: conversation, message, opt-out, transcript, sender's message set, reply, deadlines, sender,
#       the number's ledger, all ledgers, ledger sequence, opt-outs
# ARGV: expected version ('-': conversation unchanged, not written), conversation JSON, replies JSON,
#       dedup ttl ms, opt-out (1/0/-),
#       retention ttl ms, now, message sid, deadline (time / clear / -), consent change time, its
#       ledger entry, where it is (at_state key or ''), its flow's states key, state, the counted flows
#       key, flow, when the person last wrote, the turn's flow runs (JSON, redis_results.py; '-': none),
#       its owed replies (JSON, redis_owed.py; '-': none) and their claim's end, transcript lines...
#       (KEYS 13 and 14: the owed records and their claims)
_COMMIT = _CONSENT + _PLACE + APPLY_RUNS + OWE + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'duplicate' end
if ARGV[1] ~= '-' then
  local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
  if version ~= tonumber(ARGV[1]) then return 'conflict' end
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version + 1)
  place(KEYS[1], KEYS[8], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[6])
redis.call('SADD', KEYS[5], ARGV[8])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
if ARGV[5] ~= '-' then change_consent(KEYS[3], KEYS[9], KEYS[10], KEYS[11], ARGV[5], ARGV[10], ARGV[11], KEYS[12]) end
if ARGV[9] == 'clear' then redis.call('ZREM', KEYS[7], KEYS[8])
elseif ARGV[9] ~= '-' then redis.call('ZADD', KEYS[7], ARGV[9], KEYS[8]) end
if ARGV[18] ~= '-' then apply_runs(ARGV[18], KEYS[8], ARGV[6]) end
if ARGV[19] ~= '-' then owe(KEYS[13], KEYS[14], ARGV[8], ARGV[19], ARGV[20]) end
for i = 21, #ARGV do redis.call('RPUSH', KEYS[4], ARGV[i]) end
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return 'committed'
"""

# KEYS: conversation, transcript, sender's message set, deadlines; ARGV: reply key prefix, sender
_PURGE = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and at ~= '' then redis.call('ZREM', at, ARGV[2]) end
local conversations = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[2])
local lines = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[2])
local blanked = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  blanked = blanked + redis.call('DEL', ARGV[1] .. sid)
end
return {conversations, lines, blanked}
"""

# KEYS: deadlines; ARGV: sender, deadline. Removes the entry only while it still says that deadline.
_DROP_DEADLINE = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


# KEYS: entries hash, written-at sorted set; ARGV: name, entry JSON, written at, forget before. Process
# statuses and broadcast progress alike: insert or replace the entry, drop those not written since.
_RECORD_STATUS = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old
"""


def _unavailable_is_busy(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Redis down or saturated, or refusing writes (a read-only replica, out of memory, unable to
    save: MISCONF), is a temporary condition: say so (503, Twilio retries), not a crash (500)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if args and not getattr(args[0], "_schema_ready", True):  # a RedisStore's first call: migrate
                await args[0].ready()  # type: ignore[attr-defined]
            return await method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise StoreUnavailable(f"Redis unavailable: {error}") from error
        except (ReadOnlyError, OutOfMemoryError) as error:
            raise StoreUnavailable(f"Redis refuses writes: {error}") from error
        except ResponseError as error:
            if not str(error).startswith("MISCONF"):
                raise
            raise StoreUnavailable(f"Redis refuses writes: {error}") from error
    return wrapper


async def _keep_renewing(lock: Lock) -> None:
    """Keep a held lock alive while a turn runs (a fetch may take up to 14 s), so its TTL can be
    short: a process that dies stops renewing, and its senders are free again within seconds."""
    with contextlib.suppress(LockError, RedisConnectionError, RedisTimeoutError):
        while True:
            await asyncio.sleep(LOCK_SECONDS / 3)
            await lock.reacquire()


class RedisStore:
    def __init__(self, url: str, retention: Retention = Retention(), prefix: str = "textflow") -> None:
        self.url = url
        self.retention = retention
        self.keys = KeyBuilder(prefix)
        # A blocking pool: under a burst, requests queue for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(url, decode_responses=True, max_connections=MAX_CONNECTIONS,
                                                        timeout=POOL_WAIT_SECONDS)
        self._redis = aioredis.Redis.from_pool(pool)  # owns the pool: close() disconnects it
        self._commit = self._redis.register_script(_COMMIT)
        self._purge = self._redis.register_script(_PURGE)
        self._drop_deadline = self._redis.register_script(_DROP_DEADLINE)
        self._set_consent = self._redis.register_script(_SET_CONSENT)
        self._record_status = self._redis.register_script(_RECORD_STATUS)
        self.results = RedisResults(self._redis, prefix)
        self.owed = RedisOwed(self._redis, prefix)
        # An older keyspace is migrated forward before anything reads it (redis_migrations.py): by
        # the first call that reaches Redis, so a server started while Redis is down still starts.
        self._schema_ready = False
        self._migrating = asyncio.Lock()
        self._local = KeyedLocks()  # waiters in this process queue here instead of polling Redis

    async def ready(self) -> None:
        """Migrate the keyspace forward if it is older than this release (once per process; every
        other call waits for it). Raises SchemaTooNew for a keyspace from a newer release."""
        async with self._migrating:
            if not self._schema_ready:
                await redis_migrations.migrate(self._redis, self.keys.prefix)
                self._schema_ready = True

    @_unavailable_is_busy
    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hmget(self.keys.conversation(sender), ["data", "version"])
            pipe.exists(self.keys.opt_out(sender))
            pipe.exists(self.keys.message(message_sid))
            pipe.get(self.keys.reply(message_sid))
            stored, opted_out, processed, replies = await pipe.execute()
        return Snapshot(_conversation(sender, cast(list[str | None], stored)), bool(opted_out),
                        _recorded(processed, replies))

    @_unavailable_is_busy
    async def is_opted_out(self, sender: str) -> bool:
        return bool(await self._redis.exists(self.keys.opt_out(sender)))

    @_unavailable_is_busy
    async def commit(self, turn: Turn) -> CommitResult:
        conversation, inbound = turn.conversation, turn.inbound
        sender = inbound.sender
        state = json.dumps({"flow": conversation.flow, "state": conversation.state, "vars": conversation.vars,
                            "engine": bookkeeping(conversation), "updated_at": conversation.updated_at})
        lines = [json.dumps({"at": turn.at, "dir": "in", "body": inbound.body, "sid": inbound.message_sid,
                             **({"trace": dump_trace(turn.trace)} if turn.trace else {})})]
        lines += [json.dumps({"at": turn.at, "dir": "out", "body": reply, "sid": inbound.message_sid,
                              **({"media": list(media_of(reply))} if media_of(reply) else {})})
                  for reply in turn.replies]
        consent = turn.consent
        number = consent.number if consent is not None else sender
        deadline = "-" if not turn.deadline_changed else ("clear" if turn.deadline is None else repr(turn.deadline))
        flow, at_state = conversation.flow or "", conversation.state or ""
        position = self.keys.at_state(flow, at_state) if flow and at_state else ""
        result = await self._commit(
            keys=[self.keys.conversation(sender), self.keys.message(inbound.message_sid), self.keys.opt_out(number),
                  self.keys.transcript(sender), self.keys.sender_messages(sender),
                  self.keys.reply(inbound.message_sid), self.keys.deadlines(), sender,
                  self.keys.consent_history(number), self.keys.consent_ledger(), self.keys.consent_sequence(),
                  self.keys.opt_outs(), self.owed.records, self.owed.claims],
            args=[turn.expected_version if turn.conversation_changed else "-", state, dump_replies(turn.replies),
                  int(self.retention.dedup_seconds * 1000),
                  "-" if consent is None else ("1" if consent.opted_out else "0"),
                  int(self.retention.seconds * 1000), repr(turn.at), inbound.message_sid, deadline,
                  repr(consent.at) if consent is not None else "-", _entry(consent) if consent is not None else "-",
                  position, self.keys.states_of(flow), at_state, self.keys.counted_flows(), flow,
                  repr(conversation.updated_at), self.results.argument(turn.runs),
                  *((owed_by(turn).to_json(), repr(time.time() + CLAIM_SECONDS)) if turn.owed else ("-", "-")),
                  *lines])
        return CommitResult(result)

    @_unavailable_is_busy
    async def flow_results(self, flow: str, since: date | None = None, until: date | None = None,
                           now: float | None = None) -> FlowResults:
        return await self.results.flow_results(flow, since, until, now)

    def runs(self, flow: str, since: date | None = None, until: date | None = None, *, after: RunKey | None = None,
             limit: int | None = None, now: float | None = None) -> AsyncIterator[RunRow]:
        return self.results.runs(flow, since, until, after, limit, now)

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        return self._hold(sender)

    @asynccontextmanager
    async def _hold(self, sender: str) -> AsyncIterator[None]:
        async with self._local.hold(sender):
            lock = Lock(self._redis, self.keys.lock(sender), timeout=LOCK_SECONDS, sleep=0.002,
                        blocking_timeout=LOCK_WAIT_SECONDS, thread_local=False, raise_on_release_error=False)
            if not await _unavailable_is_busy(lock.acquire)():
                raise StoreBusy(f"lock {self.keys.lock(sender)} still held after {LOCK_WAIT_SECONDS:g}s")
            renewal = asyncio.create_task(_keep_renewing(lock))
            try:
                yield
            finally:
                renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewal
                try:
                    await lock.release()
                except (LockError, RedisConnectionError, RedisTimeoutError):
                    pass  # it expired (or Redis went away) meanwhile; compare-and-set kept the data right

    @_unavailable_is_busy
    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        found = await self._redis.zrangebyscore(self.keys.deadlines(), "-inf", now, start=0, num=limit,
                                                withscores=True)
        return [(str(entry[0]), float(entry[1])) for entry in found]

    @_unavailable_is_busy
    async def drop_deadline(self, sender: str, at: float) -> None:
        await self._drop_deadline(keys=[self.keys.deadlines()], args=[sender, repr(at)])

    @_unavailable_is_busy
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

    @_unavailable_is_busy
    async def purge(self, sender: str) -> Purged:
        conversations, lines, blanked = await self._purge(
            keys=[self.keys.conversation(sender), self.keys.transcript(sender), self.keys.sender_messages(sender),
                  self.keys.deadlines()],
            args=[self.keys.reply(""), sender])
        await self.results.forget(sender)
        await self.owed.forget(sender)
        return Purged(int(conversations), int(lines), int(blanked))

    @_unavailable_is_busy
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
                    pipe.zrem(self.keys.consent_history(_read_entry(member).number), member)
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

    @_unavailable_is_busy
    async def save_outbound(self, message: OutboundMessage) -> None:
        ttl = int(self.retention.dedup_seconds)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.outbound(message.id), json.dumps(dataclasses.asdict(message)), ex=ttl)
            if message.sid:
                pipe.set(self.keys.outbound_sid(message.sid), message.id, ex=ttl)
            if message.broadcast:
                pipe.sadd(self.keys.broadcast(message.broadcast), message.id)
                pipe.expire(self.keys.broadcast(message.broadcast), ttl)
            await pipe.execute()

    @_unavailable_is_busy
    async def outbound(self, message_id: str) -> OutboundMessage | None:
        stored = await self._redis.get(self.keys.outbound(message_id))
        return OutboundMessage(**json.loads(stored)) if stored else None

    @_unavailable_is_busy
    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None:
        message_id = await self._redis.get(self.keys.outbound_sid(sid))
        return await self.outbound(str(message_id)) if message_id else None

    @_unavailable_is_busy
    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]:
        ids = sorted(str(member) for member in await self._redis.smembers(self.keys.broadcast(broadcast)))
        stored = await self._redis.mget([self.keys.outbound(i) for i in ids]) if ids else []
        return [OutboundMessage(**json.loads(item)) for item in stored if item]

    @_unavailable_is_busy
    async def set_consent(self, change: ConsentChange) -> bool:
        number = change.number
        changed = await self._set_consent(
            keys=[self.keys.opt_out(number), self.keys.consent_history(number), self.keys.consent_ledger(),
                  self.keys.consent_sequence(), self.keys.opt_outs()],
            args=["1" if change.opted_out else "0", repr(change.at), _entry(change)])
        return bool(changed)

    @_unavailable_is_busy
    async def active_conversations(self, flow: str | None = None, state: str | None = None, limit: int = 50,
                                   cursor: str | None = None) -> Page[ConversationSummary]:
        return await listings.active_conversations(self._redis, self.keys, flow, state, limit, cursor,
                                                   time.time() - self.retention.seconds)

    @_unavailable_is_busy
    async def recent_turns(self, sender: str, limit: int = 100) -> list[TurnRecord]:
        return await listings.recent_turns(self._redis, self.keys, sender, limit)

    @_unavailable_is_busy
    async def opt_outs(self, limit: int = 100, cursor: str | None = None) -> Page[OptOut]:
        return await listings.opt_outs(self._redis, self.keys, limit, cursor)

    @_unavailable_is_busy
    async def consent_history(self, number: str) -> list[ConsentChange]:
        members = await self._redis.zrange(self.keys.consent_history(number), 0, -1)
        return [_read_entry(str(member)) for member in members]

    async def consent_changes(self, since: float | None = None) -> AsyncIterator[ConsentChange]:
        # Paged by score: the next page starts at the last score read, skipping the entries of that
        # score already read (entries with equal times are ordered by their sequence number).
        low, skip = (since if since is not None else float("-inf")), 0
        while True:
            found = await self._ledger_page(low, skip)
            for member, _ in found:
                yield _read_entry(member)
            if len(found) < PAGE:
                return
            last = found[-1][1]
            same = sum(1 for _, score in found if score == last)
            low, skip = last, (skip + same if last == low else same)

    @_unavailable_is_busy
    async def _ledger_page(self, low: float, skip: int) -> list[tuple[str, float]]:
        found = await self._redis.zrangebyscore(self.keys.consent_ledger(), repr(low), "+inf", start=skip, num=PAGE,
                                                withscores=True)
        return [(str(entry[0]), float(entry[1])) for entry in found]

    @_unavailable_is_busy
    async def claim_owed(self, now: float, until: float, limit: int = 20) -> list[Owed]:
        return await self.owed.claim(now, until, limit)

    @_unavailable_is_busy
    async def settle_owed(self, message_sid: str) -> None:
        await self.owed.settle(message_sid)

    @_unavailable_is_busy
    async def release_owed(self, message_sids: Collection[str], at: float | None = None) -> None:
        await self.owed.release(message_sids, time.time() if at is None else at)

    @_unavailable_is_busy
    async def schema_state(self) -> SchemaState:
        return await redis_migrations.state(self._redis, self.keys.prefix)

    @_unavailable_is_busy
    async def record_status(self, status: ProcessStatus) -> None:
        await self._record_status(keys=[self.keys.process_statuses(), self.keys.process_written()],
                                  args=[status.process, status.to_json(), repr(status.written_at),
                                        repr(status.written_at - PROCESS_STATUS_KEEP_SECONDS)])

    @_unavailable_is_busy
    async def process_statuses(self) -> list[ProcessStatus]:
        stored = await self._redis.hvals(self.keys.process_statuses())
        found = [ProcessStatus.from_json(str(text)) for text in stored]
        return sorted(found, key=lambda status: (-status.written_at, status.process))

    @_unavailable_is_busy
    async def record_broadcast_progress(self, progress: BroadcastProgress) -> None:
        await self._record_status(keys=[self.keys.broadcast_progress(), self.keys.broadcast_written()],
                                  args=[progress.name, progress.to_json(), repr(progress.written_at),
                                        repr(progress.written_at - BROADCAST_KEEP_SECONDS)])

    @_unavailable_is_busy
    async def broadcasts(self, active_within: float, now: float | None = None) -> list[BroadcastProgress]:
        since = (time.time() if now is None else now) - active_within
        names = cast(list[str], await self._redis.zrangebyscore(self.keys.broadcast_written(), repr(since), "+inf"))
        if not names:
            return []
        stored = await self._redis.hmget(self.keys.broadcast_progress(), names)
        found = [BroadcastProgress.from_json(str(text)) for text in stored if text is not None]
        return sorted(found, key=lambda progress: (-progress.written_at, progress.name))

    async def health(self) -> StoreHealth:
        """A real write, within HEALTH_SECONDS: Redis down, unreachable, or refusing writes shows."""
        try:
            await asyncio.wait_for(self._write_probe(), HEALTH_SECONDS)
        except StoreBusy as error:
            return StoreHealth(str(error))
        except TimeoutError:
            return StoreHealth(f"Redis unavailable: no answer within {HEALTH_SECONDS:g}s")
        return StoreHealth()

    @_unavailable_is_busy
    async def _write_probe(self) -> None:
        await self._redis.set(self.keys.health(), repr(time.time()), px=60_000)

    async def close(self) -> None:
        await self._redis.aclose()


def _conversation(sender: str, stored: list[str | None]) -> Conversation:
    if stored[0] is None:
        return Conversation(sender)
    data = json.loads(stored[0])
    return conversation_from_record(sender, data["flow"], data["state"], data["vars"], data.get("engine"),
                                    data["updated_at"], int(stored[1] or 0))


def _entry(change: ConsentChange) -> str:
    return json.dumps({"at": change.at, "number": change.number, "status": str(change.status),
                       "how": str(change.how), "detail": change.detail, "sid": change.message_sid})


def _read_entry(member: str) -> ConsentChange:
    data = json.loads(member.split(" ", 1)[1])  # after the sequence number
    return ConsentChange(data["number"], ConsentStatus(data["status"]), ConsentMethod(data["how"]), data["detail"],
                         data["sid"], float(data["at"]))


def _recorded(processed: int, replies: str | None) -> tuple[str, ...] | None:
    """None: never processed; () once retention (or a purge) removed the reply text."""
    if not processed:
        return None
    return load_replies(replies) if replies is not None else ()
