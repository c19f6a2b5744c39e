"""Logging in and out of the console: one password (``ADMIN_PASSWORD``), compared in constant
time; failed attempts limited per client and in all; a signed, HttpOnly, SameSite cookie."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot.console.rendering import render
from bot.console.security import SESSION_COOKIE, SESSION_SECONDS, ConsoleKeys, LoginLimiter
from bot.settings import Settings

log = logging.getLogger(__name__)


def routes(keys: ConsoleKeys, limiter: LoginLimiter, templates: Jinja2Templates, settings: Settings) -> list[BaseRoute]:
    def secure(request: Request) -> bool:
        """Secure cookies when the browser talks https to us (directly, or through a proxy we trust)."""
        forwarded = settings.trust_proxy and request.headers.get("x-forwarded-proto", "").lower() == "https"
        return request.url.scheme == "https" or forwarded or settings.public_url.startswith("https://")

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", {"next": _next(request.query_params.get("next"))})

    async def log_in(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(client)
        form = await request.form()
        target = _next(str(form.get("next", "")))
        if wait > 0:
            log.warning("console: login refused, too many failed attempts (retry in %.0f s)", wait)
            response = render(request, "login.html", {"next": target, "error": "Too many failed attempts. "
                              f"Try again in {int(wait // 60) + 1} minutes."}, status_code=429)
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        if not keys.password_matches(str(form.get("password", ""))):
            limiter.failed(client)
            log.warning("console: failed login")
            return render(request, "login.html", {"next": target, "error": "That password is not right."},
                          status_code=401)
        log.info("console: logged in")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, keys.new_session(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", path="/console", secure=secure(request))
        return response

    async def log_out(request: Request) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    return [Route("/login", login_page, methods=["GET"]), Route("/login", log_in, methods=["POST"]),
            Route("/logout", log_out, methods=["POST"])]


def _next(target: str | None) -> str:
    """Where to go after logging in: a console page, never another site (an open redirect)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return "/console/"
