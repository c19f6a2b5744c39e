"""HTTP in, TwiML out: ``POST /sms``. Knows HTTP and Twilio's form, nothing about flows.

A plain ASGI endpoint rather than a Starlette request handler: this is the path every message
takes, and the Request/Response objects cost more than the whole conversation engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from bot import metrics
from bot.inbox import Inbox
from bot.metrics import WebhookOutcome
from bot.outbound import record_delivery
from bot.settings import Settings, is_loopback_address
from bot.store.base import StoreBusy, StoreUnavailable
from bot.twilio_inbound import (
    BadRequest,
    SignatureChecker,
    channel_of,
    outgoing_messages,
    parse_form,
    parse_inbound,
    render_twiml,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 200  # Twilio sends about 20
_TEXT_XML = [(b"content-type", b"text/xml; charset=utf-8")]


class _Refused(Exception):
    """The request cannot be processed; ``status`` and ``reason`` go back to the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class SmsWebhook:
    """POST /sms: Twilio's "A message comes in" webhook, as an ASGI app (Starlette routes an
    object like this to its ``__call__`` without wrapping it in Request/Response)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _sms(scope, receive, send)


async def _sms(scope: Scope, receive: Receive, send: Send) -> None:
    await _answer(send, _handle(scope, receive), 200, _TEXT_XML, "sms")


class StatusWebhook:
    """POST /sms/status: Twilio's delivery reports for messages we sent (signed like /sms)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(send, _record_status(scope, receive), 204, [], "status")


async def _record_status(scope: Scope, receive: Receive) -> tuple[str, WebhookOutcome]:
    await _record_delivery(scope, await _signed_form(scope, receive))
    return "", WebhookOutcome.DELIVERY_REPORT


async def _record_delivery(scope: Scope, form: dict[str, str]) -> None:
    message_sid, status = form.get("MessageSid", ""), _status_of(form)
    if not message_sid or not status:
        raise _Refused(400, "missing MessageSid or MessageStatus")
    await record_delivery(scope["state"]["store"], message_sid, status, form.get("ErrorCode") or None,
                          form.get("To", ""))


#: What Twilio reports about a message we sent; a message someone sends us is "received".
DELIVERY_STATUSES = frozenset({"accepted", "scheduled", "canceled", "queued", "sending", "sent", "failed",
                               "delivered", "undelivered", "read", "partially_delivered"})


def _status_of(form: dict[str, str]) -> str:
    return form.get("MessageStatus") or form.get("SmsStatus", "")


def _is_delivery_report(form: dict[str, str]) -> bool:
    """A status callback Twilio posted to /sms (a number or Messaging Service whose status
    callback URL is the webhook's): a report on a message we sent, not a text to answer."""
    return _status_of(form).lower() in DELIVERY_STATUSES


async def _answer(send: Send, work: Awaitable[tuple[str, WebhookOutcome]], status: int,
                  headers: list[tuple[bytes, bytes]], endpoint: str) -> None:
    """Run a request's work and answer with its text, or with the refusal or 503 it ended in;
    counted (``bot/metrics.py``) once answered."""
    started = time.perf_counter()
    try:
        text, outcome = await work
    except _Refused as refused:
        await _respond(send, refused.status, refused.reason + "\n", extra=_allow_post(refused.status))
        metrics.webhook(endpoint, metrics.rejected(refused.status), started)
        return
    except StoreBusy as error:  # contention, or the store unavailable: Twilio tries again later
        unavailable = isinstance(error, StoreUnavailable)
        log.log(logging.ERROR if unavailable else logging.WARNING, "%s", error)
        await _respond(send, 503, "store unavailable, try again\n" if unavailable else "busy, try again\n",
                       extra=[(b"retry-after", b"1")])
        metrics.webhook(endpoint, WebhookOutcome.UNAVAILABLE if unavailable else WebhookOutcome.BUSY, started)
        return
    except Exception:
        metrics.webhook(endpoint, WebhookOutcome.ERROR, started)  # answered 500 by the app, and logged
        raise
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())] if body else headers})
    await send({"type": "http.response.body", "body": body})
    metrics.webhook(endpoint, outcome, started)


async def _handle(scope: Scope, receive: Receive) -> tuple[str, WebhookOutcome]:
    form = await _signed_form(scope, receive)
    if _is_delivery_report(form):  # else it would be a text from our own number, and answered
        await _record_delivery(scope, form)
        return render_twiml(()), WebhookOutcome.DELIVERY_REPORT
    try:
        inbound = parse_inbound(form)
    except BadRequest as error:
        raise _Refused(400, str(error)) from None
    state = scope["state"]
    inbox: Inbox = state["inbox"]
    patience = state.get("patience")
    received = await inbox.receive(inbound, patience() if patience is not None else None)
    outcome = WebhookOutcome.DUPLICATE if received.duplicate else \
        WebhookOutcome.DEFERRED if received.deferred else WebhookOutcome.ANSWERED
    return render_twiml(outgoing_messages(received.replies, channel_of(inbound.sender))), outcome


async def _signed_form(scope: Scope, receive: Receive) -> dict[str, str]:
    """The form of a POST from Twilio, its signature checked; raises _Refused otherwise."""
    if scope["method"] != "POST":
        raise _Refused(405, "Method Not Allowed")
    state = scope["state"]
    settings: Settings = state["settings"]
    headers = _headers(scope)
    checker: SignatureChecker | None = state["signature_checker"]
    if checker is None and not _from_loopback(scope, headers):
        # Dev mode without a token checks no signature, so it answers this machine and no other,
        # however the server was started (uvicorn --host 0.0.0.0) or reached (a tunnel's agent).
        raise _Refused(403, "unsigned requests are only answered from loopback (dev mode)")
    content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if content_type != FORM_TYPE.encode():
        raise _Refused(415, f"expected {FORM_TYPE}, as Twilio sends")
    raw = await _read_body(receive, headers, settings.max_body_bytes)
    try:
        pairs = parse_form(raw, MAX_FIELDS)
    except BadRequest as error:
        raise _Refused(400, str(error)) from None
    form = dict(pairs)
    signed: Mapping[str, str | list[str]] = form
    if len(form) != len(pairs):  # a field given twice: the first value is the field's, all are signed
        form = {}
        every: dict[str, list[str]] = {}
        for key, value in pairs:
            form.setdefault(key, value)
            every.setdefault(key, []).append(value)
        signed = every

    if checker is not None:
        signature = headers.get(b"x-twilio-signature")
        if signature is None or not checker.valid(_signed_url(scope, headers, settings), signed,
                                                  signature.decode("latin-1")):
            raise _Refused(403, "invalid or missing X-Twilio-Signature")
    return form


_RELAYED = (b"x-forwarded-for", b"forwarded", b"x-real-ip", b"x-forwarded-host")


def _from_loopback(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """The client is this machine, and not a proxy or tunnel on it relaying someone else
    (uvicorn already replaces the client with X-Forwarded-For's when the proxy is on loopback)."""
    client = scope.get("client")
    if not client or not is_loopback_address(str(client[0])):
        return False
    return not any(name in headers for name in _RELAYED)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name (the first of repeated ones, as Twilio sends none twice)."""
    return {name.lower(): value for name, value in reversed(scope["headers"])}  # reversed: the first wins


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"body larger than {limit} bytes")
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refused(400, "client disconnected")
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            raise _Refused(413, f"body larger than {limit} bytes")
        if not message.get("more_body", False):
            return bytes(chunks)


def _signed_url(scope: Scope, headers: dict[bytes, bytes], settings: Settings) -> str:
    """The URL Twilio requested, as it signed it: PUBLIC_URL, proxy headers, or what we received."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    path = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    if settings.public_url:
        return settings.public_url + path
    host = headers.get(b"host", b"").decode("latin-1")
    if settings.trust_proxy:
        proto = headers.get(b"x-forwarded-proto", scope["scheme"].encode()).decode("latin-1")
        host = headers.get(b"x-forwarded-host", host.encode()).decode("latin-1")
        return f"{proto.split(',')[0].strip()}://{host.split(',')[0].strip()}{path}"
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    return f"{scope['scheme']}://{host}{path}"


def _allow_post(status: int) -> list[tuple[bytes, bytes]]:
    return [(b"allow", b"POST")] if status == 405 else []


async def _respond(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})
