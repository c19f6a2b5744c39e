"""A broadcast lowers its own CPU priority (issue 17 item 4: replies never wait behind a broadcast).

Real ``python -m bot broadcast`` processes sending to the fake Twilio API: every thread's nice value
is read from ``/proc/PID/task/*/stat`` while they send (on Linux a nice value is a thread's, so a
thread started before the priority was lowered would keep the server's priority).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.broadcast_priority import DEFAULT_NICE
from bot.fake_twilio import FakeTwilio
from bot.settings import SettingsError, load_settings
from tests.conftest import SHIPPED_FLOWS
from tests.test_broadcast import write_csv
from tests.test_outbound import clean_env, outbound_env, output_of, run_bot, sqlite_url

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads nice values from Linux's /proc")


def thread_nices(pid: int) -> list[int]:
    """The nice value of each of the process's threads (field 19 of ``stat``, after the command's name)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # a thread that just ended
            continue
        found.append(int(fields[16]))
    return found


def test_the_setting_and_the_flag_are_checked() -> None:
    assert load_settings({}).broadcast_nice == DEFAULT_NICE == 10
    assert load_settings({"BROADCAST_NICE": " 0 "}).broadcast_nice == 0
    assert load_settings({"BROADCAST_NICE": "19"}).broadcast_nice == 19
    for bad in ("-5", "20", "low", "1.5"):
        with pytest.raises(SettingsError, match=rf"^BROADCAST_NICE must be a whole number from 0 \(leave the priority "
                                                rf"as it is\) to 19 \(the lowest\) \(got '{bad}'\)$"):
            load_settings({"BROADCAST_NICE": bad})


def test_a_broadcast_runs_every_thread_at_its_nice_while_it_sends(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    # (default, BROADCAST_NICE=0, --nice 15 over BROADCAST_NICE=0): what each must run at
    cases = {"default": ({}, [], max(own, DEFAULT_NICE)), "zero": ({"BROADCAST_NICE": "0"}, [], own),
             "flag": ({"BROADCAST_NICE": "0"}, ["--nice", "15"], max(own, 15))}
    fake_twilio.delay = 0.05  # sends in flight: the HTTP client, the store and the event loop all at work
    running: dict[str, tuple[subprocess.Popen[str], Path, str]] = {}
    try:
        for index, (case, (settings, flag, _)) in enumerate(cases.items()):
            numbers = [f"+1555097{index}{n:03d}" for n in range(40)]
            csv_path = write_csv(tmp_path / f"{case}.csv", [{"phone": number, "name": "Kim"} for number in numbers])
            env = outbound_env(fake_twilio, sqlite_url(tmp_path / f"{case}.db"), FLOWS_DIR=str(SHIPPED_FLOWS),
                               BROADCAST_WINDOW="any", **settings)
            log = tmp_path / f"{case}.log"
            with log.open("w") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bot", "broadcast", "--flow", "reminder", "--to", str(csv_path), "--rate",
                     "4", *flag], cwd=tmp_path, env=clean_env(**env), stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, text=True)
            running[case] = (process, log, numbers[0][:9])
        deadline = time.monotonic() + 30
        for case, (process, log, prefix) in running.items():  # each has sent: all its threads have started
            while not any((attempt.to or "").startswith(prefix) for attempt in fake_twilio.created):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
            nices = thread_nices(process.pid)
            assert len(nices) > 1 and set(nices) == {cases[case][2]}, (case, nices, log.read_text())
    finally:
        for process, _, _ in running.values():
            process.kill()
            process.wait()
    said = {case: log.read_text() for case, (_, log, _) in running.items()}
    assert f"CPU priority: nice {max(own, 10)}, below the server's, so replies to texts go first" in said["default"]
    assert f"CPU priority: nice {own}, as started (BROADCAST_NICE=0)" in said["zero"]
    assert f"CPU priority: nice {max(own, 15)}, below the server's" in said["flag"]


def test_a_wrong_nice_flag_is_refused_before_anything_is_sent(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "people.csv", [{"phone": "+15550980001", "name": "Kim"}])
    env = outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db"), FLOWS_DIR=str(SHIPPED_FLOWS),
                       BROADCAST_WINDOW="any")
    refused = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--nice", "-3", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "--nice must be a whole number from 0 (leave the priority as it is) to 19 " \
                                       "(the lowest) (got '-3')" in refused.stderr, output_of(refused)
    assert fake_twilio.attempts == []
