"""A response's head and body leave in one write (bot/http_writes.py): a real uvicorn server on a
socket with the bot's httptools protocol, its real transport's writes counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from bench.servers import free_port
from bot.http_limits import BoundedHttpToolsProtocol

WRITES: list[bytes] = []


class _CountingTransport:
    """The connection's real transport, each write recorded on its way through."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Counted(BoundedHttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport = _CountingTransport(transport)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":  # three chunks, the last two after a pause
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"two ", "more_body": True})
        await send({"type": "http.response.body", "body": b"three", "more_body": False})
        return
    body = f"answer to {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _serving() -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port, http=_Counted, loop="asyncio",
                                           lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(port: int, request: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    received = b""
    while until not in received:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, received
        received += chunk
    writer.close()
    return received


def test_a_response_is_one_write_and_head_only_and_pipelined_answers_arrive_whole_and_in_order() -> None:
    async def scenario() -> None:
        async with _serving() as port:
            WRITES.clear()
            answer = await _exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", b"answer to /a")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nanswer to /a")
            assert WRITES == [answer]  # head and body: one write

            WRITES.clear()  # HEAD: no body is written, the head still leaves (at the end of the loop's turn)
            head = await _exchange(port, b"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 12" in head
            assert len(WRITES) == 1

            WRITES.clear()  # two requests in one write: two answers, whole and in order
            pipelined = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
            both = await _exchange(port, pipelined, b"answer to /second")
            assert both.index(b"answer to /first") < both.index(b"HTTP/1.1 200", 10) < both.index(b"answer to /second")
            assert len(WRITES) == 2

            WRITES.clear()  # streamed: the head leaves with the first chunk, the rest follow in order
            streamed = await _exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
            assert b"\r\n\r\n4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n" in streamed
            assert WRITES[0].startswith(b"HTTP/1.1 200 OK") and WRITES[0].endswith(b"one \r\n")

    asyncio.run(scenario())
