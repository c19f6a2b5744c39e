"""Hot reload: when a flow file changes, check the new flows and swap them in — or keep the old.

A broken edit must never take the bot down: the new files go through the same checks as at
start-up, and only a set without errors replaces the running one (in one assignment, so each
message sees either the old flows or the new, never a mix).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import watchfiles

from bot.engine import Engine
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.inbox import Inbox

log = logging.getLogger(__name__)


class FlowReloader:
    def __init__(self, folder: str | Path, inbox: Inbox, make_engine: Callable[[FlowSet], Engine]) -> None:
        self.folder = Path(folder)
        self.inbox = inbox
        self.make_engine = make_engine
        self.reloads = 0  # successful swaps, for tests and /healthz

    def reload(self) -> bool:
        """Load the folder again; swap the flows in if they have no errors. True when swapped."""
        try:
            flows = load_flows(self.folder)
        except FlowLoadError as error:
            log.error("flow change rejected, still serving the previous flows:\n%s", error.listing())
            return False
        for warning in flows.warnings:
            log.warning("%s", warning)
        self.inbox.engine = self.make_engine(flows)
        self.reloads += 1
        log.info("flows reloaded from %s: %s", self.folder, ", ".join(sorted(flows.flows)))
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on every change to a flow file in the folder (not its sub-folders)."""
        async for _ in watchfiles.awatch(self.folder, watch_filter=_is_flow_file, recursive=False,
                                         debounce=300, step=50, stop_event=stop):
            self.reload()


def _is_flow_file(change: watchfiles.Change, path: str) -> bool:
    return path.endswith((".yaml", ".yml"))
