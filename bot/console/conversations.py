"""The Conversations page: who is in which flow and state now, kept up to date; one sender's
transcript with each turn's routing trace, and a reset; the opt-out list with each number's
consent history.

Live without a reload by polling ``live.json`` every few seconds rather than server-sent events:
a poll is an ordinary short request, so it passes every proxy and load balancer unbuffered, any
worker can answer it (the data is in the store), and it holds no connection open per browser tab.
The page works without its script too: the first page of the list is drawn on the server.

A sender's URL never carries their number: it names them by an opaque id (``sender_ids.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot.console.rendering import Page, render
from bot.console.sender_ids import SenderIds
from bot.console.turn_views import ago, turn_view, utc, where_view
from bot.privacy import mask
from bot.simulated_numbers import is_simulated
from bot.store.base import StoreBusy
from bot.store.listings import ConversationSummary

log = logging.getLogger(__name__)

PAGE = Page("Conversations", "/conversations")
LIVE_PAGE = 50  # rows the list starts with; "Show more" adds as many
MAX_LIVE = 500  # rows a poll refreshes at most
POLL_SECONDS = 3
TRANSCRIPT_TURNS = 100
OPT_OUT_PAGE = 100
MAX_FILTER = 200  # characters of a flow or state name in a filter


def routes(templates: Jinja2Templates) -> list[BaseRoute]:
    return [Route("/conversations", live_page, methods=["GET"]),
            Route("/conversations/live.json", live_json, methods=["GET"]),
            Route("/conversations/opt-outs", opt_outs_page, methods=["GET"]),
            Route("/conversations/{sender_id}", sender_page, methods=["GET"]),
            Route("/conversations/{sender_id}/reset", reset, methods=["POST"])]


def sender_ids(request: Request) -> SenderIds:
    return SenderIds(request.state.settings.admin_password)


def _filters(request: Request) -> tuple[str | None, str | None]:
    flow = request.query_params.get("flow", "").strip()[:MAX_FILTER] or None
    state = request.query_params.get("state", "").strip()[:MAX_FILTER] or None
    return flow, state


def _limit(request: Request, default: int, most: int) -> int:
    try:
        return max(1, min(int(request.query_params.get("limit", default)), most))
    except ValueError:
        return default


async def _live(request: Request, limit: int) -> dict[str, Any]:
    """A page of the live list as plain data (the page's table and ``live.json`` alike)."""
    flow, state = _filters(request)
    page = await request.state.store.active_conversations(flow, state, limit, request.query_params.get("cursor"))
    flows = request.state.inbox.engine.flows
    now = request.state.inbox.engine.clock()
    ids = sender_ids(request)
    return {"items": [_row(item, flows, now, ids) for item in page.items], "cursor": page.cursor,
            "flow": flow or "", "state": state or "", "at": utc(now)}


def _row(item: ConversationSummary, flows: Any, now: float, ids: SenderIds) -> dict[str, Any]:
    compiled = flows.flows.get(item.flow)
    gone = compiled is None or item.state not in compiled.states
    idle = now - item.updated_at
    return {"id": ids.id_of(item.sender), "number": mask(item.sender), "simulated": is_simulated(item.sender),
            "flow": item.flow, "state": item.state, "idle": ago(idle), "idle_seconds": round(idle, 1),
            "expired": not gone and idle > compiled.expires_after, "gone": gone,
            "href": f"/console/conversations/{ids.id_of(item.sender)}"}


async def live_page(request: Request) -> Response:
    try:
        live = await _live(request, LIVE_PAGE)
    except ValueError as error:  # a malformed cursor
        return render(request, "conversations.html", {"active": PAGE.title, "error": str(error), "live": None,
                                                      "flows": [], "poll_seconds": POLL_SECONDS}, status_code=400)
    flows = sorted(request.state.inbox.engine.flows.flows)
    return render(request, "conversations.html", {"active": PAGE.title, "live": live, "flows": flows,
                                                  "poll_seconds": POLL_SECONDS, "page_size": LIVE_PAGE})


async def live_json(request: Request) -> Response:
    """The live list for the page's script: the first ``limit`` rows, or the page after ``cursor``."""
    try:
        return JSONResponse(await _live(request, _limit(request, LIVE_PAGE, MAX_LIVE)))
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    except StoreBusy as error:
        return JSONResponse({"error": f"the store is busy: {error}"}, status_code=503)


async def opt_outs_page(request: Request) -> Response:
    try:
        page = await request.state.store.opt_outs(OPT_OUT_PAGE, request.query_params.get("cursor"))
    except ValueError as error:
        return render(request, "opt_outs.html", {"active": PAGE.title, "error": str(error), "items": []},
                      status_code=400)
    ids = sender_ids(request)
    items = [{"number": mask(item.number), "since": utc(item.at),
              "href": f"/console/conversations/{ids.id_of(item.number)}"} for item in page.items]
    return render(request, "opt_outs.html", {"active": PAGE.title, "items": items, "cursor": page.cursor})


async def sender_page(request: Request) -> Response:
    number = sender_ids(request).number_of(request.path_params["sender_id"])
    if number is None:
        return render(request, "conversation.html", {"active": PAGE.title, "missing": True}, status_code=404)
    store, engine = request.state.store, request.state.inbox.engine
    snapshot = await store.snapshot(number, "")
    turns = await store.recent_turns(number, TRANSCRIPT_TURNS)
    history = await store.consent_history(number)
    return render(request, "conversation.html", {
        "active": PAGE.title, "sender_id": request.path_params["sender_id"],
        "where": where_view(snapshot.conversation, engine.flows, engine.clock(), opted_out=snapshot.opted_out),
        "turns": [turn_view(record) for record in turns], "limit": TRANSCRIPT_TURNS,
        "history": [{"when": utc(change.at), "status": str(change.status).replace("_", " "), "how": str(change.how),
                     "detail": change.detail, "message_sid": change.message_sid} for change in history],
        "was_reset": request.query_params.get("reset") == "1"})


async def reset(request: Request) -> Response:
    """End the sender's conversation as if it expired, through the turn pipeline (``Inbox.reset``)."""
    sender_id = request.path_params["sender_id"]
    number = sender_ids(request).number_of(sender_id)
    if number is None:
        return render(request, "conversation.html", {"active": PAGE.title, "missing": True}, status_code=404)
    try:
        await request.state.inbox.reset(number)
    except StoreBusy as error:
        return render(request, "conversation.html", {"active": PAGE.title, "sender_id": sender_id,
                                                     "error": f"The store is busy ({error}); try again."},
                      status_code=503)
    log.info("console: conversation of %s reset by an operator", mask(number))
    return RedirectResponse(f"/console/conversations/{sender_id}?reset=1", status_code=303)
