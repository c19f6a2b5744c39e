"""The pieces the terminal simulator and the conversation tests share: a real inbox and engine
on a throwaway store, with ``fetch`` really running.

URLs starting with ``/`` go to the bot's own demo service, served in-process, so STATUS works
here exactly as in the server without one running.
"""

from __future__ import annotations

import itertools
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
from bot.inbox import Inbox, Received
from bot.store import Store, open_store
from bot.text import templates
from bot.types import Inbound

LOCAL_BASE_URL = "http://bot.local"


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
    inbox: Inbox
    fetcher: HttpFetcher
    notified: list[tuple[str, str]] = field(default_factory=list)  # (to, text) a flow's notify sent
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def text(self, body: str, sender: str, to: str = "+15550001111") -> Received:
        inbound = Inbound(message_sid=f"SMsim{next(self._sids):06d}{uuid.uuid4().hex}", sender=sender, to=to, body=body)
        return await self.inbox.receive(inbound)

    async def start(self, flow: str, sender: str, variables: dict[str, str]) -> Received:
        """Start a flow for ``sender`` as a broadcast would; its opening messages are the replies."""
        return await self.inbox.start(sender, flow, variables, f"SMstart{next(self._sids):06d}{uuid.uuid4().hex}")

    def stub(self, stubs: Mapping[str, Any]) -> None:
        """Answer these fetch URLs from the table from now on (others still really run)."""
        self.inbox.engine.fetcher = StubbedFetcher(self.fetcher, stubs)


@asynccontextmanager
async def simulation(flows: FlowSet, store_url: str = "memory://", env: Mapping[str, str] | None = None,
                     allowed_env: Iterable[str] = ()) -> AsyncIterator[Simulation]:
    """A working bot without HTTP in front of it; the store is thrown away unless ``store_url`` says.

    Templates see the process environment's ``allowed_env`` names (the FLOW_ENV setting, as the
    server does) plus ``env`` (a conversation test's own values, allowed because it sets them)."""
    store: Store = open_store(store_url)
    mounts: dict[str, httpx.AsyncBaseTransport] = {LOCAL_BASE_URL: httpx.ASGITransport(app=demo.app)}
    async with httpx.AsyncClient(mounts=mounts) as client:
        fetcher = HttpFetcher(client, LOCAL_BASE_URL)
        try:
            environment = {**templates.public_environment(allowed_env), **(env or {})}
            notified: list[tuple[str, str]] = []
            inbox = Inbox(store, Engine(flows, fetcher, env=environment),
                          lambda inbound, notifications: notified.extend(notifications))
            yield Simulation(inbox, fetcher, notified)
        finally:
            await store.close()
