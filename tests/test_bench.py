"""The benchmark runs: ``python -m bench --quick`` as a user would, as a subprocess.

Benchmarks are not unit tests: this asserts only that the run completes, prints its table and
exits 0 (every request answered 2xx, the conversations walked), never a timing. Throughput uses
wrk when it is installed and the Python generator otherwise; where wrk is installed the Python
generator gets its own quick run, so both paths stay working.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # the benchmark's --quick run: real servers under load

TABLE_HEADER = "| measure | bot | naive reference | bot ÷ reference | target | |"


def run_bench(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "--quick", "--results-dir", str(tmp_path), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


EVERY_MEASURE = ("throughput, 1 worker on 1 core", "latency p99 @ 500 req/s", "scaling, 2 workers",
                 "stored conversations: p99", "engine alone", "request-head cap", "consent reading", "routing log line")


def assert_reported(done: subprocess.CompletedProcess[str], tmp_path: Path,
                    measures: tuple[str, ...] = EVERY_MEASURE) -> dict:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert TABLE_HEADER in done.stdout
    for measure in measures:
        assert measure in done.stdout
    results = list(tmp_path.glob("bench-*-quick.json"))
    assert len(results) == 1
    data = json.loads(results[0].read_text())
    assert data["failures"] == []
    assert data["summary"] and data["table_markdown"].startswith(TABLE_HEADER)
    return data


def test_quick_benchmark_runs_and_reports(tmp_path: Path) -> None:
    done = run_bench(tmp_path)
    data = assert_reported(done, tmp_path)
    # The results part, small, then every part's newest rows in one table
    results = subprocess.run([sys.executable, "-m", "bench", "results", "--runs", "2000", "--turns", "60",
                              "--rounds", "1", "--results-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert results.returncode == 0, results.stdout[-3000:] + results.stderr[-3000:]
    table = subprocess.run([sys.executable, "-m", "bench", "table", "--quick", "--results-dir", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "| **the bot on SQLite (the default) against the naive handler** |" in table.stdout
    assert "throughput, 1 worker on 1 core" in table.stdout
    assert "a flow's results on 2,000 runs, sqlite" in table.stdout
    assert "not measured yet (`python -m bench broadcast`)" in table.stdout or "broadcast" in table.stdout
    if shutil.which("wrk") is None:
        assert "wrk is not installed" in done.stdout  # and says so in the output
        assert data["meta"]["throughput_generator"] == "python"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="without wrk the test above already used the Python generator")
def test_quick_benchmark_with_the_python_generator(tmp_path: Path) -> None:
    """Only the part the generator measures (``--parts throughput``): the table has its rows and no other."""
    done = run_bench(tmp_path, "--generator", "python", "--parts", "throughput")
    data = assert_reported(done, tmp_path, ("throughput, 1 worker on 1 core", "stack floor"))
    assert data["meta"]["throughput_generator"] == "python" and data["meta"]["parts"] == ["throughput"]
    assert not any(measure in done.stdout for measure in EVERY_MEASURE[1:])
    assert [path.name.endswith("-partial-quick.json") for path in tmp_path.iterdir()] == [True]


def test_the_bench_refuses_an_unknown_part(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--parts", "throughput,speed")
    assert done.returncode == 2 and "--parts: unknown part(s): speed (choose from engine, metrics" in done.stderr


def test_the_redis_path_bench_reads_redis_as_it_runs(tmp_path: Path) -> None:
    """``python -m bench redis`` starts its own Redis (AOF everysec) and reads the commands a run
    made from INFO commandstats; the measurement itself is run by hand (minutes, not a test)."""
    from bench.redis_path import Redis

    redis = Redis(tmp_path, "0")
    try:
        assert redis.command("PING") == "+PONG"
        assert "aof_enabled:1" in redis.command("INFO", "persistence")
        before = redis.commandstats()
        for _ in range(3):
            redis.command("SET", "k", "v")
        assert redis.commandstats()["set"] - before.get("set", 0) == 3
    finally:
        redis.stop()


def test_the_redis_path_bench_runs_and_reports(tmp_path: Path) -> None:
    """``python -m bench redis --quick``: every configuration answered 2xx, the table, the per-phase
    trips, and the JSON whose summary rows ``python -m bench`` folds into its table (never a timing)."""
    done = subprocess.run([sys.executable, "-m", "bench", "redis", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert "| Redis: throughput, 1 worker on 1 core (req/s) |" in done.stdout
    [results] = tmp_path.glob("redis-*-quick.json")
    data = json.loads(results.read_text())
    assert data["failures"] == [] and data["meta"]["redis_core"]
    assert {"bot-w1", "ref-w1", "bot-w2", "ref-w2"} <= set(data["rows"])
    assert set(data["trips"]["bot"]["phases"]) == {"lock", "snapshot", "commit", "release"}
    measures = [row["measure"] for row in data["summary"]]
    assert "Redis: scaling, 2 workers ÷ 1 worker" in measures

