"""One write per response: a response's head and body leave in one ``send`` (one packet) instead of two.

uvicorn's httptools cycle writes the status line and headers as soon as the app starts its answer,
then the body in a second write. Each is a system call, and with ``TCP_NODELAY`` (uvloop's default)
a packet of its own, on both ends. A webhook's answer is a few hundred bytes sent at once, so the
head is held back until the next write of the same response and leaves with it.

Nothing is held past the response: when it completes without a second write (a ``HEAD`` request),
its completion callback writes the head, before the connection's next response can start; closing
the transport writes what is held first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class HeadHoldingTransport:
    """The cycle's view of its connection's transport: the first write waits for the second."""

    __slots__ = ("_transport", "_held", "_writes", "_completed")

    def __init__(self, transport: asyncio.Transport, completed: Callable[[], None]) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._writes = 0
        self._completed = completed

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writes += 1
        if self._writes == 1:  # the head: wait for the body, or the end of the response
            self._held = bytes(data)
            return
        held, self._held = self._held, None
        self._transport.write(held + data if held else data)

    def response_complete(self) -> None:
        """The cycle's completion callback: what is held goes out, then the protocol's own callback."""
        self.flush()
        self._completed()

    def flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:  # asked on every request (uvicorn's receive): not through __getattr__
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the real transport's
        return getattr(self._transport, name)
