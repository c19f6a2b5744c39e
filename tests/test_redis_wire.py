"""The lean connection a turn's commands use (bot/store/redis_wire.py), against a real Redis.

It must answer each caller its own reply (in order, a cancelled caller's dropped), batch what is
sent in one pass of the event loop, and fail as redis-py fails (so the store answers 503): a lost
connection, a server that stops answering, an error reply by its class. It must also reconnect by
itself, log in and pick the database a URL names, and survive Redis forgetting its scripts.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store import open_store
from bot.store.redis_wire import RedisWire, Script
from tests.conftest import RedisServer


def read_events(url: str) -> int:
    """Redis's count of read events (a batch of pipelined commands arrives as one)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(b"INFO stats\r\n")
        text = b""
        while b"total_reads_processed:" not in text or not text.endswith(b"\r\n"):
            text += connection.recv(65536)
    return int(text.split(b"total_reads_processed:")[1].split(b"\r\n")[0])


async def test_each_caller_gets_its_own_reply(redis_url: str) -> None:
    wire = RedisWire(redis_url)
    try:
        await wire.call("SET", "a", "Zoë 🎉")
        replies = await asyncio.gather(*(wire.call("INCRBY", f"n{i % 7}", i) for i in range(200)),
                                       wire.call("GET", "a"), wire.call("GET", "missing"),
                                       wire.pipeline(("RPUSH", "l", 1, 2.5, b"x"), ("LRANGE", "l", 0, -1)))
        totals: dict[int, int] = {}
        for i, reply in enumerate(replies[:200]):
            totals[i % 7] = totals.get(i % 7, 0) + i
            assert reply == totals[i % 7]  # INCRBY answers each caller its own running total
        assert replies[200:] == ["Zoë 🎉", None, [3, ["1", "2.5", "x"]]]
    finally:
        wire.close()


async def test_commands_issued_together_go_out_together(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store import redis_wire

    wire = RedisWire(redis_url)
    try:
        await wire.call("PING")
        before = read_events(redis_url)
        await asyncio.gather(*(wire.call("SET", f"k{i}", i) for i in range(300)))
        assert read_events(redis_url) - before < 100  # batched by time: a write per 0.1 ms at most
        monkeypatch.setattr(redis_wire, "BATCH_SECONDS", 60.0)
        before = read_events(redis_url)
        await asyncio.gather(*(wire.call("SET", f"k{i}", i) for i in range(300)))
        assert read_events(redis_url) - before <= 5  # one pass of the loop: one write (and the INFO's own read)
    finally:
        wire.close()


async def test_a_cancelled_caller_leaves_the_replies_in_order(redis_url: str) -> None:
    wire = RedisWire(redis_url)
    try:
        await wire.call("SET", "k", "v")
        blocked = asyncio.create_task(wire.call("BLPOP", "nothing", 0.3))  # answers after 0.3 s
        await asyncio.sleep(0.05)
        after = asyncio.create_task(wire.call("GET", "k"))  # queued behind it on the same connection
        blocked.cancel()
        assert await after == "v"
        assert await wire.call("ECHO", "mine") == "mine"
    finally:
        wire.close()


async def test_error_replies_raise_redis_py_classes(redis_url: str) -> None:
    wire = RedisWire(redis_url)
    try:
        await wire.call("SET", "text", "x")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await wire.call("LPUSH", "text", "y")
        with pytest.raises(ResponseError):
            await wire.pipeline(("GET", "text"), ("LPUSH", "text", "y"))
        assert await wire.call("GET", "text") == "x"  # the connection is still in step
    finally:
        wire.close()


async def test_a_script_redis_forgot_is_sent_again(redis_url: str) -> None:
    wire = RedisWire(redis_url)
    script = wire.register(Script("return ARGV[1] .. KEYS[1]"))
    try:
        assert await wire.evalsha(script, ["k"], ["a"]) == "ak"  # loaded with the connection
        await wire.call("SCRIPT", "FLUSH")
        assert await wire.evalsha(script, ["k"], ["b"]) == "bk"
        unregistered = Script("return 7")
        assert await wire.evalsha(unregistered, [], []) == 7
    finally:
        wire.close()


async def test_a_lost_connection_fails_its_callers_and_the_next_call_reconnects(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    wire = RedisWire(server.url)
    try:
        await wire.call("SET", "k", "v")
        waiting = asyncio.create_task(wire.call("BLPOP", "nothing", 5))
        await asyncio.sleep(0.05)
        server.stop()
        with pytest.raises(RedisConnectionError):
            await waiting
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await wire.call("GET", "k")
        server = RedisServer(tmp_path, port=server.port)  # back, empty
        assert await wire.call("GET", "k") is None
    finally:
        wire.close()
        server.stop()


async def test_a_server_that_stops_answering_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store import redis_wire

    monkeypatch.setattr(redis_wire, "STALL_SECONDS", 0.2)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        wire = RedisWire(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        try:
            with pytest.raises(RedisTimeoutError, match="no reply"):
                await asyncio.wait_for(wire.call("PING"), 5)
        finally:
            wire.close()


async def test_the_url_s_password_and_database_are_used(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--requirepass", "s3cret")
    try:
        refused = RedisWire(server.url)
        with pytest.raises(AuthenticationError):
            await refused.call("PING")
        refused.close()
        url = server.url.replace("redis://", "redis://:s3cret@").removesuffix("/0") + "/3"
        wire = RedisWire(url)
        try:
            await wire.call("SET", "where", "db3")
            assert await wire.call("CLIENT", "INFO") and "db=3" in await wire.call("CLIENT", "INFO")
        finally:
            wire.close()
    finally:
        server.stop()


async def test_a_read_only_redis_answers_busy_not_crash(tmp_path: Path) -> None:
    """A replica (or a failover in progress) refuses the turn's writes: 503, Twilio retries."""
    from bot.store.base import StoreUnavailable
    from tests.test_store import load, turn

    server = RedisServer(tmp_path)
    store = open_store(server.url)
    try:
        conversation = await load(store, "+15550000001")
        wire = RedisWire(server.url)
        async with store.lock("+15550000001"):
            await wire.call("REPLICAOF", "127.0.0.1", "1")  # a master that is not there: read-only
            with pytest.raises(StoreUnavailable, match="refuses writes"):
                await store.commit(turn(conversation, "SM1"))
        with pytest.raises(ReadOnlyError):
            await wire.call("SET", "k", "v")
        wire.close()
    finally:
        await store.close()
        server.stop()


async def test_rediss_urls_speak_tls_with_the_url_s_options(tmp_path: Path, redis_url: str) -> None:
    """``rediss://`` (a managed Redis): TLS, the certificate checked against the URL's ssl_ca_certs
    and host name. A TLS front on loopback stands in for the managed service (the suite's Redis
    binary may be built without TLS)."""
    import shutil
    import ssl
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (for a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    plain_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", plain_port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    front = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    port = front.sockets[0].getsockname()[1]
    try:
        wire = RedisWire(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}")
        try:
            assert await wire.call("SET", "over", "tls") == "OK"
            assert await wire.call("GET", "over") == "tls"
        finally:
            wire.close()
        untrusted = RedisWire(f"rediss://localhost:{port}/0")  # the system's CAs do not know it
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.call("PING")
        untrusted.close()
    finally:
        front.close()
        await front.wait_closed()


async def test_unix_socket_urls_connect_there(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, "--unixsocket", str(path), "--unixsocketperm", "700")
    try:
        wire = RedisWire(f"unix://{path}?db=2")
        try:
            await wire.call("SET", "k", "over a unix socket")
            assert "db=2" in await wire.call("CLIENT", "INFO")
        finally:
            wire.close()
    finally:
        server.stop()
