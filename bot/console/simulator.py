"""The Simulator page: a phone-shaped chat with the running bot, from a simulated number.

Every message goes through the bot's own inbox as the webhook's do (``Inbox.receive`` with an
``Inbound``: the same engine, flows, store and trace), from a number of the simulated range, so
nothing reaches Twilio (``bot/simulated_senders.py``). "Wait" moves time for that sender alone.
The page's script posts JSON with the CSRF token in its header; each answer carries the turns it
made, and the page asks for the sender's stored transcript only on opening and when a poll of
the conversation (cheap: one read) shows that something else changed it (the server's timer
loop firing one of its timers).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot import simulated_senders as simulated
from bot.console.conversations import sender_ids
from bot.console.rendering import Page, render
from bot.console.turn_views import turn_view, where_view
from bot.flows.schema_types import format_duration, parse_duration
from bot.simulated_numbers import RANGE, is_simulated, new_simulated_number
from bot.simulator import EndlessTimers
from bot.store.base import StoreBusy
from bot.store.listings import TurnRecord

PAGE = Page("Simulator", "/simulator")
POLL_SECONDS = 3
TRANSCRIPT_TURNS = 100
WAITS = ("1m", "5m", "30m", "1h", "1d", "7d")  # offered beside the field; any duration may be typed
MAX_DURATION_TEXT = 40


def routes(templates: Jinja2Templates) -> list[BaseRoute]:
    return [Route("/simulator", page, methods=["GET"]),
            Route("/simulator/state", state, methods=["GET"]),
            Route("/simulator/turns", turns, methods=["GET"]),
            Route("/simulator/send", send, methods=["POST"]),
            Route("/simulator/wait", wait, methods=["POST"]),
            Route("/simulator/reset", reset, methods=["POST"])]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def page(request: Request) -> Response:
    chosen = request.query_params.get("from", "")
    number = chosen if chosen and is_simulated(chosen) else new_simulated_number()
    return render(request, "simulator.html", {"active": PAGE.title, "number": number, "range": RANGE,
                                              "our_number": _our_number(request), "waits": WAITS,
                                              "poll_seconds": POLL_SECONDS})


async def state(request: Request) -> Response:
    async def read() -> tuple[str, dict[str, Any]]:
        return _sender(request.query_params.get("from")), {}
    return await _answer(request, read)


async def turns(request: Request) -> Response:
    async def read() -> tuple[str, dict[str, Any]]:
        sender = _sender(request.query_params.get("from"))
        stored = await request.state.store.recent_turns(sender, TRANSCRIPT_TURNS)
        return sender, {"turns": [turn_view(record) for record in stored]}
    return await _answer(request, read)


async def send(request: Request) -> Response:
    async def act() -> tuple[str, dict[str, Any]]:
        sent = await _json(request)
        sender = _sender(sent.get("from"))
        body, media = sent.get("body", ""), sent.get("media", [])
        if not isinstance(body, str) or not isinstance(media, list) or not all(isinstance(u, str) for u in media):
            raise _Refused(400, "send a text (body) and a list of picture URLs (media)")
        try:
            pictures = simulated.check_media(media)
            turn = await simulated.text(request.state.inbox, sender, body, pictures, _our_number(request))
        except ValueError as error:
            raise _Refused(400, str(error)) from None
        record = TurnRecord(turn.message_sid, request.state.inbox.engine.clock(), body, turn.received.replies,
                            turn.received.trace)
        return sender, {"turns": [turn_view(record, media=pictures, notified=turn.notified)]}
    return await _answer(request, act)


async def wait(request: Request) -> Response:
    async def act() -> tuple[str, dict[str, Any]]:
        sent = await _json(request)
        sender = _sender(sent.get("from"))
        text = sent.get("duration", "")
        try:
            if not isinstance(text, str) or len(text) > MAX_DURATION_TEXT:
                raise ValueError("write the wait like 30s, 10m, 2h, 1d or 1h30m")
            seconds = parse_duration(text)
            fired = await simulated.wait(request.state.inbox, sender, seconds, request.state.store)
        except EndlessTimers as error:
            raise _Refused(409, str(error)) from None
        except ValueError as error:
            raise _Refused(400, str(error)) from None
        now = request.state.inbox.engine.clock()
        return sender, {"waited": format_duration(seconds), "turns": [
            turn_view(TurnRecord(turn.message_sid, now, "", turn.received.replies, turn.received.trace),
                      notified=turn.notified, after=turn.after) for turn in fired]}
    return await _answer(request, act)


async def reset(request: Request) -> Response:
    async def act() -> tuple[str, dict[str, Any]]:
        sender = _sender((await _json(request)).get("from"))
        received = await request.state.inbox.reset(sender)
        record = TurnRecord("reset:", request.state.inbox.engine.clock(), "", (), received.trace)
        return sender, {"turns": [turn_view(record)]}
    return await _answer(request, act)


async def _answer(request: Request, act: Callable[[], Awaitable[tuple[str, dict[str, Any]]]]) -> Response:
    """Run ``act`` and answer JSON with what it made and where its sender stands now; a refusal
    is ``{"error": …}`` with its status."""
    try:
        sender, made = await act()
        return JSONResponse({**made, "state": await _where(request, sender)})
    except _Refused as refused:
        return JSONResponse({"error": str(refused)}, status_code=refused.status)
    except simulated.NotSimulated as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    except StoreBusy as error:
        return JSONResponse({"error": f"the store is busy ({error}); try again"}, status_code=503)


async def _where(request: Request, sender: str) -> dict[str, Any]:
    snapshot = await request.state.store.snapshot(sender, "")
    engine = request.state.inbox.engine
    where = where_view(snapshot.conversation, engine.flows, engine.clock(), opted_out=snapshot.opted_out)
    return {**where, "href": f"/console/conversations/{sender_ids(request).id_of(sender)}"}


def _sender(number: object) -> str:
    """The simulated number a request is for (``from``: in its JSON body, or its query)."""
    if not isinstance(number, str) or not number.strip():
        raise _Refused(400, "say which simulated number (from)")
    return simulated.require_simulated(number.strip())


async def _json(request: Request) -> dict[str, Any]:
    try:
        sent = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise _Refused(400, "send JSON") from None
    if not isinstance(sent, dict):
        raise _Refused(400, "send a JSON object")
    return sent


def _our_number(request: Request) -> str:
    """The number simulated senders text: TWILIO_FROM when set (as the webhook's To would say)."""
    return str(request.state.settings.outbound.from_number or "")
