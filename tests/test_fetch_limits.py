"""A lookup's answer can never take the turn down: too deep, too big, or broken in any way, it is
a failed lookup (the fallback), found out without reading more than MAX_FETCH_BYTES.

Served by a real uvicorn on 127.0.0.1 (bot.fake_twilio.server.LoopbackServer), so the size limit
is tested against a body that really arrives in chunks over a socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.actions import MAX_FETCH_BYTES, MAX_JSON_DEPTH, FetchFailed, HttpFetcher
from bot.engine import Engine
from bot.fake_twilio.server import LoopbackServer
from bot.flows.loader import load_flows
from bot.types import Conversation, Inbound, Message
from tests.conftest import write_flows

CHUNK = 64 * 1024
HUGE_CHUNKS = 1600  # 100 MiB in all, 400 times the limit


class Streamed:
    """What the streaming endpoint got through: chunks handed to the server, and whether it ran dry."""

    def __init__(self) -> None:
        self.chunks = 0
        self.exhausted = False


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def service(streamed: Streamed) -> Starlette:
    async def deep(request: Request) -> Response:
        return Response(nested(int(request.query_params["depth"])), media_type="application/json")

    app = Starlette(routes=[Route("/deep", deep)])
    app.mount("/huge", huge_answer(streamed))
    return app


def huge_answer(streamed: Streamed) -> ASGIApp:
    """HUGE_CHUNKS of 64 KiB, chunked (no Content-Length), as fast as the client takes them; like
    any server, it stops producing once the client has gone."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"padding": "', "more_body": True})
        for _ in range(HUGE_CHUNKS):
            await asyncio.sleep(0)  # let the watcher see a disconnect
            if gone.is_set():
                break
            streamed.chunks += 1
            await send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": True})
        else:
            await send({"type": "http.response.body", "body": b'"}', "more_body": False})
            streamed.exhausted = True
        watcher.cancel()
    return app


class Counted(httpx.AsyncByteStream):
    """A response body that counts the bytes the client actually pulled off the socket."""

    def __init__(self, stream: httpx.AsyncByteStream, counter: list[int]) -> None:
        self.stream = stream
        self.counter = counter

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.counter[0] += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real network transport, counting what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.received = [0]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                              stream=Counted(response.stream, self.received))


async def declares_too_much(scope: Scope, receive: Receive, send: Send) -> None:
    """Says 300 MB are coming, sends a little, then keeps the connection open until the client goes."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"300000000")]})
    await send({"type": "http.response.body", "body": b"[" * 1024, "more_body": True})
    async with asyncio.timeout(5):
        while (await receive())["type"] != "http.disconnect":
            pass


@pytest.fixture
def streamed() -> Streamed:
    return Streamed()


@pytest.fixture
def api(streamed: Streamed) -> Iterator[str]:
    with LoopbackServer(service(streamed), name="limits-api") as server:
        yield server.url


@pytest.fixture
async def fetcher(api: str) -> AsyncIterator[HttpFetcher]:
    async with httpx.AsyncClient() as client:
        yield HttpFetcher(client, api)


# -- 6. deeply nested JSON -------------------------------------------------------------------------

async def test_deeply_nested_json_from_a_lookup_is_a_failed_lookup(fetcher: HttpFetcher) -> None:
    """100,000 levels (200 KB, under the size limit) made json.loads raise RecursionError."""
    with pytest.raises(FetchFailed, match="nested deeper than"):
        await fetcher.get_json("/deep?depth=100000", 5)


async def test_json_depth_is_bounded_explicitly(fetcher: HttpFetcher) -> None:
    assert await fetcher.get_json(f"/deep?depth={MAX_JSON_DEPTH}", 5) is not None
    with pytest.raises(FetchFailed, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        await fetcher.get_json(f"/deep?depth={MAX_JSON_DEPTH + 1}", 5)


DEEP_FLOW = """\
flow: deep
triggers: [DEEP]
start: lookup
states:
  lookup:
    fetch:
      url: "{{ env.API }}/deep?depth=100000"
      save: found
      fallback: "Sorry, the lookup failed."
    say: "Found it."
"""


async def test_deeply_nested_json_crashes_the_turn(tmp_path: Path, fetcher: HttpFetcher, api: str) -> None:
    """Through the engine: the turn ends with the fallback instead of an exception (a 500 and no reply)."""
    engine = Engine(load_flows(write_flows(tmp_path, {"deep.yaml": DEEP_FLOW})), fetcher, env={"API": api})
    outcome = await engine.step(Conversation("+15551234567"),
                                Message(Inbound(message_sid="SM1", sender="+15551234567", body="deep")), False)
    assert outcome.replies == ["Sorry, the lookup failed."]


class Exploding(httpx.AsyncBaseTransport):
    """A transport that fails in a way no HTTP library names: any exception is a failed lookup."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("boom"), RecursionError("deep"), MemoryError(), KeyError("x")])
async def test_any_failure_of_a_lookup_is_fetch_failed(error: BaseException) -> None:
    async with httpx.AsyncClient(transport=Exploding(error)) as client:
        with pytest.raises(FetchFailed, match=type(error).__name__):
            await HttpFetcher(client, "http://api.invalid").get_json("/x", 1)


# -- 7. the size limit while the answer arrives ------------------------------------------------------

async def test_the_lookup_size_limit_is_checked_while_the_body_downloads(api: str, streamed: Streamed) -> None:
    """A 200 MB answer raised the bot's memory to 476 MB: the limit was checked after the download."""
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(FetchFailed, match=f"answer larger than {MAX_FETCH_BYTES} bytes"):
            await HttpFetcher(client, api).get_json("/huge/", 10)
    assert transport.received[0] < 2 * MAX_FETCH_BYTES, transport.received[0]
    await asyncio.sleep(0.2)  # let the server notice the closed connection
    assert not streamed.exhausted, "the server's whole 100 MiB body was taken"
    assert streamed.chunks < HUGE_CHUNKS, streamed.chunks


async def test_a_declared_length_above_the_limit_fails_at_once() -> None:
    with LoopbackServer(declares_too_much, name="declares-too-much") as server:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            with pytest.raises(FetchFailed, match=f"answer larger than {MAX_FETCH_BYTES} bytes"):
                await HttpFetcher(client, server.url).get_json("/x", 3)
            assert time.monotonic() - started < 1  # not after the 3 s deadline


async def test_an_answer_just_within_the_limit_is_read(tmp_path: Path) -> None:
    text = '"' + "x" * (MAX_FETCH_BYTES - 2) + '"'

    async def exact(request: Request) -> Response:
        return Response(text, media_type="application/json")

    with LoopbackServer(Starlette(routes=[Route("/exact", exact)]), name="exact") as server:
        async with httpx.AsyncClient() as client:
            assert await HttpFetcher(client, server.url).get_json("/exact", 5) == text[1:-1]
