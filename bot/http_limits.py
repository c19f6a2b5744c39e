"""A cap on the size of a request's head (request line and headers), enforced while it arrives.

httptools (llhttp), the HTTP parser server.py runs uvicorn with, sets no limit of its own: a
client could send one header of 64 MB and the server would buffer all of it before the app saw
the request — and before any signature check could refuse it. h11, uvicorn's other parser, stops
at ``h11_max_incomplete_event_size`` (16 KiB); this gives httptools the same kind of bound.

``BoundedHttpToolsProtocol`` counts the bytes received while a head is incomplete and, past
``MAX_HEAD_BYTES``, answers ``431 Request Header Fields Too Large`` and closes the connection, so a
connection never holds more than the cap plus one read (at most 256 KiB). server.py uses it; with
uvicorn's own command line it is ``--http bot.http_limits:BoundedHttpToolsProtocol``.
"""

from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from bot.http_writes import HeadHoldingTransport

log = logging.getLogger(__name__)

#: Twilio's webhook heads are about 1 KiB; proxies add a few headers. nginx allows 4 x 8 KiB.
MAX_HEAD_BYTES = 32 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head larger than ``MAX_HEAD_BYTES``.

    The count is taken after each read is parsed, and only for a read in which no request ended:
    a read that completes a small head and goes on with the body, or ends a body, is never counted
    against a head. A head that starts in a read where another request ended (pipelining) is
    counted from the next read on, so it may hold up to one read more than the cap.
    """

    max_head_bytes = MAX_HEAD_BYTES
    # Set on the instance as the parser reports; class defaults so the hot path needs no __init__.
    _in_head = True  # waiting for (or inside) a request head, as a new connection is
    _head_bytes = 0
    _completed_in_read = False  # a request ended inside the read being parsed

    def data_received(self, data: bytes) -> None:
        self._completed_in_read = False
        super().data_received(data)
        if self._in_head and not self._completed_in_read and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0  # the next head is counted from zero
        super().on_headers_complete()
        # the answer's head and body in one write (bot/http_writes.py)
        cycle = self.cycle
        held = HeadHoldingTransport(self.transport, cycle.on_response)
        cycle.transport, cycle.on_response = held, held.response_complete  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._in_head = self._completed_in_read = True
        super().on_message_complete()

    def _refuse_head(self) -> None:
        log.warning("request head larger than %d bytes: refused with 431", self.max_head_bytes)
        reason = b"request head too large\n"
        self.transport.write(b"".join([
            STATUS_LINE[431],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(reason),
            b"connection: close\r\n\r\n",
            reason,
        ]))
        self.transport.close()
