"""The real HTTP fetcher against real local servers: JSON, errors, and the deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.actions import FetchFailed, HttpFetcher

_handlers: set[asyncio.Task[None]] = set()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    assert task is not None
    _handlers.add(task)
    try:
        await _answer(reader, writer)
    finally:
        writer.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    method, path = request_line.split(" ")[:2]
    if path.startswith("/echo"):
        echoed = json.dumps({"method": method, "path": path, "type": headers.get("content-type", ""),
                             "body": body.decode()})
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(echoed)}\r\nConnection: close\r\n\r\n{echoed}".encode())
        await writer.drain()
        return
    if path == "/slow":
        await asyncio.sleep(1)
    status, body = {"/ok": (200, json.dumps({"status": "shipped"})), "/missing": (404, "{}"),
                    "/html": (200, "<html>")}.get(path, (500, "boom"))
    writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
    await writer.drain()


@pytest.fixture
async def fetcher() -> AsyncIterator[HttpFetcher]:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient() as client:
        yield HttpFetcher(client, f"http://127.0.0.1:{port}")
    server.close()
    await asyncio.gather(*_handlers)  # let a slow handler finish and close its socket
    _handlers.clear()


async def test_json_answer(fetcher: HttpFetcher) -> None:
    assert await fetcher.get_json("/ok", 2) == {"status": "shipped"}


@pytest.mark.parametrize(("path", "reason"), [("/missing", "HTTP 404"), ("/html", "not JSON"),
                                              ("/error", "HTTP 500")])
async def test_failures_say_why(fetcher: HttpFetcher, path: str, reason: str) -> None:
    with pytest.raises(FetchFailed, match=reason):
        await fetcher.get_json(path, 2)


async def test_slow_service_hits_the_deadline(fetcher: HttpFetcher) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(FetchFailed, match="no answer within 0.3s"):
        await fetcher.get_json("/slow", 0.3)
    assert asyncio.get_running_loop().time() - started < 2


async def test_unreachable_service() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchFailed, match=r"request to http://127.0.0.1:9/x failed: ConnectError"):
            await HttpFetcher(client, "http://127.0.0.1:9").get_json("/x", 1)


def test_relative_urls_mean_the_bot_itself() -> None:
    fetcher = HttpFetcher(httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(204))),
                          "http://127.0.0.1:8000/")
    assert fetcher.resolve("/demo/orders/1") == "http://127.0.0.1:8000/demo/orders/1"
    assert fetcher.resolve("https://api.example/x") == "https://api.example/x"


async def test_a_bad_url_setting_fails_the_lookup_not_the_reply() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchFailed, match="InvalidURL"):
            await HttpFetcher(client, "http://x").get_json("https://host:abc/orders/1", 1)


async def test_not_found_is_told_apart(fetcher: HttpFetcher) -> None:
    with pytest.raises(FetchFailed) as failed:
        await fetcher.get_json("/missing", 2)
    assert failed.value.not_found and failed.value.status == 404


async def test_post_json_form_and_query_parameters(fetcher: HttpFetcher) -> None:
    sent = await fetcher.get_json("/echo", 2, method="POST", json_body={"a": 1, "b": 'x", "c": "y'})
    assert (sent["method"], sent["type"], sent["body"]) == ("POST", "application/json",
                                                            '{"a":1,"b":"x\\", \\"c\\": \\"y"}')
    sent = await fetcher.get_json("/echo", 2, method="POST", form={"name": "Zoë & co"})
    assert sent["type"] == "application/x-www-form-urlencoded" and sent["body"] == "name=Zo%C3%AB+%26+co"
    sent = await fetcher.get_json("/echo", 2, params={"caller": "+15551234567"})
    assert sent["path"] == "/echo?caller=%2B15551234567"


async def test_params_are_added_to_the_query_the_url_already_has(fetcher: HttpFetcher) -> None:
    """httpx's own params= replaces the URL's query: the flow's ?q=… was silently dropped."""
    sent = await fetcher.get_json("/echo?q=a%2Fb&fixed=1", 2, method="POST", params={"p": "x&admin=1"},
                                  json_body=["one", {"two": None}])
    assert sent["path"] == "/echo?q=a%2Fb&fixed=1&p=x%26admin%3D1"
    assert sent["body"] == '["one",{"two":null}]'
