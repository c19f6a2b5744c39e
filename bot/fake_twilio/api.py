"""FakeTwilio: the Messages API routes (auth, create, fetch) on loopback, with the fake's lifecycle."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import threading
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.fake_twilio.delivery import CallbackDelivery, Job, status_steps
from bot.fake_twilio.server import LoopbackServer
from bot.fake_twilio.state import Attempt, Ledger
from bot.fake_twilio.wire import (
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    UNSUBSCRIBED,
    callback_form,
    message_resource,
    refusal,
    twilio_error,
    unauthenticated,
)
from bot.twilio_outbound import OutboundSettings

# The credentials the fake accepts unless told otherwise, and the number to send from: made up,
# so a demo needs no Twilio account (the README's broadcast example uses them).
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
DEFAULT_FROM = "+15550001111"
SERVICE_NUMBER = "+15550002222"  # the number a Messaging Service "picks" from its sender pool


class FakeTwilio(Ledger):
    """Twilio's Messages API on loopback, with knobs for the failures tests need.

    The knobs and the records of what happened are :class:`Ledger`'s; status callbacks are posted
    by :class:`CallbackDelivery`."""

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN, *,
                 service_number: str = SERVICE_NUMBER, port: int = 0, keep_messages: bool = True) -> None:
        super().__init__(keep_messages=keep_messages)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.service_number = service_number
        self._delivery = CallbackDelivery(self, account_sid, auth_token, service_number)
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
        self._delivery.start()
        try:
            self._server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._server.stop()  # first: no create may queue a callback after the worker is gone
        self._delivery.stop()

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

    def post_callback(self, url: str, *, message_sid: str | None = None, status: str = "failed",
                      to: str = "+15551234567", from_: str = DEFAULT_FROM, error_code: int | None = None,
                      messaging_service_sid: str | None = None, **extra: str) -> dict[str, str]:
        """Queue an arbitrary signed status callback (e.g. ``ErrorCode`` 21610 for a sid the bot
        never sent); the background worker posts it. Returns the form it will post."""
        form = callback_form(self.account_sid, message_sid or "SM" + uuid.uuid4().hex, status, to, from_,
                             messaging_service_sid, error_code)
        form.update(extra)
        ready = threading.Event()
        ready.set()  # no create response to wait for
        with self._lock:
            self._pending += 1
            generation = self._generation
        self._delivery.enqueue(Job(url=url, ready=ready, generation=generation, form=form))
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

    def _refusal(self, form: dict[str, str], media: list[str]) -> JSONResponse | None:
        """Twilio's answer to a create it refuses, checked in Twilio's order; None when it is sent."""
        refused = refusal(form, media)
        if refused is not None:
            return refused
        with self._lock:
            opted_out = form.get("To") in self._opted_out
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
            response = unauthenticated()
        else:
            with self._lock:
                allowed = self._take_token()
            if not allowed:
                response = twilio_error(429, TOO_MANY_REQUESTS, "Too Many Requests")
            else:
                response = self._refusal(form, media)
        sid = None
        if response is None:
            ready = threading.Event()  # set once the 201 went out: callbacks come after it
            sid, resource, jobs = self._accept(form, media, ready, generation)
            for job in jobs:
                self._delivery.enqueue(job)
            response = JSONResponse(resource, status_code=201, background=BackgroundTask(ready.set))
        error_code = json.loads(bytes(response.body))["code"] if response.status_code != 201 else None
        attempt = Attempt(to=form.get("To"), from_=form.get("From"), body=form.get("Body"),
                          status_callback=form.get("StatusCallback"),
                          messaging_service_sid=form.get("MessagingServiceSid"), form=form, username=user,
                          status=response.status_code, error_code=error_code, sid=sid, media=tuple(media))
        with self._lock:
            if generation == self._generation:
                self._attempts.append(attempt)
        if self.delay:
            await asyncio.sleep(self.delay)
        return response

    def _accept(self, form: dict[str, str], media: list[str], ready: threading.Event,
                generation: int) -> tuple[str, dict[str, Any], list[Job]]:
        """Store the new message and plan its status callbacks (counted as pending under the same lock)."""
        sid = "SM" + uuid.uuid4().hex
        resource = message_resource(self.account_sid, sid, form, media)
        jobs: list[Job] = []
        callback_url = form.get("StatusCallback")
        with self._lock:
            if generation != self._generation or not self.keep_messages:  # a reset happened while this
                return sid, dict(resource), []  # request was read (or nothing is kept)
            self._messages[sid] = resource
            steps = status_steps(self._failures.get(form["To"]))
            if callback_url:
                jobs = [Job(url=callback_url, ready=ready, generation=generation, sid=sid, status=status,
                            error_code=code) for status, code in steps]
                self._pending += len(jobs)
        return sid, dict(resource), jobs

    async def _fetch_message(self, request: Request) -> Response:
        _, authenticated = self._authenticated(request)
        if not authenticated:
            response: Response = unauthenticated()
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
