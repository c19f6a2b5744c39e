"""Python load generators on asyncio + uvloop: raw sockets, pre-generated request bytes.

* :func:`open_loop` — fixed rate, one NEW connection per request (as Twilio connects), latency
  counted from each request's *scheduled* send time, so a slow server cannot slow the schedule
  down and hide its own delay (no coordinated omission). It also reports how late it sent
  (``send_lag``): that lag is already inside the latencies, and shows the generator kept up.
* :func:`closed_loop` — keep-alive connections sending back to back, for throughput when wrk is
  not installed. Its ceiling is shown by running it against the bare-Starlette floor app.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

try:
    import uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] brings it
    uvloop = None


@dataclass
class Statuses:
    codes: Counter[int] = field(default_factory=Counter)  # HTTP status -> count; 0 = no answer
    errors: Counter[str] = field(default_factory=Counter)  # connect/reset/timeout/... -> count

    @property
    def bad(self) -> int:
        return sum(n for code, n in self.codes.items() if not 200 <= code < 300) + sum(self.errors.values())

    def describe(self) -> str:
        parts = [f"HTTP {code}: {n}" for code, n in sorted(self.codes.items()) if not 200 <= code < 300]
        parts += [f"{kind}: {n}" for kind, n in sorted(self.errors.items())]
        return ", ".join(parts)


@dataclass
class LatencyRun:
    rate: float
    scheduled: int
    latencies: list[float]  # seconds, of the 2xx answers
    send_lag: list[float]  # seconds between scheduled and actual connect start
    statuses: Statuses
    wall: float
    generator_cpu: float  # share of one core the generator used


@dataclass
class ThroughputRun:
    completed: int
    sent: int
    seconds: float
    statuses: Statuses
    exhausted: bool
    generator_cpu: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Response:
    """Incremental parse of one HTTP/1.1 response: status, Content-Length body."""

    __slots__ = ("buffer", "status", "need")

    def __init__(self) -> None:
        self.buffer = b""
        self.status = 0
        self.need = -1  # total bytes (head + body) once the head is in

    def feed(self, data: bytes) -> bytes | None:
        """Add bytes; returns the leftover after a complete response, or None while incomplete."""
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            self.need = end + 4 + length
        if len(self.buffer) < self.need:
            return None
        return self.buffer[self.need:]


# -- open loop: fixed rate, a new connection per request ------------------------------------------

class _OneShot(asyncio.Protocol):
    __slots__ = ("run", "payload", "scheduled", "response", "transport", "finished")

    def __init__(self, run: _OpenLoopState, payload: bytes, scheduled: float) -> None:
        self.run = run
        self.payload = payload
        self.scheduled = scheduled
        self.response = _Response()
        self.transport: asyncio.Transport | None = None
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.run.open.add(self)
        transport.write(self.payload)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            complete = self.response.feed(data) is not None
        except (ValueError, IndexError):
            self._finish(0, "bad response")
            return
        if complete:
            self._finish(self.response.status, None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self._finish(0, "connection closed before the answer")

    def _finish(self, status: int, error: str | None) -> None:
        self.finished = True
        self.run.open.discard(self)
        self.run.done(self.scheduled, status, error)
        if self.transport is not None:
            self.transport.close()


class _OpenLoopState:
    def __init__(self, total: int) -> None:
        self.latencies: list[float] = []
        self.statuses = Statuses()
        self.outstanding = total
        self.all_done = asyncio.Event()
        self.open: set[_OneShot] = set()
        self.closed = False

    def done(self, scheduled: float, status: int, error: str | None) -> None:
        if self.closed:
            return
        if error is not None:
            self.statuses.errors[error] += 1
        else:
            self.statuses.codes[status] += 1
            if 200 <= status < 300:
                self.latencies.append(time.perf_counter() - scheduled)
        self.outstanding -= 1
        if self.outstanding == 0:
            self.all_done.set()


async def _open_loop(host: str, port: int, payloads: Sequence[bytes], rate: float,
                     timeout: float) -> LatencyRun:
    loop = asyncio.get_running_loop()
    state = _OpenLoopState(len(payloads))
    send_lag: list[float] = []
    pending: set[asyncio.Future[object]] = set()

    def connect_failed(future: asyncio.Future[object], scheduled: float) -> None:
        pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            state.done(scheduled, 0, f"connect: {type(future.exception()).__name__}")

    interval = 1.0 / rate
    cpu0 = _cpu_seconds()
    start = time.perf_counter() + 0.02
    for index, payload in enumerate(payloads):
        scheduled = start + index * interval
        # Sleep coarsely, then spin (this core is the generator's alone) so no send goes out
        # early and none late by more than the loop's own overhead.
        while True:
            ahead = scheduled - time.perf_counter()
            if ahead <= 0:
                break
            await asyncio.sleep(ahead - 0.0015 if ahead > 0.002 else 0)
        send_lag.append(time.perf_counter() - scheduled)
        future = asyncio.ensure_future(
            loop.create_connection(lambda p=payload, s=scheduled: _OneShot(state, p, s), host, port))
        pending.add(future)
        future.add_done_callback(lambda f, s=scheduled: connect_failed(f, s))
    last = start + (len(payloads) - 1) * interval
    try:
        await asyncio.wait_for(state.all_done.wait(), max(0.0, last + timeout - time.perf_counter()))
    except TimeoutError:
        state.statuses.errors[f"no answer within {timeout:.0f} s"] += state.outstanding
    wall = time.perf_counter() - start
    # Whatever is still connecting or waiting was counted above; close it before the loop goes.
    state.closed = True
    for future in list(pending):
        future.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for protocol in list(state.open):
        if protocol.transport is not None:
            protocol.transport.abort()
    await asyncio.sleep(0)
    return LatencyRun(rate, len(payloads), state.latencies, send_lag, state.statuses, wall,
                      (_cpu_seconds() - cpu0) / wall if wall > 0 else 0.0)


def open_loop(host: str, port: int, payloads: Sequence[bytes], rate: float, timeout: float = 10.0) -> LatencyRun:
    loop = _new_loop()
    try:
        return loop.run_until_complete(_open_loop(host, port, payloads, rate, timeout))
    finally:
        loop.close()


# -- closed loop: keep-alive connections, back to back ---------------------------------------------

class _KeepAlive(asyncio.Protocol):
    def __init__(self, run: _ClosedLoopState) -> None:
        self.run = run
        self.response = _Response()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        payload = self.run.next_payload()
        if payload is None:
            self.transport.close()  # type: ignore[union-attr]
            return
        self.response = _Response()
        self.transport.write(payload)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            leftover = self.response.feed(data)
        except (ValueError, IndexError):
            self.run.statuses.errors["bad response"] += 1
            self.transport.close()  # type: ignore[union-attr]
            return
        if leftover is None:
            return
        self.run.answered(self.response.status)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.run.stopping and not self.lost.done():
            self.run.statuses.errors["connection lost"] += 1
        if not self.lost.done():
            self.lost.set_result(None)


class _ClosedLoopState:
    def __init__(self, payloads: Sequence[bytes], deadline: float) -> None:
        self.payloads = payloads
        self.sent = 0
        self.completed = 0
        self.deadline = deadline
        self.stopping = False
        self.exhausted = False
        self.statuses = Statuses()

    def next_payload(self) -> bytes | None:
        if self.stopping or time.perf_counter() >= self.deadline:
            self.stopping = True
            return None
        if self.sent >= len(self.payloads):
            self.exhausted = self.stopping = True
            return None
        payload = self.payloads[self.sent]
        self.sent += 1
        return payload

    def answered(self, status: int) -> None:
        if time.perf_counter() <= self.deadline:
            self.completed += 1
        self.statuses.codes[status] += 1


async def _closed_loop(host: str, port: int, payloads: Sequence[bytes], connections: int,
                       seconds: float) -> ThroughputRun:
    loop = asyncio.get_running_loop()
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    state = _ClosedLoopState(payloads, start + seconds)
    protocols = []
    for _ in range(connections):
        try:
            _, protocol = await loop.create_connection(lambda: _KeepAlive(state), host, port)
        except OSError as error:
            state.statuses.errors[f"connect: {type(error).__name__}"] += 1
            continue
        protocols.append(protocol)
    # Until the deadline, or until every connection closed because the pool ran dry.
    everyone = asyncio.gather(*(p.lost for p in protocols))
    try:
        await asyncio.wait_for(asyncio.shield(everyone), max(0.0, state.deadline - time.perf_counter()))
    except TimeoutError:
        pass
    end = min(time.perf_counter(), state.deadline)
    state.stopping = True
    # The last answers still in flight: wait for them so the connections close cleanly.
    try:
        await asyncio.wait_for(everyone, 10.0)
    except TimeoutError:
        state.statuses.errors["no answer within 10 s"] += state.sent - sum(state.statuses.codes.values())
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()
    elapsed = end - start
    return ThroughputRun(state.completed, state.sent, elapsed, state.statuses, state.exhausted,
                         (_cpu_seconds() - cpu0) / elapsed if elapsed > 0 else 0.0)


def closed_loop(host: str, port: int, payloads: Sequence[bytes], connections: int, seconds: float) -> ThroughputRun:
    loop = _new_loop()
    try:
        return loop.run_until_complete(_closed_loop(host, port, payloads, connections, seconds))
    finally:
        loop.close()
