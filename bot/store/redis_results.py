"""The Redis store's results: per-flow, per-day counts and one hash per flow run.

The turn's commit script applies its ``Turn.runs`` (:data:`APPLY_RUNS`, flat arguments with each
run's record made by the client, :meth:`RedisResults.arguments`). The keys, named by
:class:`RunKeys` (and, for the commit's speed, by the same rule in the Lua: keep the two alike; the
contract tests read back what the script wrote):

* ``rcount:FLOW:DAY`` — a hash of counts for the runs that began that UTC day: ``started``,
  ``state:NAME``, and each way of ending. No personal data, no TTL.
* ``rdays:FLOW`` — the days with counts (sorted set), and ``rflows`` the flows: reading and
  sweeping need no SCAN.
* ``run:ID`` — the run's record, one JSON document (read a page at a time with ``MGET``: the
  client parses one reply per run), every value in it a string (Lua's cjson would round numbers to
  14 digits), with the retention TTL; ``runs:FLOW`` lists runs by start (sorted set),
  ``runsof:NUMBER`` a number's runs (for a purge).
* ``ropen:FLOW:DAY`` — that day's runs still open, scored by when they lapse: a run nobody wrote
  in since is counted as expired by ``ZCOUNT``, and closed by the sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date

import redis.asyncio as aioredis

from bot.store.base import DAY, RUNS_PAGE, FlowResults, RunKey, RunRow, epoch_day, period_days
from bot.store.json_text import dumps_own, dumps_text
from bot.types import RunOutcome, RunUpdate

SWEEP_BATCH = 500


@dataclass(frozen=True)
class RunKeys:
    prefix: str

    def counts(self, flow: str, day: int) -> str:
        return f"{self.prefix}:rcount:{flow}:{day}"

    def days(self, flow: str) -> str:
        return f"{self.prefix}:rdays:{flow}"

    def flows(self) -> str:
        return f"{self.prefix}:rflows"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def index(self, flow: str) -> str:
        return f"{self.prefix}:runs:{flow}"

    def open(self, flow: str, day: int) -> str:
        return f"{self.prefix}:ropen:{flow}:{day}"

    def of(self, sender: str) -> str:
        return f"{self.prefix}:runsof:{sender}"


# apply_runs(first, count, key prefix, sender, retention TTL ms): the turn's ``count`` run updates,
# from ARGV[first] on (:meth:`RedisResults.arguments`), each: how many states it reached, id, flow,
# day, began (1/0), started, its record (JSON, made by the client: every field is the turn's),
# expires, outcome ('' while open), the states reached. Returns where the next argument starts. A run
# closed meanwhile (the sweep found it lapsed: no longer in its open set) stays closed and is not
# counted again. A flow's day is listed when its first run begins (its 'started' count becomes 1).
APPLY_RUNS = """
local function apply_runs(i, count, p, sender, ttl)
  for _ = 1, count do
    local reached, id, flow, day = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local counts, open = p .. 'rcount:' .. flow .. ':' .. day, p .. 'ropen:' .. flow .. ':' .. day
    local began = ARGV[i + 4] == '1'
    local live = began
    if began then
      redis.call('ZADD', p .. 'runs:' .. flow, ARGV[i + 5], id)
      redis.call('SADD', p .. 'runsof:' .. sender, id)
      redis.call('PEXPIRE', p .. 'runsof:' .. sender, ttl)
      if redis.call('HINCRBY', counts, 'started', 1) == 1 then
        redis.call('ZADD', p .. 'rdays:' .. flow, day, day)
        redis.call('SADD', p .. 'rflows', flow)
      end
    elseif ARGV[i + 8] ~= '' then  -- ends now: was it open until this turn?
      live = redis.call('ZREM', open, id) == 1
    else  -- goes on: moved to its new expiry if open (XX: a closed run is never opened again)
      live = redis.call('ZADD', open, 'XX', 'CH', ARGV[i + 7], id) == 1 or redis.call('ZSCORE', open, id)
    end
    if live then
      for r = i + 9, i + 8 + reached do redis.call('HINCRBY', counts, 'state:' .. ARGV[r], 1) end
      if ARGV[i + 8] ~= '' then
        redis.call('HINCRBY', counts, ARGV[i + 8], 1)
      elseif began then
        redis.call('ZADD', open, ARGV[i + 7], id)
      end
      redis.call('SET', p .. 'run:' .. id, ARGV[i + 6], 'PX', ttl)
    end
    i = i + 9 + reached
  end
  return i
end
"""

# KEYS: a day's open runs, its counts; ARGV: now, run key prefix, batch, outcome. Closes lapsed runs.
_CLOSE_LAPSED = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
for i = 1, #lapsed, 2 do
  redis.call('ZREM', KEYS[1], lapsed[i])
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  local stored = redis.call('GET', ARGV[2] .. lapsed[i])
  if stored then
    local record = cjson.decode(stored)
    record.outcome, record.ended = ARGV[4], lapsed[i + 1]
    redis.call('SET', ARGV[2] .. lapsed[i], cjson.encode(record), 'KEEPTTL')
  end
end
return #lapsed / 2
"""

# ARGV: the number's runs set, then JSON [{id, run, open, counts, index}]: open runs end 'reset'
# (counted), and every record goes.
_FORGET = """
local forgotten = 0
for _, r in ipairs(cjson.decode(ARGV[2])) do
  if redis.call('ZREM', r.open, r.id) == 1 then redis.call('HINCRBY', r.counts, 'reset', 1) end
  redis.call('ZREM', r.index, r.id)
  forgotten = forgotten + redis.call('DEL', r.run)
end
redis.call('DEL', ARGV[1])
return forgotten
"""


class RedisResults:
    """The ``Results`` of ``RedisStore``: the commit script's argument, reads, purge and sweep."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self.keys = RunKeys(prefix)
        self._close_lapsed = redis.register_script(_CLOSE_LAPSED)
        self._forget = redis.register_script(_FORGET)

    def arguments(self, updates: Iterable[RunUpdate], sender: str) -> list[str | bytes]:
        """A turn's run updates as the commit script's ``apply_runs`` reads them: flat, no JSON for
        the script to decode, and each run's record made here (Lua's cjson cost Redis ~10 µs a turn)."""
        found: list[str | bytes] = []
        for update in updates:
            started, expires, state = repr(update.started_at), repr(update.expires_at), update.state or ""
            saved = dumps_text(update.vars)
            if update.outcome is None:
                record = {"flow": update.flow, "sender": sender, "started": started, "state": state,
                          "vars": saved, "expires": expires}
                outcome = ""
            else:
                outcome = str(update.outcome)
                record = {"flow": update.flow, "sender": sender, "started": started, "state": state,
                          "vars": saved, "expires": expires, "outcome": outcome,
                          "ended": repr(update.ended_at) if update.ended_at is not None else ""}
            found += (str(len(update.reached)), update.id, update.flow, str(epoch_day(update.started_at)),
                      "1" if update.began else "0", started, dumps_own(record), expires, outcome,
                      *update.reached)
        return found

    async def flow_results(self, flow: str, since: date | None, until: date | None, now: float | None) -> FlowResults:
        first, last = period_days(since, until)
        now = time.time() if now is None else now
        days = [int(str(day)) for day in await self._redis.zrangebyscore(self.keys.days(flow), first, last)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self.keys.counts(flow, day))
                pipe.zcount(self.keys.open(flow, day), "-inf", f"({now!r}")
            found = await pipe.execute() if days else []
        counts: dict[str, int] = {}
        for day_counts in found[0::2]:
            for name, n in day_counts.items():
                counts[str(name)] = counts.get(str(name), 0) + int(n)
        counts[RunOutcome.EXPIRED] = counts.get(RunOutcome.EXPIRED, 0) + sum(int(n) for n in found[1::2])
        return FlowResults.of(flow, counts)

    async def runs(self, flow: str, since: date | None, until: date | None, after: RunKey | None,
                   limit: int | None, now: float | None) -> AsyncIterator[RunRow]:
        first, last = period_days(since, until)
        now = time.time() if now is None else now
        low, skip = max(first * DAY, after[0]) if after is not None else first * DAY, 0
        left = limit if limit is not None else float("inf")
        while left > 0:
            # Paged by score: the next page starts at the last score read, skipping those of it read.
            found = [(str(entry[0]), float(entry[1])) for entry in await self._redis.zrangebyscore(
                self.keys.index(flow), repr(low), f"({(last + 1) * DAY!r}", start=skip, num=RUNS_PAGE,
                withscores=True)]
            chosen = [run_id for run_id, score in found if after is None or (score, run_id) > after]
            records = await self._redis.mget([self.keys.run(run_id) for run_id in chosen]) if chosen else []
            for run_id, record in zip(chosen, records, strict=True):
                if record and left > 0:  # gone: its retention period ended (the sweep prunes the list)
                    left -= 1
                    yield _row(run_id, json.loads(record)).as_of(now)
            if len(found) < RUNS_PAGE:
                return
            last_score = found[-1][1]
            same = sum(1 for _, score in found if score == last_score)
            low, skip = last_score, (skip + same if last_score == low else same)

    async def forget(self, sender: str) -> int:
        """A purge: the number's open runs end reset (the counts stay true); its records go."""
        run_ids = sorted(str(run_id) for run_id in await self._redis.smembers(self.keys.of(sender)))
        found = await self._redis.mget([self.keys.run(run_id) for run_id in run_ids]) if run_ids else []
        entries = []
        for run_id, stored in zip(run_ids, found, strict=True):
            if stored:
                record = json.loads(stored)
                flow, day = record["flow"], epoch_day(float(record["started"]))
                entries.append({"id": run_id, "run": self.keys.run(run_id), "open": self.keys.open(flow, day),
                                "counts": self.keys.counts(flow, day), "index": self.keys.index(flow)})
        return int(await self._forget(args=[self.keys.of(sender), json.dumps(entries) if entries else "[]"]))

    async def sweep(self, now: float, retention_seconds: float) -> int:
        """Close the runs that lapsed unnoticed (counted as expired at their expiry), and drop from
        the lists the runs whose record the retention period removed. Returns how many closed."""
        closed = 0
        for flow in sorted(str(name) for name in await self._redis.smembers(self.keys.flows())):
            days = [int(str(day)) for day in await self._redis.zrange(self.keys.days(flow), 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.zcount(self.keys.open(flow, day), "-inf", f"({now!r}")
                lapsed = await pipe.execute() if days else []
            for day, count in zip(days, lapsed, strict=True):
                while count and (done := int(await self._close_lapsed(
                        keys=[self.keys.open(flow, day), self.keys.counts(flow, day)],
                        args=[repr(now), self.keys.run(""), SWEEP_BATCH, str(RunOutcome.EXPIRED)]))):
                    closed += done
                    count -= done
            await self._prune(flow, now - retention_seconds)
        return closed

    async def _prune(self, flow: str, cutoff: float) -> None:
        """Runs that began before ``cutoff`` whose record has expired leave the flow's list."""
        low = "-inf"
        while old := [(str(entry[0]), float(entry[1])) for entry in await self._redis.zrangebyscore(
                self.keys.index(flow), low, f"({cutoff!r}", start=0, num=SWEEP_BATCH, withscores=True)]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for run_id, _ in old:
                    pipe.exists(self.keys.run(run_id))
                alive = await pipe.execute()
            gone = [run_id for (run_id, _), exists in zip(old, alive, strict=True) if not exists]
            if gone:
                await self._redis.zrem(self.keys.index(flow), *gone)
            if len(old) < SWEEP_BATCH:
                return
            low = f"({old[-1][1]!r}"  # on after the last one read (runs still going stay listed)


def _row(run_id: str, record: dict[str, str]) -> RunRow:
    outcome, ended = record.get("outcome"), record.get("ended")
    return RunRow(run_id, record["flow"], record["sender"], float(record["started"]), record.get("state") or None,
                  json.loads(record.get("vars") or "{}"), float(record.get("expires") or 0.0),
                  RunOutcome(outcome) if outcome else None, float(ended) if ended else None)
