"""The console's locks: the password check, the signed session cookie, CSRF tokens, the login rate
limit and the security headers every console answer carries.

All keys derive from ``ADMIN_PASSWORD`` (HMAC with a fixed purpose label), so every worker process
accepts the same cookies without a shared secret store, and changing the password logs everyone
out. Nothing here touches the webhook: the console is a separate app mounted beside it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "textflow_console"
CSRF_COOKIE = "textflow_console_csrf"
CSRF_FIELD = "csrf"  # the form field; fetch() sends the same token as the X-CSRF-Token header
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600  # a working day: then log in again

#: No script, style, font, image or connection from another origin; no framing; forms post here only.
#: Styles allow inline because the vendored diagram renderer (Mermaid) writes <style> into its SVG.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _derived_key(password: str, purpose: str) -> bytes:
    return hmac.new(password.encode("utf-8"), f"textflow console {purpose}".encode(), hashlib.sha256).digest()


class ConsoleKeys:
    """Signing and checking what the console hands to the browser."""

    def __init__(self, password: str) -> None:
        if not password:
            raise ValueError("the console needs ADMIN_PASSWORD")
        self._password_digest = hashlib.sha256(password.encode("utf-8")).digest()
        self._sessions = URLSafeTimedSerializer(_derived_key(password, "session"), salt="session")
        self._csrf = URLSafeTimedSerializer(_derived_key(password, "csrf"), salt="csrf")

    def password_matches(self, attempt: str) -> bool:
        """Constant time whatever the attempt's length (both sides hashed first)."""
        return hmac.compare_digest(hashlib.sha256(attempt.encode("utf-8")).digest(), self._password_digest)

    def new_session(self) -> str:
        return self._sessions.dumps({"id": secrets.token_urlsafe(16), "at": int(time.time())})

    def session_valid(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        try:
            self._sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # also SignatureExpired
            return False
        return True

    def new_csrf(self) -> str:
        """A signed random token, kept in a cookie and echoed by every form and fetch (double submit)."""
        return self._csrf.dumps(secrets.token_urlsafe(16))

    def csrf_valid(self, cookie: str | None, sent: str | None) -> bool:
        if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return False
        try:
            self._csrf.loads(cookie)
        except BadSignature:
            return False
        return True


@dataclass
class LoginLimiter:
    """Failed logins allowed per client address and in all, per window (per process): enough for
    typos, far too few to guess a password. Successful logins are not counted."""

    per_client: int = 5
    in_all: int = 50
    window_seconds: float = 15 * 60
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until this client may try again (0: now)."""
        now = time.monotonic() if now is None else now
        self._forget(now)
        waits = [0.0]
        mine = self._failures.get(client)
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[0] + self.window_seconds - now)
        if len(self._all) >= self.in_all:
            waits.append(self._all[0] + self.window_seconds - now)
        return max(waits)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures.setdefault(client, deque()).append(now)
        self._all.append(now)

    def _forget(self, now: float) -> None:
        cutoff = now - self.window_seconds
        while self._all and self._all[0] < cutoff:
            self._all.popleft()
        for client in [c for c, times in self._failures.items() if not times or times[-1] < cutoff]:
            del self._failures[client]
        for times in self._failures.values():
            while times and times[0] < cutoff:
                times.popleft()
