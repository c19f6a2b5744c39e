"""How console pages are drawn: Jinja2 templates (autoescaped: a texted value is only ever text in
the page), the navigation, and the CSRF token every form carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from bot import __version__
from bot.console.security import CSRF_COOKIE, CSRF_FIELD, ConsoleKeys
from bot.privacy import mask

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Page:
    """A page of the navigation: its name as ops staff read it, and its path under /console."""

    title: str
    path: str


def page_templates(pages: list[Page]) -> Jinja2Templates:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    templates = Jinja2Templates(env=environment)
    templates.env.globals["navigation"] = pages
    templates.env.globals["csrf_field"] = CSRF_FIELD
    templates.env.globals["release"] = __version__  # the layout's footer, for ops staff logged in
    templates.env.filters["masked"] = mask
    return templates


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """A page with the layout's parts filled in: the CSRF token (kept in its cookie, set here when
    the browser has none yet) and which navigation item is open."""
    keys: ConsoleKeys = request.app.state.keys
    templates: Jinja2Templates = request.app.state.templates
    token = request.cookies.get(CSRF_COOKIE)
    fresh = token is None or not keys.csrf_valid(token, token)
    if fresh:
        token = keys.new_csrf()
    response = templates.TemplateResponse(request, name, {"csrf_token": token, **(context or {})},
                                          status_code=status_code)
    if fresh:
        response.set_cookie(CSRF_COOKIE, token or "", httponly=True, samesite="strict", path="/console",
                            secure=request.url.scheme == "https")
    return response
