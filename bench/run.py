"""textflow benchmark: the bot as shipped against the naive tutorial handler, side by side.

    .venv/bin/python -m bench            # full run, a few minutes
    .venv/bin/python -m bench --quick    # smoke test, seconds

See bench/README.md for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import engine_bench, features_bench, loadgen, metrics_bench, store_fill
from bench.servers import BENCH, ROOT, Server, cpu_of, cpu_pressure, free_port, route_counts, runqueue_seconds, waited
from bench.webhooks import AUTH_TOKEN, STEP_AFTER_STATUS, SidSource, Signer, Traffic, sender_number

RESULTS = BENCH / "results"
WRK_SCRIPT = BENCH / "wrk.lua"


@dataclass(frozen=True)
class Plan:
    rounds: int = 3  # interleaved bot/ref rounds, 1 worker: throughput then latency at each rate
    throughput_seconds: int = 5  # per throughput measurement (wrk takes whole seconds)
    latency_seconds: float = 6.0  # per fixed-rate measurement
    rates: tuple[int, ...] = (500, 1500)
    worker_rounds: int = 3  # interleaved bot/ref rounds with 2 workers (issue 17: the median of three)
    store_rounds: int = 2  # interleaved small/large store rounds
    store_sizes: tuple[int, int] = (1_000, 1_000_000)
    store_rate: int = 500
    store_seconds: float = 8.0
    store_load_senders: int = 1_000  # drawn from the stored ones, the same number in both cases
    senders: int = 10_000  # distinct senders of the main load
    connections: int = 50  # wrk / closed-loop keep-alive connections
    warmup_requests: int = 2_000  # after each server start, before anything is measured
    engine_cycles: int = 20_000  # x3 messages
    metrics_calls: int = 200_000  # webhooks' worth of metric calls, in-process
    timeout: float = 10.0
    attempts: int = 2  # a measurement disturbed by other work on the machine is taken again, up to this


FULL = Plan()
QUICK = Plan(rounds=1, throughput_seconds=1, latency_seconds=0.4, worker_rounds=1, store_rounds=1,
             store_sizes=(1_000, 20_000), store_seconds=0.6, store_load_senders=300, warmup_requests=200,
             engine_cycles=300, metrics_calls=5_000, senders=1_000,
             attempts=1)  # fewer senders so the short runs still walk the flow

# What ``--parts`` may name, in the order they run: in-process costs, then the servers under load
PARTS = {
    "engine": "the engine alone, in-process",
    "metrics": "counting for /metrics, in-process",
    "features": "the head cap, consent reading and the routing line, in-process",
    "throughput": "closed-loop throughput, 1 worker: the bot, the reference and the stack floor",
    "latency": "latency at fixed rates, 1 worker, a new connection each",
    "workers": "2 workers against 1 (its scaling row needs throughput too)",
    "store": "1,000 against 1,000,000 stored conversations",
}


def parse_parts(text: str) -> tuple[str, ...]:
    """``--parts throughput,latency`` → the parts in their running order; an unknown name is an error."""
    named = {part.strip() for part in text.split(",") if part.strip()}
    if unknown := named - PARTS.keys():
        raise argparse.ArgumentTypeError(f"unknown part(s): {', '.join(sorted(unknown))} (choose from "
                                         f"{', '.join(PARTS)})")
    if not named:
        raise argparse.ArgumentTypeError(f"name at least one part: {', '.join(PARTS)}")
    return tuple(part for part in PARTS if part in named)


# -- results -----------------------------------------------------------------------------------------

@dataclass
class Failure:
    where: str
    what: str


@dataclass
class Report:
    meta: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # what counting for /metrics costs a webhook
    features: dict[str, Any] = field(default_factory=dict)  # what the head cap, consent, the log line cost
    throughput: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> rounds
    latency: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # rate -> name -> rounds
    store: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # size -> rounds
    rss: dict[str, list[float]] = field(default_factory=dict)
    routes: dict[str, dict[str, int]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    # Raw latency samples (ms), pooled over rounds; percentiles go to the JSON, not the samples.
    samples: dict[str, list[float]] = field(default_factory=dict)


def say(text: str) -> None:
    print(text, flush=True)


NOISE_LIMIT = 0.03  # server or generator kept from its core more than 3% of the time: other work competed


def noise_text(result: dict[str, Any]) -> str:
    """A warning when the server or the load generator had to wait for its core: other work on
    this shared machine competed (their threads' run-queue time, from /proc/PID/task/*/schedstat)."""
    wait = result.get("cpu_wait")
    return f"  [noisy: kept from its core {wait:.0%} of the time]" if wait is not None and wait > NOISE_LIMIT else ""


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# -- the load generators ----------------------------------------------------------------------------

class Throughput:
    """Closed-loop throughput with wrk (keep-alive, -t1 on the generator core), or the Python
    generator when wrk is not there."""

    def __init__(self, kind: str, core: str | None, connections: int, workdir: Path) -> None:
        self.kind = kind  # "wrk" | "python"
        self.core = core
        self.connections = connections
        self.workdir = workdir

    def run(self, server: Server, traffic: Traffic, seconds: int, expected_rate: float) -> dict[str, Any]:
        """Measure; the pool is sized from the expected rate and the run repeated (bigger pool,
        fresh MessageSids) if it ran dry, so no request is ever sent twice."""
        pool_size = int(max(expected_rate, 1000) * seconds * 1.6) + 2000
        earlier = 0  # answered in runs that ran dry: what the server's side counted meanwhile includes them
        for _ in range(4):
            result = self._once(server, traffic, seconds, pool_size)
            if not result["exhausted"]:
                result["completed_all_attempts"] = earlier + result["completed"]
                return result
            earlier += result["completed"]
            say(f"    (pool of {pool_size} requests ran out at {result['rate']:.0f} req/s; again with a larger one)")
            pool_size *= 2
        raise RuntimeError("the request pool kept running out")

    def _once(self, server: Server, traffic: Traffic, seconds: int, pool_size: int) -> dict[str, Any]:
        pool = traffic.take(pool_size)
        cpu0, pressure0, queued0 = server.cpu_seconds(), cpu_pressure(), server.runqueue_seconds()
        workers0 = {pid: cpu_of(pid) for pid in server.worker_pids()}
        wall0 = time.perf_counter()
        if self.kind == "wrk":
            result = self._wrk(server.port, pool, seconds)
        else:
            result = self._python(server.port, pool, seconds)
        wall = time.perf_counter() - wall0
        result["server_cpu"] = (server.cpu_seconds() - cpu0) / wall
        result["machine_pressure"] = waited(pressure0, cpu_pressure(), wall)
        if server.workers == 1:  # two workers on two cores share them with the generator: waits expected
            result["cpu_wait"] = (server.runqueue_seconds() - queued0) / wall
        else:  # each worker's share of a core: shows whether the workers run or wait
            result["worker_cpu"] = [round((cpu_of(pid) - before) / wall, 3) for pid, before in workers0.items()]
        traffic.give_back(pool_size - result["sent"])
        return result

    def _wrk(self, port: int, pool: list[bytes], seconds: int) -> dict[str, Any]:
        pool_file = self.workdir / "wrk-pool.bin"
        pool_file.write_bytes(b"\0".join(pool) + b"\0")
        command = ["wrk", "-t1", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "10s",
                   "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}", "--", str(pool_file)]
        if self.core is not None:
            command = ["taskset", "-c", self.core, *command]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        pool_file.unlink()
        line = next((text for text in done.stdout.splitlines() if text.startswith("BENCH ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        raw = json.loads(line[6:])
        seconds_run = raw["duration_us"] / 1e6
        statuses: Counter[str] = Counter()
        for code in raw["bad_codes"].split():
            statuses[f"HTTP {code}"] += 1
        for kind in ("connect", "read", "write", "timeout"):
            if raw[kind]:
                statuses[f"socket {kind} errors"] += raw[kind]
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"rate": raw["completed"] / seconds_run, "completed": raw["completed"], "sent": raw["sent"],
                "seconds": seconds_run, "exhausted": raw["exhausted"],
                "bad": raw["bad"] + sum(raw[k] for k in ("connect", "read", "write", "timeout")),
                "bad_detail": ", ".join(f"{k}: {v}" for k, v in statuses.items()),
                "generator_cpu": cpu / seconds_run, "wrk_p50_ms": raw["p50_us"] / 1000,
                "wrk_p99_ms": raw["p99_us"] / 1000}

    def _python(self, port: int, pool: list[bytes], seconds: int) -> dict[str, Any]:
        run = loadgen.closed_loop("127.0.0.1", port, pool, self.connections, seconds)
        return {"rate": run.rate, "completed": run.completed, "sent": run.sent, "seconds": run.seconds,
                "exhausted": run.exhausted, "bad": run.statuses.bad, "bad_detail": run.statuses.describe(),
                "generator_cpu": run.generator_cpu}


def warm_up(server: Server, traffic: Traffic, requests: int, connections: int) -> dict[str, Any]:
    """Unmeasured traffic after start (imports, caches, SQLite pages); also a rate estimate."""
    pool = traffic.take(requests)
    run = loadgen.closed_loop("127.0.0.1", server.port, pool, min(connections, 20), 60.0)
    traffic.give_back(len(pool) - run.sent)
    return {"rate": run.rate, "bad": run.statuses.bad, "bad_detail": run.statuses.describe(), "sent": run.sent}


def latency(server: Server, traffic: Traffic, rate: int, seconds: float, timeout: float) -> dict[str, Any]:
    pool = traffic.take(max(1, int(rate * seconds)), close=True)
    cpu0, pressure0 = server.cpu_seconds(), cpu_pressure()
    queued0, generator_queued0 = server.runqueue_seconds(), runqueue_seconds(os.getpid())
    run = loadgen.open_loop("127.0.0.1", server.port, pool, rate, timeout)
    server_cpu = (server.cpu_seconds() - cpu0) / run.wall
    server_wait = (server.runqueue_seconds() - queued0) / run.wall
    generator_wait = (runqueue_seconds(os.getpid()) - generator_queued0) / run.wall
    ms = [value * 1000 for value in run.latencies]
    lag = [value * 1000 for value in run.send_lag]
    return {"rate": rate, "requests": run.scheduled, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "p999_ms": percentile(ms, 99.9), "max_ms": max(ms, default=float("nan")),
            "send_lag_p99_ms": percentile(lag, 99), "send_lag_max_ms": max(lag, default=float("nan")),
            "generator_cpu": run.generator_cpu, "server_cpu": server_cpu,
            "cpu_wait": max(server_wait, generator_wait), "server_wait": server_wait,
            "generator_wait": generator_wait, "machine_pressure": waited(pressure0, cpu_pressure(), run.wall),
            "bad": run.statuses.bad, "bad_detail": run.statuses.describe(), "samples_ms": ms}


# -- the run -----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, plan: Plan, generator: str, workdir: Path, quick: bool, profile: bool,
                 parts: tuple[str, ...] = tuple(PARTS)) -> None:
        self.plan = plan
        self.parts = parts
        self.quick = quick
        self.profile = profile
        self.workdir = workdir
        self.report = Report()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/sms"
        self.signer = Signer(self.url, AUTH_TOKEN)
        self.sids = SidSource()
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 2:
            self.server_core, self.load_core, self.all_cores = str(cores[0]), str(cores[1]), f"{cores[0]},{cores[1]}"
            os.sched_setaffinity(0, {cores[1]})  # this process (and the Python generator) off the server core
        else:
            self.server_core = self.load_core = self.all_cores = str(cores[0])
            self.report.notes.append("only one CPU available: server and load generator share it; "
                                     "the figures are not comparable with a 2-core run")
        self.throughput = Throughput(generator, self.load_core, plan.connections, workdir)
        self.main_senders = [sender_number(index) for index in range(plan.senders)]

    # servers ------------------------------------------------------------------------------------
    def server(self, kind: str, *, workers: int = 1, store: Path | None = None, cores: str | None = None,
               name: str = "") -> Server:
        if kind == "bot" and store is None:
            store = Path(tempfile.mkdtemp(dir=self.workdir, prefix="store-")) / "bot.db"
        return Server(kind, self.port, self.workdir, cores or self.server_core, workers, store, AUTH_TOKEN,
                      name=name).start()

    def traffic(self, senders: Sequence[str], first_step: int = 0) -> Traffic:
        return Traffic(self.signer, self.sids, senders, f"127.0.0.1:{self.port}", first_step)

    def check(self, where: str, result: dict[str, Any]) -> None:
        if result["bad"]:
            self.report.failures.append(Failure(where, f"{result['bad']} requests not answered 2xx: "
                                                       f"{result['bad_detail']}"))
            say(f"    !! {where}: {result['bad']} requests not answered 2xx ({result['bad_detail']})")

    def least_disturbed(self, where: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Measure; while other work on the (shared) machine made tasks wait for a CPU, measure
        again (up to ``plan.attempts`` times) and keep the least disturbed attempt. Every attempt's
        answers are checked, and the JSON keeps each attempt's CPU wait."""
        tries = []
        for _ in range(self.plan.attempts):
            result = measure()
            self.check(where, result)
            tries.append(result)
            wait = result.get("cpu_wait")
            if wait is None or wait <= NOISE_LIMIT:
                break
            if len(tries) < self.plan.attempts:
                say(f"    (disturbed: kept from its core {wait:.0%} of the time by other work; measuring again)")
        best = min(tries, key=lambda r: r.get("cpu_wait") or 0.0)
        best["attempts_cpu_wait"] = [r.get("cpu_wait") for r in tries]
        return best

    def finish_server(self, server: Server, where: str) -> None:
        server.stop()
        if server.kind != "bot":
            return
        counts = route_counts(server.output())
        total = self.report.routes.setdefault(where, {})
        for rule, n in counts.rules.items():
            total[rule] = total.get(rule, 0) + n
        if counts.rules.get("duplicate"):
            self.report.failures.append(Failure(where, f"{counts.rules['duplicate']} MessageSids answered as "
                                                       "duplicates: the load repeated requests"))
        if counts.errors:
            self.report.failures.append(Failure(where, f"{len(counts.errors)} ERROR lines in the bot's log, "
                                                       f"first: {counts.errors[0][:300]}"))
        if counts.messages == 0:
            self.report.notes.append(f"{where}: no routing-trace lines found in the bot's log "
                                     "(format changed?), so the conversations' progress was not checked")
        elif counts.off_script > 0.01 * counts.messages:
            self.report.failures.append(Failure(where, f"{counts.off_script} of {counts.messages} messages went "
                                                       f"off the benchmark conversation: {dict(counts.rules)}"))

    # phases -------------------------------------------------------------------------------------
    def run(self) -> Report:
        self.meta()
        phases = [phase for phase, wanted in (
            (self.engine, "engine"), (self.metrics, "metrics"), (self.features, "features"),
            (self.main_rounds, "throughput" in self.parts or "latency" in self.parts),
            (self.worker_rounds, "workers"), (self.store_rounds, "store")) if wanted is True or wanted in self.parts]
        for phase in phases + ([self.profile_bot] if self.profile else []):
            started = time.perf_counter()
            phase()
            self.report.meta.setdefault("phase_seconds", {})[phase.__name__] = round(time.perf_counter() - started, 1)
        return self.report

    def meta(self) -> None:
        report = self.report
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bot", "server.py"], cwd=ROOT,
                               capture_output=True, text=True)
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
        wrk_version = ""
        if self.throughput.kind == "wrk":
            banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
            wrk_version = banner.split(" Copyright")[0].replace(" [epoll]", "")
        report.meta = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit.stdout.strip() + (" + uncommitted changes in bot/" if dirty.stdout.strip() else ""),
            "python": platform.python_version(), "cpu": model, "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(), "mode": "quick" if self.quick else "full",
            "plan": asdict(self.plan), "throughput_generator": self.throughput.kind, "wrk": wrk_version,
            "server_core": self.server_core, "load_core": self.load_core, "url": self.url,
            "parts": list(self.parts),
        }
        say(f"textflow bench ({report.meta['mode']}): {model}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}; commit {report.meta['commit']}")
        say(f"  servers on core {self.server_core}, load generator on core {self.load_core}; throughput by "
            f"{wrk_version or 'the Python generator'}, latency by the Python open-loop generator")

    def engine(self) -> None:
        say("engine alone (in-process Engine.handle, no HTTP, no store)")
        result = engine_bench.run(BENCH / "flows", self.plan.engine_cycles)
        self.report.engine = asdict(result)
        say(f"  {result.us_per_message:.1f} µs/message  " +
            ", ".join(f"{name}: {us:.1f}" for name, us in result.steps.items()))

    def metrics(self) -> None:
        say("metrics alone (in-process: the counting a webhook does for /metrics)")
        result = metrics_bench.run(self.plan.metrics_calls)
        self.report.metrics = asdict(result)
        say(f"  {result.us_per_webhook:.2f} µs/webhook in one process, {result.us_per_webhook_multiprocess:.2f} µs "
            f"with workers' shared files; a scrape renders in {result.ms_per_scrape:.2f} ms")

    def features(self) -> None:
        say("features alone (in-process: the head cap, consent reading, the routing log line)")
        result = features_bench.run(BENCH / "flows", quick=self.quick)
        self.report.features = asdict(result)
        say(f"  head cap +{result.head_cap_us:.2f} µs/request; consent reading {result.consent_us:.2f} µs/message; "
            f"routing line {result.routing_line_us:.2f} µs, masking {result.masking_us:.2f} µs of it")

    def main_rounds(self) -> None:
        plan = self.plan
        expected: dict[str, float] = {}
        for number in range(1, plan.rounds + 1):
            kinds = ["bot", "ref"] + (["floor"] if number == 1 and "throughput" in self.parts else [])
            for kind in kinds:
                say(f"round {number}/{plan.rounds}: {kind}, 1 worker on core {self.server_core}")
                server = self.server(kind)
                traffic = self.traffic(self.main_senders)
                try:
                    warm = warm_up(server, traffic, plan.warmup_requests, plan.connections)
                    self.check(f"{kind} warm-up", warm)
                    if "throughput" in self.parts:
                        self.one_worker_throughput(kind, number, server, traffic, warm["rate"], expected)
                    if kind == "floor":
                        continue
                    for rate in plan.rates if "latency" in self.parts else ():
                        time.sleep(0 if self.quick else 0.3)  # the server settles after the throughput run
                        lat = self.least_disturbed(f"{kind} latency @{rate} round {number}", lambda: latency(
                            server, traffic, rate, plan.latency_seconds, plan.timeout))  # noqa: B023
                        self.report.samples.setdefault(f"{kind}@{rate}", []).extend(lat.pop("samples_ms"))
                        self.report.latency.setdefault(str(rate), {}).setdefault(kind, []).append(lat)
                        say(f"  @{rate} req/s, new connection each: p50 {lat['p50_ms']:.2f} ms, p99 "
                            f"{lat['p99_ms']:.2f} ms  (send lag p99 {lat['send_lag_p99_ms']:.2f} ms, "
                            f"server CPU {lat['server_cpu']:.0%})" + noise_text(lat))
                    rss, _ = server.rss_mb()
                    self.report.rss.setdefault(kind, []).append(rss)
                finally:
                    self.finish_server(server, f"{kind} 1 worker")

    def one_worker_throughput(self, kind: str, number: int, server: Server, traffic: Traffic, warm_rate: float,
                              expected: dict[str, float]) -> None:
        # The floor runs at tens of thousands of req/s: a shorter run keeps its request pool small.
        seconds = min(2, self.plan.throughput_seconds) if kind == "floor" else self.plan.throughput_seconds
        guess = 40_000 if kind == "floor" else warm_rate
        result = self.least_disturbed(f"{kind} throughput round {number}", lambda: self.throughput.run(
            server, traffic, seconds, expected.get(kind, guess)))
        expected[kind] = result["rate"]
        self.report.throughput.setdefault(f"{kind}-w1", []).append(result)
        say(f"  throughput {result['rate']:,.0f} req/s  (server CPU {result['server_cpu']:.0%}, "
            f"generator CPU {result['generator_cpu']:.0%})" + noise_text(result))

    def worker_rounds(self) -> None:
        plan = self.plan
        expected: dict[str, float] = {}
        for number in range(1, plan.worker_rounds + 1):
            for kind in ("bot", "ref"):
                say(f"workers round {number}/{plan.worker_rounds}: {kind}, 2 workers on cores {self.all_cores} "
                    f"(shared with the load generator)")
                server = self.server(kind, workers=2, cores=self.all_cores)
                traffic = self.traffic(self.main_senders)
                try:
                    warm = warm_up(server, traffic, plan.warmup_requests, plan.connections)
                    self.check(f"{kind} 2 workers warm-up", warm)
                    result = self.throughput.run(server, traffic, plan.throughput_seconds,
                                                 expected.get(kind, 2 * warm["rate"]))
                    expected[kind] = result["rate"]
                    self.check(f"{kind} 2 workers round {number}", result)
                    self.report.throughput.setdefault(f"{kind}-w2", []).append(result)
                    shares = " + ".join(f"{share:.0%}" for share in result.get("worker_cpu", []))
                    say(f"  throughput {result['rate']:,.0f} req/s  (workers' CPU {shares} of a core each, "
                        f"generator CPU {result['generator_cpu']:.0%})")
                finally:
                    self.finish_server(server, f"{kind} 2 workers")

    def store_rounds(self) -> None:
        plan = self.plan
        small, large = plan.store_sizes
        rng = random.Random(1)
        stores, traffics = {}, {}
        for size in (small, large):
            path = self.workdir / f"store-{size}.db"
            say(f"store-scale: pre-filling {size:,} conversations")
            seconds = store_fill.fill(path, size)
            say(f"  {seconds:.1f} s, {path.stat().st_size / 1e6:.0f} MB")
            stores[size] = path
            chosen = (range(size) if size <= plan.store_load_senders
                      else rng.sample(range(size), plan.store_load_senders))
            senders = [sender_number(index) for index in chosen]
            # Stored conversations wait at ask_number: their next message is the order number.
            traffics[size] = self.traffic(senders, first_step=STEP_AFTER_STATUS)
        for number in range(1, plan.store_rounds + 1):
            for size in (small, large):
                say(f"store round {number}/{plan.store_rounds}: bot with {size:,} stored conversations, "
                    f"{plan.store_rate} req/s")
                server = self.server("bot", store=stores[size], name=f"bot-store{size}")
                try:
                    warm = latency(server, traffics[size], plan.store_rate, 1.0 if not self.quick else 0.3,
                                   plan.timeout)
                    self.check(f"store {size} warm-up", warm)
                    lat = self.least_disturbed(f"store {size} round {number}", lambda: latency(  # measured at once
                        server, traffics[size], plan.store_rate, plan.store_seconds, plan.timeout))  # noqa: B023
                    lat["rss_mb"], lat["peak_rss_mb"] = server.rss_mb()
                    self.report.samples.setdefault(f"store{size}", []).extend(lat.pop("samples_ms"))
                    self.report.store.setdefault(str(size), []).append(lat)
                    say(f"  p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, RSS {lat['rss_mb']:.0f} MB "
                        f"(peak {lat['peak_rss_mb']:.0f} MB)" + noise_text(lat))
                finally:
                    self.finish_server(server, f"bot store {size}")

    def profile_bot(self) -> None:
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists() and shutil.which("py-spy") is None:
            self.report.notes.append("--profile: py-spy not found (pip install py-spy)")
            return
        py_spy_cmd = str(py_spy) if py_spy.exists() else "py-spy"
        say("profile: py-spy on the bot under full load (not measured)")
        server = self.server("bot", name="bot-profile")
        traffic = self.traffic(self.main_senders)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RESULTS / f"profile-{stamp}.txt"
        RESULTS.mkdir(parents=True, exist_ok=True)
        seconds = max(2, self.plan.throughput_seconds * 2)
        try:
            warm_up(server, traffic, self.plan.warmup_requests, self.plan.connections)
            spy = subprocess.Popen(["taskset", "-c", self.load_core, py_spy_cmd, "record", "--pid", str(server.pid),
                                    "--format", "raw", "--nolineno", "--rate", "250", "--duration", str(seconds - 1),
                                    "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.throughput.run(server, traffic, seconds, 5000)
            _, error = spy.communicate(timeout=60)
            if spy.returncode != 0:
                self.report.notes.append(f"py-spy failed: {error.decode()[-500:]}")
                return
        finally:
            self.finish_server(server, "bot profile")
        top = summarise_profile(out)
        self.report.profile = {"file": str(out), "top": top}
        say(f"  collapsed stacks in {out} (flamegraph.pl or speedscope.app draw them)")

    # the table ----------------------------------------------------------------------------------
    def summarise(self) -> str:
        return summarise(self.report, self.plan)


def summarise_profile(path: Path, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Where the event loop's thread spends its busy samples: per function, self and inclusive.

    Only stacks of the main thread (the one running ``server.py``) count: the flow reloader's
    watcher thread sits in native code that py-spy cannot tell from work.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or "(server.py)" not in stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return {"self": [], "inclusive": []}
    return {"self": [{"function": name, "share": n / total} for name, n in own.most_common(limit)],
            "inclusive": [{"function": name, "share": n / total} for name, n in inclusive.most_common(limit * 2)]}


def all_measurements(report: Report) -> list[dict[str, Any]]:
    found = [r for rounds in report.throughput.values() for r in rounds]
    found += [r for kinds in report.latency.values() for rounds in kinds.values() for r in rounds]
    found += [r for rounds in report.store.values() for r in rounds]
    return found


# -- summary -----------------------------------------------------------------------------------------

def _median(rounds: list[dict[str, Any]], key: str = "rate") -> float:
    return statistics.median(r[key] for r in rounds) if rounds else float("nan")


def _spread(rounds: list[dict[str, Any]], key: str = "rate", digits: int = 0) -> str:
    values = [r[key] for r in rounds]
    return f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})" if len(values) > 1 else ""


def _paired_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str = "rate") -> float:
    """Median of round-by-round ratios: rounds were interleaved, so each pair shared the machine's mood."""
    pairs = [x[key] / y[key] for x, y in zip(a, b, strict=False) if y[key]]
    return statistics.median(pairs) if pairs else float("nan")


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("✓" if ok else "✗")


def summarise(report: Report, plan: Plan) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    summary: list[dict[str, Any]] = []

    def row(measure: str, bot_text: str, ref_text: str, ratio: str, target: str = "", ok: bool | None = None,
            **values: Any) -> None:
        rows.append((measure, bot_text, ref_text, ratio, target, _mark(ok)))
        summary.append({"measure": measure, "bot_text": bot_text, "reference_text": ref_text, "ratio_text": ratio,
                        "target": target, "met": ok, **values})

    parts = report.meta.get("parts", list(PARTS))  # a run of some parts (--parts) has only their rows
    tp = report.throughput
    bot1, ref1 = tp.get("bot-w1", []), tp.get("ref-w1", [])
    bot_rate, ref_rate = _median(bot1), _median(ref1)
    speedup = _paired_ratio(bot1, ref1)
    if "throughput" in parts:
        row("throughput, 1 worker on 1 core (req/s)", f"{bot_rate:,.0f}{_spread(bot1)}",
            f"{ref_rate:,.0f}{_spread(ref1)}", f"{speedup:.2f}×", "≥ 2.0×", speedup >= 2.0, bot=bot_rate, ref=ref_rate,
            value=speedup)

    for rate in plan.rates if "latency" in parts else ():
        bot_rounds = report.latency.get(str(rate), {}).get("bot", [])
        ref_rounds = report.latency.get(str(rate), {}).get("ref", [])
        for q in (50, 99):
            key = f"p{q}_ms"
            bot, ref = _median(bot_rounds, key), _median(ref_rounds, key)
            ratio = _paired_ratio(bot_rounds, ref_rounds, key)
            target, ok = ("≤ 5 ms", bot <= 5.0) if (rate == 500 and q == 99) else ("", None)
            row(f"latency p{q} @ {rate:,} req/s, new connection each (ms)", f"{bot:.2f}{_spread(bot_rounds, key, 2)}",
                f"{ref:.2f}{_spread(ref_rounds, key, 2)}", f"{ratio:.2f}×", target, ok, bot=bot, ref=ref, value=ratio,
                pooled_bot=percentile(report.samples.get(f"bot@{rate}", []), q),
                pooled_ref=percentile(report.samples.get(f"ref@{rate}", []), q))

    bot2, ref2 = tp.get("bot-w2", []), tp.get("ref-w2", [])
    bot2_rate, ref2_rate = _median(bot2), _median(ref2)
    if "workers" in parts:
        row("throughput, 2 workers on 2 cores (req/s)", f"{bot2_rate:,.0f}{_spread(bot2)}",
            f"{ref2_rate:,.0f}{_spread(ref2)}", f"{_paired_ratio(bot2, ref2):.2f}×", bot=bot2_rate, ref=ref2_rate,
            value=_paired_ratio(bot2, ref2))
    bot_scale, ref_scale = bot2_rate / bot_rate, ref2_rate / ref_rate
    # Each 2-worker round against the 1-worker medians: the bot's scaling ÷ the reference's, median of the rounds
    per_round = [(bot["rate"] / bot_rate) / (ref["rate"] / ref_rate) for bot, ref in zip(bot2, ref2, strict=False)]
    efficiency = statistics.median(per_round) if per_round else float("nan")
    spread = f" ({min(per_round):.2f}–{max(per_round):.2f})" if len(per_round) > 1 else ""
    if "workers" in parts and "throughput" in parts:
        row("scaling, 2 workers ÷ 1 worker", f"{bot_scale:.2f}×", f"{ref_scale:.2f}×", f"{efficiency:.2f}×{spread}",
            "≥ 0.95× the reference's", efficiency >= 0.95, bot=bot_scale, ref=ref_scale, value=efficiency,
            rounds=per_round)

    small, large = (str(size) for size in plan.store_sizes)
    label = f"{plan.store_sizes[0]:,} → {plan.store_sizes[1]:,} stored conversations"
    small_rounds, large_rounds = report.store.get(small, []), report.store.get(large, [])
    for q in (50, 99) if "store" in parts else ():
        key = f"p{q}_ms"
        a, b = _median(small_rounds, key), _median(large_rounds, key)
        ratio = _paired_ratio(large_rounds, small_rounds, key)
        target, ok = ("≤ 1.2×", ratio <= 1.2) if q == 99 else ("", None)
        row(f"{label}: p{q} @ {plan.store_rate} req/s (ms)", f"{a:.2f} → {b:.2f}", "n/a (no store)",
            f"{ratio:.2f}× (large ÷ small)", target, ok, small=a, large=b, value=ratio)
    rss_small = max((r["rss_mb"] for r in report.store.get(small, [])), default=float("nan"))
    rss_large = max((r["rss_mb"] for r in report.store.get(large, [])), default=float("nan"))
    if "store" in parts:
        row(f"{label}: server RSS (MB)", f"{rss_small:.0f} → {rss_large:.0f}", "n/a (no store)",
            f"{rss_large / rss_small:.2f}× (large ÷ small)", "≤ 150 MB", rss_large <= 150, small=rss_small,
            large=rss_large, value=rss_large / rss_small)

    bot_rss, ref_rss = max(report.rss.get("bot", [float("nan")])), max(report.rss.get("ref", [float("nan")]))
    if "throughput" in parts or "latency" in parts:
        row("server RSS after the 1-worker rounds (MB)", f"{bot_rss:.0f}", f"{ref_rss:.0f}",
            f"{bot_rss / ref_rss:.2f}×", bot=bot_rss, ref=ref_rss, value=bot_rss / ref_rss)

    engine = report.engine.get("us_per_message", float("nan"))
    per_request_us = 1e6 / bot_rate if bot_rate else float("nan")
    ref_request_us = 1e6 / ref_rate if ref_rate else float("nan")
    if "engine" in parts:
        row("engine alone, in-process (µs per message)", f"{engine:.1f}", f"{ref_request_us:.0f} (whole request)",
            f"{engine / per_request_us:.0%} of the bot's {per_request_us:.0f} µs per request", "≤ 30 µs", engine <= 30,
            bot=engine, value=engine / per_request_us)

    counted = report.metrics.get("us_per_webhook", float("nan"))
    counted_multi = report.metrics.get("us_per_webhook_multiprocess", float("nan"))
    if "metrics" in parts:
        row("metrics per webhook, in-process (µs): one process / workers' shared files",
            f"{counted:.2f} / {counted_multi:.2f}", "n/a (no metrics)",
            f"{counted / per_request_us:.1%} / {counted_multi / per_request_us:.1%} of the bot's "
            f"{per_request_us:.0f} µs per request", bot=counted, multiprocess=counted_multi,
            value=counted / per_request_us)

    features = report.features
    if features:
        landed = features_bench.WHEN_LANDED
        for key, measure in (("head_cap_us", "request-head cap and one write per answer, in-process (µs per request)"),
                             ("consent_us", "consent reading in a person's own words, in-process (µs per message)"),
                             ("routing_line_us", "routing log line, masked, in-process (µs per turn)")):
            extra = f", masking {features['masking_us']:.2f} of it" if key == "routing_line_us" else ""
            row(measure, f"{features[key]:.2f}{extra}", f"when it landed: {landed[key]}",
                f"{features[key] / per_request_us:.1%} of the bot's {per_request_us:.0f} µs per request",
                bot=features[key], value=features[key] / per_request_us)

    floor = tp.get("floor-w1", [])
    if floor:
        floor_rate = _median(floor)
        row("stack floor: bare Starlette, constant TwiML (req/s)", "", "", f"{floor_rate:,.0f} = "
            f"{floor_rate / bot_rate:.1f}× the bot: the generator is not the limit",
            value=floor_rate / bot_rate, floor=floor_rate)

    report.summary = summary
    lines = ["| measure | bot | naive reference | bot ÷ reference | target | |",
             "|---|---:|---:|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


# -- wrk ---------------------------------------------------------------------------------------------

def choose_generator(requested: str, quick: bool, install: bool) -> tuple[str, str]:
    """("wrk" | "python", a note for the output)."""
    if requested == "python":
        return "python", "throughput by the Python generator (--generator python)"
    if shutil.which("wrk"):
        return "wrk", ""
    hint = "install it with: sudo apt-get install wrk   (Debian/Ubuntu; brew install wrk on macOS)"
    if install and not quick and os.geteuid() == 0 and shutil.which("apt-get"):
        say("wrk is not installed; installing the Debian package (running as root) …")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if command[1] == "install" and shutil.which("wrk"):
                return "wrk", "wrk was installed with apt-get for this run"
    if requested == "wrk":
        raise SystemExit(f"wrk is not installed: {hint}")
    return "python", (f"wrk is not installed, so throughput was measured by the Python generator "
                      f"(its ceiling is the stack-floor row); for wrk figures {hint}")


def ensure_multipart(install: bool) -> bool:
    """Starlette's request.form() (the naive handler) needs python-multipart."""
    import importlib.util

    if importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart"):
        return True
    command = [sys.executable, "-m", "pip", "install", "-q", "-r", str(BENCH / "requirements.txt")]
    if install:
        say("python-multipart (needed by the naive reference's request.form()) is missing; installing it: "
            + " ".join(command))
        if subprocess.run(command).returncode == 0:
            return True
    say("error: the naive reference needs python-multipart: " + " ".join(command))
    return False


# -- main --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: one round, a few hundred requests per phase, a 20,000-conversation "
                             "store instead of 1,000,000 (seconds, numbers only roughly indicative)")
    parser.add_argument("--rounds", type=int, help="interleaved bot/reference rounds (default 3; quick 1)")
    parser.add_argument("--parts", type=parse_parts, default=tuple(PARTS), metavar="PART[,PART…]",
                        help="measure only these, comma-separated (default: all): " + "; ".join(
                            f"{name}: {what}" for name, what in PARTS.items()) + ". Its JSON is named -partial "
                        "and `python -m bench table` leaves it out")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="throughput load generator (default: wrk if installed, else Python)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk, even as root")
    parser.add_argument("--profile", action="store_true",
                        help="also record the bot under load with py-spy and list where the time goes")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON and table go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, stores)")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds, "worker_rounds": args.rounds,
                       "store_rounds": args.rounds})
    if shutil.which("taskset") is None:
        say("error: taskset (util-linux) is needed to pin servers and load generator to cores")
        return 2
    if not ensure_multipart(install=not args.quick and not args.no_install):
        return 2
    generator, note = choose_generator(args.generator, args.quick, not args.no_install)
    workdir = Path(tempfile.mkdtemp(prefix="textflow-bench-"))
    bench = Bench(plan, generator, workdir, args.quick, args.profile, args.parts)
    if note:
        bench.report.notes.append(note)
        say(f"note: {note}")
    started = time.perf_counter()
    try:
        report = bench.run()
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep:
            say(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    table = bench.summarise()
    report.meta["seconds"] = round(time.perf_counter() - started, 1)
    output = [f"\n## textflow vs the naive handler — {report.meta['date']} ({report.meta['mode']} run, "
              f"{report.meta['seconds']:.0f} s)\n",
              f"{report.meta['cpu']}; commit {report.meta['commit']}; throughput by "
              f"{report.meta['wrk'] or 'the Python generator'} (keep-alive, {plan.connections} connections), "
              "latency by the Python open-loop generator (new connection per request, from the scheduled time)\n",
              table, ""]
    if report.routes:
        output.append("bot's routing trace: " + "; ".join(
            f"{where}: " + ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items()))
            for where, rules in report.routes.items()))
    if report.profile:
        output.append(f"\nprofile of the bot under load ({report.profile['file']}), share of the event loop's busy "
                      "samples — self (the function's own code):")
        output += [f"  {entry['share']:6.1%}  {entry['function']}" for entry in report.profile["top"]["self"]]
        output.append("inclusive (with what it calls):")
        output += [f"  {entry['share']:6.1%}  {entry['function']}" for entry in report.profile["top"]["inclusive"]]
    disturbed = [r for r in all_measurements(report) if (r.get("cpu_wait") or 0) > NOISE_LIMIT]
    if disturbed:
        report.notes.append(f"{len(disturbed)} of {len(all_measurements(report))} one-worker measurements were "
                            f"disturbed by other work on the machine even in their best attempt (server or generator "
                            f"kept from its core > {NOISE_LIMIT:.0%} of the time; worst "
                            f"{max(r['cpu_wait'] for r in disturbed):.0%}): "
                            "their figures, latency tails above all, are pessimistic")
    for text in report.notes:
        output.append(f"note: {text}")
    if report.failures:
        output.append(f"\nFAILED: {len(report.failures)} problem(s):")
        output += [f"  - {failure.where}: {failure.what}" for failure in report.failures]
    say("\n".join(output))

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    data = {"part": "main", **asdict(report)}
    data.pop("samples")
    data["table_markdown"] = table
    partial = "-partial" if args.parts != tuple(PARTS) else ""
    path = args.results_dir / f"bench-{stamp}{partial}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    say(f"\nresults: {path}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
