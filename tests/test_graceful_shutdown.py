"""SIGTERM mid-burst (issue 15 item 4): the real server (``python server.py`` on SQLite) stops
taking webhooks, finishes the turns in flight, ends its loops and exits 0 within its bound; every
turn it acknowledged is stored, none half done; after a restart, Twilio's retries of the rest (the
same MessageSid) are each handled once.

The burst: 20 senders texting at once, 10 messages each (200 webhooks, up to 20 in flight). Half
of them run a flow whose every turn waits ~0.5 s for a lookup on a local HTTP server, so turns are
truly in flight when the signal comes; the others text every 0.1 s through a quick one. Each turn
adds one to the sender's counter and says it (``n=3``), so what is stored can be checked against
what was answered: a sender's counter equals its number of processed messages, whose recorded
answers are n=1..k, each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bot.flows.loader import load_flows
from bot.shutdown import SHUTDOWN_GRACE_SECONDS, shutdown_grace
from tests.conftest import ServerProcess, replies_of, write_flows
from tests.signed_webhooks import AUTH_TOKEN, new_message_sid, signed_request, twilio_form
from tests.test_server_process import running, server_process

SENDERS = 20
MESSAGES = 10  # per sender
LOOKUP_SECONDS = 0.5  # the slow senders' every turn
PAUSE_SECONDS = 0.1  # between a quick sender's messages
SIGNAL_AFTER = 40  # acknowledged webhooks before SIGTERM
TWILIO_TIMEOUT = 15.0

FLOW = """\
flow: {name}
triggers: [{trigger}]
start: count
states:
  count:
    set: {{n: "{{{{ n | default: 0 | plus: 1 }}}}"}}
    fetch:
      url: "http://127.0.0.1:{port}/{name}"
      save: looked
      timeout: 5s
    say: "n={{{{ n }}}} {{{{ message }}}}"
    replies:
      - pattern: '(?s).+'
        go: count
"""


class _Lookup(BaseHTTPRequestHandler):
    slow = True  # the burst's; Twilio's retries after the restart need no slowness to prove anything

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/slow" and self.slow:
            time.sleep(LOOKUP_SECONDS)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass


@pytest.fixture
def lookup_port() -> Iterator[int]:
    _Lookup.slow = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Lookup)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@dataclass
class Message:
    sender: str
    body: str
    sid: str = field(default_factory=new_message_sid)
    patience: float = TWILIO_TIMEOUT  # how long the sender waits for the answer


@dataclass
class Burst:
    """What each webhook got: its replies (acknowledged), or how it failed."""

    answered: dict[str, list[str]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # never reached the server: connection refused
    failed: dict[str, str] = field(default_factory=dict)  # sent, and no 200 came back
    in_flight_at_signal: int = 0
    signalled_at: float = 0.0


def conversations(senders: int) -> list[list[Message]]:
    """Each sender's messages in order: half on the slow flow, half on the quick one."""
    numbers = [f"+1555010{index:04d}" for index in range(senders)]
    messages = [[Message(number, ("SLOW" if index % 2 == 0 else "QUICK") if turn == 0 else f"again {turn}")
                 for turn in range(MESSAGES)] for index, number in enumerate(numbers)]
    messages[0][0].patience = LOOKUP_SECONDS / 2  # given up on mid-turn, as Twilio does at 15 s: stored, unanswered
    return messages


async def post(client: httpx.AsyncClient, url: str, message: Message) -> httpx.Response:
    content, headers = signed_request(url, twilio_form(message.body, message.sender, message_sid=message.sid))
    return await client.post(url, content=content, headers=headers, timeout=message.patience)


async def burst(server: ServerProcess, messages: list[list[Message]]) -> Burst:
    """Every sender texts its messages one after another, all senders at once; SIGTERM goes to the
    server once SIGNAL_AFTER webhooks were acknowledged."""
    url, seen = server.url + "/sms", Burst()
    in_flight = 0
    acknowledged = asyncio.Event()

    async def sender(own: list[Message]) -> None:
        nonlocal in_flight
        async with httpx.AsyncClient() as client:
            for message in own:
                in_flight += 1
                try:
                    response = await post(client, url, message)
                except httpx.ConnectError:
                    seen.refused.add(message.sid)
                except httpx.TransportError as error:
                    seen.failed[message.sid] = type(error).__name__
                else:
                    if response.status_code == 200:
                        seen.answered[message.sid] = replies_of(response.text)
                        if len(seen.answered) >= SIGNAL_AFTER:
                            acknowledged.set()
                    else:
                        seen.failed[message.sid] = str(response.status_code)
                finally:
                    in_flight -= 1
                if own[0].body == "QUICK":
                    await asyncio.sleep(PAUSE_SECONDS)

    async def terminate_mid_burst() -> None:
        await acknowledged.wait()
        while messages[0][0].sid not in seen.failed:  # given up on by now (its turn goes on)
            await asyncio.sleep(0.01)
        assert server.process is not None
        seen.in_flight_at_signal, seen.signalled_at = in_flight, time.monotonic()
        server.process.send_signal(signal.SIGTERM)

    signaller = asyncio.create_task(terminate_mid_burst())
    await asyncio.gather(*(sender(own) for own in messages))
    assert signaller.done(), "the burst ended before the signal: nothing was in flight"
    return seen


async def resend(server: ServerProcess, messages: list[list[Message]]) -> dict[str, list[str]]:
    """Twilio's retries: each sender's messages again, in order, with their MessageSids."""
    answers: dict[str, list[str]] = {}

    async def sender(own: list[Message]) -> None:
        async with httpx.AsyncClient() as client:
            for message in own:
                message.patience = TWILIO_TIMEOUT
                response = await post(client, server.url + "/sms", message)
                assert response.status_code == 200, response.text
                answers[message.sid] = replies_of(response.text)

    await asyncio.gather(*(sender(own) for own in messages if own))
    return answers


Stored = dict[str, tuple[str, str, list[str]]]  # MessageSid -> (sender, body, recorded answer)


def stored(db: Path) -> tuple[Stored, dict[str, dict[str, object]]]:
    """The processed MessageSids and each sender's variables, read from the SQLite file itself."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        processed = {sid: (sender, body, json.loads(replies)) for sid, sender, body, replies
                     in connection.execute("SELECT message_sid, sender, body, replies FROM processed")}
        variables = {sender: json.loads(values) for sender, values
                     in connection.execute("SELECT sender, vars FROM conversations")}
    return processed, variables


def assert_whole(processed: Stored, variables: dict[str, dict[str, object]], messages: list[list[Message]],
                 fallback: str) -> None:
    """No turn half done: each sender's counter is its number of counted messages, whose recorded
    answers are n=1..k, each once, each naming its own message (a processed row without its
    conversation write, or a conversation advanced without its row, breaks one or the other). A
    message that overtook its sender's first one (lost, retried later) found nobody in the flow:
    the fallback, and nothing changed."""
    for own in messages:
        sender = own[0].sender
        rows = [(body, replies) for owner, body, replies in processed.values() if owner == sender]
        counted = sorted((int(replies[0].split()[0].removeprefix("n=")), body, replies) for body, replies in rows
                         if replies and replies[0].startswith("n="))
        assert [count for count, _, _ in counted] == list(range(1, len(counted) + 1)), (sender, rows)
        assert all(replies == [f"n={count} {body}"] for count, body, replies in counted), (sender, rows)
        assert all(replies == [fallback] for body, replies in rows if not replies[0].startswith("n=")), rows
        if counted:
            assert str(variables[sender]["n"]) == str(len(counted)), (sender, variables[sender], rows)


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])  # ~7 s each
def test_sigterm_mid_burst_loses_no_acknowledged_turn_and_a_restart_answers_the_rest_once(
        tmp_path: Path, lookup_port: int, workers: str) -> None:
    flows = write_flows(tmp_path / "flows", {
        "slow.yaml": FLOW.format(name="slow", trigger="SLOW", port=lookup_port),
        "quick.yaml": FLOW.format(name="quick", trigger="QUICK", port=lookup_port)})
    fallback = load_flows(flows).program.fallback
    db = tmp_path / "bot.db"
    settings = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": f"sqlite:///{db}", "FLOWS_DIR": str(flows),
                "RELOAD_FLOWS": "0"}
    messages = conversations(SENDERS)

    first = server_process(tmp_path, WORKERS=workers, **settings).start()
    assert first.process is not None
    try:
        seen = asyncio.run(burst(first, messages))
        code = first.process.wait(timeout=SHUTDOWN_GRACE_SECONDS + 10)
        stopped_after = time.monotonic() - seen.signalled_at
        output = first.output()
    finally:
        first.stop()
    everything = {message.sid: message for own in messages for message in own}
    print(f"\nWORKERS={workers}: sent {len(everything)}, acknowledged {len(seen.answered)}, refused "
          f"{len(seen.refused)}, failed {len(seen.failed)} {sorted(set(seen.failed.values()))}; "
          f"{seen.in_flight_at_signal} in flight at SIGTERM; exit {code} after {stopped_after:.2f}s")
    assert code == 0, output
    assert stopped_after < SHUTDOWN_GRACE_SECONDS + 5, output
    assert seen.in_flight_at_signal > 0
    assert len(seen.answered) + len(seen.refused) + len(seen.failed) == len(everything)
    assert seen.refused, "the server took every webhook: the signal came too late to test anything"
    assert "Application shutdown complete." in output and "stopped cleanly" in output, output
    assert "timeout graceful shutdown exceeded" not in output and "Traceback" not in output, output

    processed, variables = stored(db)
    assert set(seen.answered) <= set(processed), "an acknowledged turn is not stored"
    for sid, replies in seen.answered.items():
        assert processed[sid][2] == replies  # stored as answered
    assert_whole(processed, variables, messages, fallback)
    unanswered_but_stored = set(processed) - set(seen.answered)
    assert messages[0][0].sid in unanswered_but_stored  # the one given up on
    print(f"stored {len(processed)} (acknowledged {len(seen.answered)}, stored unanswered "
          f"{len(unanswered_but_stored)})")

    # Twilio retries what it got no answer for, with the same MessageSid, once the server is back.
    unanswered = [[message for message in own if message.sid not in seen.answered] for own in messages]
    _Lookup.slow = False
    second = server_process(tmp_path, **settings)
    with running(second):
        answers = asyncio.run(resend(second, unanswered))
    for sid in unanswered_but_stored:  # stored before the stop, its answer lost: the recorded answer again
        assert answers[sid] == processed[sid][2], sid
    final, variables = stored(db)
    assert set(final) == set(everything)
    assert_whole(final, variables, messages, fallback)
    assert second.output.count("duplicate MessageSid: recorded reply") == len(  # type: ignore[attr-defined]
        unanswered_but_stored)
    print(f"after the restart: re-sent {len(answers)}, stored {len(final)} of {len(everything)}, each once")


def test_the_bound_is_10_s_or_the_slow_reply_and_2_more_under_twilios_15() -> None:
    assert shutdown_grace(5.0) == SHUTDOWN_GRACE_SECONDS == 10
    assert shutdown_grace(9.5) == 12 and shutdown_grace(13.9) == 14  # SLOW_REPLY_SECONDS is below 14
