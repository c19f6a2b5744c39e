"""The delivery simulation: a worker thread that moves each message through its statuses and posts signed callbacks."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
from twilio.request_validator import RequestValidator

from bot.fake_twilio.state import Callback, Ledger
from bot.fake_twilio.wire import callback_form


@dataclass
class Job:
    """One status callback to post."""

    url: str
    ready: threading.Event  # set once the create response went out
    generation: int
    sid: str | None = None  # a status step of a message the fake created ...
    status: str = ""
    error_code: int | None = None
    form: dict[str, str] = field(default_factory=dict)  # ... or a ready-made form to post


def status_steps(failure: tuple[str, int] | None) -> list[tuple[str, int | None]]:
    """The (status, ErrorCode) a message goes through: ``queued`` -> ``sent`` -> ``delivered``, or
    the ending :meth:`Ledger.fail_delivery` gave its number (``failure``: (status, code))."""
    if failure is None:
        return [("queued", None), ("sent", None), ("delivered", None)]
    if failure[0] == "failed":
        return [("queued", None), ("failed", failure[1])]
    return [("queued", None), ("sent", None), ("undelivered", failure[1])]


class CallbackDelivery:
    """Posts queued :class:`Job`\\ s in order from one background thread, as Twilio would: after the
    create was answered, form-encoded, signed with ``X-Twilio-Signature``."""

    def __init__(self, ledger: Ledger, account_sid: str, auth_token: str, service_number: str) -> None:
        self._ledger = ledger
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._service_number = service_number
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._http: httpx.Client | None = None

    def start(self) -> None:
        self._stopping = False
        self._http = httpx.Client(timeout=5.0)
        self._worker = threading.Thread(target=self._run, name="fake-twilio-callbacks", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stopping = True
        self._jobs.put(None)  # wakes the worker, which then returns
        if self._worker is not None:
            self._worker.join(timeout=10)
        if self._http is not None:
            self._http.close()
        self._worker = self._http = None

    def enqueue(self, job: Job) -> None:
        """Queue a job; the caller has already counted it in the ledger's pending callbacks."""
        self._jobs.put(job)

    def _stale(self, job: Job) -> bool:
        return self._stopping or not self._ledger._is_current(job.generation)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._deliver(job)
            finally:
                self._ledger._callback_done()  # also for a dropped job: reset() waits on the count

    def _deliver(self, job: Job) -> None:
        if self._stale(job):
            return
        job.ready.wait(timeout=2.0)  # after the create response, as Twilio does
        pause_until = time.monotonic() + self._ledger.callback_interval
        while time.monotonic() < pause_until and not self._stale(job):
            time.sleep(0.005)  # short naps, so a reset() or stop() cuts the pause
        if self._stale(job):
            return
        form = self._status_form(job) if job.sid else job.form
        if form is None:
            return
        signature = RequestValidator(self._auth_token).compute_signature(job.url, form)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
        assert self._http is not None
        try:
            answer = self._http.post(job.url, data=form, headers=headers)
            record = Callback(job.url, form, signature, answer.status_code)
        except httpx.HTTPError as error:
            record = Callback(job.url, form, signature, None, f"{type(error).__name__}: {error}")
        self._ledger._record_callback(job.generation, record)

    def _status_form(self, job: Job) -> dict[str, str] | None:
        """Advance the job's message to its status and build the callback form (None when a reset
        forgot the message)."""
        resource = self._ledger._advance(job.sid or "", job.generation, job.status, job.error_code,
                                         self._service_number)
        if resource is None:
            return None
        return callback_form(self._account_sid, resource["sid"], job.status, resource["to"], resource["from"],
                             resource["messaging_service_sid"], job.error_code)
