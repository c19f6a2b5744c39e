"""What the features that landed since the first benchmark cost each request now, in-process.

Issue 17 asks that the request-head cap (issue 11), consent in a person's own words (issue 12)
and masking at the logging layer (issue 11) did not make the bot slower. Each is timed here on its
own, best of several repeats (timeit's rule), so the figure is the feature's own CPU cost:

* **head cap**: a Twilio webhook request fed to uvicorn's httptools protocol and answered by a
  minimal ASGI app, with the bot's protocol (``bot/http_limits.py``: the cap, and the answer's
  head and body in one write, ``bot/http_writes.py``) against uvicorn's own, alternating;
* **consent reading**: ``read_consent`` on the benchmark's three messages (a trigger, an order
  number, YES), the revocation phrases of every shipped language included;
* **routing line**: the one log line per turn, made, masked and written as the server does
  (``bot/logs.py``, ``bot/log_output.py``), and the masking alone (``mask_record``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.log_bench import ROUTE_ARGS, ROUTE_MESSAGE
from bench.webhooks import AUTH_TOKEN, SidSource, Signer, Traffic, order_number, sender_number
from bot.compliance import read_consent
from bot.flows.loader import load_flows
from bot.http_limits import BoundedHttpToolsProtocol
from bot.log_output import LoopBatchedStreamHandler, SecondCachedFormatter
from bot.logs import SERVER_FORMAT, mask_record
from bot.types import Inbound

#: What each cost when it landed (for the table's "before"), from the measurements of its issue.
WHEN_LANDED = {"head_cap_us": "+0.65 µs (issue 11)", "consent_us": "engine 19.6 → 58 µs/message (issue 12)",
               "routing_line_us": "9.4 µs, of which masking 2.2 (issue 11)"}


@dataclass
class FeatureCosts:
    head_cap_us: float  # the bot's protocol minus uvicorn's, per request
    protocol_us: float  # uvicorn's own protocol, per request (for scale)
    consent_us: float  # read_consent, mean over the benchmark's three messages
    routing_line_us: float  # the routing line, made, masked and written
    masking_us: float  # mask_record alone on that line


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/xml"), (b"content-length", b"7")]})
    await send({"type": "http.response.body", "body": b"<ok/>\r\n"})


class _Transport(asyncio.Transport):
    """Where the protocol writes: nowhere (the syscall is not the feature's cost)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _protocol_us(protocol_class: type[HttpToolsProtocol], requests: list[bytes]) -> float:
    config = Config(_answer, lifespan="off", log_level="warning", access_log=False)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(_Transport())
    started = time.process_time()
    for request in requests:
        protocol.data_received(request)
        await asyncio.sleep(0)  # the ASGI task answers
        await asyncio.sleep(0)
    spent = time.process_time() - started
    protocol.connection_lost(None)
    return spent / len(requests) * 1e6


def head_cap(requests: int = 20_000, repeats: int = 5) -> tuple[float, float]:
    """(the bot's protocol minus uvicorn's, uvicorn's), µs per request, best of ``repeats`` each."""
    traffic = Traffic(Signer("http://127.0.0.1:8000/sms", AUTH_TOKEN), SidSource(),
                      [sender_number(index) for index in range(1000)], "127.0.0.1:8000")
    pool = traffic.take(requests)
    plain = bounded = float("inf")
    for _ in range(repeats):
        plain = min(plain, asyncio.run(_protocol_us(HttpToolsProtocol, pool)))
        bounded = min(bounded, asyncio.run(_protocol_us(BoundedHttpToolsProtocol, pool)))
    return bounded - plain, plain


def consent_us(flows: Path, calls: int = 20_000, repeats: int = 5) -> float:
    rules = load_flows(flows).consent
    sender = sender_number(1)
    messages = [Inbound(sender, body, f"SM{index}") for index, body in
                enumerate(("STATUS", order_number(sender), "YES"))]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            for inbound in messages:
                read_consent(inbound, rules)
        best = min(best, (time.perf_counter() - started) / (calls * len(messages)))
    return best * 1e6


def routing_line(lines: int = 50_000, repeats: int = 5) -> tuple[float, float]:
    """(the whole line as the server logs it, the masking alone), µs per line."""
    logger = logging.Logger("bot.route", logging.INFO)
    handler = LoopBatchedStreamHandler(io.StringIO())
    handler.setFormatter(SecondCachedFormatter(SERVER_FORMAT))
    logger.addHandler(handler)

    def made() -> logging.LogRecord:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, ROUTE_MESSAGE, ROUTE_ARGS, None)
        mask_record(record)  # the record factory's work (configure_logging)
        return record

    async def whole() -> float:
        best = float("inf")
        for _ in range(repeats):
            handler.stream = io.StringIO()
            started = time.perf_counter()
            for index in range(lines):
                logger.handle(made())
                if index % 20 == 19:
                    await asyncio.sleep(0)  # a loaded server writes a group commit's lines together
            best = min(best, (time.perf_counter() - started) / lines)
        return best * 1e6

    masking = float("inf")
    for _ in range(repeats):
        records = [logging.LogRecord("bot.route", logging.INFO, __file__, 0, ROUTE_MESSAGE, ROUTE_ARGS, None)
                   for _ in range(lines)]
        started = time.perf_counter()
        for record in records:
            mask_record(record)
        masking = min(masking, (time.perf_counter() - started) / lines * 1e6)
    return asyncio.run(whole()), masking


def run(flows: Path, quick: bool = False) -> FeatureCosts:
    scale = 10 if quick else 1
    cap, protocol = head_cap(20_000 // scale, 3 if quick else 5)
    line, masking = routing_line(50_000 // scale, 3 if quick else 5)
    return FeatureCosts(cap, protocol, consent_us(flows, 20_000 // scale, 3 if quick else 5), line, masking)


if __name__ == "__main__":
    print(run(Path(__file__).resolve().parent / "flows"))
