"""HTTP in, TwiML out: ``POST /sms``. Knows HTTP and Twilio's form, nothing about flows."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from bot.inbox import Inbox
from bot.store.base import StoreBusy
from bot.settings import Settings
from bot.twilio_io import BadRequest, SignatureChecker, parse_inbound, render_twiml

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 200  # Twilio sends about 20


class _TooLarge(Exception):
    pass


async def sms(request: Request) -> Response:
    settings: Settings = request.state.settings
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        return _refuse(415, f"expected {FORM_TYPE}, as Twilio sends")
    try:
        raw = await _read_body(request, settings.max_body_bytes)
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw),
                          errors="strict", max_num_fields=MAX_FIELDS)
    except _TooLarge:
        return _refuse(413, f"body larger than {settings.max_body_bytes} bytes")
    except ClientDisconnect:
        return _refuse(400, "client disconnected")
    except (UnicodeDecodeError, ValueError):
        return _refuse(400, "malformed form body")
    form: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, value)
        every.setdefault(key, []).append(value)

    checker: SignatureChecker | None = request.state.signature_checker
    if checker is not None:
        signed = every if len(every) != len(pairs) else form
        if not checker.valid(_signed_url(request, settings), signed, request.headers.get("x-twilio-signature")):
            return _refuse(403, "invalid or missing X-Twilio-Signature")
    try:
        inbound = parse_inbound(form)
    except BadRequest as error:
        return _refuse(400, str(error))

    inbox: Inbox = request.state.inbox
    try:
        received = await inbox.receive(inbound)
    except StoreBusy as error:
        log.warning("%s", error)
        return PlainTextResponse("busy, try again\n", status_code=503, headers={"Retry-After": "1"})
    return Response(render_twiml(received.replies), media_type="text/xml")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise _TooLarge
    return bytes(chunks)


def _signed_url(request: Request, settings: Settings) -> str:
    """The URL Twilio requested, as it signed it: PUBLIC_URL, proxy headers, or what we received."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    path = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    if settings.public_url:
        return settings.public_url + path
    if settings.trust_proxy:
        proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", request.headers.get("host", "")).split(",")[0].strip()
        return f"{proto}://{host}{path}"
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}{path}"


def _refuse(status: int, reason: str) -> Response:
    return PlainTextResponse(reason + "\n", status_code=status)
