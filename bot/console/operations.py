"""The Operations page: is the bot well? Which flows this process runs and since when, the last
reload it refused with lint's file:line lines, every server process's entry (as ``python -m bot
status`` shows them), the store's health, and the broadcasts under way with their counts.

The data comes from where the terminal's tools read it: this process's ``ProcessStatusKeeper``
(``bot/status.py``), the store's process entries (``bot/details.py``), ``Health.health``, and the
progress each broadcast's own process records in the store (``bot/broadcast_progress.py``). The
broadcasts' table is polled as JSON (``broadcasts.json``) every 2 seconds while one runs, and now
and then otherwise, so a broadcast started in a terminal shows up without a reload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot.broadcast_progress import Standing, standing
from bot.console.flow_data import flows_folder, reload_status, settings_of
from bot.console.rendering import Page, render
from bot.console.turn_views import ago, utc
from bot.details import READ_SECONDS, process_entries
from bot.status import Liveness, liveness, refusal_is_current, release_of, without_password
from bot.store.base import DAY, BroadcastProgress, ProcessStatus, RejectedReload

log = logging.getLogger(__name__)

PAGE = Page("Operations", "/operations")
POLL_SECONDS = 2  # the broadcasts' table, while one runs
IDLE_POLL_SECONDS = 15  # and while none does: one started in a terminal shows up by itself
RECENT_SECONDS = DAY  # broadcasts heard from within this long are listed (finished ones too)


def routes(templates: Jinja2Templates) -> list[BaseRoute]:
    return [Route("/operations", operations_page, methods=["GET"]),
            Route("/operations/broadcasts.json", broadcasts_json, methods=["GET"])]


async def operations_page(request: Request) -> Response:
    now = time.time()
    keeper = request.state.status
    mine: ProcessStatus = keeper.status
    health = await request.state.store.health()
    entries, entries_problem = await process_entries(request.state.store)
    folder = flows_folder(request)
    return render(request, "operations.html", {
        "active": PAGE.title,
        "this": {**process_view(mine, now, folder), "uptime": ago(now - mine.started_at)},
        "files": await run_in_threadpool(reload_status, request),  # reads and hashes the flow files
        "store": {"ok": health.ok, "problem": health.problem, "url": without_password(settings_of(request).store_url)},
        "processes": [process_view(entry, now, folder) for entry in entries], "processes_problem": entries_problem,
        "broadcasts": await broadcasts_view(request, now), "poll_seconds": POLL_SECONDS,
        "idle_poll_seconds": IDLE_POLL_SECONDS})


async def broadcasts_json(request: Request) -> Response:
    """The broadcasts' table for the page's script."""
    view = await broadcasts_view(request, time.time())
    return JSONResponse(view, status_code=200 if view["problem"] is None else 503,
                        headers={"cache-control": "no-store"})


def process_view(entry: ProcessStatus, now: float, folder: Path) -> dict[str, Any]:
    """A process's entry as the page shows it (the facts ``python -m bot status`` prints)."""
    alive = liveness(entry, now)
    flows = entry.flows
    return {"process": entry.process, "release": release_of(entry), "liveness": str(alive),
            "started": utc(entry.started_at), "heard": ago(now - entry.written_at),
            "stopped": utc(entry.stopped_at) if entry.stopped_at else None,
            "silent": alive is Liveness.SILENT, "version": flows.version, "loaded": utc(flows.loaded_at),
            "loaded_ago": ago(now - flows.loaded_at), "flows": list(flows.flows), "reloads": entry.reloads,
            "rejected": _rejected_view(entry.rejected, refusal_is_current(entry), now, folder)}


def _rejected_view(rejected: RejectedReload | None, current: bool, now: float, folder: Path) -> dict[str, Any] | None:
    if rejected is None:
        return None
    return {"at": utc(rejected.at), "ago": ago(now - rejected.at), "version": rejected.version or "?",
            "current": current, "problems": [_shown_problem(line, folder) for line in rejected.problems]}


def _shown_problem(line: str, folder: Path) -> str:
    """Lint's line with the flows folder named as in the Flows pages (``flows/status.yaml:12:13: …``),
    not by its whole path on the server."""
    prefix = f"{folder}/"
    return f"{folder.name}/{line[len(prefix):]}" if line.startswith(prefix) else line


async def broadcasts_view(request: Request, now: float) -> dict[str, Any]:
    """The broadcasts heard from in the last day, the most recent first, and whether one runs."""
    try:
        found: list[BroadcastProgress] = await asyncio.wait_for(request.state.store.broadcasts(RECENT_SECONDS, now),
                                                                READ_SECONDS)
    except Exception as error:  # noqa: BLE001 (TimeoutError included: the rest of the page still helps)
        why = f"the store did not answer within {READ_SECONDS:g}s" if isinstance(error, TimeoutError) else str(error)
        log.warning("console: cannot read the broadcasts' progress: %s", why)
        return {"items": [], "running": False, "at": utc(now), "problem": f"not available now ({why})"}
    items = [broadcast_row(progress, now) for progress in found]
    return {"items": items, "running": any(item["standing"] == Standing.RUNNING for item in items),
            "at": utc(now), "problem": None}


def broadcast_row(progress: BroadcastProgress, now: float) -> dict[str, Any]:
    return {"name": progress.name, "flow": progress.flow, "standing": str(standing(progress, now)),
            "requested": progress.requested, "settled": progress.requested - progress.waiting,
            "sent": progress.sent, "skipped": progress.skipped, "failed": progress.failed,
            "in_doubt": progress.in_doubt, "waiting": progress.waiting,
            "started": utc(progress.started_at), "heard": ago(now - progress.written_at)}
