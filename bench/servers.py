"""The servers under test, as real processes: the bot as shipped, the naive reference, the floor.

Each runs pinned with ``taskset`` on the server core(s), its output redirected to a file (never
a pipe a chatty server could block on), in a temporary working directory so no stray ``.env``
changes its settings.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

#: Every setting bot/settings.py reads (and ORDERS_API, which flows may use): removed from the
#: inherited environment so the bot runs with its defaults plus exactly what the bench sets.
BOT_SETTINGS = ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT",
                "DEV_MODE", "MAX_BODY_BYTES", "LOG_LEVEL", "RELOAD_FLOWS", "WORKERS", "RETENTION",
                "ORDERS_API")

KINDS = ("bot", "ref", "floor")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    kind: str  # bot | ref | floor
    port: int
    workdir: Path
    cores: str  # taskset list, e.g. "0" or "0,1"
    workers: int = 1
    store_path: Path | None = None  # bot only
    token: str = ""
    name: str = ""
    process: subprocess.Popen[bytes] | None = None
    store_url: str | None = None  # bot only: another store than the SQLite file at store_path (Redis)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.kind}-w{self.workers}"
        self.log_path = self.workdir / f"{self.name}-{time.monotonic_ns()}.log"

    def command(self) -> list[str]:
        pin = ["taskset", "-c", self.cores]
        if self.kind == "bot":
            return [*pin, sys.executable, str(ROOT / "server.py")]
        app = {"ref": "bench.naive_app:app", "floor": "bench.floor_app:app"}[self.kind]
        return [*pin, sys.executable, "-m", "uvicorn", app, "--app-dir", str(ROOT), "--host", "127.0.0.1",
                "--port", str(self.port), "--http", "httptools", "--loop", "uvloop", "--no-access-log",
                "--workers", str(self.workers), "--log-level", "info"]  # info: startup lines only (no access log)

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in BOT_SETTINGS}
        env["TWILIO_AUTH_TOKEN"] = self.token
        env.pop("PYTHONPATH", None)
        if self.kind == "bot":
            assert self.store_path is not None
            env.update({
                "PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                "STORE_URL": self.store_url or f"sqlite:///{self.store_path}",
                "FLOWS_DIR": str(BENCH / "flows"),
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WORKERS": str(self.workers),
            })
        return env

    def start(self, timeout: float = 30.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(self.command(), cwd=self.workdir, env=self.environment(),
                                            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if self._answers():
                if self.workers > 1:
                    self._wait_for_workers(deadline)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s:\n{self.output()[-3000:]}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return connection.recv(16).startswith(b"HTTP/1.1 ")
        except OSError:
            return False

    def _wait_for_workers(self, deadline: float) -> None:
        """uvicorn's supervisor listens before its workers have started; wait for all of them."""
        while time.monotonic() < deadline:
            started = self.output().count(b"Application startup complete")
            if len(self.worker_pids()) >= self.workers and started >= self.workers:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name}: not all {self.workers} workers started:\n{self.output()[-3000:]!r}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The processes serving requests: the server itself, or its uvicorn workers."""
        children = _children(self.pid)
        # uvicorn's multiprocess supervisor also starts a resource tracker; workers are the rest.
        workers = [pid for pid in children if b"resource_tracker" not in _cmdline(pid)]
        return workers if self.workers > 1 else [self.pid]

    def rss_mb(self) -> tuple[float, float]:
        """VmRSS and VmHWM (peak) of the serving process(es), in MB (summed over workers)."""
        rss = peak = 0.0
        for pid in self.worker_pids():
            status = _read(f"/proc/{pid}/status")
            rss += _kb(status, "VmRSS") / 1024
            peak += _kb(status, "VmHWM") / 1024
        return rss, peak

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole server (supervisor and workers)."""
        total = 0.0
        for pid in {self.pid, *_children(self.pid)}:
            total += cpu_of(pid)
        return total

    def runqueue_seconds(self) -> float:
        """How long the server's threads were ready to run but waited for a CPU (schedstat)."""
        return sum(runqueue_seconds(pid) for pid in {self.pid, *_children(self.pid)})

    def output(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only what it started
            self.process.wait(timeout=5)


# -- /proc helpers ---------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read()
    except OSError:
        return b""


def _kb(status: str, name: str) -> float:
    match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = _read(str(task / "children"))
        found += [int(child) for child in text.split()]
    return found


def cpu_of(pid: int) -> float:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the bot's routing trace -----------------------------------------------------------------------

_ROUTE = re.compile(r" bot\.route: from=\S+ sid=\S+ (.*) replies=\d+ ms=([\d.]+)$")


@dataclass
class RouteCounts:
    """What the bot's one-line-per-message trace says it did, by rule of the first step."""

    rules: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # ERROR/CRITICAL/Traceback lines
    warnings: int = 0

    @property
    def messages(self) -> int:
        return sum(self.rules.values())

    @property
    def off_script(self) -> int:
        """Messages the benchmark conversation did not expect: fallbacks, otherwise, duplicates."""
        return sum(n for rule, n in self.rules.items() if rule in ("fallback", "otherwise", "duplicate"))


def route_counts(log: bytes) -> RouteCounts:
    counts = RouteCounts()
    for raw in log.decode("utf-8", "replace").splitlines():
        match = _ROUTE.search(raw)
        if match:
            route = match.group(1)
            if route.startswith("duplicate MessageSid"):
                counts.rules["duplicate"] += 1
                continue
            rule = re.search(r"\(([^)]*)\)", route)
            name = rule.group(1) if rule else route
            counts.rules[{"/^\\d{6}$/": "order number"}.get(name, name)] += 1
        elif " ERROR " in raw or " CRITICAL " in raw or raw.startswith("Traceback"):
            counts.errors.append(raw)
        elif " WARNING " in raw:
            counts.warnings += 1
    return counts


# -- the machine's other load ----------------------------------------------------------------------

def cpu_pressure() -> float | None:
    """Seconds for which some task waited for a CPU (Linux PSI), or None without /proc/pressure.

    Pinned as they are, the server and the load generator never wait for each other; waiting
    means other work on this (shared) machine competed with them during a measurement.
    """
    for line in _read("/proc/pressure/cpu").splitlines():
        if line.startswith("some "):
            return int(line.rsplit("total=", 1)[1]) / 1e6
    return None


def runqueue_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        fields = _read(str(task / "schedstat")).split()
        if len(fields) >= 2:
            total += int(fields[1])
    return total / 1e9


def waited(before: float | None, after: float | None, wall: float) -> float | None:
    if before is None or after is None or wall <= 0:
        return None
    return (after - before) / wall
