"""The console's Flows pages: every flow with its triggers, lint's findings and who is in it now;
a flow's page with its diagram, its YAML, what each message costs, and its conversation tests with
a button that runs them. The editor is :mod:`bot.console.flow_edit`.

A flow is found by its ``flow:`` name, checked against the names flows may have and looked up in
the folder as lint reads it: a URL never names a file. Everything shown is the files (what git
holds); the page says when the running bot is not on them yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot.console import flow_edit
from bot.console.flow_data import (
    Counts,
    check_options,
    counts_now,
    flows_folder,
    read_folder,
    reload_status,
    settings_of,
    shown_file,
)
from bot.console.rendering import Page, render
from bot.flows import graph
from bot.flows.compile import compile_flow
from bot.flows.editing import FlowFolder, is_flow_name
from bot.flows.loader import ParsedFlow, load_flows
from bot.flows.message_costs import message_costs
from bot.flows.problems import FlowLoadError, Problem
from bot.flows.schema_types import format_duration
from bot.flowtests import CaseSpec, RunResult, conversation_files, read_conversation_file, run_cases, starts

log = logging.getLogger(__name__)

PAGE = Page("Flows", "/flows")
TESTS_FOLDER = "tests"  # FLOWS_DIR/tests, where `python -m bot test` looks too


def routes(templates: Jinja2Templates) -> list[BaseRoute]:
    return [Route("/flows", flow_list, methods=["GET"]),
            Route("/flows/{name}", flow_page, methods=["GET"]),
            Route("/flows/{name}/tests", run_flow_tests, methods=["POST"]),
            Route("/flows/{name}/status", running_status, methods=["GET"]),
            *flow_edit.routes()]


@dataclass(frozen=True)
class FlowRow:
    name: str
    file: str
    description: str
    triggers: list[str]
    starts_on_any_message: bool
    problems: list[Problem]
    counts: Counts

    @property
    def errors(self) -> int:
        return sum(problem.severity == "error" for problem in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors


async def flow_list(request: Request) -> Response:
    new = request.query_params.get("new")
    if new is not None and is_flow_name(new.strip()):  # the "new flow" form: its editor
        return RedirectResponse(f"/console/flows/{new.strip()}/edit", status_code=303)
    folder = await read_folder(request)
    rows = []
    for name, parsed in sorted(folder.flows.items()):
        model = parsed.model
        rows.append(FlowRow(name, shown_file(str(parsed.file), folder.folder), model.description,
                            list(model.triggers or ()), model.start_on_any_message,
                            folder.problems_in(parsed.file), await counts_now(request, name, model.expires_after)))
    return render(request, "flows.html", {
        "active": PAGE.title, "rows": rows, "elsewhere": folder.outside_flows(), "folder": folder.folder,
        "status": reload_status(request),
        "shown_file_in_folder": lambda file: shown_file(file, folder.folder),
        "new_name": new, "new_error": None if new is None else
        f"{new[:80]!r} is not a flow name: use letters, digits and _, not starting with a digit"})


def _flow_or_404(folder: FlowFolder, name: str) -> ParsedFlow:
    parsed = folder.flows.get(name) if is_flow_name(name) else None
    if parsed is None:
        raise HTTPException(404, f"no flow called {name[:80]!r} in {folder.folder.name}/")
    return parsed


async def flow_page(request: Request) -> Response:
    return await _render_flow(request, None)


async def run_flow_tests(request: Request) -> Response:
    """Runs the flow's conversation tests against the files as they are now (as ``python -m bot
    test`` would), each in its own simulated bot with a throwaway store."""
    name = request.path_params["name"]
    folder = await read_folder(request)
    parsed = _flow_or_404(folder, name)
    cases, _ = await run_in_threadpool(flow_tests, folder.folder, name, list(parsed.model.triggers or ()))
    settings = settings_of(request)
    try:
        flows = await run_in_threadpool(load_flows, folder.folder, check_options(request))
    except FlowLoadError as error:
        return await _render_flow(request, None, run_error="The tests cannot run: the flow files have errors "
                                  f"(fix them first).\n{error.listing()}", folder=folder)
    run = await run_cases(flows, cases, settings.flow_env, suggest_triggers=settings.suggest_triggers)
    log.info("console: ran %d conversation tests of flow %s: %d failed", len(run.results), name,
             sum(not result.passed for result in run.results))
    return await _render_flow(request, run, folder=folder)


async def running_status(request: Request) -> Response:
    """For the page's script after a save: has the bot reloaded the files yet, or refused them?"""
    if not is_flow_name(request.path_params["name"]):
        raise HTTPException(404)
    return JSONResponse(await run_in_threadpool(reload_status, request))


def flow_tests(folder: Path, name: str, triggers: list[str]) -> tuple[list[tuple[str, CaseSpec]], list[Problem]]:
    """The conversation tests (file, test) under FLOWS_DIR/tests that start this flow: a turn
    ``start:``s it, or texts one of its triggers. Test files that cannot be read are problems."""
    tests = folder / TESTS_FOLDER
    if not tests.is_dir():
        return [], []
    cases: list[tuple[str, CaseSpec]] = []
    problems: list[Problem] = []
    for path in conversation_files([tests]):
        spec, found = read_conversation_file(path)
        problems.extend(found)
        if spec is not None:
            cases.extend((str(path), case) for case in spec.tests if starts(case, name, triggers))
    return cases, problems


async def _render_flow(request: Request, run: RunResult | None, *, run_error: str | None = None,
                       folder: FlowFolder | None = None) -> Response:
    name = request.path_params["name"]
    folder = folder or await read_folder(request)
    parsed = _flow_or_404(folder, name)
    model = parsed.model
    problems = folder.problems_in(parsed.file)
    errors = any(problem.severity == "error" for problem in problems)
    mermaid = graph.mermaid(compile_flow(model, str(parsed.file))) if not errors else None
    try:
        text = await run_in_threadpool(parsed.file.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        text = f"(cannot read {parsed.file.name}: {error})"
    cases, test_problems = await run_in_threadpool(flow_tests, folder.folder, name, list(model.triggers or ()))
    counts = await counts_now(request, name, model.expires_after)
    return render(request, "flow.html", {
        "active": PAGE.title, "flow": model, "name": name, "file": shown_file(str(parsed.file), folder.folder),
        "problems": problems, "mermaid": mermaid, "lines": text.splitlines(),
        "messages": message_costs(model, parsed.source, check_options(request)),
        "states": list(model.states), "counts": counts, "cases": cases, "test_problems": test_problems,
        "run": run, "run_error": run_error, "shown_file": lambda file: shown_file(file, flows_folder(request)),
        "saved": request.query_params.get("saved") == "1", "status": reload_status(request),
        "quoted_name": quote(name), "expires": format_duration(model.expires_after), "tests_folder": TESTS_FOLDER,
        "assumed_length": check_options(request).assumed_variable_length})
