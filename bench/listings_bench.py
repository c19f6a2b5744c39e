"""What the console's lists cost on SQLite (``bot/store/listings.py``): a page of the live list
(who is in a flow, newest first) in a store of N conversations; one sender's transcript; and what
keeping each turn's routing trace adds to a turn.

    .venv/bin/python -m bench.listings_bench [--conversations 1000000] [--pairs 30] [--turns 20000]
        [--rounds 3]

The store is filled by ``bench/store_fill.py`` (N conversations with one turn each, all within the
last day), then spread over ``--pairs`` (flow, state) pairs, as a bot with a few flows has. The
live list reads the index the Flows page's counts already keep (``conversations_by_state``), one
seek per pair. A transcript is read from the turn log's newest row back: the cost depends on how
long ago the sender last wrote (a sender whose last turn is among the newest is found at once; one
with fewer turns than asked for is a read of the whole log, in a thread of its own). A turn here
is what the inbox does for a message minus the engine (``snapshot`` then ``commit``), with a
two-step trace or none, in alternating rounds; the figure is the median. It prints numbers, it is
not a test.
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
from bot.types import Inbound, TraceStep, Turn

TRACE = (TraceStep("trigger STATUS", "idle", "bench_order:ask_number"),
         TraceStep("keywords YES", "bench_order:ask_number", "bench_order:confirm"))


async def best_ms(call: object, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best * 1e3


async def turns_us(store: SqliteStore, turns: int, offset: int, conversations: int, traced: bool) -> float:
    started = time.perf_counter()
    for index in range(turns):
        sender = sender_number(conversations - 1 - (offset + index * 7919) % 10_000)  # among those who wrote last
        conversation = (await store.snapshot(sender, "")).conversation
        conversation.updated_at = time.time()
        inbound = Inbound(f"SMlist{offset}x{index}", sender, body="YES")
        await store.commit(Turn(inbound, conversation, conversation.version, ("ok",), None,
                                trace=TRACE if traced else ()))
    return (time.perf_counter() - started) / turns * 1e6


async def figures(conversations: int, pairs: int, turns: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bot.db"
        found = {"fill_s": store_fill.fill(path, conversations)}
        store = SqliteStore(path)
        try:
            flows = max(1, pairs // 6)
            store._db.execute("UPDATE conversations SET flow = 'flow_' || (abs(random()) % ?), "
                              "state = 'state_' || (abs(random()) % ?)", (flows, max(1, pairs // flows)))
            first = await store.active_conversations(limit=50)
            found["live_first_page_ms"] = await best_ms(lambda: store.active_conversations(limit=50))
            found["live_one_flow_ms"] = await best_ms(lambda: store.active_conversations("flow_0", limit=50))
            found["live_one_state_ms"] = await best_ms(lambda: store.active_conversations("flow_0", "state_0",
                                                                                          limit=50))
            found["live_next_page_ms"] = await best_ms(lambda: store.active_conversations(limit=50,
                                                                                          cursor=first.cursor))
            found["live_poll_500_ms"] = await best_ms(lambda: store.active_conversations(limit=500))
            newest, oldest = sender_number(conversations - 1), sender_number(0)
            found["transcript_recent_sender_ms"] = await best_ms(lambda: store.recent_turns(newest, 100), 3)
            found["transcript_whole_log_ms"] = await best_ms(lambda: store.recent_turns(oldest, 100), 3)
            with_trace, without = [], []
            for round_ in range(rounds):
                for traced in ((True, False) if round_ % 2 == 0 else (False, True)):  # neither always first
                    (with_trace if traced else without).append(
                        await turns_us(store, turns, round_ * 2 + traced, conversations, traced))
            found["turn_us_with_trace"] = statistics.median(with_trace)
            found["turn_us_without_trace"] = statistics.median(without)
        finally:
            await store.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=30, help="(flow, state) pairs the conversations are spread over")
    parser.add_argument("--turns", type=int, default=20_000, help="turns per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    found = asyncio.run(figures(args.conversations, args.pairs, args.turns, args.rounds))
    print(f"{args.conversations:,} conversations over {args.pairs} (flow, state) pairs:")
    for name, value in found.items():
        print(f"  {name:28} {value:10.2f}")
    extra = found["turn_us_with_trace"] - found["turn_us_without_trace"]
    print(f"  keeping the trace adds {extra:.1f} µs to a turn ({extra / found['turn_us_without_trace']:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
