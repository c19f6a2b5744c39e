"""The ASGI application: routes, and the lifespan that opens the store and the HTTP client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot import __version__, demo, details, metrics, webhook
from bot.actions import Fetcher, HttpFetcher
from bot.broadcast_progress import under_way
from bot.console.app import console_routes
from bot.engine import Engine
from bot.flows.checks import CheckOptions
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.heap import LongLivedObjects
from bot.inbox import Inbox, Patience
from bot.limits import NotifyLimiter, limited
from bot.log_output import flush_log_handlers
from bot.logs import configure_logging
from bot.metrics_endpoint import metrics_routes
from bot.outbound import Outbox, send_for_turn
from bot.owed_delivery import OwedDelivery
from bot.reload import FlowReloader
from bot.settings import Settings, SettingsError, load_settings
from bot.simulated_senders import kept_apart
from bot.status import ProcessStatusKeeper
from bot.store import Forgetting, Retention, Store, open_store
from bot.store.base import DAY, StoreUnavailable
from bot.store.schema_versions import SchemaTooNew, SchemaUnreadable
from bot.store.serving_lock import serving
from bot.text import templates
from bot.timers import TIMEOUT_POLL_SECONDS, TimeoutScheduler
from bot.twilio_inbound import SignatureChecker
from bot.types import Inbound

log = logging.getLogger(__name__)


def create_app(settings: Settings, flows: FlowSet, *, store: Store | None = None,
               fetcher: Fetcher | None = None, whole_process: bool = False) -> Starlette:
    """Build the app for already loaded flows.

    Flows are loaded (and refused) before this is called, so a broken flow stops start-up
    with its file and line instead of a traceback from inside the server.
    ``store`` and ``fetcher`` default to the ones the settings name; tests may pass their own.
    ``whole_process``: this app is all its process serves (server.py, a worker), so serving
    freezes the objects start-up made out of the garbage collector's way (``bot/heap.py``).
    The settings are validated here, whoever calls it (server.py, a uvicorn factory, a test): an
    app that would accept unsigned requests without dev mode is never built (``SettingsError``).
    """
    settings.validate()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Held while serving: a restore refuses to replace the SQLite file under us (bot/store/serving_lock.py)
        with serving(settings.store_url if store is None else None):
            async with running(app) as state:
                yield state

    @contextlib.asynccontextmanager
    async def running(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        active_store = store if store is not None else open_store(settings.store_url, retention_of(settings))
        async with httpx.AsyncClient(follow_redirects=False) as client:
            active_fetcher = fetcher or HttpFetcher(client, settings.local_base_url)

            def make_engine(loaded: FlowSet) -> Engine:
                return Engine(loaded, active_fetcher, env=templates.public_environment(settings.flow_env),
                              suggest_triggers=settings.suggest_triggers)

            outbox = Outbox(active_store, settings.outbound, status_callback=settings.status_callback_url) \
                if not settings.outbound.missing() else None
            background: set[asyncio.Task[Any]] = set()

            def notifier(inbound: Inbound, notifications: list[tuple[str, str]]) -> None:
                assert outbox is not None
                task = asyncio.create_task(send_for_turn(outbox, inbound, "notify", notifications))
                background.add(task)
                task.add_done_callback(background.discard)

            # Staff are paged at most so often, however often people pass a notify state (held back: logged).
            notify_limiter = NotifyLimiter(settings.notify_per_sender_per_hour, settings.notify_per_hour)
            # A simulated sender's (the console's simulator) never pages staff: bot/simulated_senders.py.
            inbox = Inbox(active_store, make_engine(flows),
                          kept_apart(limited(notifier, notify_limiter) if outbox is not None else None),
                          observer=metrics.turn_committed)  # counted for /metrics (bot/metrics.py)
            metrics.flow_names(flows.flows)

            async def deliver_later(inbound: Inbound, replies: tuple[str, ...]) -> bool:
                assert outbox is not None
                return await send_for_turn(outbox, inbound, "later", [(inbound.sender, text) for text in replies])

            def patience() -> Patience | None:
                """Slow lookups are answered later only when we can send (outbound configured)."""
                if outbox is None:
                    return None
                return Patience(settings.slow_reply_seconds, inbox.engine.flows.program.wait, deliver_later)
            checker = SignatureChecker(settings.twilio_auth_token) if settings.checks_signatures else None
            if checker is None:
                log.warning("DEV MODE: TWILIO_AUTH_TOKEN is not set, so webhook signatures are NOT "
                            "checked; only clients on loopback are answered (others get 403). Never "
                            "expose this server beyond %s.", settings.host)
            log.info("textflow %s serving flows version %s (%s)", __version__, flows.version,
                     ", ".join(sorted(flows.flows)))
            stop = asyncio.Event()
            status = ProcessStatusKeeper(active_store, flows)  # for operators: python -m bot status
            recorder = asyncio.create_task(status.run(stop))
            long_lived = LongLivedObjects() if whole_process else None
            reloader = FlowReloader(settings.flows_dir, inbox, make_engine,
                                    options=CheckOptions.of_the_bot(settings.flow_env), status=status,
                                    swapped=long_lived.thaw if long_lived is not None else None)
            watcher = asyncio.create_task(reloader.watch(stop)) if settings.reload_flows else None
            sweeper = asyncio.create_task(_sweep_periodically(active_store, stop))
            deliver = deliver_later if outbox is not None else None
            timeouts = TimeoutScheduler(inbox, active_store, deliver, poll_seconds=TIMEOUT_POLL_SECONDS)
            timer = asyncio.create_task(timeouts.run(stop))
            # Replies owed by turns whose process stopped before sending them (bot/owed_delivery.py)
            owed = asyncio.create_task(OwedDelivery(inbox, active_store, deliver).run(stop)) \
                if deliver is not None else None
            if long_lived is not None:
                long_lived.freeze()  # last: everything start-up made is in place
            try:
                yield {"settings": settings, "inbox": inbox, "store": active_store, "signature_checker": checker,
                       "reloader": reloader, "outbox": outbox, "patience": patience, "status": status,
                       # broadcasts run in processes of their own and record where they stand in the
                       # store: read there by /metrics and the console (bot/broadcast_progress.py)
                       "broadcast_progress": under_way(active_store)}
            finally:
                stop.set()
                if long_lived is not None:
                    long_lived.release()  # first, whatever fails below: no freeze pending, nothing frozen
                await timer  # first: timeouts firing now still send (and notify) through the outbox
                pending = background | inbox.pending() | ({owed} if owed is not None else set())
                if pending:
                    await asyncio.wait(pending, timeout=15)
                await inbox.release_owed()  # what is still unsent: the next process sends it at once
                if outbox is not None:
                    await outbox.close()
                await sweeper
                if watcher is not None:
                    await watcher
                await recorder  # last: written "stopped", with whatever the reloads did
                if store is None:
                    await active_store.close()
                # reached only when every step above ended well (tests/test_graceful_shutdown.py reads it)
                log.info("textflow %s stopped cleanly: the timeout, retention and reload loops ended and "
                         "this process's status was recorded", __version__)
                flush_log_handlers()  # a worker process may end without logging's exit hook

    last_problem: list[str | None] = [None]

    async def healthz(request: Request) -> JSONResponse:
        """For load balancers and probes, and public: healthy or not, nothing more. 503 when the store
        could not take a turn now (every message would get 503 too) or would lose it at the next
        restart; why, and what runs, is for operators (``/healthz/details`` on this machine)."""
        health = await request.state.store.health()
        if health.problem != last_problem[0]:  # the log says when it changed, not at every probe
            if health.ok:
                log.warning("healthy again: the store takes turns")
            else:
                log.warning("unhealthy (/healthz answers 503): %s", health.problem)
            last_problem[0] = health.problem
        return JSONResponse({"status": "ok" if health.ok else "unavailable"}, status_code=200 if health.ok else 503)

    routes = [
        Route("/sms/status", webhook.StatusWebhook()),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/healthz/details", details.details, methods=["GET"]),  # this machine only: bot/details.py
        *(demo.routes if settings.serves_demo else []),  # a demo, not a service: DEV_MODE or DEMO_ORDERS
        *console_routes(settings),  # /console, only with ADMIN_PASSWORD: bot/console/
        *metrics_routes(settings),  # /metrics, only with METRICS_TOKEN or ADMIN_PASSWORD: bot/metrics_endpoint.py
    ]
    return BotApp(routes=routes, lifespan=lifespan)


class BotApp(Starlette):
    """Starlette, with the webhook taken straight to its endpoint.

    Every message comes through ``/sms``; skipping the middleware stack and the router for it saves
    about a tenth of the request's cost. Errors there are still logged and answered with a bare 500,
    as Starlette's error middleware would.
    """

    _sms = webhook.SmsWebhook()

    async def __call__(self, scope: webhook.Scope, receive: webhook.Receive, send: webhook.Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/sms":
            await super().__call__(scope, receive, send)
            return
        started = False

        async def tracking_send(message: webhook.Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._sms(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error answering a webhook")
            if not started:
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"Internal Server Error\n"})


def retention_of(settings: Settings) -> Retention:
    """How long the store keeps personal data (RETENTION) and the consent ledger (CONSENT_RETENTION_DAYS)."""
    return Retention(settings.retention_seconds, settings.consent_retention_days * DAY)


SWEEP_EVERY_SECONDS = 3600.0
FIRST_SWEEP_AFTER_SECONDS = 60.0


async def _sweep_periodically(store: Forgetting, stop: asyncio.Event) -> None:
    """Apply the retention period now and then (a minute after start, then hourly) until the app
    stops; not at once, so a restart under load does not add a full scan to its first seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), FIRST_SWEEP_AFTER_SECONDS)
    while not stop.is_set():
        try:
            purged = await store.sweep(time.time())
            if purged.conversations or purged.transcript_lines or purged.consent_changes:
                log.info("retention: removed %d idle conversations, %d transcript lines and %d consent "
                         "ledger entries", purged.conversations, purged.transcript_lines, purged.consent_changes)
        except StoreUnavailable as error:  # the store's own words (deleted, replaced, unreachable): no traceback
            log.error("retention sweep skipped: %s", error)
        except Exception:  # a failed sweep must not take the webhook down; the next one retries
            log.exception("retention sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_EVERY_SECONDS)


class StartUpRefused(Exception):
    """The bot must not start: ``message`` (``error: …``, what is wrong and the fix) is printed
    instead of a traceback, and the process exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


def prepare() -> tuple[Settings, FlowSet]:
    """Settings from the environment (validated), logging, the flows, and the store opened once:
    what every way of starting the bot checks before it serves (server.py, and the factory below)."""
    try:
        settings = load_settings()
        settings.validate()
    except SettingsError as error:
        raise StartUpRefused(f"error: {error}", 2) from None
    configure_logging(settings.log_level, log_format=settings.log_format)
    try:
        flows = load_flows(settings.flows_dir, CheckOptions.of_the_bot(settings.flow_env))
    except FlowLoadError as error:
        raise StartUpRefused(f"error: the flows in {settings.flows_dir} cannot run:\n{error.listing()}", 1) from None
    try:
        _open_store_once(settings)
    except StoreUnavailable as error:
        raise StartUpRefused(f"error: {error}", 1) from None
    except ValueError as error:  # an unknown STORE_URL scheme, a malformed Redis URL
        raise StartUpRefused(f"error: STORE_URL: {error}", 2) from None
    return settings, flows


def _open_store_once(settings: Settings) -> None:
    """Open the store and close it again before serving: SQLite refuses a file it cannot write
    (StoreUnavailable, naming the file and the fix) here rather than in the first STOP. In a thread
    of its own, as uvicorn calls the factory from inside its running event loop."""

    async def open_and_close() -> None:
        store = open_store(settings.store_url, retention_of(settings))  # SQLite migrates here
        try:
            await _migrated(store)
        finally:
            await store.close()

    # Under the serving lock, as serving is: a restore under way is waited for, then refused with its reason.
    with serving(settings.store_url), concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, open_and_close()).result()


async def _migrated(store: Store) -> None:
    """Migrate a Redis keyspace before serving, when Redis answers. When it does not, the bot starts
    all the same (answering 503 until it does, as when Redis goes away later) and migrates before
    its first read; a keyspace from a newer release is refused either way (SchemaTooNew)."""
    ready = getattr(store, "ready", None)
    if ready is None:
        return
    try:
        await ready()
    except (SchemaTooNew, SchemaUnreadable):
        raise
    except (StoreUnavailable, RedisError) as error:
        log.warning("the store cannot be reached at start-up (%s): serving anyway, with 503 until it can; "
                    "its schema is checked (and migrated) before the first read", error)


def app_from_environment() -> Starlette:
    """The app as ``server.py`` configures it: what ``uvicorn bot.app:app_from_environment
    --factory`` calls, and each of server.py's worker processes. It refuses what server.py
    refuses, the same way (``error: …`` on stderr, a non-zero exit), instead of serving."""
    try:
        settings, flows = prepare()
    except StartUpRefused as refused:
        print(refused.message, file=sys.stderr, flush=True)
        raise SystemExit(refused.exit_code) from None
    return create_app(settings, flows, whole_process=True)
