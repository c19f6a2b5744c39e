"""``python server.py`` as a user runs it: real process, real HTTP on 127.0.0.1, signed requests.

Every server runs with its working directory in a temporary folder (so no stray ``.env`` can
change its settings) and with every setting the bot reads removed from the inherited
environment, so what a developer exported in their shell cannot change the outcome.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from bench.servers import free_port
from bot.flows.loader import load_flows
from tests.conftest import (
    PROGRAM_YAML,
    ROOT,
    SHIPPED_FLOWS,
    ServerProcess,
    replies_of,
    terminate,
    write_flows,
)
from tests.signed_webhooks import AUTH_TOKEN, sign, signed_request, twilio_form

#: Everything bot.settings (and the shipped flows, via ORDERS_API) read from the environment.
SETTING_NAMES = ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT",
                 "DEV_MODE", "MAX_BODY_BYTES", "LOG_LEVEL", "ORDERS_API", "DEMO_ORDERS")

SERVER_SCRIPT = str(ROOT / "server.py")
SHIPPED = load_flows(SHIPPED_FLOWS)
HELP_TEXT = SHIPPED.program.help
ASK_NUMBER = "What's your order number? (6 digits, like 123456)"


# -- helpers ----------------------------------------------------------------------------------

def clean_env(base: dict[str, str], **settings: str) -> dict[str, str]:
    """``base`` without any bot setting, plus exactly the ``settings`` given."""
    env = {name: value for name, value in base.items() if name not in SETTING_NAMES}
    env.update(settings)
    return env


def server_process(cwd: Path, **settings: str) -> ServerProcess:
    """A ServerProcess in ``cwd`` whose environment holds only the bot settings given here
    (plus the HOST/PORT it picks itself unless ``settings`` overrides HOST)."""
    server = ServerProcess({}, cwd=cwd)
    server.env = clean_env(server.env, HOST="127.0.0.1", PORT=str(server.port), **settings)
    return server


def stop(server: ServerProcess) -> str:
    """Stop the server, close its output pipe, and return what it printed."""
    process = server.process
    output = server.stop()
    if process is not None and process.stdout is not None:
        process.stdout.close()
    return output


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        server.start()
    except BaseException:
        stop(server)
        raise
    try:
        yield server
    finally:
        server.output = stop(server)  # type: ignore[attr-defined]


def run_server_once(cwd: Path, *args: str, timeout: float = 15,
                    **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``python server.py`` expecting it to refuse to start (a server that does start is
    killed when the timeout expires, and the test fails on the TimeoutExpired)."""
    env = clean_env(dict(os.environ), PORT=str(free_port()), **settings)
    return subprocess.run([sys.executable, SERVER_SCRIPT, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def text(server: ServerProcess, body: str, sender: str = "+15551234567", **form_extra: str) -> list[str]:
    """Send one signed SMS webhook to the running server; return the replies."""
    url = server.url + "/sms"
    content, headers = signed_request(url, twilio_form(body, sender, **form_extra))
    response = httpx.post(url, content=content, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return replies_of(response.text)


def raw_status(port: int, request: bytes) -> int:
    """Send raw bytes over HTTP/1.1 and return the status code of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                break
            received += chunk
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), f"not an HTTP answer: {received[:200]!r}"
    return int(status_line.split()[1])


def post_bytes(port: int, body: bytes, *, host: bytes | None = None,
               content_type: bytes = b"application/x-www-form-urlencoded",
               headers: dict[bytes, bytes] | None = None, method: bytes = b"POST") -> bytes:
    """A raw HTTP/1.1 request to /sms (raw, so headers can hold what a client library refuses)."""
    lines = [method + b" /sms HTTP/1.1", b"Host: " + (host if host is not None else b"127.0.0.1:%d" % port),
             b"Content-Type: " + content_type, b"Content-Length: %d" % len(body), b"Connection: close"]
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# -- a signed conversation over real HTTP, across a restart ----------------------------------

@pytest.mark.slow  # two real server processes in turn, one stopped mid-conversation
def test_status_conversation_survives_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    settings = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": store, "FLOWS_DIR": str(SHIPPED_FLOWS),
                "DEMO_ORDERS": "1"}  # the STATUS flow looks orders up in the demo service
    sender = "+15557654321"

    first = server_process(tmp_path, **settings)
    with running(first):
        assert text(first, "STATUS", sender) == [ASK_NUMBER]
    assert first.process is None  # terminated
    assert "Traceback" not in first.output

    second = server_process(tmp_path, **settings)
    with running(second):
        replies = text(second, "123456", sender)
        # The demo order service (served by the bot itself) answered the flow's fetch step.
        assert replies == ["Order 123456 is shipped. It's on its way and should arrive in 2-3 days."]
        # The flow ended after answering: the next number is not taken as an order.
        assert text(second, "123456", sender) == [SHIPPED.program.fallback]
    assert "Traceback" not in second.output
    assert (tmp_path / "bot.db").is_file()


def test_help_over_real_http(tmp_path: Path) -> None:
    server = server_process(tmp_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN, FLOWS_DIR=str(SHIPPED_FLOWS),
                            STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}", DEMO_ORDERS="1")
    with running(server):
        assert text(server, "HELP") == [HELP_TEXT]
        assert text(server, " help! ") == [HELP_TEXT]
        # In the middle of a flow too: HELP answers and the flow goes on.
        assert text(server, "STATUS") == [ASK_NUMBER]
        assert text(server, "INFO") == [HELP_TEXT]
        assert text(server, "123456")[0].startswith("Order 123456 is shipped.")
    assert "Traceback" not in server.output


# -- start-up refusals and dev mode -----------------------------------------------------------

def test_refuses_to_start_without_token_or_dev_mode(tmp_path: Path) -> None:
    result = run_server_once(tmp_path, FLOWS_DIR=str(SHIPPED_FLOWS))
    assert result.returncode == 2, result.stdout
    assert "TWILIO_AUTH_TOKEN" in result.stdout
    assert "DEV_MODE" in result.stdout
    assert "Traceback" not in result.stdout


def test_a_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    """The refusal really comes from the settings we pass: a .env in the working directory
    with a token makes the same command start-able (so the cwd isolation is meaningful)."""
    (tmp_path / ".env").write_text("DEV_MODE=1\nHOST=0.0.0.0\n", encoding="utf-8")
    result = run_server_once(tmp_path, FLOWS_DIR=str(SHIPPED_FLOWS))
    # .env turned on dev mode, and its HOST is refused for unsigned requests:
    assert result.returncode == 2, result.stdout
    assert "HOST=0.0.0.0" in result.stdout


def test_dev_mode_starts_warns_loudly_and_accepts_unsigned_requests(tmp_path: Path) -> None:
    server = server_process(tmp_path, DEV_MODE="1", FLOWS_DIR=str(SHIPPED_FLOWS),
                            STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    with running(server):
        form = twilio_form("HELP")
        unsigned = httpx.post(server.url + "/sms", content=urlencode(form).encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
        assert unsigned.status_code == 200, unsigned.text
        assert replies_of(unsigned.text) == [HELP_TEXT]
        badly_signed = httpx.post(server.url + "/sms", content=urlencode(twilio_form("STATUS")).encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded",
                                           "X-Twilio-Signature": "bogus"}, timeout=10)
        assert badly_signed.status_code == 200
        assert replies_of(badly_signed.text) == [ASK_NUMBER]
    warning_lines = [line for line in server.output.splitlines() if "DEV MODE" in line]
    assert warning_lines, server.output
    assert any("WARNING" in line and "NOT" in line for line in warning_lines), warning_lines


def test_dev_mode_on_a_public_host_without_token_refuses_to_start(tmp_path: Path) -> None:
    result = run_server_once(tmp_path, DEV_MODE="1", HOST="0.0.0.0", FLOWS_DIR=str(SHIPPED_FLOWS))
    assert result.returncode == 2, result.stdout
    assert "HOST=0.0.0.0" in result.stdout
    assert "TWILIO_AUTH_TOKEN" in result.stdout
    assert "Traceback" not in result.stdout


def test_dev_flag_is_dev_mode(tmp_path: Path) -> None:
    """``--dev`` turns on dev mode: without a token it is then the loopback rule that refuses
    HOST=0.0.0.0, not the missing-token rule."""
    result = run_server_once(tmp_path, "--dev", HOST="0.0.0.0", FLOWS_DIR=str(SHIPPED_FLOWS))
    assert result.returncode == 2, result.stdout
    assert "DEV_MODE without TWILIO_AUTH_TOKEN" in result.stdout
    assert "HOST=0.0.0.0" in result.stdout


def test_dev_flag_starts_on_loopback(tmp_path: Path) -> None:
    """``python server.py --dev`` (no DEV_MODE, no token) starts and accepts unsigned requests."""
    port = free_port()
    env = clean_env(dict(os.environ), PORT=str(port), HOST="127.0.0.1", FLOWS_DIR=str(SHIPPED_FLOWS),
                    STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, SERVER_SCRIPT, "--dev"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}"
            assert time.monotonic() < deadline, "server did not answer /healthz in time"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        unsigned = httpx.post(url + "/sms", content=urlencode(twilio_form("HELP")).encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
        assert unsigned.status_code == 200, unsigned.text
        assert replies_of(unsigned.text) == [HELP_TEXT]
    finally:
        terminate(process)
        assert process.stdout is not None
        output = process.stdout.read().decode()
        process.stdout.close()
    assert "DEV MODE" in output, output


# -- broken flows stop start-up with file:line, no traceback ---------------------------------

GOOD_FLOW = """\
flow: hello
triggers: [HI]
start: greet
states:
  greet:
    say: "Hello! Reply YES or NO."
    replies:
      - answer: yes
        go: end
    otherwise: "YES or NO, please."
"""


@pytest.mark.parametrize(("name", "text", "line", "words"), [
    pytest.param("hello.yaml", GOOD_FLOW.replace('say: "Hello! Reply YES or NO."', 'say: "Hello!" oops'),
                 6, ["YAML"], id="yaml-syntax-error"),
    pytest.param("hello.yaml", GOOD_FLOW.replace("go: end", "go: nowhere"), 9, ["unknown state", "nowhere"],
                 id="go-to-unknown-state"),
    pytest.param("hello.yaml", GOOD_FLOW.replace("triggers: [HI]", "triggers: [HI, STOP]"), 2, ["STOP"],
                 id="trigger-stop"),
])
def test_broken_flows_stop_start_up_with_file_and_line(tmp_path: Path, name: str, text: str, line: int,
                                                      words: list[str]) -> None:
    flows = write_flows(tmp_path / "flows", {name: text}, program=PROGRAM_YAML)
    result = run_server_once(tmp_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN, FLOWS_DIR=str(flows),
                             STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    assert f"{flows / name}:{line}:" in result.stdout, result.stdout
    problem_lines = [out for out in result.stdout.splitlines() if f"{flows / name}:{line}:" in out]
    for word in words:
        assert any(word in out for out in problem_lines), (word, result.stdout)


def test_the_good_flow_used_above_does_start(tmp_path: Path) -> None:
    """The broken-flow cases differ from a working flow only by the one mistake."""
    flows = write_flows(tmp_path / "flows", {"hello.yaml": GOOD_FLOW}, program=PROGRAM_YAML)
    server = server_process(tmp_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN, FLOWS_DIR=str(flows),
                            STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    with running(server):
        assert text(server, "hi") == ["Hello! Reply YES or NO."]


# -- malformed requests never get a 5xx --------------------------------------------------------

@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("signed")
    server = server_process(folder, TWILIO_AUTH_TOKEN=AUTH_TOKEN, FLOWS_DIR=str(SHIPPED_FLOWS),
                            STORE_URL=f"sqlite:///{folder / 'bot.db'}")
    with running(server):
        yield server


def _signed_body(port: int, **fields: str | None) -> tuple[bytes, bytes]:
    """A form (``twilio_form`` with ``fields`` changed; None drops a field) and its signature."""
    form = twilio_form("hello", "+15550009999")
    for key, value in fields.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return urlencode(form).encode(), sign(f"http://127.0.0.1:{port}/sms", form).encode()


def _cases(port: int) -> dict[str, tuple[bytes, set[int]]]:
    form = twilio_form("hello", "+15550009999", message_sid="SM" + "7" * 32)
    ok_body = urlencode(form).encode()
    signature = sign(f"http://127.0.0.1:{port}/sms", form)

    def signed(**fields: str | None) -> bytes:
        body, sig = _signed_body(port, **fields)
        return post_bytes(port, body, headers={b"X-Twilio-Signature": sig})

    return {
        "GET": (post_bytes(port, b"", method=b"GET"), {405}),
        "text/plain": (post_bytes(port, ok_body, content_type=b"text/plain"), {415}),
        "json": (post_bytes(port, b'{"Body": "hi"}', content_type=b"application/json"), {415}),
        "no content type": (b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                            b"Connection: close\r\n\r\nab", {415}),
        "not utf-8 percent escape": (post_bytes(port, b"Body=%ff%fe&From=x"), {400}),
        "raw non-ascii bytes": (post_bytes(port, "Body=héllo".encode()), {400}),
        "not a form": (post_bytes(port, b"&&&===&"), {400}),
        "too many fields": (post_bytes(port, b"&".join(b"f%d=1" % n for n in range(500))), {400}),
        "too large": (post_bytes(port, b"Body=" + b"a" * 70_000), {413}),
        "unsigned": (post_bytes(port, ok_body), {403}),
        "wrong signature": (post_bytes(port, ok_body, headers={b"X-Twilio-Signature": b"AAAA"}), {403}),
        "signed for another URL": (post_bytes(port, ok_body, headers={
            b"X-Twilio-Signature": sign("https://example.com/sms", form).encode()}), {403}),
        "stale signature": (post_bytes(port, ok_body.replace(b"hello", b"howdy"),
                                       headers={b"X-Twilio-Signature": signature.encode()}), {403}),
        "signed, well-formed (control)": (signed(), {200}),
        "signed, no From": (signed(From=None), {400}),
        "signed, no MessageSid": (signed(MessageSid=None, SmsMessageSid=None, SmsSid=None), {400}),
        "signed, NumMedia not a number": (signed(NumMedia="lots"), {400}),
        "signed, Body too long": (signed(Body="x" * 1601), {400}),
        "signed, control chars in From": (signed(From="+1555\x00\x01"), {400}),
        "malformed HTTP": (b"BLAH /sms HTTP/9.9 what\r\n\r\n", {400}),
        # Header values the server must refuse, not crash on:
        "non-ascii signature": (post_bytes(port, ok_body, headers={b"X-Twilio-Signature": b"\xe9t\xe9"}),
                                {403}),
        "host with a non-numeric port": (post_bytes(port, ok_body, host=b"127.0.0.1:abc",
                                                    headers={b"X-Twilio-Signature": b"AAAA"}), {400, 403}),
        "host with port out of range": (post_bytes(port, ok_body, host=b"127.0.0.1:99999",
                                                   headers={b"X-Twilio-Signature": b"AAAA"}), {400, 403}),
        "host with unclosed IPv6 bracket": (post_bytes(port, ok_body, host=b"[::1",
                                                       headers={b"X-Twilio-Signature": b"AAAA"}), {400, 403}),
    }


CASE_NAMES = list(_cases(1))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_malformed_requests_never_get_a_5xx(signed_server: ServerProcess, case: str) -> None:
    request, expected = _cases(signed_server.port)[case]
    status = raw_status(signed_server.port, request)
    assert status < 500, f"{case}: server answered {status}"
    assert status in expected, f"{case}: expected {sorted(expected)}, got {status}"


def test_server_still_answers_after_malformed_requests(signed_server: ServerProcess) -> None:
    for request, _ in _cases(signed_server.port).values():
        raw_status(signed_server.port, request)
    assert text(signed_server, "HELP", "+15550008888") == [HELP_TEXT]
