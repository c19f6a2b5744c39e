"""A broadcast killed (kill -9) at random points and run again until done: everyone texted exactly
once, except those reported in doubt, who are never texted again (issue 17, item 4).

Real processes: ``python -m bot broadcast`` as an operator runs it, several sends in flight at once,
killed with SIGKILL at random moments (some by the clock, landing in start-up, in the first pass over
the CSV or among the sends; some once the fake API has accepted a random number more), then the very
same command again. The fake Twilio API (bot/fake_twilio/) answers through the real SDK, each answer
a little late so that kills also land while Twilio is being asked; what it accepted is what counts.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.fake_twilio import FakeTwilio
from tests.conftest import SHIPPED_FLOWS
from tests.test_broadcast import default_name, look, operator_opt_out, write_csv
from tests.test_outbound import clean_env, outbound_env, output_of, run_bot, sqlite_url

KILLS = 8


@pytest.mark.slow  # kill -9 of real broadcast processes, eight times, then a resume
def test_killed_at_random_points_then_resumed_texts_everyone_once(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    rng = random.Random(1704)
    db = tmp_path / "bot.db"
    numbers = [f"+1555091{i:04d}" for i in range(1000)]
    opted_out = numbers[7]
    rows = [{"phone": number, "name": f"P{i}", "date": "Fri 13 Dec"} for i, number in enumerate(numbers)]
    rows[50:50] = [{"phone": "12345", "name": "Typo"}, {"phone": numbers[3], "name": "P3 again"}]
    csv_path = write_csv(tmp_path / "people.csv", rows)
    name = default_name("reminder", csv_path)
    look(db, lambda store: store.set_consent(operator_opt_out(opted_out)))
    fake_twilio.delay = 0.01  # each answer a moment late: some kills land while Twilio is being asked
    env = outbound_env(fake_twilio, sqlite_url(db), FLOWS_DIR=str(SHIPPED_FLOWS), BROADCAST_WINDOW="any")
    command = [sys.executable, "-m", "bot", "broadcast", "--flow", "reminder", "--to", str(csv_path), "--rate", "150"]

    kills: list[str] = []
    for attempt in range(KILLS):
        accepted_before = len(fake_twilio.created)
        with (tmp_path / f"run-{attempt}.log").open("w") as log:
            process = subprocess.Popen(command, cwd=tmp_path, env=clean_env(**env), stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                if attempt % 2 == 0:  # by the clock: start-up, the first pass over the CSV, or the sends
                    time.sleep(rng.uniform(0.2, 2.5))
                else:  # once Twilio accepted a few more
                    more = rng.randint(1, 60)
                    deadline = time.monotonic() + 20
                    while len(fake_twilio.created) < accepted_before + more and process.poll() is None:
                        assert time.monotonic() < deadline, (tmp_path / f"run-{attempt}.log").read_text()
                        time.sleep(0.002)
                if process.poll() is None:  # (a run may end before its kill: nothing left to send)
                    os.kill(process.pid, signal.SIGKILL)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)
        ending = "killed" if process.returncode == -signal.SIGKILL else f"ended by itself ({process.returncode})"
        kills.append(f"run {attempt}: {len(fake_twilio.created) - accepted_before} accepted, then {ending}")
    print("\n" + "\n".join(kills))

    finished = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "150", cwd=tmp_path, env=env)
    print(finished.stdout)
    accepted = len(fake_twilio.created)
    again = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "150", cwd=tmp_path, env=env)

    per_number = Counter(attempt.to for attempt in fake_twilio.created)
    records = {record.to: record for record in look(db, lambda store: store.broadcast_messages(name))}  # type: ignore[attr-defined]
    doubtful = {number for number, record in records.items() if record.state == "sending"}
    print(f"accepted {len(fake_twilio.created)} for {len(per_number)} numbers; in doubt {len(doubtful)}")

    # nobody texted twice; everyone else texted exactly once, and recorded as accepted
    assert max(per_number.values()) == 1, [number for number, count in per_number.items() if count > 1]
    assert opted_out not in per_number and records[opted_out].state == "skipped"
    expected = set(numbers) - {opted_out}
    assert set(per_number) <= expected
    assert {number for number in expected if per_number[number] == 1} | doubtful == expected
    assert all(records[number].state == "accepted" for number in expected - doubtful)
    assert sum(1 for kill in kills if "killed" in kill) >= KILLS - 1, kills  # (the last may find nothing left)

    # the last run reports the doubtful ones, by number, and sends none of them
    assert finished.returncode == (1 if doubtful else 0), output_of(finished)
    summary = re.fullmatch(r"requested 1002: sent (\d+)(?: \(\+(\d+) sent by an earlier run\))?, skipped 3, "
                           r"failed 0, in doubt (\d+)", finished.stdout.splitlines()[0])
    assert summary is not None, output_of(finished)
    sent, before, in_doubt = int(summary.group(1)), int(summary.group(2) or 0), int(summary.group(3))
    assert (sent + before, in_doubt) == (len(expected) - len(doubtful), len(doubtful))
    assert all(number in finished.stdout for number in doubtful)
    assert "  skipped, duplicate row: 1" in finished.stdout and "  skipped, opted out: 1" in finished.stdout
    # and once more: nothing left to send, the same counts
    assert again.stdout.splitlines()[0] == (f"requested 1002: sent 0 (+{len(expected) - len(doubtful)} sent by an "
                                            f"earlier run), skipped 3, failed 0, in doubt {len(doubtful)}"), \
        output_of(again)
    assert len(fake_twilio.created) == accepted
