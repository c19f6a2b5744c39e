"""``GET /healthz/details``: what this process runs and why a reload was refused — for this machine only.

The public ``/healthz`` says healthy or not and nothing more; the details (the store's problem,
the flows' version, file:line errors, process ids) are answered only to a request made on this
machine, and 404 (as if there were no such page) to any other. "On this machine" is decided from
what no remote client can forge: the peer address is loopback, the Host is a loopback name, and no
proxy header is present at all. A proxy or tunnel on this machine (nginx, ngrok's agent, a load
balancer's sidecar) connects from loopback too, so any request that carries ``X-Forwarded-*``,
``Forwarded``, ``X-Real-IP`` or ``Via`` is refused whatever its address says, and TRUST_PROXY is
never a reason to believe one (it only lets the webhook read the URL Twilio signed).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from bot.settings import is_loopback_address
from bot.store.base import ProcessStatus, ProcessStatuses

#: Headers a proxy adds when it relays someone else's request (lower case).
RELAY_HEADERS = frozenset({
    "forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip", "cf-connecting-ip", "fastly-client-ip",
    "x-cluster-client-ip", "x-original-forwarded-for", "x-envoy-external-address",
})
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
READ_SECONDS = 5.0


def from_this_machine(request: Request) -> bool:
    """A client on this machine talking to us directly: loopback peer and Host, no relay header."""
    client = request.client
    if client is None or not is_loopback_address(client.host):
        return False
    if any(name in RELAY_HEADERS or name.startswith("x-forwarded-") for name in request.headers):
        return False
    return _is_loopback_host(request.headers.get("host", ""))


def _is_loopback_host(host: str) -> bool:
    """``127.0.0.1:8000``, ``[::1]:8000``, ``localhost``: the Host a local client sends."""
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() in _LOOPBACK_NAMES or is_loopback_address(name)


async def details(request: Request) -> Response:
    """This process's status (flows' version, reloads, the last refused one), the store's health and
    problem, and every process's entry from the store."""
    if not from_this_machine(request):
        return PlainTextResponse("Not Found", status_code=404)
    state = request.state
    health = await state.store.health()
    body: dict[str, Any] = {"status": "ok" if health.ok else "unavailable", "store": health.problem,
                            **state.status.details()}
    entries, problem = await process_entries(state.store)
    if problem is None:
        body["processes"] = [dataclasses.asdict(entry) for entry in entries]
    else:
        body["processes_error"] = problem
    return JSONResponse(body, status_code=200 if health.ok else 503, headers={"cache-control": "no-store"})


async def process_entries(store: ProcessStatuses) -> tuple[list[ProcessStatus], str | None]:
    """Every process's entry, newest first; or none, and why (the store failed, or was slow): the
    rest of a page about the bot still helps without them (here, and the console's Operations page)."""
    try:
        return await asyncio.wait_for(store.process_statuses(), READ_SECONDS), None
    except TimeoutError:
        return [], f"the store did not answer within {READ_SECONDS:g}s"
    except Exception as error:  # noqa: BLE001
        return [], str(error)
