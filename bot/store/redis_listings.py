"""The console's lists on Redis (``bot/store/listings.py``), from keys the turns already write.

Who is in a flow reads the sorted sets of who is at each state (``at:FLOW:STATE``, scored by when
the person last wrote, kept by every turn: ``bot/store/redis.py``): each (flow, state) set's newest
are read off its end in one pipelined trip and the pages merged, so a page costs about pairs × its
length. Members whose conversation the retention period dropped (their key expired) are left out
by their score, as ``state_counts`` does. The transcript is the sender's line list (``log:SENDER``;
a turn's first line carries its trace). Opt-outs are a sorted set by time (``optouts``), kept by
the same script that sets and clears an opt-out; opt-outs recorded before it existed are added to
it the first time it is read.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from bot.store.listings import ConversationSummary, Cursor, OptOut, Page, TurnRecord, load_trace, page_size
from bot.types import MediaText

if TYPE_CHECKING:
    from bot.store.redis import KeyBuilder

MAX_REPLIES_PER_TURN = 10  # the engine's cap (bot/engine.py): a turn is at most 1 + 10 lines

async def active_conversations(redis: aioredis.Redis, keys: KeyBuilder, flow: str | None, state: str | None,
                               limit: int, cursor: str | None, oldest: float) -> Page[ConversationSummary]:
    after = Cursor.read(cursor)
    size = page_size(limit)
    skip = after.skip if after is not None else 0
    pairs = await _pairs(redis, keys, flow, state)
    async with redis.pipeline(transaction=False) as pipe:
        for pair_flow, pair_state in pairs:
            pipe.zrevrangebyscore(keys.at_state(pair_flow, pair_state), repr(after.at) if after else "+inf",
                                  repr(oldest), start=0, num=size + skip + 1, withscores=True)
        pages: list[list[Any]] = await pipe.execute() if pairs else []
    found = [ConversationSummary(str(sender), pair[0], pair[1], float(at))
             for pair, page in zip(pairs, pages, strict=True) for sender, at in page]
    found.sort(key=lambda item: (item.updated_at, item.sender), reverse=True)
    found = found[skip:]  # those at exactly the cursor's time come first: the ones read already
    chosen = found[:size]
    more = len(found) > size
    return Page(chosen, str(Cursor.after([item.updated_at for item in chosen], after)) if more else None)


async def _pairs(redis: aioredis.Redis, keys: KeyBuilder, flow: str | None, state: str | None) -> list[tuple[str, str]]:
    """The (flow, state) sets anyone was ever placed in (the sets that name them never shrink)."""
    flows = [flow] if flow is not None else sorted(str(name) for name in await redis.smembers(keys.counted_flows()))
    if state is not None:
        return [(name, state) for name in flows]
    async with redis.pipeline(transaction=False) as pipe:
        for name in flows:
            pipe.smembers(keys.states_of(name))
        states: list[set[Any]] = await pipe.execute() if flows else []
    return [(name, str(at)) for name, found in zip(flows, states, strict=True) for at in sorted(map(str, found))]


async def recent_turns(redis: aioredis.Redis, keys: KeyBuilder, sender: str, limit: int) -> list[TurnRecord]:
    size = page_size(limit)
    lines = await redis.lrange(keys.transcript(sender), -size * (1 + MAX_REPLIES_PER_TURN), -1)
    return read_transcript([json.loads(line) for line in lines])[-size:]


def read_transcript(lines: list[dict[str, Any]]) -> list[TurnRecord]:
    """Transcript lines (a turn's "in" line, then its "out" lines) as turns; "out" lines whose turn
    began before the lines read are left out."""
    turns: list[TurnRecord] = []
    for line in lines:
        if line.get("dir") == "in":
            turns.append(TurnRecord(str(line["sid"]), float(line["at"]), str(line.get("body", "")), (),
                                    load_trace(line.get("trace"))))
        elif turns and turns[-1].message_sid == line.get("sid"):
            media = tuple(str(url) for url in line.get("media") or ())
            reply = MediaText(str(line.get("body", "")), media) if media else str(line.get("body", ""))
            last = turns[-1]
            turns[-1] = TurnRecord(last.message_sid, last.at, last.body, (*last.replies, reply), last.trace)
    return turns


async def opt_outs(redis: aioredis.Redis, keys: KeyBuilder, limit: int, cursor: str | None) -> Page[OptOut]:
    after = Cursor.read(cursor)
    size = page_size(limit)
    rows = await redis.zrevrangebyscore(keys.opt_outs(), repr(after.at) if after else "+inf", "-inf",
                                        start=after.skip if after else 0, num=size + 1, withscores=True)
    chosen = [OptOut(str(entry[0]), float(entry[1])) for entry in rows[:size]]
    return Page(chosen, str(Cursor.after([item.at for item in chosen], after)) if len(rows) > size else None)
