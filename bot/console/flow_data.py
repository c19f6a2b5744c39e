"""What the console's Flows pages read from the running bot: the flow folder as lint checks it, who
is in a flow now, and whether the bot runs what the files say (hot reload)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from bot.flows.checks import CheckOptions
from bot.flows.editing import FlowFolder
from bot.flows.loader import files_version, flow_files
from bot.flows.problems import Problem
from bot.settings import Settings
from bot.store.base import StoreBusy

log = logging.getLogger(__name__)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def check_options(request: Request) -> CheckOptions:
    """The checks the server runs on a load and a reload (FLOW_ENV, the turn's cap): lint's verdict
    here is the reload's."""
    return CheckOptions.of_the_bot(settings_of(request).flow_env)


def flows_folder(request: Request) -> Path:
    return Path(settings_of(request).flows_dir)


async def read_folder(request: Request) -> FlowFolder:
    """In a thread: reading and checking every file takes milliseconds the webhook should not wait."""
    return await run_in_threadpool(FlowFolder.read, flows_folder(request), check_options(request))


@dataclass(frozen=True)
class Counts:
    """Who is in a flow, by state, or why that could not be read (the store is busy or down)."""

    by_state: dict[str, int]
    problem: str | None = None

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


async def counts(request: Request, flow: str, since: float = 0.0) -> Counts:
    try:
        return Counts(await request.state.store.state_counts(flow, since))
    except StoreBusy as error:
        log.warning("console: cannot count who is in flow %s: %s", flow, error)
        return Counts({}, f"not available now ({error})")


async def counts_now(request: Request, flow: str, expires_after: float) -> Counts:
    """Who is in the flow now: people who wrote within its ``expires_after`` (the others start over
    at their next message, so they are in it no more)."""
    return await counts(request, flow, time.time() - expires_after)


def problem_json(problem: Problem, folder: Path) -> dict[str, Any]:
    """A problem for the page's script: the file as named in the folder, line:col, what and the fix."""
    return {"file": shown_file(problem.file, folder), "line": problem.line, "col": problem.col,
            "severity": problem.severity, "message": problem.message, "hint": problem.hint}


def shown_file(file: str, folder: Path) -> str:
    """``flows/signup.yaml``, ``flows/tests/signup.yaml``: not the folder's whole path on the server."""
    path = Path(file)
    return str(folder.name / path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def reload_status(request: Request) -> dict[str, Any]:
    """Whether the running flows are the files' (a save is picked up by the hot reload), and the last
    reload the bot refused, with lint's lines."""
    settings = settings_of(request)
    folder = flows_folder(request)
    on_disk = files_version(flow_files(folder)) if folder.is_dir() else ""
    running = request.state.inbox.engine.flows.version
    rejected = request.state.status.status.rejected
    refused = rejected is not None and rejected.version == on_disk
    return {"running": running, "files": on_disk, "current": running == on_disk, "reload": settings.reload_flows,
            "refused": list(rejected.problems) if refused and rejected is not None else None}
