"""``python -m bot results FLOW``: what a flow achieved, as a CSV of its runs and a short funnel.

The CSV (stdout, or ``-o FILE``) has one row per run of the flow that began in the period: the
number (masked; ``--full-numbers`` for an operator who must contact people, e.g. to follow up with
those who did not finish), when it began and ended, how it ended, where it was, and every variable
the flow saved. Cells are spreadsheet-safe (``bot/spreadsheet.py``). The funnel (runs started,
reaching each state along the main path, finished, expired, opted out…) goes to stderr, or to
stdout when the CSV goes to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import time
from datetime import date
from pathlib import Path

from bot.cli.common import CommandError, Commands, add_flows_option, load_for, opened_output
from bot.flows.compile import CompiledFlow
from bot.flows.problems import FlowLoadError
from bot.results.funnel import OUTCOME_NAMES, Funnel, funnel
from bot.results.table import csv_rows
from bot.settings import load_settings
from bot.store import open_store


def add_commands(commands: Commands) -> None:
    results = commands.add_parser(
        "results", help="a flow's results: its runs as CSV, and a funnel (started, each state, finished…)",
        description=(
            "Write the runs of FLOW as CSV (stdout, or -o FILE): one row per run that began in the period, "
            "with the number (masked unless --full-numbers), when it began and ended (UTC), how it ended "
            "(finished, expired, opted_out, left: another flow started, reset: the flow changed or an operator "
            "reset it, in_progress), the state it was at, and the variables the flow saved. A cell a "
            "spreadsheet would run as a formula starts with a ' instead. Prints the funnel too: how many runs "
            "started, reached each state along the flow's main path, and ended each way (to stderr; to stdout "
            "with -o). Periods are whole UTC days; a run counts on the day it began."))
    results.add_argument("flow", metavar="FLOW", help="the flow's name (its `flow:`)")
    results.add_argument("--since", metavar="DATE", help="runs that began on this UTC day (YYYY-MM-DD) or later")
    results.add_argument("--until", metavar="DATE", help="runs that began on this UTC day (YYYY-MM-DD) or earlier")
    results.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the CSV here (default: stdout)")
    results.add_argument("--full-numbers", action="store_true",
                         help="write full phone numbers, not masked ones (to contact people: handle with care)")
    results.add_argument("--store", metavar="URL", help="STORE_URL (default: from the settings)")
    add_flows_option(results)
    results.set_defaults(run=_results)


def _results(args: argparse.Namespace) -> int:
    since, until = parse_day(args.since, "--since"), parse_day(args.until, "--until")
    if since is not None and until is not None and since > until:
        raise CommandError(f"--since {since} is after --until {until}: no day is in that period")
    flow = _flow(args)
    return asyncio.run(_export(args.store or load_settings().store_url, args.flow, flow, since, until,
                               args.output, args.full_numbers))


def parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"{option} {text!r} is not a day: write YYYY-MM-DD (a UTC day)") from None


def _flow(args: argparse.Namespace) -> CompiledFlow | None:
    """The flow as loaded now, for the order of its states; None (with a note) when the flows do
    not load or no longer have it: its results are still in the store."""
    try:
        flows = load_for(args)
    except FlowLoadError as error:
        print(f"note: the flows do not load ({error.problems[0] if error.problems else error}); "
              "states are listed by count", file=sys.stderr)
        return None
    found = flows.flows.get(args.flow)
    if found is None:
        print(f"note: no flow named {args.flow!r} is loaded now (flows: {', '.join(sorted(flows.flows)) or 'none'}); "
              "showing what the store has for it", file=sys.stderr)
    return found


async def _export(store_url: str, name: str, flow: CompiledFlow | None, since: date | None, until: date | None,
                  output: Path | None, full_numbers: bool) -> int:
    store = open_store(store_url)
    now = time.time()
    written = -1  # the header
    try:
        shown = funnel(await store.flow_results(name, since, until, now), flow)
        with opened_output(output) as out:
            writer = csv.writer(out)
            async for row in csv_rows(store, name, since, until, full_numbers=full_numbers, now=now):
                writer.writerow(row)
                written += 1
            out.flush()
    except BrokenPipeError:  # `| head` stopped reading: fine, nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        await store.close()
    report = sys.stdout if output is not None else sys.stderr
    print("\n".join(summary(shown, since, until)), file=report)
    if output is not None:
        print(f"wrote {written} run(s) to {output}", file=report)
    return 0


def summary(shown: Funnel, since: date | None, until: date | None) -> list[str]:
    """The funnel as a few aligned lines: counts and their share of the runs started."""
    period = f"from {since} to {until}" if since and until else f"from {since}" if since else \
        f"until {until}" if until else "on any day"
    lines = [f"{shown.flow}: runs that began {period} (UTC days)"]
    rows = [("started", shown.started, "")]
    rows += [(step.state, step.count, "" if step.main else "  (off the main path)") for step in shown.steps]
    rows += [(OUTCOME_NAMES[outcome], count, "") for outcome, count in shown.ended]
    rows.append(("in progress", shown.in_progress, ""))
    width = max(len(label) for label, _, _ in rows)
    for index, (label, count, note) in enumerate(rows):
        share = f"{shown.share(count):5.0%}" if index and shown.started else ""
        lines.append(f"  {label.ljust(width)}  {count:>7}  {share}{note}".rstrip())
    return lines

