"""Signed webhooks exactly as Twilio sends them, pre-generated so the load generator only replays bytes.

Every request carries Twilio's 20 usual form fields (``tests/signed_webhooks.twilio_form``), a
MessageSid never used before in this run (the bot de-duplicates MessageSids, so a repeat would be
answered from the record and flatter it), and an ``X-Twilio-Signature`` for the URL the servers
check. Signatures are computed with a cached HMAC prefix for speed and cross-checked against the
SDK's ``RequestValidator`` (``compute_signature`` and ``validate``) on a sample of every batch.

Conversations really advance: sender ``i % S`` gets message ``i // S`` of its cycle
STATUS -> order number -> YES (bench/flows/order.yaml), so with ``S`` senders a sender's next
message is ``S`` requests later and never overtakes its previous one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlencode, urlsplit

from twilio.request_validator import RequestValidator

from tests.signed_webhooks import twilio_form

AUTH_TOKEN = "bench-auth-token-5f0c8a1e9b2d4c6f"
BOT_NUMBER = "+15550001111"
STEPS = ("STATUS", "{order}", "YES")  # one cycle of the benchmark flow
STEP_AFTER_STATUS = 1  # a stored conversation waiting at ask_number expects the order number next


def sender_number(index: int) -> str:
    """A distinct US number per index (index < 7,000,000), never the bot's own number."""
    return f"+1555{2_000_000 + index:07d}"


def order_number(sender: str) -> str:
    return f"{100_000 + (int(sender[-7:]) * 7919) % 900_000:06d}"


class SidSource:
    """MessageSids unique in this run and across runs: a random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def __next__(self) -> str:
        return f"SM{self._prefix}{next(self._counter):020x}"


@dataclass
class Signer:
    """HMAC-SHA1 of URL + sorted fields, as ``RequestValidator.compute_signature`` computes it."""

    url: str
    token: str = AUTH_TOKEN

    def __post_init__(self) -> None:
        self._validator = RequestValidator(self.token)

    def sign(self, form: dict[str, str]) -> str:
        payload = self.url + "".join(key + form[key] for key in sorted(form))
        digest = hmac.new(self.token.encode(), payload.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def check(self, form: dict[str, str], signature: str) -> None:
        """Raise unless Twilio's SDK agrees (both the signature and ``validate``)."""
        expected = self._validator.compute_signature(self.url, form)
        if expected != signature or not self._validator.validate(self.url, form, signature):
            raise AssertionError(f"signature mismatch for {form['MessageSid']}: {signature} != {expected}")


@dataclass
class Traffic:
    """The message stream for one server (one store): a cursor over the senders' cycles.

    ``take(n)`` returns the next ``n`` requests as raw HTTP/1.1 bytes; ``give_back(k)`` returns
    the last ``k`` of them unsent (a load generator that stopped early), so those senders get the
    same step again next time — with new MessageSids, since a sid is never reissued.
    """

    signer: Signer
    sids: SidSource
    senders: Sequence[str]
    host: str  # Host header: host:port of the URL the load generator connects to
    first_step: int = 0  # 0: senders start idle (STATUS first); 1: stored conversations at ask_number
    cursor: int = 0
    bodies: dict[str, int] = field(default_factory=dict)  # how many of each body were issued

    def take(self, count: int, close: bool = False) -> list[bytes]:
        """The next ``count`` requests; ``close`` asks for one request per connection (latency runs)."""
        out = []
        senders, size = self.senders, len(self.senders)
        path = urlsplit(self.signer.url).path or "/"
        for index in range(self.cursor, self.cursor + count):
            sender = senders[index % size]
            step = STEPS[(self.first_step + index // size) % len(STEPS)]
            body = order_number(sender) if step == "{order}" else step
            sid = next(self.sids)
            form = twilio_form(body, sender, message_sid=sid, to=BOT_NUMBER)
            signature = self.signer.sign(form)
            if index % 997 == 0:
                self.signer.check(form, signature)
                if form_body(form) != urlencode(form, quote_via=quote_plus).encode():
                    raise AssertionError(f"form body template out of date for {form}")
            out.append(render_request(path, self.host, form, signature, sid, close))
            self.bodies[step] = self.bodies.get(step, 0) + 1
        self.cursor += count
        return out

    def give_back(self, count: int) -> None:
        self.cursor -= count


_MARKS = {"sid": "BENCHSIDMARK", "body": "BENCHBODYMARK", "sender": "BENCHFROMMARK"}
_TEMPLATE = urlencode(twilio_form(_MARKS["body"], _MARKS["sender"], message_sid=_MARKS["sid"], to=BOT_NUMBER),
                      quote_via=quote_plus)


def form_body(form: dict[str, str]) -> bytes:
    """``urlencode(form)`` for a ``twilio_form`` (fast path: a template; checked against urlencode
    on a sample of every batch by :meth:`Traffic.take`)."""
    return (_TEMPLATE.replace(_MARKS["sid"], form["MessageSid"])
            .replace(_MARKS["body"], quote_plus(form["Body"]))
            .replace(_MARKS["sender"], quote_plus(form["From"]))).encode()


def render_request(path: str, host: str, form: dict[str, str], signature: str, sid: str,
                   close: bool = False) -> bytes:
    """The request Twilio's webhook client sends (its headers, in its order)."""
    body = form_body(form)
    head = (f"POST {path} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {signature}\r\n"
            f"I-Twilio-Idempotency-Token: {sid[2:10]}-{sid[10:14]}-{sid[14:18]}-{sid[18:22]}-{sid[22:]}\r\n"
            "X-Home-Region: us1\r\n"
            "User-Agent: TwilioProxy/1.1\r\n"
            "Accept: */*\r\n"
            "Cache-Control: max-age=259200\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n")
    return head.encode() + body
