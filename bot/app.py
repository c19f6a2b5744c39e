"""The ASGI application: routes, and the lifespan that opens the store and the HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from bot.flows.loader import FlowSet
from bot.inbox import Inbox
from bot.reload import FlowReloader
from bot.settings import Settings
from bot.store import Store, open_store
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
        active_store = store if store is not None else open_store(settings.store_url)
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
            try:
                yield {"settings": settings, "inbox": inbox, "signature_checker": checker,
                       "reloader": reloader}
            finally:
                stop.set()
                if watcher is not None:
                    await watcher
                if store is None:
                    await active_store.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "flows": sorted(request.state.inbox.engine.flows.flows),
                             "reloads": request.state.reloader.reloads})

    routes = [
        Route("/sms", webhook.sms, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        *demo.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
