"""``python -m bench broadcast --quick`` as a user runs it: every part runs, the table and the JSON
``python -m bench table`` reads come out, nobody is texted twice. A smoke run: its figures are not
checked (never a timed test), only that each was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.broadcast_bench import QUICK_ROWS, summary_rows

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # real processes: broadcasts, the fake API, a bot server under load


def test_quick_broadcast_bench_runs_every_part_and_reports(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "broadcast", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    print(done.stdout[-3000:])
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a target missed on a busy machine
    assert "FAILED" not in done.stdout, done.stdout  # nobody texted twice, every broadcast ended well
    [path] = tmp_path.glob("broadcast-*-quick.json")
    data = json.loads(path.read_text())
    assert data["part"] == "broadcast" and data["meta"]["commit"]
    assert data["million"]["accepted"] == data["million"]["rows"] == QUICK_ROWS and data["million"]["duplicates"] == 0
    assert set(data["pacing"]) == {"10", "100", "unlimited"}
    assert all(run["duplicates"] == 0 and run["accepted"] == run["messages"] for runs in data["pacing"].values()
               for run in runs)
    [round_] = data["replies"]["rounds"]
    assert round_["broadcast"]["accepted"] == round_["broadcast"]["recipients"]
    measures = [entry["measure"] for entry in data["summary"]]
    assert any("peak memory" in measure for measure in measures)
    assert any("webhook p99 during a broadcast" in measure for measure in measures)
    assert data["summary"] == summary_rows(data)
    assert f"| broadcast of {QUICK_ROWS:,} rows, unpaced: peak memory of its process (VmHWM, MB) |" in done.stdout
