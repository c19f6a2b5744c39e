"""Opaque ids for phone numbers in console URLs: a link to one sender's page never carries their
number (URLs end up in browser history, proxy logs and screenshots), yet any worker reads it back.

An id is the number encrypted deterministically with keys derived from ``ADMIN_PASSWORD`` (the
SIV construction with HMAC-SHA256 as its pseudo-random function: a synthetic IV that is the MAC of
the number, and a keystream keyed by that IV), so the same number always has the same id, nobody
without the password can read or forge one, and no store lookup is needed to resolve it. Changing
the password changes every id, as it ends every session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

TAG_BYTES = 16
MAX_NUMBER_BYTES = 64  # "whatsapp:+" and 15 digits is 25


def _derived(password: str, purpose: str) -> bytes:
    return hmac.new(password.encode("utf-8"), f"textflow console sender id {purpose}".encode(), hashlib.sha256).digest()


class SenderIds:
    """``id_of(number)`` for URLs; ``number_of(id)`` back (None for anything not made here)."""

    def __init__(self, password: str) -> None:
        if not password:
            raise ValueError("sender ids need ADMIN_PASSWORD")
        self._mac = _derived(password, "mac")
        self._pad = _derived(password, "pad")

    def id_of(self, number: str) -> str:
        data = number.encode("utf-8")
        if not 0 < len(data) <= MAX_NUMBER_BYTES:
            raise ValueError(f"not a phone number: {len(data)} bytes")
        tag = hmac.new(self._mac, data, hashlib.sha256).digest()[:TAG_BYTES]
        hidden = bytes(a ^ b for a, b in zip(data, self._keystream(tag, len(data)), strict=True))
        return base64.urlsafe_b64encode(tag + hidden).decode("ascii").rstrip("=")

    def number_of(self, sender_id: str) -> str | None:
        if not 0 < len(sender_id) <= 2 * (TAG_BYTES + MAX_NUMBER_BYTES):
            return None
        try:
            raw = base64.urlsafe_b64decode(sender_id + "=" * (-len(sender_id) % 4))
        except (binascii.Error, ValueError):
            return None
        tag, hidden = raw[:TAG_BYTES], raw[TAG_BYTES:]
        if len(tag) < TAG_BYTES or not 0 < len(hidden) <= MAX_NUMBER_BYTES:
            return None
        data = bytes(a ^ b for a, b in zip(hidden, self._keystream(tag, len(hidden)), strict=True))
        if not hmac.compare_digest(hmac.new(self._mac, data, hashlib.sha256).digest()[:TAG_BYTES], tag):
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _keystream(self, tag: bytes, length: int) -> bytes:
        blocks = (hmac.new(self._pad, tag + bytes([counter]), hashlib.sha256).digest()
                  for counter in range((length + 31) // 32))
        return b"".join(blocks)[:length]
