"""``LOG_FORMAT=json``: one JSON object per line, for a log pipeline (Loki, Elasticsearch, CloudWatch,
``journalctl -o cat | jq``) to read without parsing text.

Each line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and ``message``; the
routing line (logger ``bot.route``, one per turn) adds its fields as keys of their own (``sender``
masked, ``message_sid``, ``route``, ``replies``, ``duration_ms``); any ``extra=`` a call passed is
a key too; a traceback is one ``exc_info`` string. The record is masked by
:func:`bot.logs.mask_record` before anything is read from it, whichever logger wrote it (uvicorn's
own included, whose handlers use this formatter too), so a line holds what the text format would.

The standard library's ``json`` writes it: each value is one JSON string whatever it holds (a
newline, a quote, 2,000 characters), non-ASCII escaped, so no texted value can start a line of its
own, not even with U+2028, which some line readers split on. python-json-logger would need the
same masking, field mapping and UTC time added, for no gain in speed (``python -m bench logs``:
about 3 µs more than a text line either way, on a line written every turn).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bot.logs import mask_record, mask_text

#: What every LogRecord carries (and what uvicorn or our masking add): not an ``extra`` of the call.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message", "personal_data_masked"}

#: The routing line as ``bot/inbox.py`` (``_logged``) writes it, and its arguments' names in order;
#: tests/test_log_format.py pins them to a real turn. Other lines of its logger are left alone.
ROUTE_LOGGER = "bot.route"
ROUTE_MESSAGE = "from=%s sid=%s %s replies=%d ms=%.1f"
ROUTE_FIELDS = ("sender", "message_sid", "route", "replies", "duration_ms")


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (see the module's doc)."""

    #: The last second written, and as what: most lines share theirs with the line before. One
    #: tuple, replaced whole, so a thread never reads one second's text with another's number.
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        mask_record(record)  # once per record: a no-op when the record factory or the bot's handler did it
        entry: dict[str, Any] = {"time": self._utc(record.created, record.msecs), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        extras = record.__dict__.keys() - _STANDARD
        for name in extras:
            entry.setdefault(name, _value(record.__dict__[name]))
        if record.name == ROUTE_LOGGER and record.msg == ROUTE_MESSAGE:
            _route_fields(record, entry)
        if record.exc_text:
            entry["exc_info"] = record.exc_text  # formatted and masked by mask_record
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry)

    def _utc(self, created: float, msecs: float) -> str:
        """``2025-06-01T09:30:05.123Z``."""
        second, text = self._second
        if second != int(created):
            second, text = int(created), time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            self._second = (second, text)
        return f"{text}.{int(msecs):03d}Z"


def _route_fields(record: logging.LogRecord, entry: dict[str, Any]) -> None:
    """The routing line's values as keys. Masking kept its arguments only if the message it made
    had nothing to mask, so neither has any of them; they are gone when it had (something shaped
    like a number): the masked ``message`` says it all then."""
    args = record.args
    if isinstance(args, tuple) and len(args) == len(ROUTE_FIELDS):
        for name, value in zip(ROUTE_FIELDS, args, strict=True):
            if isinstance(value, float):
                value = round(value, 1)
            entry.setdefault(name, value if isinstance(value, str | int | float) else _value(value))


def _value(value: object) -> object:
    """An ``extra`` as JSON: numbers, flags and None as they are, lists and mappings item by item,
    anything else as masked text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_value(item) for item in value]
    if isinstance(value, dict):
        return {mask_text(str(key)): _value(item) for key, item in value.items()}
    return mask_text(value if isinstance(value, str) else str(value))


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging (``uvicorn.config.LOGGING_CONFIG``'s loggers, streams and levels) with
    this formatter: its error log ("Started server process", "Invalid HTTP request received") and
    its access log, were it on, are JSON lines like ours. Given to ``uvicorn.run`` as ``log_config``;
    each worker process applies it again, by name, as it starts."""
    def handler(stream: str) -> dict[str, str]:
        return {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}

    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
            "handlers": {"default": handler("ext://sys.stderr"), "access": handler("ext://sys.stdout")},
            "loggers": {"uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
                        "uvicorn.error": {"level": "INFO"},
                        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False}}}
