"""Outbound messages (issue 6): ``python -m bot send``, a flow's ``notify``, and delivery status.

Everything outbound goes through the REAL twilio SDK to the fake Twilio API in bot/fake_twilio/
on 127.0.0.1 (never api.twilio.com, never a mock of the SDK); inbound requests and status callbacks
are signed exactly as Twilio signs them. The helpers at the top are shared with test_broadcast.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.outbound import Outbox
from bot.settings import Settings
from bot.store.sqlite import SqliteStore
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, OutboundMessage, Turn
from tests.conftest import ROOT, SHIPPED_FLOWS, ServerProcess, SignedClient, demo_fetcher
from tests.signed_webhooks import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_NUMBER,
    new_message_sid,
    sign,
    signed_request,
    twilio_form,
)

#: Everything the bot reads from the environment (settings, outbound, broadcasts, the shipped flows'
#: env.* names, the SDK's region/edge): removed from what subprocesses inherit.
SETTING_NAMES = frozenset({
    "TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT", "DEV_MODE",
    "MAX_BODY_BYTES", "LOG_LEVEL", "RELOAD_FLOWS", "WORKERS", "RETENTION", "ORDERS_API", "ONCALL_NUMBER",
    "TWILIO_ACCOUNT_SID", "TWILIO_FROM", "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_API_BASE_URL",
    "TWILIO_REGION", "TWILIO_EDGE", "BROADCAST_WINDOW", "BROADCAST_TIMEZONE",
})

USER = "+15557654321"
ONCALL = "+15550009999"
TEXTED_NUMBER = "+15550003333"  # the number the person texted (inbound To), not TWILIO_FROM
REQUEST = "My parcel arrived damaged!"
HANDED_OVER = "Thanks! Someone from our team will text you back shortly."


def clean_env(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in SETTING_NAMES and not name.startswith(("TWILIO_", "BROADCAST_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


def outbound_env(fake: FakeTwilio, store_url: str, **extra: str) -> dict[str, str]:
    """The settings of a deployment whose outbound messages go to ``fake``."""
    return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM": BOT_NUMBER,
            "TWILIO_API_BASE_URL": fake.url, "STORE_URL": store_url, **extra}


def run_bot(*args: str | Path, cwd: Path, env: dict[str, str],
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` as a user runs it (working directory ``cwd``: no stray .env)."""
    return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], cwd=cwd, input="",
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=clean_env(**env))


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # path is absolute: sqlite:////tmp/...


def store_at(path: Path) -> SqliteStore:
    return SqliteStore(path)


def wait_until(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def server_process(env: dict[str, str], cwd: Path) -> ServerProcess:
    """``python server.py`` with only the given settings (nothing inherited from the shell)."""
    process = ServerProcess({}, cwd=cwd)
    process.env = {name: value for name, value in process.env.items()
                   if name not in SETTING_NAMES and not name.startswith(("TWILIO_", "BROADCAST_"))}
    process.env.update(PORT=str(process.port), HOST="127.0.0.1", FLOWS_DIR=str(SHIPPED_FLOWS),
                       PUBLIC_URL=process.url, RELOAD_FLOWS="0", **env)
    return process


def post_signed(url: str, form: dict[str, str], token: str = AUTH_TOKEN, sign_url: str | None = None,
                signature: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
    if signature is None:
        signature = sign(sign_url or url, form, token)
    if signature:
        headers["X-Twilio-Signature"] = signature
    return httpx.post(url, content=urlencode(form).encode(), headers=headers, timeout=5)


# -- python -m bot send ---------------------------------------------------------------------------

def test_send_creates_exactly_one_message(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    result = run_bot("send", "--to", USER, "Your table is ready.", cwd=tmp_path,
                     env=outbound_env(fake_twilio, sqlite_url(db)))
    assert result.returncode == 0, output_of(result)

    [created] = fake_twilio.attempts
    assert created.accepted
    assert (created.to, created.from_, created.body) == (USER, BOT_NUMBER, "Your table is ready.")
    assert created.username == ACCOUNT_SID  # Basic auth with the account, through the SDK
    assert created.status_callback is None  # no PUBLIC_URL: nowhere to report delivery to
    assert created.sid in result.stdout
    assert USER not in result.stdout + result.stderr  # numbers are masked in output

    async def record() -> OutboundMessage | None:
        store = store_at(db)
        try:
            return await store.outbound_by_sid(created.sid or "")
        finally:
            await store.close()
    recorded = asyncio.run(record())
    assert recorded is not None
    assert (recorded.to, recorded.state, recorded.body) == (USER, "accepted", "Your table is ready.")
    assert recorded.id.startswith("send|")


def test_send_to_a_number_that_texted_stop_sends_nothing(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=sqlite_url(db), flows_dir=str(SHIPPED_FLOWS),
                        reload_flows=False)
    with TestClient(create_app(settings, load_flows(SHIPPED_FLOWS), fetcher=demo_fetcher())) as client:
        assert "unsubscribed" in " ".join(SignedClient(client).replies("STOP", USER)).lower()

    result = run_bot("send", "--to", USER, "Anything new?", cwd=tmp_path,
                     env=outbound_env(fake_twilio, sqlite_url(db)))
    assert result.returncode == 1, output_of(result)
    assert "opted out" in result.stderr, output_of(result)
    assert fake_twilio.attempts == []  # not even tried


async def test_outbox_checks_the_opt_out_when_sending(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """Opted out after the message was made (e.g. queued by a flow): still not sent."""
    store = store_at(tmp_path / "bot.db")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        message = OutboundMessage("later|1", USER, "Anything new?")
        await store.set_consent(ConsentChange(USER, ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR))
        result = await outbox.send(message)
        assert (result.state, result.reason) == ("skipped", "opted out")
        assert await store.outbound("later|1") == result
        await store.set_consent(ConsentChange(USER, ConsentStatus.OPTED_IN, ConsentMethod.OPERATOR))  # START
        assert (await outbox.send(OutboundMessage("later|2", USER, "Welcome back"))).state == "accepted"
    finally:
        await outbox.close()
        await store.close()
    assert [attempt.body for attempt in fake_twilio.attempts] == ["Welcome back"]


def test_send_to_a_number_opted_out_at_twilio_fails_21610_and_remembers(fake_twilio: FakeTwilio,
                                                                          tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    env = outbound_env(fake_twilio, sqlite_url(db))
    fake_twilio.opt_out(USER)
    result = run_bot("send", "--to", USER, "Hello?", cwd=tmp_path, env=env)
    assert result.returncode == 1, output_of(result)
    assert "failed" in result.stderr and "21610" in result.stderr, output_of(result)
    [attempt] = fake_twilio.attempts
    assert (attempt.status, attempt.error_code, attempt.to) == (400, 21610, USER)
    assert fake_twilio.created == []

    async def opted_out() -> bool:
        store = store_at(db)
        try:
            return await store.is_opted_out(USER)
        finally:
            await store.close()
    assert asyncio.run(opted_out()), "21610 from the create call must mark the number opted out locally"

    # ... so the next send is not even tried, although Twilio would now accept it
    fake_twilio.opt_in(USER)

    async def send_again() -> OutboundMessage:
        store = store_at(db)
        outbox = Outbox(store, fake_twilio.outbound_settings())
        try:
            return await outbox.send(OutboundMessage("again|1", USER, "Hello again?"))
        finally:
            await outbox.close()
            await store.close()
    assert asyncio.run(send_again()).state == "skipped"
    assert len(fake_twilio.attempts) == 1


def test_send_to_an_invalid_number_is_not_tried(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    # "5557654321" (national format) was refused here before issue 12; now it is read as +15557654321
    result = run_bot("send", "--to", "555765", "Hello", cwd=tmp_path,
                     env=outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db")))
    assert result.returncode == 1, output_of(result)
    assert "skipped, invalid number (too short)" in result.stderr, output_of(result)
    assert fake_twilio.attempts == []


@pytest.mark.parametrize(("number", "reason"), [
    ("+1 555 765", "too short"), ("+05557654321", "invalid country code"),
    ("+1555abc4321", "letters in the number"), ("", "not a phone number"), ("+", "not a phone number"),
    ("+1234567890123456", "too long")])
async def test_outbox_never_tries_an_invalid_number(fake_twilio: FakeTwilio, tmp_path: Path,
                                                    number: str, reason: str) -> None:
    store = store_at(tmp_path / "bot.db")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        result = await outbox.send(OutboundMessage("invalid|1", number, "Hello"))
    finally:
        await outbox.close()
        await store.close()
    assert (result.state, result.reason) == ("skipped", f"invalid number ({reason})")
    assert fake_twilio.attempts == []


@pytest.mark.parametrize(("missing", "named"), [
    (("TWILIO_ACCOUNT_SID", "TWILIO_FROM"),
     ["TWILIO_ACCOUNT_SID", "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"]),
    (("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"),
     ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"]),
])
def test_send_without_settings_exits_2_naming_them(fake_twilio: FakeTwilio, tmp_path: Path,
                                                   missing: tuple[str, ...], named: list[str]) -> None:
    env = {name: value for name, value in outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db")).items()
           if name not in missing}
    result = run_bot("send", "--to", USER, "Hello", cwd=tmp_path, env=env)
    assert result.returncode == 2, output_of(result)
    assert result.stderr.startswith("error: send needs"), output_of(result)
    first_line = result.stderr.splitlines()[0]
    for name in named:
        assert name in first_line, output_of(result)
    for name in {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"} - set(missing):
        assert name not in first_line, output_of(result)  # only what is missing is named
    assert "Traceback" not in result.stderr
    assert fake_twilio.attempts == []


def test_send_with_a_messaging_service_reports_delivery_to_public_url(fake_twilio: FakeTwilio,
                                                                      tmp_path: Path) -> None:
    env = outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db"),
                       TWILIO_MESSAGING_SERVICE_SID="MG" + "a" * 32,
                       PUBLIC_URL="https://bot.example.com")
    del env["TWILIO_FROM"]
    result = run_bot("send", "--to", USER, "Hello", cwd=tmp_path, env=env)
    assert result.returncode == 0, output_of(result)
    [created] = fake_twilio.created
    assert (created.from_, created.messaging_service_sid) == (None, "MG" + "a" * 32)
    assert created.status_callback == "https://bot.example.com/sms/status"


# -- notify from a flow (texting AGENT forwards the request to the on-call number) ----------------

class RecordingStore:
    """The real SQLite store, noting the order of turn commits and outbound records."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.events: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, turn: Turn) -> Any:
        result = await self.inner.commit(turn)
        self.events.append(("commit", turn.inbound.message_sid, result.name))
        return result

    async def save_outbound(self, message: OutboundMessage) -> None:
        if message.id.startswith("notify|") and message.state == "sending":
            # what the store holds at the moment the API call is about to be made
            inbound_sid = message.id.split("|")[1]
            saved = (await self.inner.snapshot(USER, inbound_sid)).recorded_replies
            conversation = (await self.inner.snapshot(USER, "")).conversation
            self.events.append(("sending", message.id, saved is not None, conversation.state))
        else:
            self.events.append(("outbound", message.id, message.state))
        await self.inner.save_outbound(message)


@pytest.fixture
def agent_app(fake_twilio: FakeTwilio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shipped flows (agent among them) in-process, ONCALL_NUMBER set, outbound to the fake."""
    monkeypatch.setenv("ONCALL_NUMBER", ONCALL)
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=sqlite_url(tmp_path / "bot.db"),
                        flows_dir=str(SHIPPED_FLOWS), reload_flows=False, twilio_account_sid=ACCOUNT_SID,
                        twilio_from=BOT_NUMBER, twilio_api_base_url=fake_twilio.url)
    store = RecordingStore(store_at(tmp_path / "bot.db"))

    def app() -> TestClient:
        return TestClient(create_app(settings, load_flows(SHIPPED_FLOWS), store=store,  # type: ignore[arg-type]
                                     fetcher=demo_fetcher()))
    yield app, store
    asyncio.run(store.inner.close())


def text(client: TestClient, body: str, *, sid: str | None = None) -> list[str]:
    return SignedClient(client).replies(body, USER, to=TEXTED_NUMBER, **({"message_sid": sid} if sid else {}))


def test_agent_request_notifies_the_oncall_number_once_after_the_turn_is_saved(
        agent_app: Any, fake_twilio: FakeTwilio) -> None:
    app, store = agent_app
    request_sid = new_message_sid()
    with app() as client:
        assert text(client, "AGENT") == ["Sure. In one message, what do you need help with?"]
        assert fake_twilio.attempts == []  # asking is not notifying
        assert text(client, REQUEST, sid=request_sid) == [HANDED_OVER]
        wait_until(lambda: len(fake_twilio.created) >= 1, what="the notification at the fake")
        # Twilio retries a webhook it thinks failed: the same MessageSid again
        assert text(client, REQUEST, sid=request_sid) == [HANDED_OVER]
    # leaving the app waits for its background sends: nothing more can arrive after this

    [created] = fake_twilio.attempts
    assert created.accepted
    assert created.to == ONCALL
    assert created.from_ == TEXTED_NUMBER  # the number the person texted, not TWILIO_FROM
    # saved as docs/flows.md says (`save`): the sentence-ending "!" tidied away
    assert created.body == f"Acme bot: {USER} asks for a person: {REQUEST.removesuffix('!')}"

    commits = [event for event in store.events if event[0] == "commit"]
    # the replay was answered from the recorded replies: no second turn, so no second notify
    assert [event[2] for event in commits if event[1] == request_sid] == ["COMMITTED"]
    notify_id = f"notify|{request_sid}|0"
    sending = [event for event in store.events if event[0] == "sending"]
    assert sending == [("sending", notify_id, True, None)], store.events  # turn saved, conversation ended
    saved = store.events.index(("commit", request_sid, "COMMITTED"))
    assert store.events.index(sending[0]) > saved, "the notify must follow the saved turn"
    record = asyncio.run(store.inner.outbound(notify_id))
    assert record is not None and (record.state, record.sid, record.to) == ("accepted", created.sid, ONCALL)


def test_notify_to_an_opted_out_oncall_number_sends_nothing(agent_app: Any, fake_twilio: FakeTwilio) -> None:
    app, store = agent_app
    asyncio.run(store.inner.set_consent(ConsentChange(ONCALL, ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR)))
    request_sid = new_message_sid()
    with app() as client:
        text(client, "AGENT")
        assert text(client, REQUEST, sid=request_sid) == [HANDED_OVER]
    assert fake_twilio.attempts == []
    record = asyncio.run(store.inner.outbound(f"notify|{request_sid}|0"))
    assert record is not None and (record.state, record.reason) == ("skipped", "opted out")


# -- delivery status: POST /sms/status ------------------------------------------------------------

@pytest.fixture(scope="module")
def status_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A real server process (signatures checked against PUBLIC_URL) on a SQLite file the tests share."""
    folder = tmp_path_factory.mktemp("status")
    db = folder / "bot.db"
    server = server_process({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": sqlite_url(db)},
                            cwd=folder).start()
    yield server, db
    output = server.stop()
    assert "Traceback" not in output, output


async def test_status_callbacks_record_status_and_error_code(status_server: tuple[ServerProcess, Path],
                                                             fake_twilio: FakeTwilio) -> None:
    server, db = status_server
    delivered_to, undelivered_to, failed_to = "+15550101001", "+15550101002", "+15550101003"
    fake_twilio.fail_delivery(undelivered_to, 30003)
    fake_twilio.fail_delivery(failed_to, 30007, status="failed")
    fake_twilio.callback_interval = 0.05
    store = store_at(db)
    outbox = Outbox(store, fake_twilio.outbound_settings(), status_callback=f"{server.url}/sms/status")
    try:
        sent = [await outbox.send(OutboundMessage(f"status-test|{number}", number, "Your code is 1234"))
                for number in (delivered_to, undelivered_to, failed_to)]
        assert [message.state for message in sent] == ["accepted"] * 3
        callbacks = await fake_twilio.wait_for_callbacks_async()
        assert len(callbacks) == 3 + 3 + 2  # queued, sent, delivered/undelivered; queued, failed
        assert {callback.status_code for callback in callbacks} == {204}, callbacks

        records = {number: await store.outbound(f"status-test|{number}")
                   for number in (delivered_to, undelivered_to, failed_to)}
        assert {number: (record.status, record.error_code)
                for number, record in records.items() if record} == {
            delivered_to: ("delivered", None), undelivered_to: ("undelivered", "30003"),
            failed_to: ("failed", "30007")}
        assert all(record and record.state == "accepted" for record in records.values())
        assert not any([await store.is_opted_out(number) for number in records])
    finally:
        await outbox.close()
        await store.close()


async def test_21610_callback_for_a_message_we_never_sent_opts_the_number_out(
        status_server: tuple[ServerProcess, Path], fake_twilio: FakeTwilio) -> None:
    server, db = status_server
    stranger = "+15550102001"
    form = fake_twilio.post_callback(f"{server.url}/sms/status", status="failed", to=stranger,
                                     error_code=21610)
    [callback] = await fake_twilio.wait_for_callbacks_async()
    assert callback.status_code == 204
    store = store_at(db)
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        assert await store.outbound_by_sid(form["MessageSid"]) is None
        assert await store.is_opted_out(stranger)
        result = await outbox.send(OutboundMessage("status-test|after-21610", stranger, "Hi"))
        assert (result.state, result.reason) == ("skipped", "opted out")
        assert fake_twilio.attempts == []
    finally:
        await outbox.close()
        await store.close()


def test_unsigned_or_forged_status_callbacks_are_refused(status_server: tuple[ServerProcess, Path],
                                                         fake_twilio: FakeTwilio) -> None:
    server, db = status_server
    victim = "+15550103001"
    url = f"{server.url}/sms/status"
    sid = "SM" + "f" * 32
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": "failed", "SmsStatus": "failed", "To": victim,
            "From": BOT_NUMBER, "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "ErrorCode": "21610"}
    assert post_signed(url, form, signature="").status_code == 403  # no signature at all
    assert post_signed(url, form, token="not-the-auth-token").status_code == 403
    assert post_signed(url, form, sign_url=f"{server.url}/sms").status_code == 403  # signed for another URL
    genuine = sign(url, {**form, "ErrorCode": "30003"})
    assert post_signed(url, form, signature=genuine).status_code == 403  # a field changed after signing

    async def opted_out() -> bool:
        store = store_at(db)
        try:
            return await store.is_opted_out(victim)
        finally:
            await store.close()
    assert not asyncio.run(opted_out()), "a forged 21610 must not opt anyone out"

    # the same form, signed as Twilio signs it, is accepted (so the refusals above were the signature's)
    assert post_signed(url, form).status_code == 204
    assert asyncio.run(opted_out())


def test_inbound_webhook_of_the_status_server_still_answers(
        status_server: tuple[ServerProcess, Path]) -> None:
    server, _ = status_server
    body, headers = signed_request(f"{server.url}/sms", twilio_form("HELP", "+15550104001"))
    response = httpx.post(f"{server.url}/sms", content=body, headers=headers, timeout=5)
    assert response.status_code == 200 and "<Message>" in response.text


class SlowToRecordStore:
    """The real store, slow for a moment when recording what Twilio accepted (a busy disk, a
    concurrent writer holding SQLite's lock): the write waits until the fake posted its callbacks."""

    def __init__(self, inner: SqliteStore, fake: FakeTwilio) -> None:
        self.inner, self.fake = inner, fake

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save_outbound(self, message: OutboundMessage) -> None:
        if message.state == "accepted":
            await self.fake.wait_for_callbacks_async()
        await self.inner.save_outbound(message)


async def test_a_status_callback_that_overtakes_the_local_record_is_not_lost(
        status_server: tuple[ServerProcess, Path], fake_twilio: FakeTwilio) -> None:
    """Twilio may post a status before the sender has written down the sid it got back: the status
    must still land on the record (here the final one, 'failed' with its error code)."""
    server, db = status_server
    failed_to = "+15550105001"
    fake_twilio.fail_delivery(failed_to, 30007, status="failed")
    store = store_at(db)
    outbox = Outbox(SlowToRecordStore(store, fake_twilio), fake_twilio.outbound_settings(),  # type: ignore[arg-type]
                    status_callback=f"{server.url}/sms/status")
    try:
        sent = await outbox.send(OutboundMessage("status-race|1", failed_to, "Your code is 1234"))
        assert sent.state == "accepted"
        callbacks = await fake_twilio.wait_for_callbacks_async()
        assert [(callback.message_status, callback.status_code) for callback in callbacks] == [
            ("queued", 204), ("failed", 204)]
        record = await store.outbound("status-race|1")
        assert record is not None and record.sid == sent.sid
        assert (record.status, record.error_code) == ("failed", "30007")
    finally:
        await outbox.close()
        await store.close()
