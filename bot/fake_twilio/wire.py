"""Twilio's Messages API on the wire: what a create must carry, and the errors, resources and callbacks it sends."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from bot.segments import cost

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
SHORT_CODE = re.compile(r"^\d{5,6}$")
WHATSAPP = "whatsapp:"  # WhatsApp addresses are whatsapp:+E164, in To and From alike
MAX_BODY_CHARS = 1600
MAX_MEDIA = 10  # MediaUrl values per message

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
INVALID_MEDIA_URL = 21620
TOO_MANY_MEDIA = 21623
CHANNEL_MISMATCH = 21910


def num_segments(body: str) -> int:
    """SMS segments of ``body`` as Twilio counts them: GSM-7 160/153 septets, else UCS-2 70/67 UTF-16 units."""
    # bot/segments.py counts an empty text as 0 segments; Twilio reports 1 (a media-only message).
    return max(1, cost(body).segments)


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer in the shape Twilio's REST API uses."""
    payload = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
               "status": status}
    return JSONResponse(payload, status_code=status, headers=headers)


def unauthenticated() -> JSONResponse:
    """The 401 / 20003 Twilio answers to missing or wrong credentials (or another account's path)."""
    return twilio_error(401, AUTHENTICATE, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})


def refusal(form: dict[str, str], media: Sequence[str] = ()) -> JSONResponse | None:
    """The 400 Twilio answers to a create form it cannot send, in the order it checks; None when the
    form is sendable. ``media``: every ``MediaUrl`` value (the field repeats, one per picture).
    (An opted-out ``To``, 21610, depends on the account, so the caller checks it after.)"""
    to, from_ = form.get("To"), form.get("From")
    if not to:
        return twilio_error(400, TO_REQUIRED, "A 'To' phone number is required.")
    if not E164.match(to.removeprefix(WHATSAPP)):
        return twilio_error(400, INVALID_TO, f"The 'To' number {to} is not a valid phone number.")
    if not from_ and not form.get("MessagingServiceSid"):
        return twilio_error(400, FROM_REQUIRED, "A 'From' phone number is required.")
    bare_from = (from_ or "").removeprefix(WHATSAPP)
    if from_ and not (E164.match(bare_from) or SHORT_CODE.match(bare_from) or ALPHANUMERIC_SENDER.match(bare_from)):
        return twilio_error(400, INVALID_FROM, f"The 'From' number {from_} is not a valid phone number, "
                                               "shortcode, or alphanumeric sender ID.")
    if from_ and from_.startswith(WHATSAPP) != to.startswith(WHATSAPP):
        return twilio_error(400, CHANNEL_MISMATCH, "Invalid From and To pair. From and To should be of the "
                                                   "same channel")
    body = form.get("Body", "")
    if not body and not media:
        return twilio_error(400, BODY_REQUIRED, "Message body is required.")
    if len(media) > MAX_MEDIA:
        return twilio_error(400, TOO_MANY_MEDIA, "Number of media files exceeds allowed limit")
    if not all(_fetchable(url) for url in media):
        return twilio_error(400, INVALID_MEDIA_URL, "Invalid media URL(s)")
    if len(body) > MAX_BODY_CHARS:
        return twilio_error(400, BODY_TOO_LONG, "The concatenated message body exceeds the 1600 character limit.")
    return None


def _fetchable(url: str) -> bool:
    """An address Twilio could fetch a picture from: http(s), with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(char.isspace() for char in url)


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC))  # "Thu, 24 Aug 2023 05:01:45 +0000"


def message_resource(account_sid: str, sid: str, form: dict[str, str], media: list[str]) -> dict[str, Any]:
    """The message resource Twilio answers a create with (status ``queued``, or ``accepted``)."""
    now = rfc2822(datetime.now(UTC))
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
    service_sid = form.get("MessagingServiceSid")
    body = form.get("Body", "")
    return {
        "account_sid": account_sid, "api_version": API_VERSION, "body": body,
        "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": form.get("From"),
        "messaging_service_sid": service_sid, "num_media": str(len(media)),
        # An MMS is one message whatever its text (Twilio reports 1 segment).
        "num_segments": "1" if media else str(num_segments(body)), "price": None, "price_unit": "USD", "sid": sid,
        # Sent with only a Messaging Service, Twilio answers "accepted" and picks From later.
        "status": "accepted" if service_sid and not form.get("From") else "queued",
        "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        "to": form["To"], "uri": uri,
    }


def callback_form(account_sid: str, sid: str, status: str, to: str, from_: str | None, service_sid: str | None,
                  error_code: int | None) -> dict[str, str]:
    """The fields Twilio posts to a message's StatusCallback."""
    form = {"ApiVersion": API_VERSION, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
            "To": to, "From": from_ or "", "MessageSid": sid, "AccountSid": account_sid}
    if service_sid:
        form["MessagingServiceSid"] = service_sid
    if error_code is not None:
        form["ErrorCode"] = str(error_code)
    return form
