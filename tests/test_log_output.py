"""Log lines logged on an event loop are written together at the end of its turn, in order, none
lost (bot/log_output.py); the per-second time stamp prints what logging's own Formatter prints."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.log_output import LoopBatchedStreamHandler, SecondCachedFormatter


class Writes(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def logger_writing_to(stream: Writes) -> logging.Logger:
    handler = LoopBatchedStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("test.log_output", logging.INFO)
    logger.addHandler(handler)
    return logger


def test_lines_of_one_loop_turn_are_one_write_and_lines_elsewhere_keep_their_order() -> None:
    stream = Writes()
    log = logger_writing_to(stream)
    log.info("before the loop")  # no loop: written at once
    assert stream.calls == ["before the loop\n"]

    async def turns() -> None:
        for n in range(3):
            log.info("turn 1, line %d", n)
        assert stream.calls == ["before the loop\n"]  # held until this turn of the loop ends
        await asyncio.sleep(0)
        log.info("turn 2")
        done = threading.Thread(target=lambda: log.info("from a thread"))  # no loop there: written at once,
        done.start()                                                      # after what is held
        done.join()
        await asyncio.sleep(0)

    asyncio.run(turns())
    assert stream.calls == ["before the loop\n", "turn 1, line 0\nturn 1, line 1\nturn 1, line 2\n",
                            "turn 2\nfrom a thread\n"]


def test_what_is_held_is_written_by_flush_at_exit() -> None:
    stream = Writes()
    log = logger_writing_to(stream)

    async def last_words() -> None:
        log.info("the last line")
        for handler in log.handlers:
            handler.flush()  # as logging.shutdown does, before the loop's turn ends

    asyncio.run(last_words())
    assert stream.getvalue() == "the last line\n"


@settings(max_examples=300)
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False), st.integers(0, 5))
def test_the_cached_stamp_is_the_formatters_own(created: float, later: int) -> None:
    plain, cached = logging.Formatter("%(asctime)s %(message)s"), SecondCachedFormatter("%(asctime)s %(message)s")
    for when in (created, created + later / 7, created + later):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = when, int((when - int(when)) * 1000)
        assert cached.format(record) == plain.format(record)


def test_records_keep_every_attribute_other_formats_print() -> None:
    """gunicorn's own lines print %(process)d: configure_logging must leave records whole."""
    import os

    from bot.logs import configure_logging

    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        configure_logging("info")
        record = logging.getLogger("bot.test").makeRecord("bot.test", logging.INFO, __file__, 1, "m", None, None)
        assert record.process == os.getpid() and record.threadName and record.processName
        assert logging.Formatter("[%(process)d] %(threadName)s %(message)s").format(record).startswith("[")
    finally:
        root.handlers[:] = handlers
