"""What results cost a turn, and how fast they answer on a million runs (issue 14 item 6, issue 17 item 5).

    .venv/bin/python -m bench results [--runs 1000000] [--turns 6000] [--rounds 5] [--redis-url URL]
        [--export] [--keep DIR]

1. **The turn.** The benchmark conversation (``bench/flows/order.yaml``: STATUS, an order number,
   YES: a run begins, moves, finishes) through the real inbox and engine on a SQLite file, in
   process: CPU µs per turn with results kept, and with them switched off (``bot.inbox.track``
   answering nothing: the engine still notes where runs begin and end, nothing is worked out or
   written), one turn at a time and 50 at once (sharing group commits, as a loaded server's do);
   with ``--redis-url``, 50 at once on Redis too. Rounds alternate on the same store; each figure
   is the median of the rounds.
2. **The query.** A SQLite store of N conversations (``bench/store_fill.py``) and one run each of
   ``bench_order`` over the last 30 days, written with the bot's own tables
   (``bot/store/sqlite_results.py``) — half finished, a quarter expired, some opted out, a fifth
   still open (most of those past their expiry, which the query must find) — with the per-day
   counts those runs make. Then, best of 5, ms for ``flow_results`` over every day and over the
   last 7, and for the first page (1,000) of ``runs`` — what the console's Results page asks.
   ``--export`` also times writing the whole CSV (``bot/results/table.py``). With ``--redis-url``
   (a database it may FLUSH) the same query on Redis, its runs written by the commit script's own
   ``apply_runs``.

Nothing here is a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import store_fill
from bench.parts import RESULTS, part_meta, row, write_part
from bench.webhooks import order_number, sender_number
from bot import inbox as inbox_module
from bot.engine import Engine
from bot.flows.loader import load_flows
from bot.inbox import Inbox
from bot.results.table import csv_rows
from bot.store.base import DAY, Results, epoch_day
from bot.store.sqlite import SqliteStore
from bot.store.sqlite_results import RESULTS_SCHEMA
from bot.types import Inbound, RunOutcome, RunUpdate

FLOWS = Path(__file__).resolve().parent / "flows"
FLOW = "bench_order"
EXPIRES = DAY  # the benchmark flow's expires_after (the default)


# -- 1. the turn --------------------------------------------------------------------------------------

async def _turns(inbox: Inbox, turns: int, tag: str, senders: int, in_flight: int = 1) -> float:
    """CPU µs per turn (this process's, the WAL's writes included: other work on a shared machine
    barely shows): each sender walks STATUS → order number → YES, senders interleaved, ``in_flight``
    turns at once (of as many senders) so that they share group commits as a loaded server's do."""

    async def one(index: int) -> None:
        sender = sender_number(index % senders)
        body = ("STATUS", order_number(sender), "YES")[(index // senders) % 3]
        received = await inbox.receive(Inbound(f"SM{tag}x{index}", sender, "+15550001111", body))
        if not received.replies:
            raise RuntimeError(f"the benchmark flow did not answer {body!r}")

    started = time.process_time()
    for low in range(0, turns, in_flight):
        await asyncio.gather(*(one(index) for index in range(low, min(turns, low + in_flight))))
    return (time.process_time() - started) / turns * 1e6


async def turn_cost(turns: int, rounds: int, in_flight: int, senders: int = 500,
                    redis_url: str | None = None) -> dict[str, Any]:
    """On a SQLite file, or on ``redis_url`` (a database it FLUSHES): the bot's own CPU there."""
    from bot.store.redis import RedisStore

    flows = load_flows(FLOWS)
    turns = max(1, turns // (3 * senders)) * 3 * senders  # whole cycles: every round starts at STATUS
    real_track = inbox_module.track
    with tempfile.TemporaryDirectory() as folder:
        store: SqliteStore | RedisStore = SqliteStore(Path(folder) / "turns.db") if redis_url is None else \
            RedisStore(redis_url)
        if isinstance(store, RedisStore):
            await store._redis.flushdb()
        inbox = Inbox(store, Engine(flows, _NoFetch()))
        kept: list[float] = []
        off: list[float] = []
        try:
            await _turns(inbox, senders * 3, "warm", senders, in_flight)
            for round_ in range(rounds):
                for results_on in ((True, False) if round_ % 2 == 0 else (False, True)):
                    inbox_module.track = real_track if results_on else (lambda *args: ())  # type: ignore[assignment]
                    (kept if results_on else off).append(
                        await _turns(inbox, turns, f"r{round_}{results_on}", senders, in_flight))
        finally:
            inbox_module.track = real_track
            await store.close()
    return {"us_per_turn_with_results": statistics.median(kept), "us_per_turn_without": statistics.median(off),
            "rounds_with": kept, "rounds_without": off, "turns_per_round": turns, "in_flight": in_flight}


class _NoFetch:
    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        raise AssertionError("the benchmark flow must not fetch")


# -- 2. the query -------------------------------------------------------------------------------------

def _runs(count: int, now: float, seed: int = 14) -> list[tuple[RunUpdate, str]]:
    """``count`` runs of the benchmark flow over the last 30 days, each as its last update, with
    its sender: what the bot would have written for them."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        started = now - rng.uniform(0, 30 * DAY)
        roll = rng.random()
        run_id = f"SMfill{index:08d}/0"
        if roll < 0.50:
            update = RunUpdate(run_id, FLOW, started, "confirm", {"order": f"{rng.randrange(10**6):06d}"},
                               started + 40, True, ("ask_number", "confirm"), RunOutcome.FINISHED, started + 40)
        elif roll < 0.75:
            update = RunUpdate(run_id, FLOW, started, "ask_number", {}, started + EXPIRES, True, ("ask_number",),
                               RunOutcome.EXPIRED, started + EXPIRES)
        elif roll < 0.80:
            update = RunUpdate(run_id, FLOW, started, "ask_number", {}, started + 5, True, ("ask_number",),
                               RunOutcome.OPTED_OUT, started + 5)
        else:  # still open: lapsed unnoticed once its day is over
            update = RunUpdate(run_id, FLOW, started, "ask_number", {}, started + EXPIRES, True, ("ask_number",))
        made.append((update, sender_number(index)))
    return made


def fill_sqlite(path: Path, runs: list[tuple[RunUpdate, str]]) -> float:
    """The conversations (store_fill) and then the runs and their counts, as the bot's tables hold them."""
    started = time.perf_counter()
    store_fill.fill(path, len(runs))
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(RESULTS_SCHEMA)
        counts: Counter[tuple[str, int, str]] = Counter()
        for update, _ in runs:
            day = epoch_day(update.started_at)
            counts.update((FLOW, day, what) for what in
                          ("started", *(f"state:{state}" for state in update.reached),
                           *((str(update.outcome),) if update.outcome is not None else ())))
        db.execute("BEGIN")
        db.executemany("INSERT INTO runs (flow, started_at, id, sender, state, vars, expires_at, outcome, ended_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       ((u.flow, u.started_at, u.id, sender, u.state, json.dumps(u.vars), u.expires_at,
                         str(u.outcome) if u.outcome else None, u.ended_at) for u, sender in runs))
        db.executemany("INSERT INTO result_counts (flow, day, what, n) VALUES (?, ?, ?, ?)",
                       ((flow, day, what, n) for (flow, day, what), n in counts.items()))
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("ANALYZE")
    finally:
        db.close()
    return time.perf_counter() - started


async def fill_redis(url: str, runs: list[tuple[RunUpdate, str]], batch: int = 500) -> float:
    """The runs through the commit script's own ``apply_runs`` (so the keys are the bot's)."""
    from bot.store.redis import RedisStore
    from bot.store.redis_results import APPLY_RUNS

    started = time.perf_counter()
    store = RedisStore(url)
    try:
        await store._redis.flushdb()
        apply = store._redis.register_script(APPLY_RUNS + """
for i = 1, #ARGV - 1, 2 do apply_runs(ARGV[i + 1], ARGV[i], ARGV[#ARGV]) end
return 1
""")
        ttl = str(int(store.retention.seconds * 1000))
        for low in range(0, len(runs), batch):
            args: list[str] = []
            for update, sender in runs[low:low + batch]:
                args += [sender, store.results.argument((update,))]
            await apply(args=[*args, ttl])
    finally:
        await store.close()
    return time.perf_counter() - started


async def best_ms(call: Callable[[], Coroutine[Any, Any, Any]], repeats: int = 5) -> tuple[float, Any]:
    best, answer = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        answer = await call()
        best = min(best, time.perf_counter() - started)
    return best * 1e3, answer


async def query_times(store: Results, now: float, export: bool) -> dict[str, Any]:
    week = (datetime.fromtimestamp(now, UTC) - timedelta(days=6)).date()

    async def first_page() -> list[Any]:
        return [row async for row in store.runs(FLOW, limit=1000, now=now)]

    every_ms, every = await best_ms(lambda: store.flow_results(FLOW, now=now))
    week_ms, _ = await best_ms(lambda: store.flow_results(FLOW, since=week, now=now))
    page_ms, page = await best_ms(first_page)
    found = {"flow_results_all_days_ms": every_ms, "flow_results_last_7_days_ms": week_ms,
             "runs_first_page_ms": page_ms, "started": every.started, "expired": every.count(RunOutcome.EXPIRED),
             "page_rows": len(page)}
    if export:
        started, rows = time.perf_counter(), 0
        async for _ in csv_rows(store, FLOW, now=now):
            rows += 1
        found["csv_export_s"], found["csv_rows"] = time.perf_counter() - started, rows - 1
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="conversations (one run each) in the store")
    parser.add_argument("--turns", type=int, default=6_000, help="turns per round of the turn measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the turn measurement (alternating)")
    parser.add_argument("--redis-url", help="also measure the query on this Redis database (it is FLUSHED)")
    parser.add_argument("--export", action="store_true", help="also time the whole CSV export")
    parser.add_argument("--keep", type=Path, help="build the SQLite store in this folder and keep it")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    measured: dict[str, Any] = {"part": "results", "meta": part_meta(), "runs": args.runs, "turn": {}, "query": {}}

    print("1. the turn: STATUS → order number → YES through the inbox, in process (CPU µs per turn)")
    for in_flight, redis_url in ((1, None), (50, None), *(((50, args.redis_url),) if args.redis_url else ())):
        cost = asyncio.run(turn_cost(args.turns, args.rounds, in_flight, redis_url=redis_url))
        measured["turn"][f"{'redis' if redis_url else 'sqlite'}-{in_flight}"] = cost
        kept, off = cost["us_per_turn_with_results"], cost["us_per_turn_without"]
        store = "Redis" if redis_url else "SQLite"
        print(f"   {store}, {in_flight} at once: {kept:.1f} with results, {off:.1f} without "
              f"(+{kept - off:.1f} µs, {(kept - off) / off:+.1%}); rounds with "
              f"{', '.join(f'{us:.0f}' for us in cost['rounds_with'])}; without "
              f"{', '.join(f'{us:.0f}' for us in cost['rounds_without'])}")

    now = time.time()
    runs = _runs(args.runs, now)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "results.db"
        print(f"2. the query: {args.runs:,} conversations and runs of {FLOW} over 30 days, SQLite")
        print(f"   filled in {fill_sqlite(path, runs):.0f} s")
        found = asyncio.run(_sqlite_query(path, now, args.export))
        _print_query(found)
        measured["query"]["sqlite"] = found
    if args.redis_url:
        filled = asyncio.run(fill_redis(args.redis_url, runs))
        print(f"   Redis ({args.redis_url}): filled through apply_runs in {filled:.0f} s")
        measured["query"]["redis"] = asyncio.run(_redis_query(args.redis_url, now, args.export))
        _print_query(measured["query"]["redis"])
    measured["summary"] = summary_rows(measured)
    print(f"results: {write_part(args.results_dir, 'results', measured)}")
    return 0


def summary_rows(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows ``python -m bench all`` puts in its one table."""
    rows = []
    for where, cost in measured["turn"].items():
        store, in_flight = where.split("-")
        kept, off = cost["us_per_turn_with_results"], cost["us_per_turn_without"]
        rows.append(row(f"results kept by a turn, {store}, {in_flight} at once (CPU µs per turn, in-process)",
                        f"{kept:.1f} ({min(cost['rounds_with']):.0f}–{max(cost['rounds_with']):.0f})",
                        f"{off:.1f} without ({min(cost['rounds_without']):.0f}–{max(cost['rounds_without']):.0f})",
                        f"+{kept - off:.1f} µs ({(kept - off) / off:+.0%})"))
    for store, found in measured["query"].items():
        every = found["flow_results_all_days_ms"]
        rows.append(row(f"a flow's results on {measured['runs']:,} runs, {store}: every day / last 7 days / "
                        "first page of runs (ms, best of 5)",
                        f"{every:.1f} / {found['flow_results_last_7_days_ms']:.1f} / {found['runs_first_page_ms']:.1f}",
                        "", "", "< 1,000 ms", every < 1000))
    return rows


async def _sqlite_query(path: Path, now: float, export: bool) -> dict[str, Any]:
    store = SqliteStore(path)
    try:
        return await query_times(store, now, export)
    finally:
        await store.close()


async def _redis_query(url: str, now: float, export: bool) -> dict[str, Any]:
    from bot.store.redis import RedisStore

    store = RedisStore(url)
    try:
        return await query_times(store, now, export)
    finally:
        await store.close()


def _print_query(found: dict[str, Any]) -> None:
    print(f"   flow_results, every day: {found['flow_results_all_days_ms']:.1f} ms ({found['started']:,} started, "
          f"{found['expired']:,} expired, lapsed ones included); last 7 days: "
          f"{found['flow_results_last_7_days_ms']:.1f} ms; first page of runs ({found['page_rows']}): "
          f"{found['runs_first_page_ms']:.1f} ms")
    if "csv_export_s" in found:
        print(f"   the whole CSV ({found['csv_rows']:,} rows): {found['csv_export_s']:.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
