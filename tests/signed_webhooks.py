"""Build webhook requests exactly as Twilio sends them: its usual fields, signed with its HMAC."""

from __future__ import annotations

import itertools
import uuid
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "0" * 32
BOT_NUMBER = "+15550001111"

_counter = itertools.count(1)


def new_message_sid() -> str:
    return "SM" + uuid.uuid4().hex


def twilio_form(body: str, sender: str = "+15551234567", *, message_sid: str | None = None,
                to: str = BOT_NUMBER, **extra: str) -> dict[str, str]:
    """The 19 fields Twilio posts for an inbound SMS (values realistic, MessageSid unique)."""
    sid = message_sid or new_message_sid()
    form = {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
        "FromZip": "94105", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO", "Body": body, "FromCountry": "US", "To": to,
        "MessagingServiceSid": "MG" + "1" * 32, "ToZip": "", "NumSegments": "1",
        "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


def signed_request(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a signed webhook POST to ``url``."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(url, form, token),
        "User-Agent": "TwilioProxy/1.1",
    }
    return urlencode(form).encode(), headers
