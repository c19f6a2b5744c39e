"""A fake of the parts of Twilio's REST API the bot uses, served on loopback for the REAL SDK.

``python -m bot fake-twilio [PORT]`` serves it for demos (try a broadcast without a Twilio
account), and the test suite runs it in-process: tests never reach api.twilio.com and never mock
the SDK; ``bot.twilio_outbound.rest_client`` is pointed at :attr:`FakeTwilio.url` and the unmodified
``twilio.rest.Client`` talks HTTP to this server. It needs only the runtime dependencies.

What it serves (Twilio's 2010-04-01 API, JSON, HTTP Basic auth with the account SID or an API key):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` -- form ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body`` (or ``MediaUrl``), optional ``StatusCallback``. Answers 201
  with a message resource, or Twilio's error JSON ``{"code", "message", "more_info", "status"}``:
  401/20003 bad credentials or another account's path, 429/20429 throttled, and 400 with
  21604 (no To), 21211 (To not E.164), 21603 (neither From nor MessagingServiceSid),
  21212 (malformed From), 21602 (no Body), 21617 (Body over 1600 characters),
  21610 (To has opted out).
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` -- the resource, with the status
  the delivery simulation reached; 404/20404 for an unknown sid.

Status callbacks are posted by a background worker, form-encoded and signed with
``X-Twilio-Signature`` (``RequestValidator.compute_signature`` with the auth token), after the
create response was sent: ``queued`` -> ``sent`` -> ``delivered``, or ``undelivered``/``failed``
with ``ErrorCode`` for numbers given to :meth:`FakeTwilio.fail_delivery`.

Use it as a context manager (``with FakeTwilio() as fake:``), through :func:`serve` (the command),
or in tests through the ``fake_twilio`` fixture (tests/fake_twilio_fixtures.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import queue
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from twilio.request_validator import RequestValidator

from bot.twilio_outbound import OutboundSettings

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
SHORT_CODE = re.compile(r"^\d{5,6}$")
MAX_BODY_CHARS = 1600
SERVICE_NUMBER = "+15550002222"  # the number a Messaging Service "picks" from its sender pool

# The credentials the fake accepts unless told otherwise, and the number to send from: made up,
# so a demo needs no Twilio account (the README's broadcast example uses them).
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
DEFAULT_FROM = "+15550001111"
DEFAULT_PORT = 8900

# Twilio's error codes for what the fake refuses, with the message its API answers.
AUTHENTICATE = 20003
NOT_FOUND = 20404
TOO_MANY_REQUESTS = 20429
INVALID_TO = 21211
INVALID_FROM = 21212
BODY_REQUIRED = 21602
FROM_REQUIRED = 21603
TO_REQUIRED = 21604
UNSUBSCRIBED = 21610
BODY_TOO_LONG = 21617

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def num_segments(body: str) -> int:
    """SMS segments of ``body``: GSM-7 160/153 septets, else UCS-2 70/67 UTF-16 units."""
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENDED for char in body):
        units, single, multi = sum(2 if char in _GSM7_EXTENDED else 1 for char in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer in the shape Twilio's REST API uses."""
    payload = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
               "status": status}
    return JSONResponse(payload, status_code=status, headers=headers)


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC))  # "Thu, 24 Aug 2023 05:01:45 +0000"


@dataclass(frozen=True)
class Attempt:
    """One create request as the fake saw it, accepted or refused."""

    to: str | None
    from_: str | None
    body: str | None
    status_callback: str | None
    messaging_service_sid: str | None
    form: dict[str, str]
    username: str | None  # the Basic-auth user (account SID or API key SID)
    status: int  # the HTTP status the fake answered
    error_code: int | None = None
    sid: str | None = None  # set when accepted

    @property
    def accepted(self) -> bool:
        return self.status == 201


@dataclass(frozen=True)
class Callback:
    """One status callback the fake posted, and what the receiver answered."""

    url: str
    form: dict[str, str]
    signature: str
    status_code: int | None  # None when the POST itself failed
    error: str | None = None

    @property
    def message_status(self) -> str:
        return self.form.get("MessageStatus", "")


@dataclass
class _Job:
    url: str
    ready: threading.Event  # set once the create response went out
    generation: int
    sid: str | None = None  # a status step of a message the fake created ...
    status: str = ""
    error_code: int | None = None
    form: dict[str, str] = field(default_factory=dict)  # ... or a ready-made form to post


class LoopbackServer:
    """An ASGI app served by uvicorn in a background thread on 127.0.0.1 (a free port)."""

    def __init__(self, app: ASGIApp, name: str = "loopback-server", port: int = 0) -> None:
        self.app = app
        self.name = name
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LoopbackServer:
        # Bound here, handed to uvicorn: the port is ours before the thread starts (no race).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls
        self._socket.bind(("127.0.0.1", self.port))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                ws="none", http="h11", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeTwilio:
    """Twilio's Messages API on loopback, with knobs for the failures tests need."""

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN, *,
                 service_number: str = SERVICE_NUMBER, port: int = 0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.service_number = service_number
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._generation = 0  # bumped by reset(): callbacks queued before it are dropped
        self._pending = 0  # callbacks queued or in flight
        self._clear()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._http: httpx.Client | None = None
        base = "/2010-04-01/Accounts/{account_sid}"
        self.app = Starlette(routes=[
            Route(base + "/Messages.json", self._create_message, methods=["POST"]),
            Route(base + "/Messages/{sid}.json", self._fetch_message, methods=["GET"]),
        ])
        self._server = LoopbackServer(self.app, name="fake-twilio", port=port)  # port 0: a free one

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the SDK (``OutboundSettings.api_base_url``)."""
        return self._server.url

    def start(self) -> FakeTwilio:
        self._stopping = False
        self._http = httpx.Client(timeout=5.0)
        self._worker = threading.Thread(target=self._deliver_callbacks, name="fake-twilio-callbacks",
                                        daemon=True)
        self._worker.start()
        try:
            self._server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._server.stop()
        self._stopping = True
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(timeout=10)
        if self._http is not None:
            self._http.close()
        self._worker = self._http = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def outbound_settings(self, from_number: str = DEFAULT_FROM, messaging_service_sid: str = "",
                          **overrides: str) -> OutboundSettings:
        """Settings that aim ``bot.twilio_outbound.rest_client`` at this fake."""
        values = {"account_sid": self.account_sid, "auth_token": self.auth_token,
                  "from_number": from_number, "messaging_service_sid": messaging_service_sid,
                  "api_base_url": self.url, **overrides}
        return OutboundSettings(**values)

    def reset(self, timeout: float = 5.0) -> None:
        """Forget everything (records, messages, opt-outs, failures, API keys, throttling, delay)
        and drop callbacks not yet posted, so one running fake can serve test after test."""
        with self._idle:
            self._generation += 1
            self._clear()
            self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _clear(self) -> None:
        self.delay = 0.0  # seconds every API answer is held back (after the work is done)
        self.callback_interval = 0.0  # seconds the worker waits before posting each status callback
        self._api_keys: dict[str, str] = {}
        self._opted_out: set[str] = set()
        self._failures: dict[str, tuple[str, int]] = {}
        self._attempts: list[Attempt] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._callbacks: list[Callback] = []
        self._throttled = 0
        self._bucket: tuple[float, float] | None = None  # (rate per second, burst)
        self._tokens = 0.0
        self._refilled = 0.0

    # -- configuration --------------------------------------------------------------------------

    def add_api_key(self, key_sid: str, secret: str) -> None:
        """Accept Basic auth with this API key (``SK...``) and secret, for this account."""
        with self._lock:
            self._api_keys[key_sid] = secret

    def opt_out(self, *numbers: str) -> None:
        """Creates to these numbers fail with 21610 (the recipient replied STOP)."""
        with self._lock:
            self._opted_out.update(numbers)

    def opt_in(self, *numbers: str) -> None:
        with self._lock:
            self._opted_out.difference_update(numbers)

    def fail_delivery(self, number: str, code: int = 30003, status: str = "undelivered") -> None:
        """Messages to ``number`` are accepted but end ``undelivered`` (after ``sent``) or
        ``failed`` (straight from ``queued``) with ``ErrorCode`` ``code``."""
        if status not in ("undelivered", "failed"):
            raise ValueError(f"status must be 'undelivered' or 'failed', not {status!r}")
        with self._lock:
            self._failures[number] = (status, code)

    def throttle(self, count: int = 1) -> None:
        """The next ``count`` creates fail with HTTP 429 / 20429."""
        with self._lock:
            self._throttled += count

    def rate_limit(self, per_second: float | None, burst: float | None = None) -> None:
        """A token bucket: at most ``burst`` creates at once, refilled at ``per_second``; creates
        beyond it fail with 429 / 20429. ``None`` removes the limit."""
        with self._lock:
            if per_second is None:
                self._bucket = None
                return
            capacity = burst if burst is not None else max(per_second, 1.0)
            self._bucket = (per_second, capacity)
            self._tokens, self._refilled = capacity, time.monotonic()

    # -- what happened --------------------------------------------------------------------------

    @property
    def attempts(self) -> list[Attempt]:
        """Every create request, in arrival order (a copy)."""
        with self._lock:
            return list(self._attempts)

    @property
    def created(self) -> list[Attempt]:
        """The accepted creates, in arrival order (a copy)."""
        with self._lock:
            return [attempt for attempt in self._attempts if attempt.accepted]

    @property
    def messages(self) -> dict[str, dict[str, Any]]:
        """The message resources by sid, as GET would answer them now (copies)."""
        with self._lock:
            return {sid: dict(resource) for sid, resource in self._messages.items()}

    @property
    def callbacks(self) -> list[Callback]:
        """The status callbacks posted so far, in order (a copy)."""
        with self._lock:
            return list(self._callbacks)

    def wait_for_callbacks(self, timeout: float = 5.0) -> list[Callback]:
        """Block until every queued callback was posted; returns all callbacks posted so far.

        Blocking: from an async test whose receiver runs on the same event loop, use
        :meth:`wait_for_callbacks_async` instead."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._pending == 0, timeout=timeout):
                raise TimeoutError(f"{self._pending} status callback(s) still pending after {timeout}s")
            return list(self._callbacks)

    async def wait_for_callbacks_async(self, timeout: float = 5.0) -> list[Callback]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._pending == 0:
                    return list(self._callbacks)
                pending = self._pending
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending} status callback(s) still pending after {timeout}s")
            await asyncio.sleep(0.005)

    def post_callback(self, url: str, *, message_sid: str | None = None, status: str = "failed",
                      to: str = "+15551234567", from_: str = DEFAULT_FROM, error_code: int | None = None,
                      messaging_service_sid: str | None = None, **extra: str) -> dict[str, str]:
        """Queue an arbitrary signed status callback (e.g. ``ErrorCode`` 21610 for a sid the bot
        never sent); the background worker posts it. Returns the form it will post."""
        form = self._callback_form(message_sid or "SM" + uuid.uuid4().hex, status, to, from_,
                                   messaging_service_sid, error_code)
        form.update(extra)
        ready = threading.Event()
        ready.set()
        with self._lock:
            self._pending += 1
            generation = self._generation
        self._jobs.put(_Job(url=url, ready=ready, generation=generation, form=form))
        return form

    # -- the API --------------------------------------------------------------------------------

    def _credentials(self, request: Request) -> tuple[str | None, bool]:
        """(Basic-auth user, whether user and secret are valid for this account)."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, colon, secret = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        if not colon:
            return user, False
        with self._lock:
            expected = self.auth_token if user == self.account_sid else self._api_keys.get(user)
        return user, expected is not None and hmac.compare_digest(secret.encode(), expected.encode())

    def _authenticated(self, request: Request) -> tuple[str | None, bool]:
        user, valid = self._credentials(request)
        return user, valid and request.path_params["account_sid"] == self.account_sid

    def _take_token(self) -> bool:
        """Whether a create may go through the throttle and the rate limit (call under the lock)."""
        if self._throttled > 0:
            self._throttled -= 1
            return False
        if self._bucket is None:
            return True
        rate, capacity = self._bucket
        now = time.monotonic()
        self._tokens = min(capacity, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _refusal(self, form: dict[str, str]) -> JSONResponse | None:
        to, from_ = form.get("To"), form.get("From")
        if not to:
            return twilio_error(400, TO_REQUIRED, "A 'To' phone number is required.")
        if not E164.match(to):
            return twilio_error(400, INVALID_TO, f"The 'To' number {to} is not a valid phone number.")
        if not from_ and not form.get("MessagingServiceSid"):
            return twilio_error(400, FROM_REQUIRED, "A 'From' phone number is required.")
        if from_ and not (E164.match(from_) or SHORT_CODE.match(from_) or ALPHANUMERIC_SENDER.match(from_)):
            return twilio_error(400, INVALID_FROM, f"The 'From' number {from_} is not a valid phone number, "
                                                   "shortcode, or alphanumeric sender ID.")
        body = form.get("Body", "")
        if not body and not form.get("MediaUrl"):
            return twilio_error(400, BODY_REQUIRED, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return twilio_error(400, BODY_TOO_LONG,
                                "The concatenated message body exceeds the 1600 character limit.")
        with self._lock:
            opted_out = to in self._opted_out
        if opted_out:
            return twilio_error(400, UNSUBSCRIBED, "Attempt to send to unsubscribed recipient")
        return None

    async def _create_message(self, request: Request) -> Response:
        generation = self._generation
        pairs = parse_qsl((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)
        form = dict(pairs)
        media = [value for key, value in pairs if key == "MediaUrl"]
        user, authenticated = self._authenticated(request)
        response: Response | None = None
        if not authenticated:
            response = twilio_error(401, AUTHENTICATE, "Authenticate",
                                    headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        else:
            with self._lock:
                allowed = self._take_token()
            if not allowed:
                response = twilio_error(429, TOO_MANY_REQUESTS, "Too Many Requests")
            else:
                response = self._refusal(form)
        sid = None
        if response is None:
            ready = threading.Event()  # set once the 201 went out: callbacks come after it
            sid, resource, jobs = self._accept(form, media, ready, generation)
            for job in jobs:
                self._jobs.put(job)
            response = JSONResponse(resource, status_code=201, background=BackgroundTask(ready.set))
        error_code = json.loads(bytes(response.body))["code"] if response.status_code != 201 else None
        attempt = Attempt(to=form.get("To"), from_=form.get("From"), body=form.get("Body"),
                          status_callback=form.get("StatusCallback"),
                          messaging_service_sid=form.get("MessagingServiceSid"), form=form, username=user,
                          status=response.status_code, error_code=error_code, sid=sid)
        with self._lock:
            if generation == self._generation:
                self._attempts.append(attempt)
        if self.delay:
            await asyncio.sleep(self.delay)
        return response

    def _accept(self, form: dict[str, str], media: list[str], ready: threading.Event,
                generation: int) -> tuple[str, dict[str, Any], list[_Job]]:
        sid = "SM" + uuid.uuid4().hex
        now = rfc2822(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        service_sid = form.get("MessagingServiceSid")
        body = form.get("Body", "")
        resource: dict[str, Any] = {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": body,
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": form.get("From"),
            "messaging_service_sid": service_sid, "num_media": str(len(media)),
            "num_segments": str(num_segments(body)), "price": None, "price_unit": "USD", "sid": sid,
            # Sent with only a Messaging Service, Twilio answers "accepted" and picks From later.
            "status": "accepted" if service_sid and not form.get("From") else "queued",
            "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
            "to": form["To"], "uri": uri,
        }
        jobs: list[_Job] = []
        callback_url = form.get("StatusCallback")
        with self._lock:
            if generation != self._generation:  # a reset happened while this request was read
                return sid, dict(resource), []
            self._messages[sid] = resource
            failure = self._failures.get(form["To"])
            if failure is None:
                steps: list[tuple[str, int | None]] = [("queued", None), ("sent", None), ("delivered", None)]
            elif failure[0] == "failed":
                steps = [("queued", None), ("failed", failure[1])]
            else:
                steps = [("queued", None), ("sent", None), ("undelivered", failure[1])]
            if callback_url:
                jobs = [_Job(url=callback_url, ready=ready, generation=generation, sid=sid, status=status,
                             error_code=code) for status, code in steps]
                self._pending += len(jobs)
        return sid, dict(resource), jobs

    async def _fetch_message(self, request: Request) -> Response:
        _, authenticated = self._authenticated(request)
        if not authenticated:
            response: Response = twilio_error(401, AUTHENTICATE, "Authenticate",
                                              headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        else:
            with self._lock:
                resource = self._messages.get(request.path_params["sid"])
                resource = dict(resource) if resource is not None else None
            if resource is None:
                response = twilio_error(404, NOT_FOUND, f"The requested resource {request.url.path} was not found")
            else:
                response = JSONResponse(resource)
        if self.delay:
            await asyncio.sleep(self.delay)
        return response

    # -- status callbacks -----------------------------------------------------------------------

    def _callback_form(self, sid: str, status: str, to: str, from_: str | None, service_sid: str | None,
                       error_code: int | None) -> dict[str, str]:
        """The fields Twilio posts to a message's StatusCallback."""
        form = {"ApiVersion": API_VERSION, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
                "To": to, "From": from_ or "", "MessageSid": sid, "AccountSid": self.account_sid}
        if service_sid:
            form["MessagingServiceSid"] = service_sid
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        return form

    def _advance(self, job: _Job) -> dict[str, str] | None:
        """Move the message to the job's status (as GET will show it) and build its callback form
        (None when a reset forgot the message)."""
        with self._lock:
            resource = self._messages.get(job.sid or "")
            if resource is None or job.generation != self._generation:
                return None
            now = rfc2822(datetime.now(UTC))
            if resource["from"] is None:  # a Messaging Service picked its sender
                resource["from"] = self.service_number
            resource.update(status=job.status, date_updated=now)
            if job.status in ("sent", "delivered", "undelivered") and resource["date_sent"] is None:
                resource["date_sent"] = now
            if job.error_code is not None:
                resource["error_code"] = job.error_code
                resource["error_message"] = None
            return self._callback_form(resource["sid"], job.status, resource["to"], resource["from"],
                                       resource["messaging_service_sid"], job.error_code)

    def _stale(self, job: _Job) -> bool:
        return self._stopping or job.generation != self._generation

    def _deliver_callbacks(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if self._stale(job):
                    continue
                job.ready.wait(timeout=2.0)  # after the create response, as Twilio does
                pause_until = time.monotonic() + self.callback_interval
                while time.monotonic() < pause_until and not self._stale(job):
                    time.sleep(0.005)
                if self._stale(job):
                    continue
                form = self._advance(job) if job.sid else job.form
                if form is None:
                    continue
                signature = RequestValidator(self.auth_token).compute_signature(job.url, form)
                headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1",
                           "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
                assert self._http is not None
                try:
                    answer = self._http.post(job.url, data=form, headers=headers)
                    record = Callback(job.url, form, signature, answer.status_code)
                except httpx.HTTPError as error:
                    record = Callback(job.url, form, signature, None, f"{type(error).__name__}: {error}")
                with self._lock:
                    if job.generation == self._generation:
                        self._callbacks.append(record)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


def serve(port: int = DEFAULT_PORT, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN,
          *, show_token: bool = True, out: Callable[[str], object] | None = None) -> None:
    """Serve the fake on 127.0.0.1:``port`` until Ctrl-C or SIGTERM (``python -m bot fake-twilio``).

    Prints the settings that point the bot at it, then a line per create request (accepted or
    refused). ``show_token=False`` prints a placeholder instead of the auth token (one taken from
    the environment may be a real one, and tokens are never printed)."""
    out = out or _say
    fake = FakeTwilio(account_sid, auth_token, port=port)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        fake.start()
        token = auth_token if show_token else "<the TWILIO_AUTH_TOKEN already in your environment>"
        out(f"fake Twilio API on {fake.url} (account {fake.account_sid}); Ctrl-C to stop\n"
            "point the bot at it with these settings (environment or .env):\n"
            f"  TWILIO_API_BASE_URL={fake.url}\n"
            f"  TWILIO_ACCOUNT_SID={fake.account_sid}\n"
            f"  TWILIO_AUTH_TOKEN={token}\n"
            f"  TWILIO_FROM={DEFAULT_FROM}")
        shown = 0
        while not stopping.wait(0.2):
            attempts = fake.attempts
            for attempt in attempts[shown:]:
                outcome = f"accepted {attempt.sid}" if attempt.accepted else f"refused {attempt.error_code}"
                out(f"{attempt.to}: {attempt.body!r} -> {outcome}")
            shown = len(attempts)
    finally:
        fake.stop()
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also when stdout is a pipe
