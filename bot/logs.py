"""Logging, configured once at start-up by whoever starts the program (server, workers, CLI), and
kept free of personal data wherever its records go.

No module changes a log level when it is imported: importing the bot from a test or another
program must not reconfigure that program's logging.

Phone numbers are masked at the logging layer, not at each call (a call that forgets, or an
exception message quoting a URL, must not leak). One function, :func:`mask_record`, rewrites a
record in place — its message with the arguments filled in, its traceback and stack — so every
handler after it formats the masked text. Two layers apply it:

* The bot's own records, whoever configured logging (the server, pytest's ``caplog``, a program
  embedding the bot): the ``bot`` logger carries :class:`MaskingNullHandler`, the NullHandler the
  logging HOWTO asks a library to put on its top logger, which masks each record on its way up.
  A logger's *filter* would not do: it only sees records logged on that very logger, not on
  ``bot.engine`` below it; a handler sees every record that propagates through ``bot``, and
  Python calls the handlers of ``bot`` before those of the root, where output happens.
* Every record of a process that calls :func:`configure_logging`: a LogRecord factory masks at
  creation, for the records that never pass ``bot`` — uvicorn's own error log (it has its own
  handlers, installed after ours, and does not propagate), asyncio, httpx. A filter on the
  handlers configure_logging installs would miss those.

What a person typed has no pattern to recognise, so it is kept out of log messages where they are
written (failed lookups log their state and the kind of failure, template errors their kind); as a
second line of defence, every URL (``https://…``, ``redis://…``) is logged as its origin only
(``/…`` for the path and query, which may hold typed text), without its ``user:password@``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from bot.log_output import LoopBatchedStreamHandler, SecondCachedFormatter
from bot.privacy import mask

SERVER_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CLI_FORMAT = "%(levelname)s: %(message)s"

#: Libraries whose chatter we turn down: ``transitions`` logs every transition at INFO (and costs
#: 5x per transition doing so); ``httpx`` logs every request URL at INFO, and a fetch URL may
#: carry what a person typed.
_QUIET = {"transitions": logging.WARNING, "httpx": logging.WARNING}

#: A phone number: ``+`` or ``%2B`` (a URL), then 8 or more digits, with up to two spaces, dots,
#: dashes or brackets between two digits ("+1 (555) 123-4567"). ``whatsapp:+…`` is one of these too.
_NUMBER = re.compile(r"(\+|%2[Bb])(\d(?:[ ().-]{0,2}\d){7,})")
#: An address: scheme, authority (maybe with user:password@), and whatever follows.
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/\s?#'\"<>]*)([^\s'\"<>]*)")
_LOCAL_SCHEMES = ("sqlite://", "file://")  # a file of the operator's: its path is kept
_MASKED = "personal_data_masked"  # set on a record once masked, so the second layer skips it
_TRACEBACKS = logging.Formatter()


def mask_text(text: str) -> str:
    """``text`` with every phone number masked as :func:`bot.privacy.mask` does (``+1555…4321``)
    and every web address cut to its origin."""
    if "://" in text:
        text = _URL.sub(_origin, text)
    if "+" in text or "%2" in text:
        text = _NUMBER.sub(_masked_number, text)
    return text


def _origin(found: re.Match[str]) -> str:
    scheme, host, rest = found.group(1), found.group(2).rpartition("@")[2], found.group(3)  # no user:password@
    if scheme.lower() in _LOCAL_SCHEMES:
        return scheme + host + rest
    return scheme + host + ("/…" if rest else "")


def _masked_number(found: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", found.group(2))
    return found.group(1) + mask("+" + digits)[1:]


def mask_record(record: logging.LogRecord) -> None:
    """Mask ``record`` in place, once: its message (arguments filled in when they hold something
    to mask), traceback and stack.

    The traceback is formatted here and kept as ``exc_text`` (what every Formatter prints), and
    ``exc_info`` dropped, so no later formatter or error reporter renders it again unmasked.
    """
    if getattr(record, _MASKED, False):
        return
    setattr(record, _MASKED, True)
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - bad arguments: logging would print them raw in its error report
        message = f"{record.msg} (arguments that do not fit the message were dropped)"
        record.msg, record.args = message, None
    masked = mask_text(message)
    if masked != message:  # else left as it was: formatters that read the arguments (uvicorn's) still can
        record.msg, record.args = masked, None
    if record.exc_info:
        record.exc_text = mask_text(record.exc_text or _TRACEBACKS.formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)


class MaskingNullHandler(logging.NullHandler):
    """Prints nothing; masks every record that passes the logger it sits on (see the module doc)."""

    def handle(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


class _MaskingRecordFactory:
    """The LogRecord factory configure_logging installs: the previous factory, then the mask."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        mask_record(record)
        return record


def _protect_bot_records() -> None:
    bot = logging.getLogger("bot")
    if not any(isinstance(handler, MaskingNullHandler) for handler in bot.handlers):
        bot.addHandler(MaskingNullHandler())


_protect_bot_records()  # a NullHandler on the bot's own logger: no level, no output, no other logger


def configure_logging(level: str = "info", fmt: str = SERVER_FORMAT, log_format: str = "text") -> None:
    """Once, at start-up: the root logger writes ``fmt`` lines to stderr, or with ``log_format``
    ``json`` one JSON object per line (``bot/json_logs.py``; LOG_FORMAT); either way masked."""
    handler = LoopBatchedStreamHandler()  # lines logged on the event loop: one write per loop turn
    if log_format == "json":
        from bot.json_logs import JsonFormatter  # lazily: it imports this module

        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)  # a Python warning as a JSON line too, not a bare line on stderr
    else:
        handler.setFormatter(SecondCachedFormatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for name, quiet_level in _QUIET.items():
        logging.getLogger(name).setLevel(quiet_level)
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _MaskingRecordFactory):
        logging.setLogRecordFactory(_MaskingRecordFactory(factory))
