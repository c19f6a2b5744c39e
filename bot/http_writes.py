"""One write per response: a response's head and body leave in one ``send`` (one packet) instead of two.

uvicorn's httptools cycle writes the status line and headers as soon as the app starts its answer,
then the body in a second write. Each is a system call, and with ``TCP_NODELAY`` (uvloop's default)
a packet of its own, on both ends. A webhook's answer is a few hundred bytes sent at once, so the
head is held back until the next write of the same response and leaves with it.

Nothing is held past the current turn of the event loop: a response that writes nothing after its
head (a ``HEAD`` request) has it flushed by a callback the first write schedules, before any other
response of the connection can start (the event loop runs callbacks in order). Any other use of the
transport (closing it) writes what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeadHoldingTransport:
    """The cycle's view of its connection's transport: the first write waits for the second."""

    __slots__ = ("_transport", "_held", "_writes")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writes += 1
        if self._writes == 1:  # the head: wait for the body, at most until this loop turn ends
            self._held = bytes(data)
            asyncio.get_running_loop().call_soon(self.flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data if held else data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the real transport's
        return getattr(self._transport, name)
