"""The ASGI application: routes, and the lifespan that opens the store and the HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot import demo, webhook
from bot.actions import Fetcher, HttpFetcher
from bot.engine import Engine
from bot.flows.loader import FlowSet, load_flows
from bot.inbox import Deliver, Inbox, Patience
from bot.logs import configure_logging
from bot.outbound import Outbox, send_for_turn
from bot.reload import FlowReloader
from bot.settings import Settings, load_settings
from bot.store import Forgetting, Retention, Store, Timers, open_store
from bot.twilio_inbound import SignatureChecker
from bot.types import Inbound

log = logging.getLogger(__name__)


def create_app(settings: Settings, flows: FlowSet, *, store: Store | None = None,
               fetcher: Fetcher | None = None) -> Starlette:
    """Build the app for already loaded flows.

    Flows are loaded (and refused) before this is called, so a broken flow stops start-up
    with its file and line instead of a traceback from inside the server.
    ``store`` and ``fetcher`` default to the ones the settings name; tests may pass their own.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        active_store = store if store is not None else open_store(settings.store_url,
                                                                   Retention(settings.retention_seconds))
        async with httpx.AsyncClient(follow_redirects=False) as client:
            active_fetcher = fetcher or HttpFetcher(client, settings.local_base_url)

            def make_engine(loaded: FlowSet) -> Engine:
                return Engine(loaded, active_fetcher)

            outbox = Outbox(active_store, settings.outbound, status_callback=settings.status_callback_url) \
                if not settings.outbound.missing() else None
            background: set[asyncio.Task[None]] = set()

            def notifier(inbound: Inbound, notifications: list[tuple[str, str]]) -> None:
                assert outbox is not None
                task = asyncio.create_task(send_for_turn(outbox, inbound, "notify", notifications))
                background.add(task)
                task.add_done_callback(background.discard)

            inbox = Inbox(active_store, make_engine(flows), notifier if outbox is not None else None)

            async def deliver_later(inbound: Inbound, replies: tuple[str, ...]) -> None:
                assert outbox is not None
                await send_for_turn(outbox, inbound, "later", [(inbound.sender, text) for text in replies])

            def patience() -> Patience | None:
                """Slow lookups are answered later only when we can send (outbound configured)."""
                if outbox is None:
                    return None
                return Patience(settings.slow_reply_seconds, inbox.engine.flows.program.wait, deliver_later)
            checker = SignatureChecker(settings.twilio_auth_token) if settings.checks_signatures else None
            if checker is None:
                log.warning("DEV MODE: TWILIO_AUTH_TOKEN is not set, so webhook signatures are NOT "
                            "checked. Never expose this server beyond %s.", settings.host)
            reloader = FlowReloader(settings.flows_dir, inbox, make_engine)
            stop = asyncio.Event()
            watcher = asyncio.create_task(reloader.watch(stop)) if settings.reload_flows else None
            sweeper = asyncio.create_task(_sweep_periodically(active_store, stop))
            deliver = deliver_later if outbox is not None else None
            timer = asyncio.create_task(_fire_timeouts(inbox, active_store, deliver, stop))
            try:
                yield {"settings": settings, "inbox": inbox, "store": active_store, "signature_checker": checker,
                       "reloader": reloader, "outbox": outbox, "patience": patience}
            finally:
                stop.set()
                pending = background | inbox.pending()
                if pending:
                    await asyncio.wait(pending, timeout=15)
                if outbox is not None:
                    await outbox.close()
                await sweeper
                await timer
                if watcher is not None:
                    await watcher
                if store is None:
                    await active_store.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "flows": sorted(request.state.inbox.engine.flows.flows),
                             "reloads": request.state.reloader.reloads, "pid": os.getpid()})

    routes = [
        Route("/sms/status", webhook.StatusWebhook()),
        Route("/healthz", healthz, methods=["GET"]),
        *demo.routes,
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


TIMEOUT_POLL_SECONDS = 1.0


async def _fire_timeouts(inbox: Inbox, timers: Timers, deliver: Deliver | None, stop: asyncio.Event) -> None:
    """Fire due wait timeouts (kept in the store, so they survive restarts) until the app stops."""
    while not stop.is_set():
        try:
            for sender, due_at in await timers.due(time.time()):
                await inbox.time_out(sender, due_at, deliver)
        except Exception:  # one failure must not stop the timer; the entry stays due and is retried
            log.exception("firing wait timeouts failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TIMEOUT_POLL_SECONDS)


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
            if purged.conversations or purged.transcript_lines:
                log.info("retention: removed %d idle conversations and %d transcript lines",
                         purged.conversations, purged.transcript_lines)
        except Exception:  # a failed sweep must not take the webhook down; the next one retries
            log.exception("retention sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_EVERY_SECONDS)


def app_from_environment() -> Starlette:
    """The app as ``server.py`` configures it; the factory uvicorn workers call in each process."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, load_flows(settings.flows_dir))
