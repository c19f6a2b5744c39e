"""Hot reload: when a flow file changes, check the new flows and swap them in — or keep the old.

A broken edit must never take the bot down: the new files go through the same checks as at
start-up, and only a set without errors replaces the running one (in one assignment, so each
message sees either the old flows or the new, never a mix). Every attempt, swapped or refused
with its file:line errors, is told to the process status (``bot/status.py``), so operators see it
with ``python -m bot status`` instead of in the log only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import watchfiles

from bot import metrics
from bot.engine import Engine
from bot.flows.checks import CheckOptions
from bot.flows.loader import FlowSet, files_version, flow_files, load_flows
from bot.flows.problems import FlowLoadError
from bot.inbox import Inbox
from bot.status import ProcessStatusKeeper

log = logging.getLogger(__name__)


class FlowReloader:
    def __init__(self, folder: str | Path, inbox: Inbox, make_engine: Callable[[FlowSet], Engine], *,
                 options: CheckOptions = CheckOptions(), status: ProcessStatusKeeper | None = None,
                 swapped: Callable[[], None] | None = None) -> None:
        self.folder = Path(folder)
        self.inbox = inbox
        self.make_engine = make_engine
        self.options = options  # the checks start-up ran (FLOW_ENV, the turn's cap), so a reload warns alike
        self.status = status  # told of every attempt, for operators (python -m bot status)
        self.swapped = swapped  # told after each swap (bot/heap.py: the old flows become garbage)
        self.reloads = 0  # successful swaps, for tests

    def reload(self) -> bool:
        """Load the folder again; swap the flows in if they have no errors. True when swapped."""
        try:
            flows = load_flows(self.folder, self.options)
        except FlowLoadError as error:
            running = self.inbox.engine.flows.version
            log.error("flow change rejected, still serving the previous flows (version %s):\n%s",
                      running or "?", error.listing())
            if self.status is not None:
                self.status.rejected(error, self._version_on_disk())
            metrics.reloaded(False)
            return False
        for warning in flows.warnings:
            log.warning("%s", warning)
        self.inbox.engine = self.make_engine(flows)
        self.reloads += 1
        if self.swapped is not None:
            self.swapped()
        metrics.flow_names(flows.flows)
        metrics.reloaded(True)
        if self.status is not None:
            self.status.loaded(flows)
        log.info("flows reloaded from %s (version %s): %s", self.folder, flows.version, ", ".join(sorted(flows.flows)))
        return True

    def _version_on_disk(self) -> str:
        """The refused files' version (empty when the folder itself is gone)."""
        try:
            return files_version(flow_files(self.folder))
        except OSError:
            return ""

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on every change to a flow file in the folder (not its sub-folders)."""
        async for _ in watchfiles.awatch(self.folder, watch_filter=_is_flow_file, recursive=False,
                                         debounce=300, step=50, stop_event=stop):
            try:
                self.reload()
            except Exception:  # a bug while checking one edit must not stop every later reload
                log.exception("flow change could not be checked, still serving the previous flows")


def _is_flow_file(change: watchfiles.Change, path: str) -> bool:
    return path.endswith((".yaml", ".yml"))
