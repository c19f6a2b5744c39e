"""The Redis store's operational records: what we sent (``OutboundRecords``), each process's status
and each broadcast's progress. None is on a turn's path; they use redis-py, as the console does."""

from __future__ import annotations

import dataclasses
import json
from typing import cast

import redis.asyncio as aioredis

from bot.store.base import BROADCAST_KEEP_SECONDS, PROCESS_STATUS_KEEP_SECONDS, BroadcastProgress, ProcessStatus
from bot.store.redis_keys import KeyBuilder
from bot.store.redis_scripts import RECORD_STATUS
from bot.types import OutboundMessage


class RedisRecords:
    def __init__(self, redis: aioredis.Redis, keys: KeyBuilder, dedup_seconds: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = int(dedup_seconds)  # kept as long as a MessageSid is
        self._record_status = redis.register_script(RECORD_STATUS)

    async def save_outbound(self, message: OutboundMessage) -> None:
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.outbound(message.id), json.dumps(dataclasses.asdict(message)), ex=self._ttl)
            if message.sid:
                pipe.set(keys.outbound_sid(message.sid), message.id, ex=self._ttl)
            if message.broadcast:
                pipe.sadd(keys.broadcast(message.broadcast), message.id)
                pipe.expire(keys.broadcast(message.broadcast), self._ttl)
            await pipe.execute()

    async def outbound(self, message_id: str) -> OutboundMessage | None:
        stored = await self._redis.get(self._keys.outbound(message_id))
        return OutboundMessage(**json.loads(stored)) if stored else None

    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None:
        message_id = await self._redis.get(self._keys.outbound_sid(sid))
        return await self.outbound(str(message_id)) if message_id else None

    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]:
        ids = sorted(str(member) for member in await self._redis.smembers(self._keys.broadcast(broadcast)))
        stored = await self._redis.mget([self._keys.outbound(i) for i in ids]) if ids else []
        return [OutboundMessage(**json.loads(item)) for item in stored if item]

    async def record_status(self, status: ProcessStatus) -> None:
        await self._record_status(keys=[self._keys.process_statuses(), self._keys.process_written()],
                                  args=[status.process, status.to_json(), repr(status.written_at),
                                        repr(status.written_at - PROCESS_STATUS_KEEP_SECONDS)])

    async def process_statuses(self) -> list[ProcessStatus]:
        stored = await self._redis.hvals(self._keys.process_statuses())
        found = [ProcessStatus.from_json(str(text)) for text in stored]
        return sorted(found, key=lambda status: (-status.written_at, status.process))

    async def record_broadcast_progress(self, progress: BroadcastProgress) -> None:
        await self._record_status(keys=[self._keys.broadcast_progress(), self._keys.broadcast_written()],
                                  args=[progress.name, progress.to_json(), repr(progress.written_at),
                                        repr(progress.written_at - BROADCAST_KEEP_SECONDS)])

    async def broadcasts(self, since: float) -> list[BroadcastProgress]:
        names = cast(list[str], await self._redis.zrangebyscore(self._keys.broadcast_written(), repr(since), "+inf"))
        if not names:
            return []
        stored = await self._redis.hmget(self._keys.broadcast_progress(), names)
        found = [BroadcastProgress.from_json(str(text)) for text in stored if text is not None]
        return sorted(found, key=lambda progress: (-progress.written_at, progress.name))
