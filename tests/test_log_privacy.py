"""No log line carries a full phone number or what a person typed (issue 11, finding 10).

The mask works at the logging layer (``bot/logs.py``), not at each call: every record of the
bot's loggers is masked before any handler formats it, with or without ``configure_logging``,
and ``configure_logging`` extends that to every record of the process (uvicorn's own error log,
asyncio, httpx). What people typed cannot be recognised by a pattern, so the bot never puts it in
a log message: failed lookups log where they failed and the kind of failure, URLs lose their
path and query, template errors log their kind.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bench.servers import free_port
from bot import logs
from bot.app import create_app
from bot.flows.loader import load_flows
from bot.privacy import mask
from bot.reload import FlowReloader
from bot.settings import Settings
from tests.conftest import SignedClient, write_flows
from tests.signed_webhooks import AUTH_TOKEN

NUMBER = "+15557654321"
DIGITS = NUMBER[1:]
TYPED = "Pineapple-Unicorn-7781"  # what the person typed: distinctive, so any leak is found
FORMATTER = logging.Formatter(logs.SERVER_FORMAT)


@pytest.fixture
def configured() -> Iterator[None]:
    """``configure_logging`` as the server calls it at LOG_LEVEL=debug; the record factory it
    installs is put back afterwards (pytest's own handlers stay: basicConfig adds none then)."""
    factory = logging.getLogRecordFactory()
    levels = {name: logging.getLogger(name).level for name in ("transitions", "httpx")}
    logs.configure_logging("debug")
    yield
    logging.setLogRecordFactory(factory)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def formatted(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as a log line (message, traceback and stack), and caplog's own text."""
    return [FORMATTER.format(record) for record in caplog.records] + [caplog.text]


def assert_private(lines: list[str], *typed: str) -> None:
    for line in lines:
        assert NUMBER not in line and DIGITS not in line and f"%2B{DIGITS}" not in line, line
        for text in typed:
            assert text not in line and text.lower() not in line.lower(), line


LOOKUP_FLOW = """\
flow: lookup
triggers: [LOOKUP]
start: ask
states:
  ask:
    say: "Who?"
    replies:
      - pattern: '(?s).+'
        save: who
        go: look_up
  look_up:
    fetch:
      url: "http://127.0.0.1:{port}/people/{{{{ sender }}}}/{{{{ who }}}}?number={{{{ sender }}}}&q={{{{ who }}}}"
      save: person
      timeout: 2s
      fallback: "Sorry, the directory is down."
    say: "Found {{{{ person.name }}}}."
"""

#: An address whose host would come from the reply: refused before any request (the engine's taint
#: check), and the refusal must not quote the address it refused.
UNSAFE_FLOW = """\
flow: unsafe
triggers: [UNSAFE]
start: ask
states:
  ask:
    say: "Where?"
    replies:
      - pattern: '(?s).+'
        save: where
        go: look_up
    otherwise: "Where?"
  look_up:
    fetch:
      url: "{{ where }}/people/{{ sender }}"
      save: person
      fallback: "Sorry, I cannot look there."
    say: "Found {{ person.name }}."
"""

BROKEN_FLOW = """\
flow: broken
triggers: [BROKEN]
start: ask
states:
  ask:
    say: "Say something."
    replies:
      - pattern: '(?s).+'
        save: said
        go: show
  show:
    say:
      - "{{ said | divided_by: 0 }}"
      - "{{ sender | slice: said }}"
      - "Still here."
"""

#: A reply word that is another flow's trigger: a load warning quoting it.
WARNING_FLOW = """\
flow: callback
triggers: ["{number}"]
start: ask
states:
  ask:
    say: "Call you back?"
    replies:
      - keywords: ["{number}"]
        go: end
    otherwise: "Yes or no?"
"""


def test_phone_numbers_and_typed_text_never_reach_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         configured: None) -> None:
    caplog.set_level(logging.DEBUG)
    closed = free_port()  # nothing listens there: the lookup fails to connect
    flows = write_flows(tmp_path / "flows", {"lookup.yaml": LOOKUP_FLOW.format(port=closed),
                                             "broken.yaml": BROKEN_FLOW, "unsafe.yaml": UNSAFE_FLOW})
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), reload_flows=False)
    with TestClient(create_app(settings, load_flows(flows))) as client:
        bot = SignedClient(client)
        assert bot.replies("LOOKUP", NUMBER) == ["Who?"]
        assert bot.replies(TYPED, NUMBER) == ["Sorry, the directory is down."]  # a failed lookup
        assert bot.replies("UNSAFE", NUMBER) == ["Where?"]
        assert bot.replies(f"{TYPED}.example", NUMBER) == ["Sorry, I cannot look there."]  # refused address
        assert bot.replies("BROKEN", NUMBER) == ["Say something."]
        assert bot.replies(TYPED, NUMBER) == ["Still here."]  # two template errors
        assert bot.replies(f"forged {TYPED}", NUMBER, OptOutType=f"STOP\n{TYPED} {NUMBER}")  # finding 13
        # A flow-load warning that quotes a number, as a reload logs it.
        (flows / "callback.yaml").write_text(WARNING_FLOW.format(number=NUMBER), encoding="utf-8")
        assert FlowReloader(flows, SimpleNamespace(engine=None), lambda loaded: None).reload()  # type: ignore[arg-type]
    messages = [record.getMessage() for record in caplog.records]
    assert any("fetch in lookup:look_up failed" in message for message in messages), messages
    assert any("fetch in unsafe:look_up failed" in message for message in messages), messages
    assert any("template failed in broken:show" in message for message in messages), messages
    assert any("is a trigger of flow" in message for message in messages), messages
    assert any(f"from={mask(NUMBER)}" in message for message in messages), messages  # the route line, masked
    assert not any("forged" in message or "\n" + TYPED in message for message in messages)
    assert_private(formatted(caplog), TYPED)


def test_a_store_error_naming_the_number_is_masked(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                                   configured: None) -> None:
    """Redis names the sender's lock key in its StoreBusy error; the webhook logs it (and answers 503)."""
    import redis

    from bot.store import redis as redis_store

    monkeypatch.setattr(redis_store, "LOCK_WAIT_SECONDS", 0.2)
    caplog.set_level(logging.DEBUG)
    flows = write_flows(tmp_path / "flows", {"broken.yaml": BROKEN_FLOW})
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=redis_url, flows_dir=str(flows),
                        reload_flows=False)
    held = redis.Redis.from_url(redis_url)
    held.set(f"textflow:lock:{NUMBER}", "held by another process", px=10_000)
    with TestClient(create_app(settings, load_flows(flows))) as client:
        assert SignedClient(client).text("BROKEN", NUMBER).status_code == 503
    held.close()
    assert any("still held" in record.getMessage() for record in caplog.records)
    assert_private(formatted(caplog))


def test_the_bots_own_loggers_mask_without_configure_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Whoever configures logging (a test, a program embedding the bot), the bot's records are masked
    before any handler sees them: every logger under ``bot``, whoever created it."""
    caplog.set_level(logging.DEBUG)
    for name in ("bot.engine", "bot.route", "bot.webhook", "bot.some_new_module"):
        logging.getLogger(name).warning("number %s in %s", NUMBER, f"https://api.example/x/%2B{DIGITS}?q={TYPED}")
    try:
        raise RuntimeError(f"lock textflow:lock:{NUMBER} still held")
    except RuntimeError:
        logging.getLogger("bot.app").exception("unexpected error for whatsapp:%s", NUMBER)
    assert len(caplog.records) == 5
    assert_private(formatted(caplog), TYPED)
    assert "https://api.example/…" in caplog.text and "whatsapp:+1555…4321" in caplog.text


def test_uvicorn_and_other_libraries_are_masked_once_logging_is_configured(
        caplog: pytest.LogCaptureFixture, configured: None) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("uvicorn.error").error("Exception in ASGI application for %s", NUMBER)
    logging.getLogger("asyncio").warning("Task exception was never retrieved: http://h/%s", TYPED)
    assert_private(formatted(caplog), TYPED)


# -- the mask, at the formatter level ---------------------------------------------------------------

E164 = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def shapes(number: str) -> list[str]:
    """How a number shows up in what the bot logs: as is, WhatsApp, percent-encoded, spaced."""
    digits = number[1:]
    spaced = f"+{digits[:1]} {digits[1:4]}-{digits[4:]}"
    return [number, f"whatsapp:{number}", f"%2B{digits}", spaced]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(E164, TEXT, TEXT, st.integers(0, 3), st.sampled_from(["message", "argument", "exception"]))
def test_mask_hides_any_number_inside_any_message(number: str, before: str, after: str, shape: int,
                                                  where: str) -> None:
    assume(not before[-1:].isdigit() and not re.match(r"[ ().-]{0,2}\d", after))  # the number ends where it ends
    written = shapes(number)[shape]
    text = f"{before}{written}{after}"
    record = logging.LogRecord("bot.test", logging.WARNING, __file__, 1, "%s", None, None)
    if where == "message":
        record.msg = text.replace("%", "%%")
        record.args = ()
    elif where == "argument":
        record.msg, record.args = "said: %s", (text,)
    else:
        try:
            raise ValueError(text)
        except ValueError:
            record.msg, record.exc_info = "failed", sys.exc_info()
    logs.mask_record(record)
    line = FORMATTER.format(record)
    digits = number[1:]
    assert digits not in re.sub(r"[ ().-]", "", line.replace(before, "").replace(after, ""))
    assert written not in line
    assert digits[-2:] in line  # still tells senders apart


def test_mask_keeps_what_is_not_personal() -> None:
    assert logs.mask_text("from=+1555…4321 sid=SM0123456789abcdef0123456789abcdef ms=12.5") == \
        "from=+1555…4321 sid=SM0123456789abcdef0123456789abcdef ms=12.5"
    assert logs.mask_text("ms=1700000000.123 replies=3 order 123456") == "ms=1700000000.123 replies=3 order 123456"
    assert logs.mask_text("cannot reach the Twilio API at http://127.0.0.1:8900: refused") == \
        "cannot reach the Twilio API at http://127.0.0.1:8900: refused"
    assert logs.mask_text("GET https://user:pw@orders.example:8443/orders/42?q=x failed") == \
        "GET https://orders.example:8443/… failed"
    assert logs.mask_text(f"to {NUMBER}") == f"to {mask(NUMBER)}"


def test_the_mask_is_applied_once(caplog: pytest.LogCaptureFixture, configured: None) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("bot.route").info("from=%s", NUMBER)
    [record] = caplog.records
    assert record.getMessage() == f"from={mask(NUMBER)}"
