"""``GET /metrics``: the bot's counters in Prometheus' text format, for a scraper holding
``METRICS_TOKEN`` or for someone logged in to the console.

Who may read it: a request with ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant
time), or with a valid console session (``/console/metrics``, where the console's own guard asks
for the login; the session cookie is scoped to ``/console``, so a browser sends it there only).
With neither ``METRICS_TOKEN`` nor ``ADMIN_PASSWORD`` set there is no ``/metrics`` at all (404).
Nothing here is on the webhook's path: the webhook only increments counters (``bot/metrics.py``).

Besides the counters, a scrape reports what is true right now, read when it is asked: the
running flows' version (``textflow_flows_info``) and the progress of a broadcast under way.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot import metrics
from bot.broadcast import BroadcastProgress
from bot.console.security import SESSION_COOKIE, ConsoleKeys
from bot.inbox import Inbox
from bot.settings import Settings

log = logging.getLogger(__name__)

CONSOLE_PATH = "/console/metrics"
SOURCE_SECONDS = 2.0  # a broadcast source slower than this is left out of the scrape, not waited for


#: Where a scrape finds the broadcasts under way (the app's state key ``broadcast_progress``): what
#: ``Broadcast.progress`` told whoever records it for the Operations page. Without a source, no
#: broadcast series are exported at all (rather than a "none running" that may not be true).
BroadcastSource = Callable[[], Awaitable[Iterable[BroadcastProgress]]]


def serves_metrics(settings: Settings) -> bool:
    """Whether ``/metrics`` exists: a token for scrapers, or the console's login, is configured."""
    return bool(settings.metrics_token.get_secret_value()) or bool(settings.admin_password)


def metrics_routes(settings: Settings) -> list[BaseRoute]:
    """``/metrics`` for the main app (none when nobody could be let in: a 404)."""
    return [Route("/metrics", _scrape(settings), methods=["GET"])] if serves_metrics(settings) else []


def console_routes() -> list[BaseRoute]:
    """``/metrics`` inside the console app (``/console/metrics``): its guard has checked the login."""
    return [Route("/metrics", _scrape_answer, methods=["GET"])]


def _scrape(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics`` at the top level: the token, else a console session, else refused."""
    token = settings.metrics_token.get_secret_value()
    token_digest = _digest(token) if token else None
    console = ConsoleKeys(settings.admin_password) if settings.admin_password else None

    async def scrape(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            if token_digest is not None and _bearer_matches(authorization, token_digest):
                return await _scrape_answer(request)
            log.warning("/metrics: refused a request with a wrong Authorization header")
            return _unauthorized()
        if console is not None and console.session_valid(request.cookies.get(SESSION_COOKIE)):
            return await _scrape_answer(request)  # a client that sends it here (browsers keep it to /console)
        if console is not None:  # a browser: the console asks for the login, then shows them
            return RedirectResponse(CONSOLE_PATH, status_code=303)
        return _unauthorized()

    return scrape


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _bearer_matches(authorization: str, token_digest: bytes) -> bool:
    """``Bearer <token>``, compared in constant time (both sides hashed: whatever its length)."""
    scheme, _, sent = authorization.partition(" ")
    return hmac.compare_digest(_digest(sent.strip()), token_digest) and scheme.lower() == "bearer"


def _unauthorized() -> Response:
    return PlainTextResponse("send Authorization: Bearer <METRICS_TOKEN>, or log in to the console and open "
                             f"{CONSOLE_PATH}\n", status_code=401, headers={
                                 "www-authenticate": 'Bearer realm="textflow metrics"', "cache-control": "no-store"})


async def _scrape_answer(request: Request) -> Response:
    """The exposition: every process's counters, then what is true now (flows, broadcasts)."""
    families = _flows_families(request.state.inbox)
    source: BroadcastSource | None = getattr(request.state, "broadcast_progress", None)
    if source is not None:
        families += await _broadcast_families(source, request.state.inbox.engine.flows.flows)
    body = generate_latest(metrics.collect_registry()) + generate_latest(_Now(families))
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})


class _Now(Collector):
    """Families read for this one scrape (never registered: two scrapes never share them)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


BROADCAST_STATES = ("sent", "skipped", "failed", "waiting", "in_doubt")


def _flows_families(inbox: Inbox) -> list[Metric]:
    flows = inbox.engine.flows
    info = InfoMetricFamily("textflow_flows", "The flows this process runs (version: a hash of the flow files).",
                            value={"version": flows.version})
    loaded = GaugeMetricFamily("textflow_flows_loaded_timestamp_seconds", "When this process loaded its flows.",
                               value=flows.loaded_at)
    return [info, loaded]


async def _broadcast_families(source: BroadcastSource, flow_names: Iterable[str]) -> list[Metric]:
    """The broadcasts under way, by flow (a name from the files; the broadcast's own name, a CSV
    path, never appears). A source that fails or is slow (the store) leaves them out: the counters
    still answer."""
    try:
        async with asyncio.timeout(SOURCE_SECONDS):
            under_way = [progress for progress in await source() if not progress.finished]
    except Exception as error:  # noqa: BLE001 (TimeoutError included)
        log.warning("/metrics: could not read the broadcasts under way: %s", type(error).__name__)
        return []
    known = set(flow_names)
    running = GaugeMetricFamily("textflow_broadcasts_running", "Broadcasts under way.", value=len(under_way))
    recipients = GaugeMetricFamily("textflow_broadcast_recipients", "Recipients of the broadcasts under way, by "
                                   "flow and where each stands.", labels=["flow", "state"])
    totals: dict[tuple[str, str], int] = {}
    for progress in under_way:
        flow = progress.flow if progress.flow in known else metrics.FLOW_UNKNOWN
        for state in BROADCAST_STATES:
            totals[flow, state] = totals.get((flow, state), 0) + getattr(progress, state)
    for (flow, state), count in sorted(totals.items()):
        recipients.add_metric([flow, state], count)
    return [running, recipients]
