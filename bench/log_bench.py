"""What a log line costs, text against JSON (LOG_FORMAT): the routing line (``bot.route``), written
on every turn, from its record's creation (with the masking record factory ``configure_logging``
installs) to the formatted line, in one process and without writing it anywhere.

Compared: the text format (``bot/logs.py`` SERVER_FORMAT), ours (``bot/json_logs.py``: the
standard library's json), and python-json-logger's ``JsonFormatter`` when it is importable (it is
not a dependency: ``pip install python-json-logger`` to see it). Reported: µs per line, best of
several repeats (timeit's rule).

    .venv/bin/python -m bench logs
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from bot.json_logs import JsonFormatter
from bot.logs import SERVER_FORMAT, mask_record
from bot.privacy import mask

ROUTE_ARGS = (mask("+15551234567"), "SM" + "0" * 32, "status:ask_number -> status:looked_up (keywords 123456)", 1, 3.2)
ROUTE_MESSAGE = "from=%s sid=%s %s replies=%d ms=%.1f"


def _route_record() -> logging.LogRecord:
    record = logging.LogRecord("bot.route", logging.INFO, __file__, 1, ROUTE_MESSAGE, ROUTE_ARGS, None)
    mask_record(record)  # what the record factory does to every record as it is made
    return record


def per_line(formatter: logging.Formatter, lines: int, repeats: int) -> float:
    """µs to make, mask and format one routing line."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(lines):
            formatter.format(_route_record())
        best = min(best, (time.perf_counter() - started) / lines)
    return best * 1e6


class _Nothing(logging.Formatter):
    """The part every format shares: the record made and masked, then nothing formatted."""

    def format(self, record: logging.LogRecord) -> str:
        return ""


def formatters() -> dict[str, Callable[[], logging.Formatter]]:
    found: dict[str, Callable[[], logging.Formatter]] = {
        "text": lambda: logging.Formatter(SERVER_FORMAT), "json (ours)": JsonFormatter}
    try:
        from pythonjsonlogger.json import JsonFormatter as Library
    except ImportError:
        return found
    found["python-json-logger"] = lambda: Library("{asctime}{levelname}{name}{message}", style="{",
                                                  rename_fields={"asctime": "time", "levelname": "level",
                                                                 "name": "logger"})
    return found


def main(argv: list[str]) -> int:
    lines = 2_000 if "--quick" in argv else 50_000
    repeats = 5
    print("| format | µs per routing line |\n| --- | --- |")
    print(f"| (the record made and masked, nothing formatted) | {per_line(_Nothing(), lines, repeats):.2f} |")
    for name, make in formatters().items():
        print(f"| {name} | {per_line(make(), lines, repeats):.2f} |")
    print(f"\n{lines:,} lines, best of {repeats}; one line of each:")
    for name, make in formatters().items():
        print(f"  {name}: {make().format(_route_record())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
