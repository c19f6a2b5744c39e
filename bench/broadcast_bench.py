"""Broadcasts at a million (issue 17 item 4): memory, CPU per message, pacing, and replies meanwhile.

    .venv/bin/python -m bench broadcast [--rows N] [--parts million,pacing,replies] [--quick]

Every broadcast here is a real ``python -m bot broadcast`` process, through the real twilio SDK, to
the fake Twilio API (``bot/fake_twilio``) in a process of its own on 127.0.0.1 (bench/broadcast_runs.py):

* **million**: a ``--rows``-row CSV (default 1,000,000), ``--rate unlimited``, the broadcast on the
  server core and the fake API on the other: the process's peak resident memory (the kernel's
  ``ru_maxrss``, i.e. ``VmHWM``; target under 200 MB), its CPU (user + system) per message sent,
  messages a second (whole run, and from the first to the last accepted), and the fake's count:
  every row accepted exactly once.
* **pacing**: ``--rate`` 1, 10, 100 and 300, and unlimited, with the fake answering each call
  150 ms late as Twilio does (so hundreds a second need many calls in flight): the rate achieved
  between the first and the last message accepted, against the rate asked (target within 5%).
* **replies**: webhook latency on an idle bot and during a broadcast at 100/s on the same SQLite
  store, interleaved rounds (bench/broadcast_replies.py; target busy p99 within 1.5x of idle). The
  broadcast runs on the server's core (the same machine, as deployed), the fake API on the load
  generator's (Twilio is elsewhere); ``--before DIR`` adds another checkout's broadcast to the same rounds.

Resuming after kill -9 is a test, not a figure: tests/test_broadcast_resume.py. The table gives
medians with ranges over rounds (the million is one run: it takes about ten minutes); the JSON goes
to bench/results/broadcast-<date>.json, and ``summary_rows`` gives the table's rows as dicts for
the combined table of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import broadcast_replies
from bench.broadcast_runs import FakeApi, achieved_rate, run_broadcast, sent_times, states, write_csv
from bench.parts import RESULTS, part_meta, row, write_part
from bench.run import say
from bench.servers import ROOT

MEMORY_TARGET_MB = 200.0
PACING_TOLERANCE = 0.05  # achieved within 5% of the rate asked
PACING_RATES = ("1", "10", "100", "300", "unlimited")
PACING_SECONDS = 10.0  # of messages per paced run (unlimited: 3,000 messages)
QUICK_RATES = ("10", "100", "unlimited")
QUICK_ROWS = 2_000  # --quick: the unpaced run's rows
QUICK_PACING_SECONDS = 1.0  # --quick: of messages per paced run (at least 10 messages)
QUICK_UNPACED_MESSAGES = 200  # --quick: the unlimited run's messages
API_DELAY = 0.15  # the fake API's answer time in the pacing runs


def million(workdir: Path, rows: int, broadcast_core: str, fake_core: str, code: Path) -> dict[str, Any]:
    say(f"million: a {rows:,}-row CSV, unpaced; broadcast on core {broadcast_core}, fake API on core {fake_core}")
    csv_path = write_csv(workdir / "million.csv", 0, rows)
    store = workdir / "million.db"
    fake = FakeApi(workdir, fake_core)
    started = time.time()
    try:
        run = run_broadcast(workdir, csv_path, store, fake, broadcast_core, "unlimited", root=code)
    finally:
        counts = fake.stop()
    times = sent_times(store)
    sent = counts["accepted"]
    result = {"rows": rows, "exit_code": run.exit_code, "summary": run.summary, "wall_seconds": run.wall_seconds,
              "cpu_seconds": run.cpu_seconds, "peak_rss_mb": run.peak_rss_mb, "accepted": sent,
              "duplicates": counts["duplicates"], "numbers_once": counts["numbers_once"],
              "cpu_us_per_message": run.cpu_seconds / sent * 1e6 if sent else None,
              "messages_per_second": sent / run.wall_seconds if run.wall_seconds else None,
              "send_phase_per_second": achieved_rate(times),
              "seconds_to_first_send": times[0] - started if times else None,
              "fake_cpu_seconds": counts["cpu_seconds"], "records": states(store), "stderr_tail": run.stderr_tail}
    say(f"  {run.summary}")
    say(f"  peak RSS {run.peak_rss_mb:.0f} MB; CPU {run.cpu_seconds:.0f} s = "
        f"{_fmt(result['cpu_us_per_message'], '{:.0f}')} µs per message; {_fmt(result['messages_per_second'])} "
        f"messages/s over the whole run ({_fmt(result['send_phase_per_second'])}/s once sending, after "
        f"{_fmt(result['seconds_to_first_send'], '{:.1f}')} s of start-up and reading the CSV); "
        f"{counts['duplicates']} texted twice")
    return result


def pacing(workdir: Path, rounds: int, broadcast_core: str, fake_core: str, code: Path,
           rates: tuple[str, ...] = PACING_RATES, seconds: float = PACING_SECONDS,
           unpaced_messages: int = 3000, api_delay: float = API_DELAY) -> dict[str, list[dict[str, Any]]]:
    say(f"pacing: --rate {', '.join(rates)}, the fake API answering in {api_delay * 1000:.0f} ms, {rounds} round(s)")
    found: dict[str, list[dict[str, Any]]] = {}
    first = 0
    for number in range(1, rounds + 1):
        for rate in rates:
            count = unpaced_messages if rate == "unlimited" else max(10, int(float(rate) * seconds))
            csv_path = write_csv(workdir / f"pacing-{rate}-{number}.csv", first, count)
            first += count
            store = workdir / f"pacing-{rate}-{number}.db"
            fake = FakeApi(workdir, fake_core, api_delay)
            try:
                run = run_broadcast(workdir, csv_path, store, fake, broadcast_core, rate, root=code)
            finally:
                counts = fake.stop()
            achieved = achieved_rate(sent_times(store))
            entry = {"rate": rate, "messages": count, "achieved": achieved, "accepted": counts["accepted"],
                     "api_delay": api_delay,
                     "duplicates": counts["duplicates"], "exit_code": run.exit_code,
                     "ratio": achieved / float(rate) if achieved and rate != "unlimited" else None}
            found.setdefault(rate, []).append(entry)
            say(f"  round {number}, --rate {rate}: {_fmt(achieved, '{:.2f}')} messages/s achieved over {count} "
                f"messages" + (f" ({entry['ratio']:.3f}× the rate asked)" if entry["ratio"] else ""))
    return found


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows ``python -m bench all`` puts in its one table (``bench.parts.row``): each figure
    the median with its range over rounds in brackets (the million is one run)."""
    rows: list[dict[str, Any]] = []
    big = results.get("million")
    if big:
        label = f"broadcast of {big['rows']:,} rows, unpaced"
        rows.append(row(f"{label}: peak memory of its process (VmHWM, MB)", _cell([big["peak_rss_mb"]]),
                        target=f"< {MEMORY_TARGET_MB:.0f} MB", met=big["peak_rss_mb"] < MEMORY_TARGET_MB))
        rows.append(row(f"{label}: CPU per message sent (user + system, µs)", _cell([big["cpu_us_per_message"]])))
        rows.append(row(f"{label}: messages per second, whole run (once sending)",
                        f"{_cell([big['messages_per_second']])} ({_cell([big['send_phase_per_second']])})"))
        rows.append(row(f"{label}: accepted by the API / texted twice", f"{big['accepted']:,} / {big['duplicates']}",
                        target=f"{big['rows']:,} / 0",
                        met=big["accepted"] == big["rows"] and big["duplicates"] == 0 and big["exit_code"] == 0))
    for rate, runs in results.get("pacing", {}).items():
        achieved = [run["achieved"] for run in runs if run["achieved"]]
        delay = f"the API answering in {runs[0].get('api_delay', API_DELAY) * 1000:.0f} ms"
        if rate == "unlimited":
            rows.append(row(f"--rate unlimited, {delay} (messages/s)", _cell(achieved)))
            continue
        ratios = [run["ratio"] for run in runs if run["ratio"]]
        met = bool(ratios) and all(abs(ratio - 1) <= PACING_TOLERANCE for ratio in ratios)
        rows.append(row(f"--rate {rate}, {delay}: achieved (messages/s)",
                        _cell(achieved), f"{rate} asked", _cell(ratios, "{:.3f}×"),
                        f"within {PACING_TOLERANCE:.0%}", met))
    replies = results.get("replies")
    if replies and replies["rounds"]:
        rounds = replies["rounds"]
        plan = replies["plan"]
        during = f"during a broadcast at {plan['broadcast_rate']}/s"
        rows.append(row(f"webhook p50 {during} (ms; compared with: idle, interleaved rounds)",
                        _cell([r["busy"]["p50_ms"] for r in rounds]), _cell([r["idle"]["p50_ms"] for r in rounds])))
        if all("turn_p99_ms" in r["busy"] for r in rounds):  # the server's own time per turn (its routing line)
            rows.append(row(f"the server's turn (routing line's ms) p50 / p99 {during} (ms; compared with: idle)",
                            f"{_cell([r['busy']['turn_p50_ms'] for r in rounds])} / "
                            f"{_cell([r['busy']['turn_p99_ms'] for r in rounds])}",
                            f"{_cell([r['idle']['turn_p50_ms'] for r in rounds])} / "
                            f"{_cell([r['idle']['turn_p99_ms'] for r in rounds])}",
                            _cell([r["busy"]["turn_p99_ms"] / r["idle"]["turn_p99_ms"] for r in rounds
                                   if r["idle"]["turn_p99_ms"]], "{:.2f}×")))
        ratios = replies["p99_ratios"]
        ratio = statistics.median(ratios) if ratios else None
        where = (f"; broadcast on core {replies['broadcast_core']}, the server's {replies['server_core']}"
                 if "broadcast_core" in replies else "")
        rows.append(row(f"webhook p99 {during} (ms; compared with: idle, interleaved rounds{where})",
                        _cell([r["busy"]["p99_ms"] for r in rounds]), _cell([r["idle"]["p99_ms"] for r in rounds]),
                        _cell(ratios, "{:.2f}×"), f"≤ {broadcast_replies.TARGET}×",
                        ratio is not None and ratio <= broadcast_replies.TARGET,
                        broadcast_core=replies.get("broadcast_core"), server_core=replies.get("server_core")))
        before = replies.get("before")
        if before:  # the same rounds, the same idle measurements: another checkout's broadcast
            rows.append(row(f"the same, the broadcast of {Path(before['code']).name} (before)",
                            _cell([r["before"]["busy"]["p99_ms"] for r in rounds]),
                            _cell([r["idle"]["p99_ms"] for r in rounds]), _cell(before["p99_ratios"], "{:.2f}×")))
    return rows


def _cell(values: list[float | None], spec: str = "") -> str:
    """The median, and the range in brackets when there are several."""
    found = [value for value in values if value is not None]
    if not found:
        return "—"

    def text(value: float) -> str:
        return spec.format(value) if spec else (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}")
    middle = text(statistics.median(found))
    return middle + (f" ({text(min(found))}–{text(max(found))})" if len(found) > 1 else "")


def _fmt(value: float | None, spec: str = "{:,.0f}") -> str:
    return "—" if value is None else spec.format(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| measure | figure | compared with | ratio | target | |", "|---|---:|---:|---|---|---|"]
    for entry in rows:
        met = "" if entry["met"] is None else ("✓" if entry["met"] else "✗")
        lines.append(f"| {entry['measure']} | {entry['bot_text']} | {entry['reference_text']} | {entry['ratio_text']} "
                     f"| {entry['target']} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench broadcast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="rows of the unpaced broadcast (default 1,000,000; quick "
                        f"{QUICK_ROWS:,})")
    parser.add_argument("--parts", default="million,pacing,replies", help="which parts, comma-separated")
    parser.add_argument("--rounds", type=int, help="interleaved idle/busy rounds of the replies part (default 3)")
    parser.add_argument("--pacing-rounds", type=int, default=2, help="rounds of each pacing rate (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_ROWS:,} rows, short pacing and replies runs (figures not "
                        "comparable)")
    parser.add_argument("--broadcast-core", help="where the replies part runs the broadcast (default: the "
                        "server's core, as a deployment runs it on the server's machine)")
    parser.add_argument("--before", type=Path, help="replies part: also the broadcast of another checkout (such as "
                        "a `git archive` of an earlier commit), busy rounds of both against the same idle ones")
    parser.add_argument("--api-delay", type=float, default=API_DELAY, help="seconds the fake API takes to answer in "
                        f"the pacing and replies parts (default {API_DELAY}, as Twilio's 100-300 ms)")
    parser.add_argument("--code", type=Path, default=ROOT, help="run the bot from another checkout (such as a "
                        "`git archive` of an earlier commit) for before/after figures; default this one")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (CSVs, stores, logs)")
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if unknown := parts - {"million", "pacing", "replies"}:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if shutil.which("taskset") is None:
        say("error: taskset (util-linux) is needed to pin the broadcast, the fake API and the servers")
        return 2
    rows = args.rows or (QUICK_ROWS if args.quick else 1_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="textflow-bench-broadcast-"))
    cores = sorted(os.sched_getaffinity(0))
    server_core, load_core = str(cores[0]), str(cores[-1])
    results: dict[str, Any] = {"meta": {**part_meta(), "code": str(args.code), "rows": rows, "quick": args.quick,
                                        "cores": [server_core, load_core]}}
    started = time.perf_counter()
    try:
        if "million" in parts:
            results["million"] = million(workdir, rows, server_core, load_core, args.code)
        if "pacing" in parts:
            results["pacing"] = pacing(workdir, args.pacing_rounds, server_core, load_core, args.code,
                                       api_delay=args.api_delay) if not args.quick else \
                pacing(workdir, 1, server_core, load_core, args.code, QUICK_RATES, QUICK_PACING_SECONDS,
                       QUICK_UNPACED_MESSAGES, args.api_delay)
        if "replies" in parts:
            plan = broadcast_replies.QUICK_REPLIES if args.quick else broadcast_replies.RepliesPlan()
            plan = broadcast_replies.RepliesPlan(**{**plan.__dict__, "rounds": args.rounds or plan.rounds,
                                                    "api_delay": args.api_delay})
            results["replies"] = broadcast_replies.measure(workdir, plan, args.quick, args.broadcast_core, args.code,
                                                           args.before)
    finally:
        if args.keep:
            say(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    if not args.quick:
        _carry_over(results, parts, args.results_dir)
    rows_out = summary_rows(results)
    text = table(rows_out)
    failures = _failures(results)
    for part, source in results["meta"].get("carried_over", {}).items():
        say(f"note: the {part} rows are from an earlier run: {source}")
    say(f"\n## Broadcasts — {results['meta']['date']} ({'quick' if args.quick else 'full'} run, "
        f"{results['meta']['seconds']:.0f} s, commit {results['meta']['commit']}"
        f"{', running ' + str(args.code) if args.code != ROOT else ''})\n\n{text}")
    for failure in failures:
        say(f"FAILED: {failure}")
    results["summary"], results["table_markdown"] = rows_out, text
    if args.quick:  # a smoke run's numbers are not comparable: python -m bench table skips them
        path = args.results_dir / f"broadcast-{datetime.now():%Y%m%d-%H%M%S}-quick.json"
        args.results_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"part": "broadcast", **results}, indent=2, default=str) + "\n")
    else:
        path = write_part(args.results_dir, "broadcast", results)
    say(f"\nresults: {path}")
    return 1 if failures else 0


def _carry_over(results: dict[str, Any], measured: set[str], folder: Path) -> None:
    """A run of some parts only keeps the newest full run's other parts (marked as carried over),
    so that the combined table (``python -m bench table``) still shows every part."""
    found = sorted(folder.glob("broadcast-*.json"), key=lambda path: path.stat().st_mtime, reverse=True)
    for path in found:
        if path.stem.endswith("-quick"):
            continue
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for part in ("million", "pacing", "replies"):
            if part not in measured and part not in results and part in earlier:
                results[part] = earlier[part]
                results["meta"].setdefault("carried_over", {})[part] = earlier.get("meta", {}).get(
                    "carried_over", {}).get(part, f"{path.name} ({earlier.get('meta', {}).get('date', '?')})")


def _failures(results: dict[str, Any]) -> list[str]:
    found: list[str] = []
    big = results.get("million")
    if big and (big["exit_code"] != 0 or big["accepted"] != big["rows"] or big["duplicates"]):
        found.append(f"million: exit {big['exit_code']}, {big['accepted']} accepted of {big['rows']}, "
                     f"{big['duplicates']} texted twice")
    for rate, runs in results.get("pacing", {}).items():
        for run in runs:
            if run["exit_code"] != 0 or run["duplicates"] or run["accepted"] != run["messages"]:
                found.append(f"pacing --rate {rate}: exit {run['exit_code']}, {run['accepted']} accepted of "
                             f"{run['messages']}, {run['duplicates']} texted twice")
    found += results.get("replies", {}).get("failures", [])
    return found
