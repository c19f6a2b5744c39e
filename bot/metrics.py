"""What the bot did, counted for Prometheus where it happens: webhooks, consent changes, lookups,
timers, sends and flow reloads (``/metrics`` serves them: ``bot/metrics_endpoint.py``).

Each recording function is a dictionary look-up and an increment on a child made at import, and
never raises: a counter that cannot be written (a full disk in multiprocess mode) costs one log
line, never a webhook. Label values come from fixed vocabularies below, or are flow names (from
the flow files): never a phone number, a message's text, a URL or anything a person texted.

Several worker processes: with ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported,
prometheus-client keeps every process's values in files there and a scrape adds them up
(:func:`collect_registry`); ``server.py`` sets it up for ``WORKERS`` > 1 (:func:`prepare_worker_files`).
Without it, each process counts only what it saw itself.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector

from bot.flows.compile import FETCH_FAILED_EVENT, REMIND_EVENT, TIMEOUT_EVENT
from bot.simulated_numbers import is_simulated
from bot.types import ConsentMethod, Event, OutboundState, Outcome, TimeoutDue

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _multiprocess_directory() -> str | None:
    """The folder of multiprocess mode, created if missing; None without it. Checked before the
    first metric is made, which opens its file there: a clear error instead of one from deep inside."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory is None:
        return None
    if not directory.strip():  # set but empty: prometheus-client would write its files wherever we run
        raise RuntimeError(f"{MULTIPROC_ENV} is set but empty: set it to a writable, empty folder, or unset it")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise RuntimeError(f"{MULTIPROC_ENV}={directory}: cannot create it ({error}); set it to a writable, "
                           "empty folder, or unset it (one worker)") from None
    return directory


MULTIPROCESS_DIRECTORY = _multiprocess_directory()
disable_created_metrics()  # no *_created series: they would double the exposition and nobody graphs them
REGISTRY = CollectorRegistry()  # this process's metrics (a scrape in multiprocess mode reads the files instead)
if MULTIPROCESS_DIRECTORY is None:
    ProcessCollector(registry=REGISTRY)  # process_* (CPU, memory, open files) of this one process


class WebhookOutcome(enum.StrEnum):
    """How a webhook request ended (``textflow_webhooks_total``'s ``outcome``)."""

    ANSWERED = "answered"  # a turn's replies (TwiML)
    DUPLICATE = "duplicate"  # a Twilio retry: the recorded answer again
    DEFERRED = "deferred"  # "one moment" now, the real replies later through the REST API
    DELIVERY_REPORT = "delivery_report"  # a status callback recorded
    REJECTED_BAD_REQUEST = "rejected_bad_request"  # 400: malformed form, a field missing, client gone
    REJECTED_SIGNATURE = "rejected_signature"  # 403: bad or missing signature (or unsigned off loopback)
    REJECTED_METHOD = "rejected_method"  # 405
    REJECTED_TOO_LARGE = "rejected_too_large"  # 413
    REJECTED_MEDIA_TYPE = "rejected_media_type"  # 415: not a form
    REJECTED_OTHER = "rejected_other"  # any other 4xx (none today)
    BUSY = "busy"  # 503: the sender's conversation kept changing, or the store's lock was busy
    UNAVAILABLE = "unavailable"  # 503: the store cannot be reached or written
    ERROR = "error"  # 500: a bug (logged with its traceback)


_REJECTED = {400: WebhookOutcome.REJECTED_BAD_REQUEST, 403: WebhookOutcome.REJECTED_SIGNATURE,
             405: WebhookOutcome.REJECTED_METHOD, 413: WebhookOutcome.REJECTED_TOO_LARGE,
             415: WebhookOutcome.REJECTED_MEDIA_TYPE}


def rejected(status: int) -> WebhookOutcome:
    """The outcome of a request refused with ``status`` (by class, never by the refusal's text)."""
    return _REJECTED.get(status, WebhookOutcome.REJECTED_OTHER)


#: What each endpoint can end in: POST /sms, and POST /sms/status (delivery reports only).
ENDPOINTS = {"sms": tuple(WebhookOutcome),
             "status": tuple(outcome for outcome in WebhookOutcome if outcome not in
                             (WebhookOutcome.ANSWERED, WebhookOutcome.DUPLICATE, WebhookOutcome.DEFERRED))}
#: From a quarter of a millisecond (a duplicate on a warm store) to Twilio's 15 s limit.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 15.0)
TIMER_KINDS = ("timeout", "reminder", "stale")  # stale: answered or re-armed meanwhile, nothing sent
RELOAD_RESULTS = ("ok", "rejected")
#: What became of a message we sent: OutboxState's ends, and the exceptions that leave it for later.
SEND_RESULTS = (OutboundState.ACCEPTED.value, OutboundState.SKIPPED.value, OutboundState.FAILED.value,
                "throttled", "unreachable", "in_doubt")
FLOW_UNKNOWN = "(unknown)"  # a failed lookup in no flow ever loaded (cannot happen); no flow name has "("

_WEBHOOKS = Counter("textflow_webhooks", "Webhook requests by endpoint and outcome.", ["endpoint", "outcome"],
                    registry=REGISTRY)
_LATENCY = Histogram("textflow_webhook_duration_seconds", "Time from a webhook's request to its answer, in "
                     "seconds.", ["endpoint"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
_OPT_OUTS = Counter("textflow_opt_outs", "Numbers opted out, by how.", ["method"], registry=REGISTRY)
_OPT_INS = Counter("textflow_opt_ins", "Numbers opted back in, by how.", ["method"], registry=REGISTRY)
_LOOKUPS_FAILED = Counter("textflow_failed_lookups", "Lookups (fetch) that failed in a saved turn, by flow.",
                          ["flow"], registry=REGISTRY)
_TIMERS = Counter("textflow_timers_fired", "Waiting states' timers fired: timeout, reminder, or stale.",
                  ["kind"], registry=REGISTRY)
_TIMERS_GIVEN_UP = Counter("textflow_timers_given_up", "Timer firings that kept failing and were dropped.",
                           registry=REGISTRY)
_SENDS = Counter("textflow_outbound_messages", "Messages we sent ourselves (REST API), by result.", ["result"],
                 registry=REGISTRY)
_RELOADS = Counter("textflow_flows_reloads", "Hot reloads of the flow files, by result.", ["result"],
                   registry=REGISTRY)

# Every series made now: it reads 0 from the start (so rate() works) and recording is a dict look-up.
_WEBHOOK = {(endpoint, outcome): _WEBHOOKS.labels(endpoint, outcome.value)
            for endpoint, outcomes in ENDPOINTS.items() for outcome in outcomes}
_DURATION = {endpoint: _LATENCY.labels(endpoint) for endpoint in ENDPOINTS}
_CONSENT = {(True, method): _OPT_OUTS.labels(method.value) for method in ConsentMethod} | \
    {(False, method): _OPT_INS.labels(method.value) for method in ConsentMethod}
_TIMER = {kind: _TIMERS.labels(kind) for kind in TIMER_KINDS}
_SEND = {result: _SENDS.labels(result) for result in SEND_RESULTS}
_RELOAD = {result: _RELOADS.labels(result) for result in RELOAD_RESULTS}
_LOOKUP_FLOWS: dict[str, Counter] = {}


def webhook(endpoint: str, outcome: WebhookOutcome, started: float) -> None:
    """A webhook request answered: its outcome, and its time since ``started`` (``perf_counter``)."""
    try:
        _WEBHOOK[endpoint, outcome].inc()
        _DURATION[endpoint].observe(time.perf_counter() - started)
    except Exception:  # noqa: BLE001 (a metric never fails a request)
        _not_recorded()


def consent_changed(opted_out: bool, method: ConsentMethod) -> None:
    """A number's consent changed (counted only when its status really changed)."""
    try:
        _CONSENT[opted_out, method].inc()
    except Exception:  # noqa: BLE001
        _not_recorded()


def send_result(result: str) -> None:
    """What became of one message sent through the REST API (one of ``SEND_RESULTS``)."""
    try:
        _SEND[result].inc()
    except Exception:  # noqa: BLE001
        _not_recorded()


def timer_given_up() -> None:
    try:
        _TIMERS_GIVEN_UP.inc()
    except Exception:  # noqa: BLE001
        _not_recorded()


def reloaded(ok: bool) -> None:
    """A hot reload swapped the flows in (``ok``) or was refused."""
    try:
        _RELOAD["ok" if ok else "rejected"].inc()
    except Exception:  # noqa: BLE001
        _not_recorded()


def flow_names(names: Iterable[str]) -> None:
    """The flows now loaded: their failed-lookup series exist (at 0) from now on. Names come from
    the flow files; a turn's trace is only ever matched against them."""
    try:
        for name in names:
            if name not in _LOOKUP_FLOWS:
                _LOOKUP_FLOWS[name] = _LOOKUPS_FAILED.labels(name)
    except Exception:  # noqa: BLE001
        _not_recorded()


def turn_committed(event: Event, outcome: Outcome, was_opted_out: bool) -> None:
    """The app's inbox saved a turn (its ``observer``): a real consent change, a timer that fired,
    lookups that failed. Read from the engine's outcome after the fact, so the engine stays free of
    this; the console simulator's numbers (``bot/simulated_numbers.py``) are not people: not counted."""
    try:
        counted: list[Counter] = []
        decision = outcome.consent
        if decision is not None and decision.opted_out != was_opted_out:
            counted.append(_CONSENT[decision.opted_out, decision.how])
        trace = outcome.trace
        if isinstance(event, TimeoutDue):
            counted.append(_TIMER[_timer_kind(trace[0].rule if trace else "")])
        for step in trace:
            if step.rule == FETCH_FAILED_EVENT:
                counted.append(_lookup_counter(step.before.split(":", 1)[0]))
        if counted and not is_simulated(event.inbound.sender):  # most turns count nothing: no check
            for counter in counted:
                counter.inc()
    except Exception:  # noqa: BLE001
        _not_recorded()


def _timer_kind(rule: str) -> str:
    """A timer turn's first step says what fired (none: the index was stale)."""
    if rule == REMIND_EVENT:
        return "reminder"
    return "timeout" if rule == TIMEOUT_EVENT else "stale"


def _lookup_counter(flow: str) -> Counter:
    """The failed-lookup series of a loaded flow; anything else counts as ``(unknown)``, so a label
    value is only ever a name from the flow files."""
    counter = _LOOKUP_FLOWS.get(flow)
    if counter is None:
        counter = _LOOKUP_FLOWS[FLOW_UNKNOWN] = _LOOKUPS_FAILED.labels(FLOW_UNKNOWN)
    return counter


_last_failure = [0.0]


def _not_recorded() -> None:
    """Say so at most once a minute: a metric that cannot be written is an operator's problem,
    never a reason to fail what was being counted."""
    now = time.monotonic()
    if now - _last_failure[0] > 60:
        _last_failure[0] = now
        log.warning("a metric could not be recorded", exc_info=True)


def collect_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or in multiprocess mode every process's files."""
    if MULTIPROCESS_DIRECTORY is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=MULTIPROCESS_DIRECTORY)
    return registry


# The files prometheus-client writes in multiprocess mode: counter_PID.db, gauge_livesum_PID.db…
_PROCESS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def prepare_worker_files(workers: int, serves_metrics: bool) -> Path | None:
    """Before ``server.py`` starts several workers: give them one folder to count in together
    (``PROMETHEUS_MULTIPROC_DIR``; a new temporary one unless the operator named one), so a
    scrape answered by any worker adds up all of them. The named folder is emptied of an earlier
    run's files (only those: counters would otherwise go on from the last run). Returns the
    temporary folder to remove at exit; None when there is nothing to prepare."""
    if workers <= 1 or not serves_metrics:
        return None
    named = os.environ.get(MULTIPROC_ENV)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for path in folder.iterdir():
            if _PROCESS_FILE.fullmatch(path.name):
                path.unlink(missing_ok=True)
        return None
    folder = Path(tempfile.mkdtemp(prefix="textflow-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)  # inherited by the workers uvicorn spawns
    return folder

