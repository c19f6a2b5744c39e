"""10,000 fuzzed webhook requests against a real server process: never a 5xx, never a crash,
and senders the fuzz does not touch keep exactly the state they had."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHIPPED_FLOWS, ServerProcess, replies_of
from tests.signed_webhooks import AUTH_TOKEN, sign, twilio_form

pytestmark = pytest.mark.slow  # 10,000 fuzzed requests to a real server process

PUBLIC_URL = "https://bot.example.test"
UNTOUCHED = [f"+1999555{n:04d}" for n in range(5)]
FUZZ_SENDERS = [f"+1555000{n:04d}" for n in range(20)]
EXAMPLES = 10_000
seen: Counter[int] = Counter()
refused: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_URL": PUBLIC_URL, "DEV_MODE": "0",
                             "STORE_URL": f"sqlite:///{folder / 'bot.db'}", "FLOWS_DIR": str(SHIPPED_FLOWS),
                             "LOG_LEVEL": "error", "RELOAD_FLOWS": "0"}, cwd=folder).start()
    process.db = folder / "bot.db"  # type: ignore[attr-defined]
    yield process
    output = process.stop()
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def snapshot(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT sender, flow, state, vars, version FROM conversations "
                                  "WHERE sender LIKE '+1999555%' ORDER BY sender").fetchall()


def send(client: httpx.Client, server: ServerProcess, form: dict[str, str]) -> list[str]:
    content = urlencode(form)
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": sign(PUBLIC_URL + "/sms", form)}
    response = client.post(server.url + "/sms", content=content, headers=headers)
    assert response.status_code == 200, response.text
    return replies_of(response.text)


FIELDS = list(twilio_form("x"))
long_text = st.builds(lambda char, count: char * count, st.characters(exclude_categories=("Cs",)),
                      st.integers(1500, 3000))
text = st.text(max_size=50) | long_text | st.sampled_from(
    ["STOP", "help", "STATUS", "123456", "JOIN", "yes", "", " ", "%", "&", "=", "\x00", "😀", "ＳＴＯＰ"])
# Every strategy the request draws from is made once, here: one made inside ``requests`` is made
# again and validated by hypothesis for each of the 10,000 examples (about a third of the test's time)
senders = st.sampled_from(FUZZ_SENDERS)
fields_to_change = st.lists(st.sampled_from(FIELDS), max_size=4)
field_actions = st.sampled_from(["drop", "replace", "huge"])
huge_lengths = st.integers(65, 70_000)
extra_names = st.text(max_size=20)
mangles = st.sampled_from(["none", "none", "none", "bytes", "percent", "truncate", "random"])
short_bytes, shorter_bytes, body_bytes = st.binary(max_size=40), st.binary(max_size=20), st.binary(max_size=300)
bad_escapes = st.sampled_from([b"", b"G", b"ZZ", b"C3", b"FF"])
content_types = st.sampled_from([
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
    "application/json", "multipart/form-data; boundary=x", "text/plain", "",
    "application/x-www-form-urlencoded;;;"])
signatures = st.sampled_from(["valid", "valid", "forged", "missing", "garbage"])
header_bytes = st.integers(0x20, 0xFF).filter(lambda byte: byte != 0x7F)  # what HTTP lets through
garbage_values = st.lists(header_bytes, min_size=1, max_size=40)
methods = st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, str | bytes], bytes]:
    """(method, headers, body): from plausible Twilio webhooks to garbage."""
    form = twilio_form(draw(text), draw(senders))
    for field in draw(fields_to_change):
        action = draw(field_actions)
        if action == "drop":
            form.pop(field, None)
        else:
            form[field] = draw(text) if action == "replace" else "9" * draw(huge_lengths)
    if draw(st.booleans()):
        form[draw(extra_names)] = draw(text)
    body = urlencode(form).encode()
    mangle = draw(mangles)
    if mangle == "bytes":
        body += b"&Body=" + draw(short_bytes)
    elif mangle == "percent":
        body += b"&Body=" + quote_from_bytes(draw(shorter_bytes)).encode() + b"%" + draw(bad_escapes)
    elif mangle == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif mangle == "random":
        body = draw(body_bytes)
    headers: dict[str, str | bytes] = {"Content-Type": draw(content_types)}
    signature = draw(signatures)
    if signature == "valid":
        headers["X-Twilio-Signature"] = sign(PUBLIC_URL + "/sms", form)
    elif signature == "forged":
        headers["X-Twilio-Signature"] = sign(PUBLIC_URL + "/sms", form, token="not-the-token")
    elif signature == "garbage":
        garbage = bytes(draw(garbage_values)).strip(b" ")
        headers["X-Twilio-Signature"] = garbage or b"x"  # HTTP forbids surrounding spaces in a value
    method = draw(methods)
    return method, headers, body


def test_untouched_senders_start_mid_flow(server: ServerProcess, client: httpx.Client) -> None:
    for who in UNTOUCHED:
        assert send(client, server, twilio_form("JOIN", who))[0].startswith("Welcome")
        assert send(client, server, twilio_form("Ada", who))[0].startswith("Thanks, Ada!")


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_fuzzed_webhooks_never_5xx(server: ServerProcess, client: httpx.Client,
                                   request: tuple[str, dict[str, str | bytes], bytes]) -> None:
    method, headers, body = request
    headers = {key: value for key, value in headers.items() if value or key != "Content-Type"}
    try:
        response = client.request(method, server.url + "/sms", content=body, headers=headers)
    except httpx.LocalProtocolError as error:  # a header httpx itself refuses to send
        refused[str(error)[:60]] += 1
        return
    seen[response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text, method, headers, body[:200])


def test_after_the_fuzz(server: ServerProcess, client: httpx.Client) -> None:
    print(f"\nfuzz: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}, refused {refused}")
    assert sum(seen.values()) == EXAMPLES and not refused
    assert not any(status >= 500 for status in seen)
    before = [("+1999555" + f"{n:04d}", "signup", "confirm") for n in range(5)]
    assert [row[:3] for row in snapshot(server.db)] == before  # type: ignore[attr-defined]
    assert all(row[4] == 2 for row in snapshot(server.db))  # type: ignore[attr-defined]
    # and the server still works
    assert send(client, server, twilio_form("yes", UNTOUCHED[0]))[0].startswith("You're signed up, Ada!")
