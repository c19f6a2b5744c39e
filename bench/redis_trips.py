"""Where a turn's trips to Redis go: lock, snapshot, commit, release, renewal (``python -m bench redis``).

    .venv/bin/python -m bench.redis_trips REDIS_URL FLOWS_DIR [--tree DIR] [--turns N]

Runs in a process of its own, importing ``bot`` from ``--tree`` (default: this checkout), so the
bench can ask the same of an earlier version. The benchmark conversation (STATUS, an order number,
YES) goes through the real inbox and engine on the Redis at ``REDIS_URL`` (a database it FLUSHES):

1. **Trips and commands per phase**, one turn at a time: around each phase of a turn (the lock's
   acquire, the snapshot, the commit, the lock's release) Redis's ``INFO`` is read, and the
   difference is that phase's read events (a batch of pipelined commands is one: its round trips)
   and its commands, those run inside scripts included. A command sent without waiting for its
   reply (a release) is counted in the phase that sent it.
2. **Renewal**: a lock held 4 s with nothing done (a slow ``fetch`` would), its trips.
3. **CPU per turn**, 50 turns at once as a loaded server runs them: this process's CPU µs per turn
   on Redis, and on the in-memory store (the same pipeline and engine with no store work), so the
   difference is what the Redis store costs the bot's core; and Redis's own CPU µs per turn
   meanwhile (``used_cpu_user`` + ``used_cpu_sys``), with the µs its commands took by name
   (``INFO commandstats``: a script's own commands are counted inside its ``evalsha`` too).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PHASES = ("lock", "snapshot", "commit", "release")
HOLD_SECONDS = 4.0  # renewal: a lock held this long (the TTL is 5 s, renewed every third of it)
IN_FLIGHT = 50


class Info:
    """Redis's counters, read on a connection of its own (blocking: the loop is idle meanwhile)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)

    def read(self) -> tuple[int, Counter[str]]:
        reads, commands, _, _ = self.read_all()
        return reads, commands

    def read_all(self) -> tuple[int, Counter[str], float, Counter[str]]:
        """Read events, calls by command, CPU seconds, and µs by command."""
        with socket.create_connection(self.address, timeout=5) as connection:
            connection.sendall(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")
            reply = b""
            while not _whole(reply):
                chunk = connection.recv(1 << 16)
                if not chunk:
                    break
                reply += chunk
        text = reply.decode(errors="replace")
        reads, commands, cpu, usec = 0, Counter[str](), 0.0, Counter[str]()
        for line in text.splitlines():
            if line.startswith("total_reads_processed:"):
                reads = int(line.split(":", 1)[1])
            elif line.startswith(("used_cpu_user:", "used_cpu_sys:")):
                cpu += float(line.split(":", 1)[1])
            elif line.startswith("cmdstat_"):
                name, _, fields = line.partition(":")
                stats = dict(f.split("=", 1) for f in fields.split(","))
                commands[name.removeprefix("cmdstat_")] = int(stats["calls"])
                usec[name.removeprefix("cmdstat_")] = int(stats["usec"])
        commands.pop("info", None)
        usec.pop("info", None)
        return reads, commands, cpu, usec


def _whole(reply: bytes) -> bool:
    """A whole bulk reply ($length, the text, CRLF)."""
    header, found, rest = reply.partition(b"\r\n")
    return bool(found) and header.startswith(b"$") and len(rest) >= int(header[1:]) + 2


class Phases:
    """Counts, per phase, Redis's read events and commands (less what reading INFO itself costs)."""

    def __init__(self, info: Info) -> None:
        self.info = info
        self.trips: dict[str, list[int]] = {phase: [] for phase in PHASES}
        self.commands: dict[str, Counter[str]] = {phase: Counter() for phase in PHASES}
        self.turns = 0
        reads = []
        for _ in range(5):
            first, _ = info.read()
            second, _ = info.read()
            reads.append(second - first)
        self.overhead = min(reads)  # what one INFO reading adds to the read events

    @asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        await asyncio.sleep(0.01)  # what an earlier phase sent without waiting has gone through
        reads0, commands0 = self.info.read()
        yield
        await asyncio.sleep(0.01)
        reads1, commands1 = self.info.read()
        self.trips[name].append(reads1 - reads0 - self.overhead)
        self.commands[name].update(commands1 - commands0)


class Counted:
    """The store, with each phase of a turn counted (everything else passes through)."""

    def __init__(self, store: Any, phases: Phases) -> None:
        self._store = store
        self._phases = phases

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @asynccontextmanager
    async def lock(self, sender: str) -> AsyncIterator[None]:
        held = self._store.lock(sender)
        async with self._phases.phase("lock"):
            await held.__aenter__()
        try:
            yield
        finally:
            async with self._phases.phase("release"):
                await held.__aexit__(None, None, None)
            self._phases.turns += 1

    async def snapshot(self, sender: str, message_sid: str) -> Any:
        async with self._phases.phase("snapshot"):
            return await self._store.snapshot(sender, message_sid)

    async def commit(self, turn: Any) -> Any:
        async with self._phases.phase("commit"):
            return await self._store.commit(turn)


class _NoFetch:
    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        raise AssertionError("the benchmark flow must not fetch")


def _message(index: int, senders: int, tag: str) -> Any:
    from bench.webhooks import order_number, sender_number
    from bot.types import Inbound

    sender = sender_number(index % senders)
    body = ("STATUS", order_number(sender), "YES")[(index // senders) % 3]
    return Inbound(f"SM{tag}x{index}", sender, "+15550001111", body)


async def measure(url: str, flows_dir: Path, turns: int) -> dict[str, Any]:
    from bot.engine import Engine
    from bot.flows.loader import load_flows
    from bot.inbox import Inbox
    from bot.store import open_store

    flows = load_flows(flows_dir)
    info = Info(url)
    store = open_store(url)
    try:
        await store._redis.flushdb()  # type: ignore[attr-defined]
        engine = Engine(flows, _NoFetch())
        phases = Phases(info)
        counted = Inbox(Counted(store, phases), engine)  # type: ignore[arg-type]
        senders = 10
        for index in range(senders * 3):  # a first cycle, uncounted: the keyspace's migration check, scripts loaded
            await Inbox(store, engine).receive(_message(index, senders, "warm"))
        for index in range(turns):
            received = await counted.receive(_message(index, senders, "trips"))
            if not received.replies:
                raise RuntimeError("the benchmark flow did not answer")
        result: dict[str, Any] = {"turns": phases.turns, "phases": {}}
        for name in PHASES:
            count = max(1, phases.turns)
            result["phases"][name] = {
                "trips": sum(phases.trips[name]) / count,
                "commands": {command: calls / count for command, calls in sorted(phases.commands[name].items())},
                "commands_total": sum(phases.commands[name].values()) / count}
        async with store.lock("+15559990000"):
            await asyncio.sleep(0.05)
            reads0, _ = info.read()
            await asyncio.sleep(HOLD_SECONDS)
            reads1, _ = info.read()
        result["renewal"] = {"held_seconds": HOLD_SECONDS, "trips": reads1 - reads0 - phases.overhead}
        result["cpu_us_per_turn"], result["redis_cpu"] = await _cpu(Inbox(store, engine), turns * 10, info)
    finally:
        await store.close()
    memory = open_store("memory://")
    result["memory_cpu_us_per_turn"], _ = await _cpu(Inbox(memory, engine), turns * 10)
    await memory.close()
    return result


async def _cpu(inbox: Any, turns: int, info: Info | None = None,
               rounds: int = 3) -> tuple[float, dict[str, Any] | None]:
    """CPU µs per turn, IN_FLIGHT at once (of as many senders), median of ``rounds`` after a warm-up;
    with ``info``, Redis's own CPU µs per turn meanwhile and its commands' µs per turn by name."""
    senders = IN_FLIGHT * 4
    turns = max(1, turns // (3 * senders)) * 3 * senders

    async def batch(tag: str, count: int) -> tuple[float, float, Counter[str]]:
        before = info.read_all() if info is not None else None
        started = time.process_time()
        for low in range(0, count, IN_FLIGHT):
            await asyncio.gather(*(inbox.receive(_message(index, senders, tag))
                                   for index in range(low, min(count, low + IN_FLIGHT))))
        own = (time.process_time() - started) / count * 1e6
        if before is None or info is None:
            return own, 0.0, Counter()
        await asyncio.sleep(0.01)  # releases sent without waiting have run
        after = info.read_all()
        return own, (after[2] - before[2]) / count * 1e6, after[3] - before[3]

    await batch("warm", senders * 3)
    measured = [await batch(f"cpu{number}", turns) for number in range(rounds)]
    own = statistics.median(m[0] for m in measured)
    if info is None:
        return own, None
    names = sorted({name for m in measured for name in m[2]})
    return own, {"cpu_us_per_turn": statistics.median(m[1] for m in measured),
                 "cpu_us_range": [min(m[1] for m in measured), max(m[1] for m in measured)],
                 "command_us_per_turn": {name: statistics.median(m[2][name] / turns for m in measured)
                                         for name in names}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_trips", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("flows", type=Path)
    parser.add_argument("--tree", type=Path, help="import bot from this checkout (default: this one)")
    parser.add_argument("--turns", type=int, default=60)
    args = parser.parse_args(argv)
    if args.tree:
        sys.path.insert(0, str(args.tree.resolve()))
        sys.modules.pop("bot", None)
    import uvloop

    print(json.dumps(uvloop.run(measure(args.url, args.flows, args.turns))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
