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
from bot.inbox import Inbox
from bot.reload import FlowReloader
from bot.settings import Settings, load_settings
from bot.store import Retention, Store, open_store
from bot.twilio_io import SignatureChecker

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines would log every fetch URL


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

            inbox = Inbox(active_store, make_engine(flows))
            checker = SignatureChecker(settings.twilio_auth_token) if settings.checks_signatures else None
            if checker is None:
                log.warning("DEV MODE: TWILIO_AUTH_TOKEN is not set, so webhook signatures are NOT "
                            "checked. Never expose this server beyond %s.", settings.host)
            reloader = FlowReloader(settings.flows_dir, inbox, make_engine)
            stop = asyncio.Event()
            watcher = asyncio.create_task(reloader.watch(stop)) if settings.reload_flows else None
            sweeper = asyncio.create_task(_sweep_periodically(active_store, stop))
            try:
                yield {"settings": settings, "inbox": inbox, "signature_checker": checker,
                       "reloader": reloader}
            finally:
                stop.set()
                await sweeper
                if watcher is not None:
                    await watcher
                if store is None:
                    await active_store.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "flows": sorted(request.state.inbox.engine.flows.flows),
                             "reloads": request.state.reloader.reloads, "pid": os.getpid()})

    routes = [
        Route("/sms", webhook.SmsWebhook()),  # raw ASGI: it answers 405 for other methods itself
        Route("/healthz", healthz, methods=["GET"]),
        *demo.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)


SWEEP_EVERY_SECONDS = 3600.0


async def _sweep_periodically(store: Store, stop: asyncio.Event) -> None:
    """Apply the retention period now and then (at start, then hourly) until the app stops."""
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


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def app_from_environment() -> Starlette:
    """The app as ``server.py`` configures it; the factory uvicorn workers call in each process."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, load_flows(settings.flows_dir))
