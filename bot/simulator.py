"""The pieces the terminal simulator and the conversation tests share: a real inbox and engine
on a throwaway store, with ``fetch`` really running, on a clock that moves only when told.

URLs starting with ``/`` go to the bot's own demo service, served in-process, so STATUS works
here exactly as in the server without one running.

Time: the engine and the pipeline read one :class:`SimulatedClock`, which stands still between
turns. :meth:`Simulation.wait` moves it forward and fires what comes due on the way exactly as
the server's timer loop does (``bot/timers.py``): it reads the store's deadline index
(``Timers.due``) and fires each entry with ``Inbox.time_out``. So a timeout, a reminder and the
end of a conversation (``expires_after``) happen here as they would on the server, an hour in
no time.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot import demo
from bot.actions import Fetcher, FetchFailed, HttpFetcher
from bot.engine import Engine
from bot.flows.loader import FlowSet
from bot.flows.schema_types import format_duration
from bot.inbox import Inbox, Received
from bot.store import Store, Timers, open_store
from bot.text import templates
from bot.types import Inbound, TraceStep

LOCAL_BASE_URL = "http://bot.local"
#: Firings one wait may run: more is a cycle of timeouts texting someone again and again (lint
#: refuses one that nothing ends, and warns about one only ``expires_after`` ends).
MAX_FIRINGS_PER_WAIT = 10_000


class SimulatedClock:
    """The simulator's time: it starts at the real time and then moves only when told, so a
    conversation never depends on how fast it was typed or replayed. Call it for the time.

    It starts on a whole second: deadlines are then sums of whole numbers, exact in floating
    point, so a wait of 2h finds a reminder armed 1h after one that fired at 1h."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now


class EndlessTimers(RuntimeError):
    """A wait kept firing timeouts and reminders: a cycle of timeouts texting someone again and again."""


class UnknownLanguage(ValueError):
    """A language no flow is translated into and the program file has no texts in."""


def languages_spoken(flows: FlowSet) -> list[str]:
    """The languages a person can be talked to in: each flow's own and its translations', and
    those the program file has texts in (``languages:``), sorted."""
    spoken = {flow.language for flow in flows.flows.values()}
    spoken |= {code for flow in flows.flows.values() for code in flow.variants}
    return sorted(spoken | set(flows.program.languages))


@dataclass(frozen=True)
class Fired:
    """One timeout or reminder that came due during a wait, and what its turn did."""

    sender: str
    after: float  # seconds into the wait when it fired
    replies: tuple[str, ...]  # what was texted to the person (through the REST API on the server)
    notified: tuple[tuple[str, str], ...]  # (to, text) a flow's notify sent
    trace: tuple[TraceStep, ...]  # how the conversation moved (empty: the entry was stale)


class StubbedFetcher:
    """Answers the stubbed URLs from a table and passes every other URL to the real fetcher."""

    def __init__(self, real: Fetcher, stubs: Mapping[str, Any]) -> None:
        self.real = real
        self.stubs = dict(stubs)

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        if url in self.stubs:
            answer = self.stubs[url]
            if isinstance(answer, FetchFailed):
                raise answer
            return answer
        return await self.real.get_json(url, timeout, **request)


@dataclass
class Simulation:
    """A bot without HTTP in front of it: text it, start a flow as a broadcast would, let time pass."""

    inbox: Inbox
    fetcher: HttpFetcher
    timers: Timers  # the store's deadline index, as the server's timer loop reads it
    clock: SimulatedClock
    notified: list[tuple[str, str]] = field(default_factory=list)  # (to, text) a flow's notify sent
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def text(self, body: str, sender: str, to: str = "+15550001111", media: tuple[str, ...] = ()) -> Received:
        """Text the bot; ``media``: the URLs of pictures sent with it (an MMS)."""
        inbound = Inbound(message_sid=f"SMsim{next(self._sids):06d}{uuid.uuid4().hex}", sender=sender, to=to,
                          body=body, media=media)
        return await self.inbox.receive(inbound)

    async def start(self, flow: str, sender: str, variables: dict[str, str]) -> Received:
        """Start a flow for ``sender`` as a broadcast would; its opening messages are the replies."""
        return await self.inbox.start(sender, flow, variables, f"SMstart{next(self._sids):06d}{uuid.uuid4().hex}")

    async def set_language(self, sender: str, language: str) -> None:
        """Talk to ``sender`` in ``language`` from now on, as if they had chosen it (a trigger in
        that language, a menu's "2) Español"): ``chat --language``, a test's ``language:``. One
        the flows and the program file do not speak is refused, with those they do."""
        known = languages_spoken(self.inbox.engine.flows)
        if language not in known:
            raise UnknownLanguage(f"no flow or program text is in {language!r}; the flows speak "
                                  f"{', '.join(known)}")
        await self.inbox.set_language(sender, language)

    def stub(self, stubs: Mapping[str, Any]) -> None:
        """Answer these fetch URLs from the table from now on (others still really run)."""
        self.inbox.engine.fetcher = StubbedFetcher(self.fetcher, stubs)

    async def wait(self, seconds: float) -> list[Fired]:
        """Let ``seconds`` pass. Every timeout and reminder that comes due by then fires, oldest
        first, each at its own time (so what it arms counts from then, and a reminder re-armed
        in the same state or a timeout leading to another timed state fires too if due in time),
        through the server's path: the store's deadline index, then ``Inbox.time_out``. Then the
        clock stands at the new time: a conversation whose ``expires_after`` passed is over."""
        if seconds < 0:
            raise ValueError("time only moves forward: wait a duration of 0 or more")
        start = self.clock.now
        until = start + seconds
        fired: list[Fired] = []
        while due := await self.timers.due(until, limit=1):
            if len(fired) >= MAX_FIRINGS_PER_WAIT:
                raise EndlessTimers(
                    f"more than {MAX_FIRINGS_PER_WAIT} timeouts and reminders fired within {format_duration(seconds)}: "
                    "a cycle of timeouts texts someone again and again (python -m bot lint points at it); "
                    "wait less, or end the cycle (remind: with times, or a timeout to a state that ends)")
            sender, at = due[0]
            self.clock.now = max(self.clock.now, at)
            fired.append(await self._fire(sender, at, start))
        self.clock.now = until
        return fired

    async def _fire(self, sender: str, at: float, wait_started: float) -> Fired:
        sent: list[str] = []

        async def deliver(record: Inbound, replies: tuple[str, ...]) -> None:
            sent.extend(replies)  # the server sends these through the REST API

        notified_before = len(self.notified)
        received = await self.inbox.time_out(sender, at, deliver)
        if received.duplicate:  # fired before, yet still indexed: drop it, as the timer loop does
            await self.timers.drop_deadline(sender, at)
        return Fired(sender, self.clock.now - wait_started, tuple(sent), tuple(self.notified[notified_before:]),
                     received.trace)


@asynccontextmanager
async def simulation(flows: FlowSet, store_url: str = "memory://", env: Mapping[str, str] | None = None,
                     allowed_env: Iterable[str] = (), *, clock: SimulatedClock | None = None,
                     fetcher: Fetcher | None = None, suggest_triggers: bool = True) -> AsyncIterator[Simulation]:
    """A working bot without HTTP in front of it; the store is thrown away unless ``store_url`` says.

    Templates see the process environment's ``allowed_env`` names (the FLOW_ENV setting, as the
    server does) plus ``env`` (a conversation test's own values, allowed because it sets them).
    ``clock`` (default: from the real time now) moves only by :meth:`Simulation.wait`; ``fetcher``
    answers lookups instead of the real one; ``suggest_triggers`` is the SUGGEST_TRIGGERS setting."""
    store: Store = open_store(store_url)
    clock = clock if clock is not None else SimulatedClock()
    mounts: dict[str, httpx.AsyncBaseTransport] = {LOCAL_BASE_URL: httpx.ASGITransport(app=demo.app)}
    async with httpx.AsyncClient(mounts=mounts) as client:
        real = HttpFetcher(client, LOCAL_BASE_URL)
        try:
            environment = {**templates.public_environment(allowed_env), **(env or {})}
            notified: list[tuple[str, str]] = []
            inbox = Inbox(store, Engine(flows, fetcher or real, env=environment, clock=clock,
                                        suggest_triggers=suggest_triggers),
                          lambda inbound, notifications: notified.extend(notifications))
            yield Simulation(inbox, real, store, clock, notified)
        finally:
            await store.close()
