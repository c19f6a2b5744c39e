"""The web console for ops staff, mounted at ``/console`` when ``ADMIN_PASSWORD`` is set.

A Starlette app of its own beside the webhook: its middleware (login, CSRF, security headers)
never runs for ``/sms``, and the webhook imports nothing from here. Pages are route modules under
``bot/console/`` listed in :data:`PAGES`; each gets the running bot's parts (inbox, store,
reloader…) from ``request.state``, which the main app's lifespan fills.
"""

from __future__ import annotations

import types
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import metrics_endpoint
from bot.console import conversations, flows, login, operations, results, simulator
from bot.console.rendering import Page, page_templates
from bot.console.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    ConsoleKeys,
    LoginLimiter,
)
from bot.settings import Settings

STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_POST_BYTES = 1024 * 1024  # a flow file being saved is the largest thing the console posts
OPEN_PATHS = ("/login", "/static/")  # reachable without a session (the login page and its style)
#: Our scripts, styles and the 3 MB diagram renderer change only with a release: cached for an hour
#: (pages themselves are never cached: they show people's conversations).
STATIC_CACHING = {"cache-control": "private, max-age=3600"}

#: The console's pages, in the navigation's order; each module has ``PAGE: Page`` and ``routes``.
PAGES: list[types.ModuleType] = [flows, conversations, simulator, results, operations]


def console_routes(settings: Settings) -> list[BaseRoute]:
    """``/console`` when the console is configured (``ADMIN_PASSWORD``); else nothing (a 404)."""
    if not settings.admin_password:
        return []
    return [Mount("/console", app=build_console(settings), name="console")]


def build_console(settings: Settings) -> ASGIApp:
    keys = ConsoleKeys(settings.admin_password)
    pages: list[Page] = [module.PAGE for module in PAGES]
    templates = page_templates(pages)
    routes: list[BaseRoute] = [
        Route("/", lambda request: RedirectResponse(_home(pages), status_code=303), methods=["GET"]),
        *login.routes(keys, LoginLimiter(), templates, settings),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    for module in PAGES:
        routes.extend(module.routes(templates))
    routes.extend(metrics_endpoint.console_routes())  # /console/metrics: Prometheus' text, for a logged-in browser
    inner = Starlette(routes=routes)
    inner.state.keys = keys
    inner.state.templates = templates
    return _Guard(inner, keys)


def _home(pages: list[Page]) -> str:
    """The first page of the navigation is the console's front page."""
    return f"/console{pages[0].path}" if pages else "/console/login"


class _Guard:
    """Every console request: security headers on the answer; a session, except for the login page
    and static files; and on every POST a CSRF token (form field or header) matching its cookie."""

    def __init__(self, app: ASGIApp, keys: ConsoleKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request = Request(scope)
        path, root = scope["path"], scope.get("root_path", "")
        relative = path[len(root):] if root and path.startswith(root) else path
        answer_headers = {**SECURITY_HEADERS, **(STATIC_CACHING if relative.startswith("/static/") else {})}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in answer_headers]
                headers += [(name.encode(), value.encode()) for name, value in answer_headers.items()]
                message = {**message, "headers": headers}
            await send(message)

        if not relative.startswith(OPEN_PATHS) and not self.keys.session_valid(request.cookies.get(SESSION_COOKIE)):
            response: Response
            if request.method == "GET":
                response = RedirectResponse(f"/console/login?next={_safe_next(path)}", status_code=303)
            else:
                response = PlainTextResponse("log in first", status_code=401)
            await response(scope, receive, send_with_headers)
            return
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            body = await _read_body(receive)
            if body is None:
                await PlainTextResponse("too large", status_code=413)(scope, receive, send_with_headers)
                return
            if not self.keys.csrf_valid(request.cookies.get(CSRF_COOKIE), _sent_token(request, body)):
                await PlainTextResponse("the form expired or came from elsewhere: reload the page and try again",
                                        status_code=403)(scope, receive, send_with_headers)
                return
            receive = _replay(body)
        await self.app(scope, receive, send_with_headers)


def _safe_next(path: str) -> str:
    return path if path.startswith("/console/") and "//" not in path else "/console/"


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_POST_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _sent_token(request: Request, body: bytes) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=200).get(CSRF_FIELD)
        return values[0] if values else None
    return None


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return receive
