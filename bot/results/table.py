"""A flow's saved answers as a table: one row per run, the flow's variables as columns.

Columns: the number (masked, as everywhere numbers are shown, unless ``full_numbers``), when the
run began and ended (UTC, ISO 8601), how it ended (``in_progress`` while it goes on), the state it
is at or ended at, then every variable the flow saved, a column per dotted name (``order.zip``)
in the order they first appear. What people texted is only ever a value here: the console escapes
it as HTML, and in a CSV every cell goes through ``bot.spreadsheet.csv_cell``, so a saved
``=HYPERLINK(…)`` is shown as text, never run.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from bot.privacy import mask
from bot.spreadsheet import csv_cell
from bot.store.base import Results, RunRow

FIXED_COLUMNS = ("number", "started_at", "ended_at", "outcome", "state")
IN_PROGRESS = "in_progress"


def flatten(variables: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Saved variables as text by dotted name: nested mappings opened, lists and numbers as JSON."""
    flat: dict[str, str] = {}
    for name, value in variables.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, str):
            flat[path] = value
        else:
            flat[path] = json.dumps(value, ensure_ascii=False)
    return flat


def iso(at: float | None) -> str:
    """A time as ISO 8601 in UTC to the second (``2024-05-01T09:30:00Z``); '' for none."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def columns_of(rows: Iterable[RunRow]) -> list[str]:
    """The variable columns of these rows, in the order they first appear."""
    found: dict[str, None] = {}
    for row in rows:
        found.update(dict.fromkeys(flatten(row.vars)))
    return list(found)


def cells(row: RunRow, columns: Iterable[str], *, full_numbers: bool = False) -> list[str]:
    """One row's values under ``FIXED_COLUMNS`` then ``columns``, as plain text (not yet CSV-safe,
    not yet HTML-escaped: whoever writes them out does that)."""
    flat = flatten(row.vars)
    return [row.sender if full_numbers else mask(row.sender), iso(row.started_at), iso(row.ended_at),
            str(row.outcome) if row.outcome is not None else IN_PROGRESS, row.state or "",
            *(flat.get(column, "") for column in columns)]


async def csv_rows(store: Results, flow: str, since: date | None = None, until: date | None = None, *,
                   full_numbers: bool = False, now: float | None = None) -> AsyncIterator[list[str]]:
    """The CSV of the runs of ``flow`` that began in the period: the header, then a row per run,
    every cell spreadsheet-safe. Reads the runs twice (the header needs every variable's name
    first) a page at a time, so a million runs never sit in memory."""
    now = time.time() if now is None else now  # both passes judge expiry at the same moment
    columns: dict[str, None] = {}
    async for row in store.runs(flow, since, until, now=now):
        columns.update(dict.fromkeys(flatten(row.vars)))
    yield [csv_cell(name) for name in (*FIXED_COLUMNS, *columns)]
    async for row in store.runs(flow, since, until, now=now):
        yield [csv_cell(cell) for cell in cells(row, columns, full_numbers=full_numbers)]
