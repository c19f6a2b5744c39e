"""What this server process runs, told to operators: the flows' version and the last refused reload.

``ProcessStatusKeeper`` holds this process's ``ProcessStatus`` in memory (the loopback-only
``/healthz/details`` reads it there) and writes it to the store in a background task: at start-up,
after every reload attempt, once a minute (so an entry's age tells a live process from a dead one)
and when the app stops. ``python -m bot status`` and the console's Operations page read every
process's entry from the store. Nothing here is on a message's path, and a store that fails while
recording only costs a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bot import __version__
from bot.flows.loader import FlowSet
from bot.flows.problems import FlowLoadError
from bot.store.base import FlowsVersion, ProcessStatus, ProcessStatuses, RejectedReload

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0
WRITE_SECONDS = 5.0  # a store that does not answer by then is skipped: the next write tries again
MAX_PROBLEMS = 50  # lines of a refused reload's listing kept in the store; lint shows them all
#: An entry not rewritten for this long belongs to a process that died or cannot reach the store.
SILENT_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS


def this_process() -> str:
    """``host:pid``: one entry per process, whether workers of one server or servers on several machines."""
    return f"{socket.gethostname()}:{os.getpid()}"


def flows_version(flows: FlowSet) -> FlowsVersion:
    return FlowsVersion(flows.version, flows.loaded_at, tuple(sorted(flows.flows)))


class Liveness(enum.StrEnum):
    """What an entry's age and its last write say of its process (``python -m bot status``, the console)."""

    RUNNING = "running"
    STOPPED = "stopped"  # it said so as it stopped
    SILENT = "silent"  # no word for SILENT_AFTER_SECONDS: it died, or cannot reach the store


def liveness(entry: ProcessStatus, now: float) -> Liveness:
    if entry.stopped_at is not None:
        return Liveness.STOPPED
    return Liveness.RUNNING if now - entry.written_at <= SILENT_AFTER_SECONDS else Liveness.SILENT


def release_of(entry: ProcessStatus) -> str:
    """``textflow 0.1.0``, as ``python -m bot --version`` says it (``status`` and the console alike)."""
    return f"textflow {entry.release}" if entry.release else "textflow (release not recorded: an older one)"


def refusal_is_current(entry: ProcessStatus) -> bool:
    """Whether the last refused reload still stands: no flows were loaded after it (else it was fixed since)."""
    return entry.rejected is not None and entry.rejected.at >= entry.flows.loaded_at


def without_password(url: str) -> str:
    """A STORE_URL as it may be shown (pasted into a ticket, on a page): the password of its
    ``user:password@`` (Redis's) written as ``***``."""
    try:
        password = urlsplit(url).password
    except ValueError:  # an address urlsplit refuses ("redis://[::1"): show only its scheme
        return url.split("://", 1)[0] + "://…"
    return url.replace(f":{password}@", ":***@", 1) if password else url


def rejection(error: FlowLoadError, version: str, at: float) -> RejectedReload:
    """The refused reload as operators see it: lint's lines, at most MAX_PROBLEMS of them."""
    lines = [str(problem) for problem in error.problems]
    if len(lines) > MAX_PROBLEMS:
        lines = lines[:MAX_PROBLEMS] + [f"... and {len(lines) - MAX_PROBLEMS} more (python -m bot lint shows them all)"]
    return RejectedReload(at, version, tuple(lines))


class ProcessStatusKeeper:
    """This process's status: changed by the app and the reloader, written by ``run``."""

    def __init__(self, store: ProcessStatuses, flows: FlowSet, *, process: str | None = None,
                 clock: Callable[[], float] = time.time, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.store = store
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        now = clock()
        self.status = ProcessStatus(process or this_process(), now, now, flows_version(flows), release=__version__)
        self._changed = asyncio.Event()
        self._changed.set()  # the first write: start-up

    def loaded(self, flows: FlowSet) -> None:
        """A reload swapped these flows in."""
        self._change(flows=flows_version(flows), reloads=self.status.reloads + 1)

    def rejected(self, error: FlowLoadError, version: str) -> None:
        """A reload was refused: the files (``version``) have these problems; the old flows still run."""
        self._change(rejected=rejection(error, version, self.clock()))

    def _change(self, **changes: object) -> None:
        self.status = dataclasses.replace(self.status, **changes)  # type: ignore[arg-type]
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Write the status when it changes and every ``heartbeat_seconds``; once more, marked
        stopped, when ``stop`` is set."""
        while not stop.is_set():
            if self._changed.is_set():
                self._changed.clear()
                await self.write()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._changed.wait())}
            done, pending = await asyncio.wait(waiters, timeout=self.heartbeat_seconds,
                                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            if not done:
                self._changed.set()  # a heartbeat: the same status, written again now
        self.status = dataclasses.replace(self.status, stopped_at=self.clock())
        await self.write()

    async def write(self) -> None:
        """Record the status now; a store that fails is logged, and the next change or heartbeat retries."""
        self.status = dataclasses.replace(self.status, written_at=self.clock())
        try:
            await asyncio.wait_for(self.store.record_status(self.status), WRITE_SECONDS)
        except TimeoutError:
            log.warning("could not record this process's flows status in the store: no answer within %gs",
                        WRITE_SECONDS)
        except Exception as error:  # noqa: BLE001 (operators' information: never worth a failed reload)
            log.warning("could not record this process's flows status in the store: %s", error)

    def details(self) -> dict[str, object]:
        """This process's status as JSON-ready data (``/healthz/details``)."""
        return {"pid": os.getpid(), **dataclasses.asdict(self.status)}
