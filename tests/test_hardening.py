"""Issue 11, the security review: one regression test per finding, against real server processes.

Every server here is a real process on 127.0.0.1 (``python server.py`` or ``uvicorn`` with the
factory, as the README documents), in a temporary working directory with every bot setting
removed from the inherited environment; requests are raw sockets or httpx over real TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from bench.servers import free_port
from bot.app import create_app
from bot.flows.loader import load_flows
from bot.settings import Settings, SettingsError
from bot.store import open_store
from bot.types import OutboundMessage, OutboundState
from tests.conftest import ROOT, SHIPPED_FLOWS, RedisServer, replies_of, terminate
from tests.signed_webhooks import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_NUMBER,
    new_message_sid,
    sign,
    signed_request,
    twilio_form,
)
from tests.test_server_process import HELP_TEXT, SHIPPED, clean_env
from tests.test_store import make_sqlite_store, read_only

pytestmark = pytest.mark.slow  # every test starts real server processes

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Launched:
    """A server process started with ``command`` (server.py or uvicorn), output to a file."""

    def __init__(self, cwd: Path, *args: str, uvicorn: bool = False, host: str = "127.0.0.1",
                 **settings: str) -> None:
        self.port = free_port()
        self.cwd = cwd
        if uvicorn:  # the README's line: uvicorn bot.app:app_from_environment --factory
            self.command = [sys.executable, "-m", "uvicorn", "bot.app:app_from_environment", "--factory",
                            "--app-dir", str(ROOT), "--host", host, "--port", str(self.port), *args]
            self.env = clean_env(dict(os.environ), **settings)
        else:
            self.command = [sys.executable, str(ROOT / "server.py"), *args]
            self.env = clean_env(dict(os.environ), HOST=host, PORT=str(self.port), **settings)
        self.process: subprocess.Popen[bytes] | None = None
        self.output = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 20.0) -> Launched:
        self._file = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=self._file,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.stop()}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url + "/healthz", timeout=1)
                return self
            time.sleep(0.05)
        raise AssertionError(f"server did not answer in time:\n{self.stop()}")

    def stop(self) -> str:
        if self.process is not None:
            terminate(self.process)
            self._file.seek(0)
            self.output = self._file.read().decode(errors="replace")
            self._file.close()
            self.process = None
        return self.output

    def __enter__(self) -> Launched:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_once(cwd: Path, *args: str, uvicorn: bool = False, host: str = "127.0.0.1",
             timeout: float = 20, **settings: str) -> subprocess.CompletedProcess[str]:
    """Start a server expecting it to refuse: one that starts instead is killed when ``timeout``
    expires and the test fails on the TimeoutExpired."""
    launched = Launched(cwd, *args, uvicorn=uvicorn, host=host, **settings)
    return subprocess.run(launched.command, cwd=cwd, env=launched.env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def unsigned(base_url: str, body: str = "HELP", path: str = "/sms", **headers: str) -> httpx.Response:
    return httpx.post(base_url + path, content=urlencode(twilio_form(body)).encode(), headers={**FORM, **headers},
                      timeout=10)


def signed_text(base_url: str, body: str, sender: str = "+15551234567", **extra: str) -> list[str]:
    """One signed SMS webhook; the replies of its 200 answer."""
    url = base_url + "/sms"
    content, headers = signed_request(url, twilio_form(body, sender, **extra))
    answer = httpx.post(url, content=content, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return replies_of(answer.text)


def raw_request(port: int, url: str, form: dict[str, str], headers: dict[str, str]) -> bytes:
    """A signed keep-alive POST to /sms as raw bytes (for pipelining and exact head sizes)."""
    body = urlencode(form).encode()
    lines = [b"POST /sms HTTP/1.1", b"Host: 127.0.0.1:%d" % port, b"Content-Type: " + FORM["Content-Type"].encode(),
             b"Content-Length: %d" % len(body), b"X-Twilio-Signature: " + sign(url, form).encode()]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def read_answers(connection: socket.socket, count: int) -> list[tuple[int, str]]:
    """Read ``count`` HTTP/1.1 answers (each with a Content-Length) off a keep-alive connection."""
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = connection.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(buffer) < length:
            chunk = connection.recv(65536)
            assert chunk, "connection closed mid-answer"
            buffer += chunk
        answers.append((status, buffer[:length].decode()))
        buffer = buffer[length:]
    return answers


def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


# -- finding 3: the ASGI app fails open when served the standard way ----------------------------------

def test_finding_3_uvicorn_factory_without_token_or_dev_mode_refuses_to_start(tmp_path: Path) -> None:
    """``uvicorn bot.app:app_from_environment --factory --host 0.0.0.0`` with neither a token nor
    dev mode used to serve unsigned requests; now it stops before it listens, saying why."""
    result = run_once(tmp_path, uvicorn=True, host="0.0.0.0", FLOWS_DIR=str(SHIPPED_FLOWS),
                      STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    assert result.returncode != 0, result.stdout
    assert "error: TWILIO_AUTH_TOKEN is not set" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("token", ["", "   ", "short-secret"])
def test_finding_3_uvicorn_factory_refuses_a_blank_or_short_token(tmp_path: Path, token: str) -> None:
    result = run_once(tmp_path, uvicorn=True, TWILIO_AUTH_TOKEN=token, FLOWS_DIR=str(SHIPPED_FLOWS),
                      STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    assert result.returncode != 0, result.stdout
    assert "error: TWILIO_AUTH_TOKEN" in result.stdout, result.stdout


def test_finding_3_server_py_refuses_a_short_token(tmp_path: Path) -> None:
    result = run_once(tmp_path, TWILIO_AUTH_TOKEN="local-secret", FLOWS_DIR=str(SHIPPED_FLOWS),
                      STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    assert result.returncode == 2, result.stdout
    assert "error: TWILIO_AUTH_TOKEN" in result.stdout and "16 characters" in result.stdout


@pytest.mark.parametrize("launcher", ["server.py --dev", "uvicorn --host 0.0.0.0"])
def test_finding_3_dev_mode_answers_unsigned_requests_only_from_loopback(tmp_path: Path, launcher: str) -> None:
    """Dev mode without a token: a loopback client is answered; a client anywhere else — reaching a
    server bound to every interface, or relayed by a proxy on this machine (ngrok's agent) — gets
    403, whatever address the server was told to listen on."""
    settings = {"FLOWS_DIR": str(SHIPPED_FLOWS), "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    if launcher == "server.py --dev":
        server = Launched(tmp_path, "--dev", **settings)
    else:
        server = Launched(tmp_path, uvicorn=True, host="0.0.0.0", DEV_MODE="1", **settings)
    with server:
        answer = unsigned(server.url)
        assert answer.status_code == 200, answer.text
        assert replies_of(answer.text) == [HELP_TEXT]
        # uvicorn takes the client from X-Forwarded-For when the proxy is on 127.0.0.1
        relayed = unsigned(server.url, **{"X-Forwarded-For": "203.0.113.7"})
        assert relayed.status_code == 403, relayed.text
        assert unsigned(server.url, Forwarded="for=203.0.113.7").status_code == 403
        assert unsigned(server.url, path="/sms/status", **{"X-Forwarded-For": "203.0.113.7"}).status_code == 403
        address = non_loopback_address()
        if launcher != "server.py --dev" and address is not None:
            direct = unsigned(f"http://{address}:{server.port}")
            assert direct.status_code == 403, direct.text
        assert unsigned(server.url).status_code == 200  # loopback still answered
    assert "DEV MODE" in server.output


def test_finding_3_create_app_refuses_settings_that_accept_unsigned_requests(tmp_path: Path) -> None:
    """However the app is built, it never accepts unsigned requests unless dev mode was asked for."""
    flows = load_flows(SHIPPED_FLOWS)
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    for settings in (Settings(store_url=store), Settings(store_url=store, twilio_auth_token="short"),
                     Settings(store_url=store, dev_mode=True, host="0.0.0.0")):
        with pytest.raises(SettingsError):
            create_app(settings, flows)
    create_app(Settings(store_url=store, twilio_auth_token=AUTH_TOKEN), flows)
    create_app(Settings(store_url=store, dev_mode=True), flows)


# -- finding 8: no limit on the request head's size before the signature check -----------------------

def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def send_huge_head(port: int, megabytes: int, outcome: dict[int, tuple[int, bytes]], index: int) -> None:
    """Send a request whose one header is ``megabytes`` long; record how much went out before the
    server stopped reading, and what it answered."""
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
            chunk = b"a" * (1 << 20)
            for _ in range(megabytes):
                connection.sendall(chunk)
                sent += len(chunk)
            connection.sendall(b"\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: what we want
        with contextlib.suppress(OSError):
            while chunk_in := connection.recv(4096):
                answer += chunk_in
    outcome[index] = (sent, answer)


@pytest.mark.parametrize("launcher", ["server.py", "uvicorn --http bot.http_limits:BoundedHttpToolsProtocol"])
def test_finding_8_a_huge_request_head_is_refused_before_it_is_buffered(tmp_path: Path, launcher: str) -> None:
    """Four clients each send a 64 MB header at once: each is answered 431 (or cut off) after the
    first few hundred KiB, and the server's peak memory stays where it was."""
    settings = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "FLOWS_DIR": str(SHIPPED_FLOWS), "RELOAD_FLOWS": "0",
                "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    if launcher == "server.py":
        server = Launched(tmp_path, **settings)
    else:
        server = Launched(tmp_path, "--http", "bot.http_limits:BoundedHttpToolsProtocol", uvicorn=True, **settings)
    with server:
        assert signed_text(server.url, "HELP") == [HELP_TEXT]
        before = peak_rss_kib(server.pid)
        outcome: dict[int, tuple[int, bytes]] = {}
        clients = [threading.Thread(target=send_huge_head, args=(server.port, 64, outcome, n)) for n in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=120)
        growth_mib = (peak_rss_kib(server.pid) - before) / 1024
        for sent, answer in outcome.values():
            assert sent < 16 << 20, f"the server kept reading a {sent >> 20} MB head"
            assert not answer or answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert growth_mib < 16, f"peak RSS grew by {growth_mib:.0f} MiB"
        # A head just over the cap, sent whole and then waited on: the 431 itself arrives.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 40_000 + b"\r\n")
            assert connection.recv(4096).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert signed_text(server.url, "HELP") == [HELP_TEXT]  # and it still serves


def test_finding_8_heads_under_the_cap_large_bodies_and_pipelining_still_work(tmp_path: Path) -> None:
    """The cap counts the head alone: a 20 KiB head, a body of almost MAX_BODY_BYTES in the same
    write, and two requests pipelined in one write are all answered."""
    with Launched(tmp_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN, FLOWS_DIR=str(SHIPPED_FLOWS), RELOAD_FLOWS="0",
                  STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}") as server:
        url = f"http://127.0.0.1:{server.port}/sms"
        padding = {f"X-Padding-{n}": "p" * 1000 for n in range(20)}
        big_form = twilio_form("HELP", Extra="e" * 60_000)
        first = raw_request(server.port, url, twilio_form("HELP"), padding)
        second = raw_request(server.port, url, big_form, {})
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(first + second)
            answers = read_answers(connection, 2)
        assert [status for status, _ in answers] == [200, 200], answers
        assert all(replies_of(body) == [HELP_TEXT] for _, body in answers)
        # The head alone, then the whole body in one later read: that read is not a head's.
        head, body = second.split(b"\r\n\r\n", 1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(head + b"\r\n\r\n")
            time.sleep(0.2)
            connection.sendall(body)
            [(status, text)] = read_answers(connection, 1)
        assert status == 200 and replies_of(text) == [HELP_TEXT], text


# -- finding 9: a read-only or vanished database -------------------------------------------------------

def sqlite_settings(tmp_path: Path) -> dict[str, str]:
    return {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "FLOWS_DIR": str(SHIPPED_FLOWS), "RELOAD_FLOWS": "0",
            "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}


def signed_post(base_url: str, body: str, sender: str, message_sid: str, path: str = "/sms") -> httpx.Response:
    url = base_url + path
    content, headers = signed_request(url, twilio_form(body, sender, message_sid=message_sid))
    return httpx.post(url, content=content, headers=headers, timeout=10)


def healthz(server: Launched) -> httpx.Response:
    return httpx.get(server.url + "/healthz", timeout=10)


def details(server: Launched) -> httpx.Response:
    """Why the store is unhealthy: for operators on the bot's machine (public /healthz says only 503)."""
    return httpx.get(server.url + "/healthz/details", timeout=10)


@pytest.mark.parametrize("launcher", ["server.py", "uvicorn"])
def test_finding_9_an_unwritable_store_refuses_start_up_naming_the_file_and_the_fix(tmp_path: Path,
                                                                                   launcher: str) -> None:
    path = tmp_path / "bot.db"
    asyncio.run(make_sqlite_store(path))
    with read_only(path):
        result = run_once(tmp_path, uvicorn=launcher == "uvicorn", **sqlite_settings(tmp_path))
    assert result.returncode != 0, result.stdout
    assert f"error: the SQLite store {path} cannot be written" in result.stdout, result.stdout
    assert "writable" in result.stdout and "STORE_URL" in result.stdout
    assert "Traceback" not in result.stdout


def test_finding_9_a_failed_store_write_is_503_with_retry_after_and_healthz_says_why(tmp_path: Path) -> None:
    """The disk refuses every write (here: a file-size limit of one byte on the server process):
    STOP gets 503 + Retry-After, so Twilio's retry finds it again, not 500; /healthz is 503 and
    /healthz/details says why; once writes work again the same retried STOP is recorded."""
    with Launched(tmp_path, **sqlite_settings(tmp_path)) as server:
        assert signed_text(server.url, "HELP", "+15550001234") == [HELP_TEXT]
        assert healthz(server).status_code == 200
        soft, hard = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (1, hard))
        try:
            stop = signed_post(server.url, "STOP", "+15550001234", "SM" + "5" * 32)
            assert stop.status_code == 503, stop.text
            assert stop.headers["retry-after"].isdigit()
            health = healthz(server)
            assert health.status_code == 503, health.text
            assert health.json() == {"status": "unavailable"}
            assert str(tmp_path / "bot.db") in details(server).json()["store"], details(server).text
        finally:
            resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (soft, hard))
        assert healthz(server).status_code == 200
        retried = signed_post(server.url, "STOP", "+15550001234", "SM" + "5" * 32)
        assert retried.status_code == 200 and replies_of(retried.text) == [SHIPPED.program.opt_out]
        assert signed_text(server.url, "hello", "+15550001234") == []  # opted out, and it stuck


def test_finding_9_a_deleted_store_file_is_reported_and_not_written_to(tmp_path: Path) -> None:
    with Launched(tmp_path, **sqlite_settings(tmp_path)) as server:
        assert signed_text(server.url, "HELP", "+15550001234") == [HELP_TEXT]
        for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        assert healthz(server).status_code == 503
        health = details(server)
        assert health.status_code == 503 and "deleted" in health.json()["store"], health.text
        stop = signed_post(server.url, "STOP", "+15550001234", "SM" + "6" * 32)
        assert stop.status_code == 503 and "retry-after" in stop.headers, stop.text


def test_finding_9_a_store_made_read_only_while_running_is_reported(tmp_path: Path) -> None:
    with Launched(tmp_path, **sqlite_settings(tmp_path)) as server:
        assert signed_text(server.url, "HELP") == [HELP_TEXT]
        with read_only(tmp_path / "bot.db"):
            assert healthz(server).status_code == 503
            health = details(server)
            assert health.status_code == 503 and "read-only" in health.json()["store"], health.text
        assert healthz(server).status_code == 200


def test_finding_9_healthz_reports_redis_down(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)  # its own, to stop it
    try:
        settings = {**sqlite_settings(tmp_path), "STORE_URL": redis.url}
        with Launched(tmp_path, **settings) as server:
            assert healthz(server).status_code == 200
            assert signed_text(server.url, "HELP") == [HELP_TEXT]
            redis.stop()
            assert healthz(server).status_code == 503
            health = details(server)
            assert health.status_code == 503 and "Redis" in health.json()["store"], health.text
            stop = signed_post(server.url, "STOP", "+15550001234", "SM" + "7" * 32)
            assert stop.status_code == 503 and "retry-after" in stop.headers, stop.text
    finally:
        redis.stop()


# -- finding 15: status callbacks on /sms, the pid (never on /healthz), the demo service in production ----

def status_callback(to: str, status: str, error_code: str = "", message_sid: str | None = None) -> dict[str, str]:
    """The form Twilio posts when a message's status changes (to a StatusCallback URL, or to /sms
    when that is what the number or Messaging Service was given)."""
    sid = message_sid or new_message_sid()
    form = {"SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": to, "MessageSid": sid,
            "AccountSid": ACCOUNT_SID, "From": BOT_NUMBER, "ApiVersion": "2010-04-01",
            "MessagingServiceSid": "MG" + "1" * 32}
    if error_code:
        form["ErrorCode"] = error_code
    return form


async def sent_earlier(path: Path, message: OutboundMessage) -> None:
    """Record a message as the bot's Outbox records one Twilio accepted."""
    store = open_store(f"sqlite:///{path}")
    await store.save_outbound(message)
    await store.close()


def test_finding_15a_a_status_callback_posted_to_sms_is_recorded_not_answered(tmp_path: Path) -> None:
    """Not a text from the bot's own number: the delivery is recorded as /sms/status records it,
    21610 teaches the opt-out, and the answer is empty TwiML."""
    recipient, sid = "+15550002222", "SM" + "8" * 32
    asyncio.run(sent_earlier(tmp_path / "bot.db", OutboundMessage("notify|1", recipient, "Your order shipped",
                                                                    state=OutboundState.ACCEPTED, sid=sid)))
    with Launched(tmp_path, **sqlite_settings(tmp_path)) as server:
        url = server.url + "/sms"
        for status, code in [("sent", ""), ("delivered", ""), ("undelivered", "21610")]:
            form = status_callback(recipient, status, code, message_sid=sid)
            content, headers = signed_request(url, form)
            answer = httpx.post(url, content=content, headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("text/xml")
            assert replies_of(answer.text) == [], answer.text
        assert signed_text(server.url, "hello", recipient) == []  # 21610 learnt: opted out
        assert signed_text(server.url, "HELP", "+15550003333") == [HELP_TEXT]
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.db")) as db:
        senders = {sender for (sender,) in db.execute("SELECT sender FROM conversations")}
        senders |= {sender for (sender,) in db.execute("SELECT sender FROM processed")}
        [(record,)] = db.execute("SELECT record FROM outbound WHERE sid = ?", (sid,)).fetchall()
    assert BOT_NUMBER not in senders  # no conversation with ourselves
    assert json.loads(record)["status"] == "undelivered" and json.loads(record)["error_code"] == "21610"


def test_finding_15b_healthz_does_not_show_the_pid(tmp_path: Path) -> None:
    with Launched(tmp_path, **sqlite_settings(tmp_path)) as server:
        health = healthz(server)
        assert health.status_code == 200 and health.json() == {"status": "ok"}, health.json()
        assert details(server).json()["pid"] == server.pid  # which process: for this machine only
    with Launched(tmp_path, "--dev", FLOWS_DIR=str(SHIPPED_FLOWS), STORE_URL=f"sqlite:///{tmp_path / 'dev.db'}",
                  RELOAD_FLOWS="0") as dev:
        assert healthz(dev).json() == {"status": "ok"}  # dev mode too


def test_finding_15c_the_demo_order_service_is_served_only_in_dev_mode_or_when_asked_for(tmp_path: Path) -> None:
    order = "/demo/orders/123456"
    with Launched(tmp_path, **sqlite_settings(tmp_path)) as production:
        assert httpx.get(production.url + order, timeout=10).status_code == 404
        # The shipped STATUS flow then finds no order service: it says so instead of a demo answer.
        signed_text(production.url, "STATUS", "+15550004444")
        assert "is shipped" not in " ".join(signed_text(production.url, "123456", "+15550004444"))
    with Launched(tmp_path, **sqlite_settings(tmp_path), DEMO_ORDERS="1") as asked:
        assert httpx.get(asked.url + order, timeout=10).json()["status"] == "shipped"
        signed_text(asked.url, "STATUS", "+15550005555")
        assert signed_text(asked.url, "123456", "+15550005555")[0].startswith("Order 123456 is shipped.")
    with Launched(tmp_path, "--dev", FLOWS_DIR=str(SHIPPED_FLOWS), STORE_URL=f"sqlite:///{tmp_path / 'dev.db'}",
                  RELOAD_FLOWS="0") as dev:
        assert httpx.get(dev.url + order, timeout=10).status_code == 200
