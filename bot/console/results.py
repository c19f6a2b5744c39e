"""The Results page: what a flow achieved over a period. How many runs started, reached each state
along the flow's main path, and ended each way (a funnel of plain HTML bars), the saved answers as a
table a page at a time (numbers masked), and the same CSV as ``python -m bot results FLOW``.

Everything comes from the store's results (``Results.flow_results`` and ``Results.runs``, counted as
turns commit), shaped by ``bot/results/funnel.py`` and ``bot/results/table.py``: a few small reads
whatever the number of conversations, and the CSV streamed a row at a time. Periods are whole UTC
days, a run counting on the day it began, as in the CLI.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot.console.rendering import Page, render
from bot.flows.compile import CompiledFlow
from bot.flows.schema_types import NAME_PATTERN
from bot.results.funnel import OUTCOME_NAMES, Funnel, funnel
from bot.results.table import FIXED_COLUMNS, cells, columns_of, csv_rows
from bot.store.base import RunKey, RunRow, StoreBusy

log = logging.getLogger(__name__)

PAGE = Page("Results", "/results")
DEFAULT_DAYS = 30  # the period shown when none is chosen: the last 30 UTC days, today included
PAGE_SIZE = 50  # answers' rows per page
HEADINGS = {"number": "Number", "started_at": "Began (UTC)", "ended_at": "Ended (UTC)", "outcome": "Outcome",
            "state": "State"}
_CURSOR = re.compile(r"(\d+(?:\.\d+)?)~(\d{1,6})")


def routes(templates: Jinja2Templates) -> list[BaseRoute]:
    return [Route("/results", results_page, methods=["GET"]),
            Route("/results/export.csv", export_csv, methods=["GET"])]


class Refused(ValueError):
    """A choice in the query the page cannot show (a malformed day or flow name): said plainly."""


@dataclass(frozen=True)
class Choice:
    """What the page shows: a flow (None: none chosen yet) and a period of UTC days, both included."""

    flow: str | None
    since: date
    until: date

    def query(self) -> dict[str, str]:
        return {"flow": self.flow or "", "since": self.since.isoformat(), "until": self.until.isoformat()}


def today() -> date:
    return datetime.now(UTC).date()


def choice_of(request: Request, flows: list[str]) -> Choice:
    """The flow and period from the query; the first flow and the last 30 days by default."""
    params = request.query_params
    until = _day(params.get("until"), "until") or today()
    since = _day(params.get("since"), "since") or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise Refused(f"the period begins ({since}) after it ends ({until}): no day is in it")
    flow = params.get("flow") or (flows[0] if flows else None)
    if flow is not None and not re.fullmatch(NAME_PATTERN, flow):
        raise Refused("a flow's name is letters, digits and _ (its `flow:`)")
    return Choice(flow, since, until)


def _day(text: str | None, what: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Refused(f"{what} {text[:40]!r} is not a day: pick one, or write YYYY-MM-DD (a UTC day)") from None


async def results_page(request: Request) -> Response:
    loaded: dict[str, CompiledFlow] = request.state.inbox.engine.flows.flows
    names = sorted(loaded)
    context: dict[str, Any] = {"active": PAGE.title, "flows": names, "choice": None, "error": None}
    try:
        choice = choice_of(request, names)
        after, skip = cursor_of(request.query_params.get("cursor"))
    except Refused as error:
        context["error"] = str(error)
        return render(request, "results.html", context, status_code=400)
    context["choice"] = choice
    if choice.flow is None:
        return render(request, "results.html", context)
    now = time.time()  # the funnel and the table judge expiry at the same moment
    try:
        shown = funnel(await request.state.store.flow_results(choice.flow, choice.since, choice.until, now),
                       loaded.get(choice.flow))
        rows = [row async for row in request.state.store.runs(choice.flow, choice.since, choice.until,
                                                               after=after, limit=skip + PAGE_SIZE + 1, now=now)]
    except StoreBusy as error:
        log.warning("console: cannot read the results of flow %s: %s", choice.flow, error)
        context["error"] = f"The results are not available now ({error}); try again in a moment."
        return render(request, "results.html", context, status_code=503)
    rows = rows[skip:]
    context.update(loaded=choice.flow in loaded, funnel=funnel_view(shown),
                   table=table_view(rows[:PAGE_SIZE]),
                   next_cursor=next_cursor(rows[:PAGE_SIZE]) if len(rows) > PAGE_SIZE else None,
                   paged=bool(request.query_params.get("cursor")), page_size=PAGE_SIZE,
                   export_query=choice.query())
    return render(request, "results.html", context)


def funnel_view(shown: Funnel) -> dict[str, Any]:
    """The funnel's bars: each count with its share of the runs started, as a width in percent."""
    def bar(label: str, count: int, kind: str) -> dict[str, Any]:
        share = shown.share(count)
        return {"label": label, "count": count, "percent": f"{share:.0%}", "width": f"{min(share, 1.0) * 100:.1f}",
                "kind": kind}

    return {"started": shown.started,
            "main": [bar(step.state, step.count, "state") for step in shown.steps if step.main],
            "others": [bar(step.state, step.count, "state") for step in shown.steps if not step.main],
            "ended": [bar(OUTCOME_NAMES[outcome], count, str(outcome)) for outcome, count in shown.ended]
            + [bar("in progress", shown.in_progress, "in_progress")],
            "started_bar": bar("started", shown.started, "started")}


def table_view(rows: list[RunRow]) -> dict[str, Any]:
    """This page's runs under the fixed columns and the variables these rows saved (masked numbers;
    the template escapes every value)."""
    columns = columns_of(rows)
    return {"headings": [HEADINGS[name] for name in FIXED_COLUMNS], "variables": columns,
            "rows": [cells(row, columns) for row in rows]}


# -- paging ---------------------------------------------------------------------------------------
# A run's key is (started_at, id), and an id may be a broadcast's turn id, which holds a number: the
# page's cursor is the last run's start time and how many runs shown so far began at that instant.

def next_cursor(shown: list[RunRow]) -> str:
    last = shown[-1].started_at
    same = sum(1 for row in shown if row.started_at == last)
    return f"{last!r}~{same}"


def cursor_of(text: str | None) -> tuple[RunKey | None, int]:
    """``(after, skip)`` for ``Results.runs``: after every run that began before the instant, then
    skipping those at it already shown."""
    if not text:
        return None, 0
    found = _CURSOR.fullmatch(text)
    if found is None:
        raise Refused("that page of answers does not exist: open the Results page again")
    return (float(found.group(1)), ""), int(found.group(2))


# -- the CSV --------------------------------------------------------------------------------------

async def export_csv(request: Request) -> Response:
    """The CLI's CSV of the chosen flow and period (masked numbers), streamed a row at a time."""
    try:
        choice = choice_of(request, sorted(request.state.inbox.engine.flows.flows))
    except Refused as error:
        return PlainTextResponse(str(error), status_code=400)
    if choice.flow is None:
        return PlainTextResponse("choose a flow to export", status_code=400)
    filename = f"results-{choice.flow}-{today().isoformat()}.csv"
    return StreamingResponse(_csv_text(request, choice.flow, choice), media_type="text/csv; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="{filename}"',
                                      "cache-control": "no-store"})


async def _csv_text(request: Request, flow: str, choice: Choice) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    async for row in csv_rows(request.state.store, flow, choice.since, choice.until):
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
