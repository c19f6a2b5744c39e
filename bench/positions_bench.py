"""What "who is where" costs on SQLite (``Positions.state_counts``, the console's live counts and an
edit's impact): counting one flow's conversations by state in a store of N conversations, and what
keeping its index (``conversations_by_state``) adds to each turn that moves a conversation.

    .venv/bin/python -m bench.positions_bench [--conversations 1000000] [--active 10000] [--turns 20000]
        [--rounds 3] [--redis-url redis://127.0.0.1:6379/15]

The store is filled by ``bench/store_fill.py`` (every conversation waits at ``bench_order:
ask_number``, all within the last day). A turn here is what the inbox does for a message, minus the
engine: ``Turns.snapshot`` then ``Turns.commit`` of the conversation moved to another state, for
the ``--active`` conversations that wrote last (people answering a flow are the ones who wrote a
moment ago; ``--active 0`` spreads the turns over the whole file, the worst case for any index).
Turns are timed with the index and with it dropped, in alternating rounds on the same file; the
figure is the median of the rounds. With ``--redis-url`` (a database it may FLUSH), the same count on Redis,
whose sets are kept by the commit script. Nothing here is a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench import store_fill
from bench.webhooks import sender_number
from bot.store.sqlite import SqliteStore
from bot.types import Inbound, Turn

FLOW, STATES = "bench_order", ("ask_number", "confirm")


async def count_ms(store: SqliteStore | object, since: float, repeats: int = 5) -> float:
    """Best of ``repeats``: ms for one ``state_counts`` call (the console asks once per flow per page)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        await store.state_counts(FLOW, since)  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - started)
    return best * 1e3


async def turns_us(store: SqliteStore, turns: int, offset: int, conversations: int, active: int) -> float:
    """µs per turn (snapshot + commit) moving conversations between two states."""
    pool = active or conversations
    first = conversations - pool  # store_fill writes the oldest first: the last ones wrote last
    started = time.perf_counter()
    for index in range(turns):
        sender = sender_number(first + (offset + index * 7919) % pool)  # spread over the pool
        conversation = (await store.snapshot(sender, "")).conversation
        conversation.flow = FLOW
        conversation.state = STATES[(index + offset) % 2]
        conversation.updated_at = time.time()
        inbound = Inbound(f"SMbench{offset}x{index}", sender, body="YES")
        await store.commit(Turn(inbound, conversation, conversation.version, ("ok",), None))
    return (time.perf_counter() - started) / turns * 1e6


async def sqlite_figures(conversations: int, active: int, turns: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bot.db"
        filled = store_fill.fill(path, conversations)
        store = SqliteStore(path)
        try:
            now = time.time()
            figures = {"fill_s": filled, "count_all_ms": await count_ms(store, 0.0),
                       "count_recent_ms": await count_ms(store, now - 1800)}
            with_index, without_index = [], []
            for round_ in range(rounds):
                for indexed in (True, False):
                    store._db.execute(store_fill_index_sql() if indexed else
                                      "DROP INDEX IF EXISTS conversations_by_state")
                    (with_index if indexed else without_index).append(
                        await turns_us(store, turns, round_ * 2 + indexed, conversations, active))
            store._db.execute(store_fill_index_sql())
            figures["turn_us_with_index"] = statistics.median(with_index)
            figures["turn_us_without_index"] = statistics.median(without_index)
        finally:
            await store.close()
    return figures


def store_fill_index_sql() -> str:
    """The index as the schema creates it (taken from the schema, so the bench follows it)."""
    from bot.store.sqlite import SCHEMA

    start = SCHEMA.index("CREATE INDEX IF NOT EXISTS conversations_by_state")
    return SCHEMA[start:SCHEMA.index(";", start) + 1]


async def redis_figures(url: str, conversations: int) -> dict[str, float]:
    """The count on Redis with ``conversations`` members in one state's set (written directly, as
    the commit script keeps them: a sorted set per state, scored by the last message's time)."""
    import redis.asyncio as aioredis

    from bot.store.redis import KeyBuilder, RedisStore

    keys = KeyBuilder()
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    now = time.time()
    for low in range(0, conversations, 10_000):
        members = {sender_number(index): now - (index % 86_400)
                   for index in range(low, min(conversations, low + 10_000))}
        await client.zadd(keys.at_state(FLOW, STATES[0]), members)
    await client.sadd(keys.states_of(FLOW), STATES[0])
    await client.sadd(keys.counted_flows(), FLOW)
    await client.aclose()
    store = RedisStore(url)
    try:
        return {"redis_count_all_ms": await count_ms(store, 0.0),
                "redis_count_recent_ms": await count_ms(store, now - 1800)}
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=10_000,
                        help="turns go to the conversations that wrote last, this many (0: all)")
    parser.add_argument("--turns", type=int, default=20_000, help="turns per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", help="also count on this Redis database (it is flushed)")
    args = parser.parse_args(argv)
    figures = asyncio.run(sqlite_figures(args.conversations, args.active, args.turns, args.rounds))
    if args.redis_url:
        figures.update(asyncio.run(redis_figures(args.redis_url, args.conversations)))
    pool = f"the {args.active:,} that wrote last" if args.active else "all of them"
    print(f"{args.conversations:,} conversations in one flow; turns to {pool}:")
    for name, value in figures.items():
        print(f"  {name:24} {value:10.2f}")
    extra = figures["turn_us_with_index"] - figures["turn_us_without_index"]
    print(f"  the index adds {extra:.1f} µs to a turn that moves a conversation "
          f"({extra / figures['turn_us_without_index']:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
