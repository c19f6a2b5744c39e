"""What a fake remembers, under one lock: its messages, the requests and callbacks it saw, the knobs tests turn."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.fake_twilio.wire import rfc2822


@dataclass(frozen=True)
class Attempt:
    """One create request as the fake saw it, accepted or refused."""

    to: str | None
    from_: str | None
    body: str | None
    status_callback: str | None
    messaging_service_sid: str | None
    form: dict[str, str]  # one value per field (the last ``MediaUrl``: see ``media`` for all of them)
    username: str | None  # the Basic-auth user (account SID or API key SID)
    status: int  # the HTTP status the fake answered
    error_code: int | None = None
    sid: str | None = None  # set when accepted
    media: tuple[str, ...] = ()  # every ``MediaUrl``, in order: the pictures of an MMS

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


class Ledger:
    """The state the API routes and the callback worker share; :class:`FakeTwilio` is one.

    Every read and write holds ``_lock``: the routes run on uvicorn's thread, the callback worker on
    its own, and the test on a third. ``reset()`` bumps ``_generation`` so work begun before it (a
    request being read, a callback queued) is dropped instead of landing in the next test's records."""

    def __init__(self, *, keep_messages: bool = True) -> None:
        self.keep_messages = keep_messages  # False: no GET, no callbacks, no memory growing per message (benchmarks)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified as each callback finishes
        self._generation = 0  # bumped by reset(): callbacks queued before it are dropped
        self._pending = 0  # callbacks queued or in flight
        self._clear()

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

    # -- what happened --------------------------------------------------------------------------

    @property
    def attempts(self) -> list[Attempt]:
        """Every create request, in arrival order (a copy)."""
        with self._lock:
            return list(self._attempts)

    def take_attempts(self) -> list[Attempt]:
        """The create requests so far, in arrival order, forgotten here: a benchmark sending a million
        messages counts them as it goes instead of keeping them all."""
        with self._lock:
            taken, self._attempts = self._attempts, []
            return taken

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

    # -- the callback worker's side (bot/fake_twilio/delivery.py) -------------------------------

    def _is_current(self, generation: int) -> bool:
        """Whether no reset() happened since work of ``generation`` was queued."""
        return generation == self._generation

    def _advance(self, sid: str, generation: int, status: str, error_code: int | None,
                 sender: str) -> dict[str, Any] | None:
        """Move the message to ``status`` (as GET will show it) and return a copy of it; None when a
        reset forgot the message. ``sender`` fills ``from`` for a message sent by Messaging Service."""
        with self._lock:
            resource = self._messages.get(sid)
            if resource is None or generation != self._generation:
                return None
            now = rfc2822(datetime.now(UTC))
            if resource["from"] is None:  # a Messaging Service picked its sender
                resource["from"] = sender
            resource.update(status=status, date_updated=now)
            if status in ("sent", "delivered", "undelivered") and resource["date_sent"] is None:
                resource["date_sent"] = now
            if error_code is not None:
                resource["error_code"] = error_code
                resource["error_message"] = None
            return dict(resource)

    def _record_callback(self, generation: int, record: Callback) -> None:
        with self._lock:
            if generation == self._generation:
                self._callbacks.append(record)

    def _callback_done(self) -> None:
        """One queued callback was posted or dropped: wake whoever waits for the queue to drain."""
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()
