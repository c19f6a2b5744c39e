"""The moving parts of ``python -m bench broadcast``: a CSV, the fake Twilio API in a process of its
own, and ``python -m bot broadcast`` run as an operator runs it, measured by the kernel.

A broadcast is a real ``python -m bot broadcast`` process (pinned with ``taskset``), its settings
from a clean environment: the fake API's address and credentials, a SQLite store, the shipped
``reminder`` flow, ``BROADCAST_WINDOW=any`` (a benchmark must not wait for anyone's morning). Its
CPU (user + system) comes from ``wait4`` when it exits; its peak memory is the kernel's high-water
mark of its resident set, ``VmHWM`` in ``/proc/PID/status``, read every quarter second while it runs
(it only grows; ``wait4``'s ``ru_maxrss`` would not do: Linux carries into it the RSS of the parent
it was forked from, the bench with its request pools). What Twilio
accepted is what the fake counted (``bench/broadcast_fake.py``); when the sends went out, from the
broadcast's own records in the store (each ``accepted`` record's time).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import BOT_SETTINGS, ROOT, cpu_of, free_port
from bot.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM

FLOW = "reminder"  # the shipped flows/reminder.yaml: name and date columns, then YES/NO
FIRST_RECIPIENT = 5_000_000  # recipients' numbers start here: never one of the webhook load's senders (2,000,000+)


def recipient_number(index: int) -> str:
    """A bench recipient: +1 555 and seven digits (possible, never assigned: nobody's phone)."""
    return f"+1555{FIRST_RECIPIENT + index:07d}"


def write_csv(path: Path, first: int, count: int) -> Path:
    """``count`` recipients from index ``first``, with the columns the reminder flow fills in."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("phone,name,date\n")
        step = 10_000
        for start in range(first, first + count, step):
            handle.write("".join(f"{recipient_number(index)},Person {index},\"Tue {index % 28 + 1} Dec, 10:00\"\n"
                                 for index in range(start, min(start + step, first + count))))
    return path


class FakeApi:
    """``bench/broadcast_fake.py`` on ``core``: started, then stopped for its counts."""

    def __init__(self, workdir: Path, core: str, delay: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = workdir / f"fake-{self.port}.json"
        self.log = workdir / f"fake-{self.port}.log"
        env = {**clean_environment(), "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["taskset", "-c", core, sys.executable, "-m", "bench.broadcast_fake", "--port", str(self.port),
                 "--out", str(self.out), "--delay", str(delay)],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the fake Twilio API did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> dict[str, Any]:
        """Its counts, and the CPU it used."""
        cpu = cpu_of(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("the fake Twilio API did not stop") from None
        counts: dict[str, Any] = json.loads(self.out.read_text())
        counts["cpu_seconds"] = cpu
        return counts


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def clean_environment() -> dict[str, str]:
    """The inherited environment without anything the bot reads as a setting."""
    return {name: value for name, value in os.environ.items()
            if name not in BOT_SETTINGS and not name.startswith(("TWILIO_", "BROADCAST_"))}


@dataclass
class Broadcast:
    """One ``python -m bot broadcast`` run and what the kernel says it cost."""

    exit_code: int
    wall_seconds: float
    cpu_seconds: float  # user + system, the whole process (reading the CSV, the sends, start-up)
    peak_rss_mb: float  # VmHWM: the kernel's high-water mark of the resident set
    summary: str  # the report's first line
    stdout: str
    stderr_tail: str


def run_broadcast(workdir: Path, csv_path: Path, store: Path, fake: FakeApi, core: str, rate: str,
                  in_flight: int | None = None, root: Path = ROOT) -> Broadcast:
    """``python -m bot broadcast --flow reminder --to CSV --rate RATE`` on ``core``, to its end."""
    env = {**clean_environment(), "PYTHONPATH": str(root), "STORE_URL": f"sqlite:///{store}",
           "FLOWS_DIR": str(ROOT / "flows"), "BROADCAST_WINDOW": "any", "TWILIO_API_BASE_URL": fake.url,
           "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
           "TWILIO_FROM": DEFAULT_FROM, "LOG_LEVEL": "warning"}
    command = ["taskset", "-c", core, sys.executable, "-m", "bot", "broadcast", "--flow", FLOW, "--to", str(csv_path),
               "--rate", rate] + (["--in-flight", str(in_flight)] if in_flight else [])
    out, err = workdir / f"broadcast-{time.monotonic_ns()}.out", workdir / f"broadcast-{time.monotonic_ns()}.err"
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL)
        process.returncode, cpu, peak = wait_measuring(process.pid)
    wall = time.perf_counter() - started
    text = out.read_text()
    return Broadcast(process.returncode, wall, cpu, peak, text.splitlines()[0] if text else "", text,
                     err.read_text()[-3000:])


def wait_measuring(pid: int) -> tuple[int, float, float]:
    """Wait for the process to end: its exit code, CPU seconds (user + system) and peak RSS (VmHWM,
    MB). ``taskset`` execs the command: the pid is the broadcast's own."""
    peak = 0.0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, peak
        try:
            found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
        except OSError:
            found = None
        if found:
            peak = max(peak, int(found.group(1)) / 1024)
        time.sleep(0.25)


def sent_times(store: Path, name_like: str = "%") -> list[float]:
    """When each message of the store's broadcasts was accepted (its record's time), in order."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT json_extract(record, '$.updated_at') FROM outbound WHERE broadcast LIKE ? "
                          "AND json_extract(record, '$.state') = 'accepted' ORDER BY 1", (name_like,)).fetchall()
    return [at for (at,) in rows]


def states(store: Path) -> dict[str, int]:
    """The store's outbound records by state."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT json_extract(record, '$.state'), COUNT(*) FROM outbound GROUP BY 1").fetchall()
    return {state: count for state, count in rows}


def achieved_rate(times: list[float]) -> float | None:
    """Messages a second between the first and the last accepted."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])
