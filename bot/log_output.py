"""Where log lines go, cheaply: written once per turn of the event loop, stamped from a per-second cache.

The server writes one routing line per message. ``StreamHandler`` writes and flushes each line
as it comes: a system call per line, on the one thread that also answers webhooks. Turns finish
in groups (a SQLite group commit wakes all its turns at once), so their lines are kept for the
rest of the event loop's current turn and written together, one call for all of them, by a
callback the first line schedules. A line logged where no event loop runs (start-up, a thread,
the CLI) is written at once, after any still held, so the order of lines is kept. What is held
lasts microseconds; ``flush()`` (at exit, ``logging.shutdown``) writes it.

``time.strftime`` for each record's ``asctime`` is replaced by a string made once per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TextIO


class LoopBatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler whose lines logged on an event loop are written at the end of its turn."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if asyncio._get_running_loop() is not None:  # noqa: SLF001 - the C fast path get_running_loop wraps
                if not self._held:
                    asyncio.get_running_loop().call_soon(self.flush)
                self._held.append(line)
                return
            self._write(line)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own rule: a failing handler reports and goes on
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write("")

    def _write(self, line: str) -> None:
        held, self._held = self._held, []
        text = "".join(held) + line if held else line
        if text:
            self.stream.write(text)
        if hasattr(self.stream, "flush"):
            self.stream.flush()


class SecondCachedFormatter(logging.Formatter):
    """``asctime`` as the default format prints it, its seconds part made once per second."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


def flush_log_handlers() -> None:
    """Write what the root logger's handlers hold now: a process about to end without Python's
    exit hooks (a multiprocessing worker ends with ``os._exit``) would lose its last lines."""
    for handler in logging.getLogger().handlers:
        handler.flush()
