"""LOG_FORMAT=json (issue 15 item 5): one JSON object per line, with the routing line's fields as
keys, masked exactly as the text format is, uvicorn's own lines included, and no texted value able
to break a line or start one of its own. In process for the formatter, then the real server."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import logs
from bot.cli import _log_format
from bot.json_logs import ROUTE_FIELDS, JsonFormatter
from bot.settings import SettingsError, load_settings
from tests.conftest import SHIPPED_FLOWS
from tests.signed_webhooks import AUTH_TOKEN
from tests.test_server_process import running, server_process, text

NUMBER = "+15557654321"
HOSTILE = 'line one\nline two "quoted" \\ \u2028{"level": "ERROR", "message": "forged"}\r\n' + "x" * 2000
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Lines(logging.Handler):
    """Every record that reaches it, formatted by each formatter (the record masked once, in place)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []
        self.json: list[str] = []
        self._text, self._json = logging.Formatter(logs.SERVER_FORMAT), JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.json.append(self._json.format(record))
        self.text.append(self._text.format(record))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    for name in ("bot", "elsewhere"):  # the bot's own logger, and one it does not mask (like uvicorn's)
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    for name in ("bot", "elsewhere"):
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(logging.NOTSET)


def parsed(line: str) -> dict[str, object]:
    assert "\n" not in line and "\r" not in line and line.isascii(), line
    entry = json.loads(line)
    assert isinstance(entry, dict)
    return entry


# -- the formatter --------------------------------------------------------------------------------

def test_a_line_holds_time_level_logger_and_message(lines: Lines) -> None:
    logging.getLogger("bot.engine").warning("state %s has no reply", "ask")
    entry = parsed(lines.json[0])
    assert TIME.match(str(entry["time"])), entry
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "bot.engine", "state ask has no reply")
    assert "exc_info" not in entry


def test_the_routing_line_gives_its_fields_as_keys(lines: Lines) -> None:
    logging.getLogger("bot.route").info("from=%s sid=%s %s replies=%d ms=%.1f", "+1555…4321", "SM" + "1" * 32,
                                        "idle -> status:ask_number (trigger STATUS)", 1, 3.14159)
    logging.getLogger("bot.route").error("five things: %s %s %s %s %s", 1, 2, 3, 4, 5)  # not the routing line
    entry = parsed(lines.json[0])
    assert not set(ROUTE_FIELDS) & set(parsed(lines.json[1]))
    assert {name: entry[name] for name in ROUTE_FIELDS} == {
        "sender": "+1555…4321", "message_sid": "SM" + "1" * 32, "route": "idle -> status:ask_number (trigger STATUS)",
        "replies": 1, "duration_ms": 3.1}
    assert entry["message"] == lines.text[0].split("bot.route: ", 1)[1]
    # A route holding something shaped like a number: masking rewrote the message and dropped the
    # arguments, so the masked message is all there is.
    logging.getLogger("bot.route").info("from=%s sid=%s %s replies=%d ms=%.1f", "+1555…4321", "SM" + "1" * 32,
                                        f"idle -> idle (keywords {NUMBER})", 1, 2.0)
    masked = parsed(lines.json[2])
    assert "+1555…4321" in str(masked["message"]) and NUMBER not in lines.json[2] and "route" not in masked


def test_masking_is_the_same_as_the_text_formats(lines: Lines) -> None:
    bot, other = logging.getLogger("bot.outbound"), logging.getLogger("elsewhere")
    bot.info("texting %s via https://user:secret@api.example.com/2010/Messages?To=%s", NUMBER, NUMBER)
    try:
        raise ValueError(f"no answer for {NUMBER} from https://orders.example.com/orders/{NUMBER}")
    except ValueError:
        bot.exception("lookup failed")
        other.exception("outside the bot: masked by the formatter itself, %s", NUMBER)
    for text_line, json_line in zip(lines.text, lines.json, strict=True):
        entry = parsed(json_line)
        message, _, traceback = text_line.split(": ", 1)[1].partition("\n")
        assert entry["message"] == message
        assert entry.get("exc_info", "") == traceback
        assert NUMBER not in json_line and NUMBER[1:] not in json_line and "secret" not in json_line
    assert "+1555…4321" in parsed(lines.json[0])["message"]
    assert "Traceback" in parsed(lines.json[1])["exc_info"] and "ValueError" in parsed(lines.json[1])["exc_info"]


def test_a_texted_value_stays_inside_its_string(lines: Lines) -> None:
    logging.getLogger("bot.engine").warning("said: %s", HOSTILE, extra={"said": HOSTILE, "count": 2})
    assert len(lines.json) == 1 and "\n" not in lines.json[0]
    entry = parsed(lines.json[0])
    assert entry["message"] == f"said: {HOSTILE}" and entry["said"] == HOSTILE and entry["count"] == 2
    assert entry["level"] == "WARNING"  # the forged "level" inside the text changed nothing


def test_extras_are_masked_and_cannot_replace_the_lines_own_keys(lines: Lines) -> None:
    logging.getLogger("bot.x").info("hello", extra={"to": NUMBER, "numbers": [NUMBER], "logger": "forged"})
    entry = parsed(lines.json[0])
    assert entry["to"] == "+1555…4321" and entry["numbers"] == ["+1555…4321"] and entry["logger"] == "bot.x"


# -- the setting ----------------------------------------------------------------------------------

def test_log_format_is_text_json_or_a_clear_error() -> None:
    assert load_settings({}).log_format == "text"
    assert load_settings({"LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(SettingsError, match=r"^LOG_FORMAT must be text or json \(got 'xml'\)$"):
        load_settings({"LOG_FORMAT": "xml"})


def test_the_cli_reads_log_format_and_falls_back_to_text_on_a_bad_one(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert _log_format() == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")  # the command that reads the settings says so; lint need not fail
    assert _log_format() == "text"


# -- the real server ------------------------------------------------------------------------------

def test_every_line_the_server_writes_is_json(tmp_path: Path) -> None:
    """uvicorn's own lines (start, a malformed request, the stop) and the bot's, a hostile text
    among the messages: each line one JSON object, the routing line with its fields."""
    server = server_process(tmp_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN, STORE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
                            FLOWS_DIR=str(SHIPPED_FLOWS), DEMO_ORDERS="1", LOG_FORMAT="json")
    with running(server):
        text(server, "STATUS", NUMBER)
        text(server, HOSTILE[:1600], NUMBER)  # Twilio's longest Body
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn warns: Invalid HTTP request received.
            connection.recv(1024)
    output: str = server.output  # type: ignore[attr-defined]
    entries = [parsed(line) for line in output.splitlines() if line]
    said = {(entry["logger"], entry["message"]) for entry in entries}
    assert ("uvicorn.error", "Application startup complete.") in said
    assert ("uvicorn.error", "Invalid HTTP request received.") in said
    assert ("uvicorn.error", "Application shutdown complete.") in said
    routes = [entry for entry in entries if entry["logger"] == "bot.route"]
    assert len(routes) == 2 and all(set(ROUTE_FIELDS) <= set(entry) for entry in routes)
    assert routes[0]["sender"] == "+1555…4321" and routes[0]["replies"] == 1
    assert NUMBER not in output and NUMBER[1:] not in output and "forged" not in output
