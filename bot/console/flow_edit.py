"""The console's flow editor: a flow's YAML in the browser, checked as you type (lint's findings with
line:col, the diagram, what the change does to people in the flow now), and saved over the flow's
file in the flows folder, where git keeps it and the hot reload picks it up.

The file is chosen by the flow's name in the URL (:meth:`FlowFolder.file_for`), never by anything
the browser sends. Saving is refused while the edit has errors, when its ``flow:`` is not the
flow's name, when the file changed on disk since the editor opened it, and, until the person
confirms, when the change strands people waiting in the flow (:mod:`bot.flows.impact`). A name
with no flow yet opens the editor on a new flow, saved as ``FLOWS_DIR/NAME.yaml``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.flow_data import check_options, counts, problem_json, read_folder, shown_file
from bot.console.rendering import render
from bot.flows.editing import Draft, EditRefused, FlowFolder, check_draft, digest, is_flow_name, save_draft
from bot.flows.impact import Effect, edit_impact

log = logging.getLogger(__name__)

MAX_TEXT = 256 * 1024  # characters: flows are a few kilobytes; the console refuses posts over 1 MB anyway


def routes() -> list[BaseRoute]:
    return [Route("/flows/{name}/edit", edit_page, methods=["GET"]),
            Route("/flows/{name}/lint", lint, methods=["POST"]),
            Route("/flows/{name}/save", save, methods=["POST"])]


def starter(name: str) -> str:
    """A new flow's first text: the smallest flow that runs, to change."""
    return (f"flow: {name}\n"
            "description: What this flow is for.\n"
            f"triggers: [{name.upper()}]\n"
            "expires_after: 1h\n"
            "start: ask\n"
            "states:\n"
            "  ask:\n"
            "    say: \"What would you like? Reply YES or NO.\"\n"
            "    replies:\n"
            "      - answer: yes\n"
            "        say: \"Great!\"\n"
            "        go: end\n"
            "      - answer: no\n"
            "        say: \"OK, maybe later.\"\n"
            "        go: end\n"
            "    otherwise: \"Please reply YES or NO.\"\n")


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_flow_name(name):
        raise HTTPException(404, f"{name[:80]!r} is not a flow name")
    return name


async def edit_page(request: Request) -> Response:
    name = _name(request)
    folder = await read_folder(request)
    try:
        file = folder.file_for(name)
    except EditRefused as refused:
        return render(request, "flow_edit.html", {"active": "Flows", "name": name, "refused": str(refused)},
                      status_code=409)
    exists = file.exists()
    try:
        text = await run_in_threadpool(file.read_text, encoding="utf-8") if exists else starter(name)
    except (OSError, UnicodeDecodeError) as error:
        return render(request, "flow_edit.html", {"active": "Flows", "name": name,
                                                  "refused": f"cannot read {file.name}: {error}"}, status_code=409)
    return await _editor(request, folder, name, text, base=digest(text) if exists else "")


async def _editor(request: Request, folder: FlowFolder, name: str, text: str, *, base: str, error: str | None = None,
                  status_code: int = 200) -> Response:
    draft = await run_in_threadpool(check_draft, folder, name, text, check_options(request))
    effects = await _impact(request, folder, draft)
    return render(request, "flow_edit.html", {
        "active": "Flows", "name": name, "text": text, "base": base, "file": shown_file(str(draft.file), folder.folder),
        "new": name not in folder.flows, "exists": draft.file.exists(), "error": error,
        "problems": draft.problems, "blocking": draft.blocking, "mermaid": draft.mermaid, "effects": effects,
        "shown_file": lambda file: shown_file(file, folder.folder)}, status_code=status_code)


async def _impact(request: Request, folder: FlowFolder, draft: Draft) -> list[Effect]:
    """What saving the draft does to the people in the flow now (everyone the store still keeps
    there: each of them gets the reset text at their next message, however long ago they wrote)."""
    if draft.flow is None:
        return []
    found = await counts(request, draft.name)
    before = folder.flows.get(draft.name)
    return edit_impact(before.model if before is not None else None, draft.flow.model, found.by_state,
                       request.state.inbox.engine.flows.program.reset)


def _result(draft: Draft, folder: FlowFolder, effects: list[Effect]) -> dict[str, Any]:
    return {"problems": [{**problem_json(problem, folder.folder), "here": problem in draft.own,
                          "blocking": problem in draft.blocking} for problem in draft.problems],
            "blocking": len(draft.blocking), "mermaid": draft.mermaid,
            "impact": [{"state": effect.state, "people": effect.people, "message": effect.message}
                       for effect in effects]}


async def lint(request: Request) -> Response:
    """The editor's check as you type: JSON ``{"text": …}`` in; lint's findings, the diagram's
    Mermaid source (null while the flow has errors) and the impact on people in the flow out."""
    name = _name(request)
    try:
        sent = json.loads(await request.body())
        text = sent["text"]
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "send JSON: {\"text\": \"the flow's YAML\"}"}, status_code=400)
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return JSONResponse({"error": f"the text must be a string of at most {MAX_TEXT:,} characters"},
                            status_code=400)
    folder = await read_folder(request)
    try:
        draft = await run_in_threadpool(check_draft, folder, name, text, check_options(request))
    except EditRefused as refused:
        return JSONResponse({"error": str(refused)}, status_code=409)
    return JSONResponse(_result(draft, folder, await _impact(request, folder, draft)))


async def save(request: Request) -> Response:
    """Saves the editor's form (``text``, ``base``, ``confirm``) over the flow's file, or shows the
    editor again, with the text as sent, and why it was not saved."""
    name = _name(request)
    form = await request.form()
    text, base = str(form.get("text", "")), str(form.get("base", ""))
    confirmed = form.get("confirm") == "yes"
    folder = await read_folder(request)
    if len(text) > MAX_TEXT:
        return await _editor(request, folder, name, text[:MAX_TEXT], base=base, status_code=413,
                             error=f"not saved: a flow file is at most {MAX_TEXT:,} characters here")
    try:
        draft = await run_in_threadpool(check_draft, folder, name, text, check_options(request))
    except EditRefused as refused:
        return render(request, "flow_edit.html", {"active": "Flows", "name": name, "refused": str(refused)},
                      status_code=409)
    if draft.blocking:
        return await _editor(request, folder, name, text, base=base, status_code=422,
                             error=f"Not saved: {len(draft.blocking)} error{'s' * (len(draft.blocking) != 1)} "
                                   "to fix first (listed below).")
    effects = await _impact(request, folder, draft)
    if effects and not confirmed:
        return await _editor(request, folder, name, text, base=base, status_code=409,
                             error="Not saved yet: this change affects people in the flow now (below). "
                                   "Tick the box to save anyway.")
    try:
        await run_in_threadpool(save_draft, draft, base)
    except EditRefused as refused:
        return await _editor(request, folder, name, text, base=base, error=str(refused), status_code=409)
    log.info("console: saved flow %s to %s (%d bytes)%s", name, draft.file, len(draft.text.encode("utf-8")),
             f", stranding {sum(effect.people for effect in effects)} conversations" if effects else "")
    return RedirectResponse(f"/console/flows/{name}?saved=1", status_code=303)
