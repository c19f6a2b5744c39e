"""The Redis store's owed replies (``bot/store/owed.py``): a hash of records by MessageSid and a
sorted set of their claims, written by the turn's own commit script and claimed atomically."""

from __future__ import annotations

from collections.abc import Collection

import redis.asyncio as aioredis

from bot.store.owed import Owed, readable

# Part of the commit script (bot/store/redis.py): ARGV owed is the record's JSON ('-': none).
OWE = """
local function owe(records, claims, sid, record, claimed_until)
  redis.call('HSET', records, sid, record)
  redis.call('ZADD', claims, claimed_until, sid)
end
"""

# KEYS: records, claims; ARGV: now, until, limit. The lapsed claims, oldest first, claimed anew:
# each one's MessageSid and record, one after the other.
_CLAIM = """
local sids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local found = {}
for _, sid in ipairs(sids) do
  local record = redis.call('HGET', KEYS[1], sid)
  if record then
    redis.call('ZADD', KEYS[2], ARGV[2], sid)
    table.insert(found, sid)
    table.insert(found, record)
  else
    redis.call('ZREM', KEYS[2], sid)
  end
end
return found
"""


class RedisOwed:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self.records = f"{prefix}:owed"
        self.claims = f"{prefix}:owed:claims"
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, now: float, until: float, limit: int) -> list[Owed]:
        found = await self._claim(keys=[self.records, self.claims], args=[repr(now), repr(until), limit])
        claimed: list[Owed] = []
        for sid, record in zip(found[::2], found[1::2], strict=True):
            owed = readable(record)
            if owed is None:
                await self.settle(sid)  # dropped (logged): it would fail every claim, and hold back the rest
            else:
                claimed.append(owed)
        return claimed

    async def settle(self, message_sid: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.records, message_sid)
            pipe.zrem(self.claims, message_sid)
            await pipe.execute()

    async def release(self, message_sids: Collection[str], at: float) -> None:
        if message_sids:
            await self._redis.zadd(self.claims, dict.fromkeys(message_sids, at), xx=True)

    async def drop_untried_since(self, cutoff: float) -> None:
        """The retention sweep: records nobody tried to send since ``cutoff`` (no process with
        outbound settings has run since) hold a number and texts that are no longer wanted."""
        for sid in await self._redis.zrangebyscore(self.claims, "-inf", f"({cutoff!r}"):
            await self.settle(str(sid))

    async def forget(self, sender: str) -> None:
        """A purge: nothing more is sent to ``sender`` (few records are ever owed at once)."""
        records = await self._redis.hgetall(self.records)
        theirs: list[str] = []
        for sid, record in records.items():
            owed = readable(str(record))  # one that cannot be read may be theirs: dropped too (logged)
            if owed is None or owed.record.sender == sender:
                theirs.append(str(sid))
        for sid in theirs:
            await self.settle(sid)
