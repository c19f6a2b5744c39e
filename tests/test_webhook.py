"""POST /sms over HTTP against the in-process app: signatures, the form, compliance words,
replays and TwiML answers, with the real SQLite store checked afterwards."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.datastructures import ImmutableMultiDict
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from bot.app import create_app
from bot.flows.loader import load_flows
from bot.segments import cost as segment_cost
from bot.settings import Settings
from bot.twilio_inbound import EMPTY_TWIML, MAX_MESSAGE_CHARS, MAX_TURN_SEGMENTS
from tests.conftest import SHIPPED_FLOWS, SignedClient, counting_flow, demo_fetcher, replies_of, write_flows
from tests.signed_webhooks import AUTH_TOKEN, new_message_sid, twilio_form

URL = "http://testserver/sms"
SENDER = "+15551234567"
PROGRAM = load_flows(SHIPPED_FLOWS).program
ASK_NUMBER = "What's your order number? (6 digits, like 123456)"
NOT_A_NUMBER = "Order numbers have 6 digits, like 123456. Try again, or text MENU to leave."
ORDER_123456 = "Order 123456 is shipped. It's on its way and should arrive in 2-3 days."
FUZZ = hypothesis_settings(max_examples=60, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# -- helpers --------------------------------------------------------------------------------------

def signature(url: str, params: Mapping[str, str] | ImmutableMultiDict, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post(client: TestClient, body: bytes, *, path: str = "/sms", sig: str | bytes | None = None,
         content_type: str = "application/x-www-form-urlencoded", **headers: str) -> httpx.Response:
    """POST raw ``body``; keyword headers are spelled with ``_`` for ``-`` (X_Forwarded_Host=...)."""
    sent: dict[str, str | bytes] = {"Content-Type": content_type}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    if sig is not None:
        sent["X-Twilio-Signature"] = sig
    return client.post("http://testserver" + path, content=body, headers=sent)


def post_signed(client: TestClient, form: Mapping[str, str], *, path: str = "/sms",
                signed_url: str | None = None, **headers: str) -> httpx.Response:
    """POST ``form`` to ``path``, signed by Twilio for ``signed_url`` (default: the URL requested)."""
    signed_url = signed_url or "http://testserver" + path
    return post(client, urlencode(form).encode(), path=path, sig=signature(signed_url, form), **headers)


def is_silent(response: httpx.Response) -> bool:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return response.text == EMPTY_TWIML


def db_path(settings: Settings) -> str:
    assert settings.store_url.startswith("sqlite:///")
    return settings.store_url.removeprefix("sqlite:///")


def query(settings: Settings, sql: str, *args: object) -> list[tuple]:
    with closing(sqlite3.connect(db_path(settings))) as db:
        return db.execute(sql, args).fetchall()


def processed_sids(settings: Settings) -> set[str]:
    return {sid for (sid,) in query(settings, "SELECT message_sid FROM processed")}


def inbound_bodies(settings: Settings) -> list[str]:
    rows = query(settings, "SELECT body FROM transcript WHERE direction = 'in' ORDER BY id")
    return [body for (body,) in rows]


def conversation_row(settings: Settings, sender: str = SENDER) -> tuple | None:
    rows = query(settings, "SELECT flow, state, version FROM conversations WHERE sender = ?", sender)
    return rows[0] if rows else None


def opted_out(settings: Settings, sender: str = SENDER) -> bool:
    return bool(query(settings, "SELECT 1 FROM opt_outs WHERE sender = ?", sender))


@contextmanager
def running(settings: Settings, **client_options: bool) -> Iterator[TestClient]:
    app = create_app(settings, load_flows(settings.flows_dir), fetcher=demo_fetcher())
    with TestClient(app, **client_options) as client:
        yield client


def make_settings(tmp_path: Path, flows_dir: Path = SHIPPED_FLOWS, **changes: object) -> Settings:
    return Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                    flows_dir=str(flows_dir), reload_flows=False, **changes)


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# -- the happy path -------------------------------------------------------------------------------

def test_help_answers_twiml(bot: SignedClient) -> None:
    response = bot.text("HELP")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')
    assert "Msg &amp; data" in response.text and "Msg & data" in PROGRAM.help
    assert replies_of(response.text) == [PROGRAM.help]


def test_status_conversation(bot: SignedClient, settings: Settings) -> None:
    assert bot.replies("status") == [ASK_NUMBER]
    assert bot.replies("12345") == [NOT_A_NUMBER]
    assert bot.replies("my order is late") == [NOT_A_NUMBER]
    assert conversation_row(settings)[:2] == ("order_status", "ask_number")
    assert bot.replies("123456") == [ORDER_123456]
    assert conversation_row(settings)[:2] == (None, None)
    assert bot.replies("123456") == [PROGRAM.fallback]  # the flow ended


def test_idle_message_matching_nothing_gets_the_fallback(bot: SignedClient) -> None:
    replies = bot.replies("what's the weather?")
    assert replies == [PROGRAM.fallback] and "HELP" in replies[0]


def test_mms_with_empty_body_while_idle_gets_the_fallback(bot: SignedClient, settings: Settings) -> None:
    replies = bot.replies("", NumMedia="2",
                          MediaUrl0="https://api.twilio.com/m/ME1", MediaContentType0="image/jpeg",
                          MediaUrl1="https://api.twilio.com/m/ME2", MediaContentType1="image/png")
    assert replies == [PROGRAM.fallback] and "HELP" in replies[0]
    assert inbound_bodies(settings) == [""]


def test_healthz(bot: SignedClient) -> None:
    response = bot.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # public: what runs is shown at /healthz/details, locally


def test_repeated_form_fields_are_signed_like_the_sdk_does(bot: SignedClient) -> None:
    form = twilio_form("HELP")
    pairs = [*form.items(), ("Body", "STATUS")]  # the first value is the one read
    body = urlencode(pairs).encode()
    response = post(bot.client, body, sig=signature(URL, ImmutableMultiDict(pairs)))
    assert replies_of(response.text) == [PROGRAM.help]
    # A signature over the first values only does not cover the appended field.
    assert post(bot.client, body, sig=signature(URL, dict(pairs[:-1]))).status_code == 403


# -- forged and refused requests ------------------------------------------------------------------

def forged(kind: str, form: dict[str, str]) -> tuple[bytes, str | None]:
    """The body and X-Twilio-Signature of a request Twilio did not send."""
    if kind == "wrong token":
        return urlencode(form).encode(), signature(URL, form, token="not-" + AUTH_TOKEN)
    if kind == "tampered Body":
        return urlencode(form).encode(), signature(URL, {**form, "Body": "HELP"})
    if kind == "tampered From":
        return urlencode(form).encode(), signature(URL, {**form, "From": "+15550000000"})
    if kind == "another URL":
        return urlencode(form).encode(), signature("https://evil.example/sms", form)
    if kind == "another path":
        return urlencode(form).encode(), signature("http://testserver/other", form)
    if kind == "added field":
        return urlencode({**form, "Extra": "1"}).encode(), signature(URL, form)
    if kind == "missing":
        return urlencode(form).encode(), None
    if kind == "empty":
        return urlencode(form).encode(), ""
    if kind == "garbage":
        return urlencode(form).encode(), "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA=="
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["wrong token", "tampered Body", "tampered From", "another URL",
                                  "another path", "added field", "missing", "empty", "garbage"])
def test_forged_request_is_refused_and_changes_nothing(bot: SignedClient, settings: Settings,
                                                        kind: str) -> None:
    assert bot.replies("STATUS") == [ASK_NUMBER]
    before = (conversation_row(settings), processed_sids(settings), inbound_bodies(settings))
    sid = new_message_sid()
    body, sig = forged(kind, twilio_form("MENU", SENDER, message_sid=sid))  # MENU would leave the flow
    response = post(bot.client, body, sig=sig)
    assert response.status_code == 403
    assert "X-Twilio-Signature" in response.text
    assert (conversation_row(settings), processed_sids(settings), inbound_bodies(settings)) == before
    assert sid not in processed_sids(settings)
    # The next signed message sees the flow as if the forgery never happened, even with its MessageSid.
    assert bot.replies("123456", message_sid=sid) == [ORDER_123456]


def test_forged_compliance_word_does_not_opt_out(bot: SignedClient, settings: Settings) -> None:
    body, sig = forged("tampered Body", twilio_form("STOP"))
    assert post(bot.client, body, sig=sig).status_code == 403
    assert not opted_out(settings)
    assert bot.replies("HELP") == [PROGRAM.help]


@pytest.mark.parametrize("content_type", ["json", "multipart", "text/plain", "none",
                                          "application/x-www-form-urlencoded-but-not", "application/xml"])
def test_wrong_content_type_is_415(bot: SignedClient, settings: Settings, content_type: str) -> None:
    form = twilio_form("HELP")
    headers = {"X-Twilio-Signature": signature(URL, form)}
    if content_type == "json":
        response = bot.client.post(URL, json=form, headers=headers)
    elif content_type == "multipart":
        response = bot.client.post(URL, data=form, files={"MediaUrl0": ("a.jpg", b"\xff\xd8")},
                                   headers=headers)
    elif content_type == "none":
        response = bot.client.post(URL, content=urlencode(form).encode(), headers=headers)
    else:
        response = bot.client.post(URL, content=urlencode(form).encode(),
                                   headers={**headers, "Content-Type": content_type})
    assert response.status_code == 415, response.text
    assert "application/x-www-form-urlencoded" in response.text
    assert processed_sids(settings) == set()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded; charset=UTF-8",
                                          "Application/X-WWW-Form-URLEncoded",
                                          " application/x-www-form-urlencoded ;"])
def test_form_content_type_variants_are_accepted(bot: SignedClient, content_type: str) -> None:
    form = twilio_form("HELP")
    response = post(bot.client, urlencode(form).encode(), sig=signature(URL, form), content_type=content_type)
    assert replies_of(response.text) == [PROGRAM.help]


def padded_form(body_bytes: int) -> dict[str, str]:
    """A signed-able Twilio form whose url-encoded body is exactly ``body_bytes`` long."""
    form = twilio_form("HELP")
    room = body_bytes - len(urlencode(form).encode()) - len("&Pad=")
    assert room >= 0
    form["Pad"] = "x" * room
    assert len(urlencode(form).encode()) == body_bytes
    return form


def test_body_at_the_limit_is_read_and_one_byte_more_is_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=4096)
    with running(settings) as client:
        assert replies_of(post_signed(client, padded_form(4096)).text) == [PROGRAM.help]
        response = post_signed(client, padded_form(4097))
        assert response.status_code == 413
        assert "4096" in response.text
        assert len(processed_sids(settings)) == 1


def test_oversized_body_is_413(bot: SignedClient, settings: Settings) -> None:
    form = padded_form(settings.max_body_bytes + 1)
    assert post_signed(bot.client, form).status_code == 413
    # also without Content-Length (chunked): the stream is cut off at the limit
    chunks = [b"Pad=", *[b"x" * 1024] * (settings.max_body_bytes // 1024 + 1)]
    response = bot.client.post(URL, content=iter(chunks), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature(URL, {})})
    assert response.status_code == 413
    assert processed_sids(settings) == set()


VALID_TAIL = b"&From=%2B15551234567&MessageSid=SM" + b"1" * 32


@pytest.mark.parametrize("body", [
    b"Body=%FF" + VALID_TAIL,  # percent-encoded byte that is not UTF-8
    b"Body=caf%C3" + VALID_TAIL,  # truncated UTF-8 sequence
    b"Body=%ED%A0%80" + VALID_TAIL,  # an encoded surrogate
    b"Body=\xff" + VALID_TAIL,  # a raw non-UTF-8 byte
    b"Body=caf\xc3\xa9" + VALID_TAIL,  # raw non-ASCII (valid UTF-8, but forms are percent-encoded)
    b"Body=hi&From" + VALID_TAIL,  # a field without '='
    b"Body=hi&&" + VALID_TAIL,
    b"&".join(b"F%d=x" % n for n in range(201)) + VALID_TAIL,  # more fields than Twilio ever sends
], ids=["pct-FF", "pct-truncated", "pct-surrogate", "raw-FF", "raw-utf8", "no-equals", "empty-field",
        "fields"])
def test_malformed_form_body_is_400(bot: SignedClient, settings: Settings, body: bytes) -> None:
    response = post(bot.client, body, sig=signature(URL, {}))
    assert response.status_code == 400
    assert response.text == "malformed form body\n"
    assert processed_sids(settings) == set()


def test_stray_percent_is_read_literally_and_still_signed(bot: SignedClient, settings: Settings) -> None:
    # '%ZZ' is not a percent-escape; like browsers and urllib it is kept as typed. The signature
    # covers the decoded value, so nothing can be smuggled past it.
    form = twilio_form("50%ZZ off")
    body = urlencode(form).replace("50%25ZZ", "50%ZZ").encode()
    assert b"50%ZZ+off" in body
    assert post(bot.client, body, sig=signature(URL, {**form, "Body": "50%25ZZ off"})).status_code == 403
    assert replies_of(post(bot.client, body, sig=signature(URL, form)).text) == [PROGRAM.fallback]
    assert inbound_bodies(settings) == ["50%ZZ off"]


@pytest.mark.parametrize(("drop", "reason"), [
    (("From",), "missing From"),
    (("MessageSid", "SmsMessageSid", "SmsSid"), "missing MessageSid"),
])
def test_missing_from_or_message_sid_is_400(bot: SignedClient, settings: Settings, drop: tuple[str, ...],
                                            reason: str) -> None:
    form = {k: v for k, v in twilio_form("HELP").items() if k not in drop}
    response = post_signed(bot.client, form)
    assert response.status_code == 400
    assert response.text == reason + "\n"
    assert processed_sids(settings) == set()


@pytest.mark.parametrize(("extra", "reason"), [
    ({"NumMedia": "lots"}, "NumMedia is not a number"),
    ({"NumMedia": "11"}, "NumMedia must be between 0 and 10"),
    ({"Body": "x" * (MAX_MESSAGE_CHARS + 1)}, "Body longer than 1600 characters"),
    ({"From": "+1555\x001234"}, "From is not a valid value"),
])
def test_unusable_fields_are_400_with_the_reason(bot: SignedClient, extra: dict[str, str],
                                                 reason: str) -> None:
    response = post_signed(bot.client, {**twilio_form("hi"), **extra})
    assert response.status_code == 400
    assert response.text == reason + "\n"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(bot: SignedClient, method: str) -> None:
    assert bot.client.request(method, URL).status_code == 405


BAD_HOSTS = ["testserver:abc", "testserver:99999", "[::1", "a]b"]


def test_arbitrary_bodies_never_500(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, max_body_bytes=512), raise_server_exceptions=False) as client:

        @FUZZ
        @given(st.one_of(st.binary(max_size=600),
                         st.lists(st.tuples(st.text(max_size=8), st.text(max_size=20)), max_size=8)
                         .map(lambda pairs: urlencode(pairs).encode()),
                         st.lists(st.sampled_from([b"Body=", b"From=", b"%", b"%F", b"%FF", b"&", b"=", b"+",
                                                   b"\xc3", b"\xa9", b"a", b";", b"\x00"]), max_size=30)
                         .map(b"".join)),
               st.sampled_from([None, "", "x", "bm90IGEgc2lnbmF0dXJl", "sïg".encode()]),
               st.sampled_from(["testserver", "testserver:8000", *BAD_HOSTS]))
        def check(body: bytes, sig: str | bytes | None, host: str) -> None:
            response = post(client, body, sig=sig, host=host)
            assert response.status_code in {400, 403, 413}, (body, response.status_code, response.text)

        check()


ANY_VALUE = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


def test_arbitrary_signed_forms_never_500(tmp_path: Path) -> None:
    with running(make_settings(tmp_path), raise_server_exceptions=False) as client:

        words = st.sampled_from(["STOP", "HELP", "STATUS", "yes", "123456"])
        optional = {"From": ANY_VALUE, "MessageSid": ANY_VALUE, "NumMedia": ANY_VALUE, "MediaUrl0": ANY_VALUE,
                    "To": ANY_VALUE, "OptOutType": st.sampled_from(["STOP", "START", "HELP", "", "x"])}

        @FUZZ
        @given(st.fixed_dictionaries({"Body": st.one_of(ANY_VALUE, words)}, optional=optional))
        def check(form: dict[str, str]) -> None:
            response = post_signed(client, form)
            assert response.status_code in {200, 400}, (form, response.status_code, response.text)
            if response.status_code == 200:
                replies_of(response.text)  # well-formed TwiML

        check()


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_unparsable_host_header_is_refused_not_500(tmp_path: Path, host: str) -> None:
    with running(make_settings(tmp_path), raise_server_exceptions=False) as client:
        form = twilio_form("HELP")
        response = post(client, urlencode(form).encode(), sig=signature(URL, form), host=host)
        assert response.status_code == 403


def test_unparsable_forwarded_host_is_refused_not_500(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, trust_proxy=True), raise_server_exceptions=False) as client:
        form = twilio_form("HELP")
        response = post(client, urlencode(form).encode(), sig=signature(URL, form),
                        X_Forwarded_Proto="https", X_Forwarded_Host="bot.example.com:https")
        assert response.status_code == 403


def test_non_ascii_signature_is_refused_not_500(tmp_path: Path) -> None:
    with running(make_settings(tmp_path), raise_server_exceptions=False) as client:
        form = twilio_form("HELP")
        response = client.post(URL, content=urlencode(form).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "sïgnature".encode()})
        assert response.status_code == 403


# -- replays --------------------------------------------------------------------------------------

@pytest.fixture
def counting(tmp_path: Path) -> Iterator[tuple[SignedClient, Settings]]:
    settings = make_settings(tmp_path, write_flows(tmp_path / "flows", {"counting.yaml": counting_flow()}))
    with running(settings) as client:
        yield SignedClient(client), settings


def test_replayed_message_sid_gets_the_same_reply_and_advances_nothing(
        counting: tuple[SignedClient, Settings]) -> None:
    bot, settings = counting
    start, first, second = new_message_sid(), new_message_sid(), new_message_sid()
    assert bot.replies("COUNT", message_sid=start) == ["0"]
    assert bot.replies("tick", message_sid=first) == ["1"]
    assert bot.replies("tick", message_sid=first) == ["1"]
    assert bot.replies("tick", message_sid=first) == ["1"]
    assert bot.replies("something else entirely", message_sid=first) == ["1"]  # the recorded reply
    assert bot.replies("COUNT", message_sid=start) == ["0"]  # does not restart the count
    assert conversation_row(settings)[:2] == ("counting", "n1")
    assert bot.replies("tick", message_sid=second) == ["2"]
    assert bot.replies("tick") == ["3"]
    assert len(processed_sids(settings)) == 4
    assert inbound_bodies(settings) == ["COUNT", "tick", "tick", "tick"]


def test_replayed_stop_answers_the_recorded_confirmation(bot: SignedClient, settings: Settings) -> None:
    sid = new_message_sid()
    assert bot.replies("STOP", message_sid=sid) == [PROGRAM.opt_out]
    assert bot.replies("STOP", message_sid=sid) == [PROGRAM.opt_out]  # Twilio retried: same answer
    assert is_silent(bot.text("STOP"))  # a new STOP is not confirmed twice
    assert query(settings, "SELECT COUNT(*) FROM transcript WHERE direction = 'out'") == [(1,)]


# -- compliance -----------------------------------------------------------------------------------

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
SPELLINGS = {
    "lower": str.lower,
    "padded": lambda w: f" {w.capitalize()}! ",
    "upper": str.upper,
    "full-width": lambda w: full_width(w.upper()),
    "dot": lambda w: w.lower() + ".",
}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("word", OPT_OUT)
def test_opt_out_word_confirms_once_then_silence(bot: SignedClient, settings: Settings, word: str,
                                                 spelling: str) -> None:
    text = SPELLINGS[spelling](word)
    assert bot.replies(text) == [PROGRAM.opt_out]
    assert opted_out(settings)
    for later in (text, word, "STATUS", "hello", "yes please", "y"):
        assert is_silent(bot.text(later)), later
    assert is_silent(bot.text("", NumMedia="1", MediaUrl0="https://api.twilio.com/m/ME1"))
    for help_word in ("HELP", "info"):  # CTIA: HELP is answered whatever the subscription
        assert bot.replies(help_word) == [PROGRAM.help]
    assert opted_out(settings)
    assert bot.replies("START") == [PROGRAM.opt_in]
    assert bot.replies("HELP") == [PROGRAM.help]


@pytest.mark.parametrize("text", ["START", "start", " Start! ", full_width("START"), "UNSTOP", "unstop.",
                                  full_width("unstop"), "yes", "YES", " Yes! ", full_width("YES")])
def test_opt_in_words_while_opted_out(bot: SignedClient, settings: Settings, text: str) -> None:
    assert bot.replies("STOP") == [PROGRAM.opt_out]
    assert bot.replies(text) == [PROGRAM.opt_in]
    assert not opted_out(settings)
    assert bot.replies("HELP") == [PROGRAM.help]
    assert bot.replies("STATUS") == [ASK_NUMBER]


@pytest.mark.parametrize("text", ["yes", "YES", " Yes! "])
def test_yes_is_not_an_opt_in_when_not_opted_out(bot: SignedClient, settings: Settings, text: str) -> None:
    assert bot.replies(text) == [PROGRAM.fallback]
    assert bot.replies("STOP") == [PROGRAM.opt_out]
    assert bot.replies(text) == [PROGRAM.opt_in]
    assert bot.replies(text) == [PROGRAM.fallback]  # subscribed again: YES is an ordinary word
    assert not opted_out(settings)


def test_yes_inside_a_flow_is_the_flows_answer(bot: SignedClient) -> None:
    assert bot.replies("JOIN") == ["Welcome to Acme Orders updates! What's your first name?"]
    assert bot.replies("Ann") == ["Thanks, Ann! Sign you up for shipping updates? Reply YES or NO."]
    assert bot.replies("yes") == ["You're signed up, Ann! We'll text you when your orders ship.",
                                  "Reply STOP at any time to opt out."]


@pytest.mark.parametrize("text", ["HELP", "help", " Help? ", full_width("HELP"), "help.", "INFO", "info",
                                  " Info! ", full_width("info")])
def test_help_mid_flow_answers_help_and_the_flow_continues(bot: SignedClient, settings: Settings,
                                                          text: str) -> None:
    assert bot.replies("STATUS") == [ASK_NUMBER]
    assert bot.replies(text) == [PROGRAM.help]
    assert conversation_row(settings)[:2] == ("order_status", "ask_number")
    assert bot.replies("123456") == [ORDER_123456]


def test_help_in_the_signup_confirmation_keeps_the_name(bot: SignedClient) -> None:
    bot.replies("JOIN")
    assert bot.replies("Ann") == ["Thanks, Ann! Sign you up for shipping updates? Reply YES or NO."]
    assert bot.replies("INFO") == [PROGRAM.help]
    assert bot.replies("no") == ["No problem, Ann. You're not signed up. Text JOIN any time."]


@pytest.mark.parametrize("word", ["STOP", "cancel", "End.", "QUIT"])
def test_stop_mid_flow_ends_the_conversation(bot: SignedClient, settings: Settings, word: str) -> None:
    assert bot.replies("STATUS") == [ASK_NUMBER]
    assert bot.replies(word) == [PROGRAM.opt_out]
    assert conversation_row(settings)[:2] == (None, None)
    assert is_silent(bot.text("123456"))
    assert bot.replies("START") == [PROGRAM.opt_in]
    assert bot.replies("123456") == [PROGRAM.fallback]  # the order flow does not resume


def test_twilio_opt_out_type_stop_is_recorded_and_not_answered(bot: SignedClient, settings: Settings) -> None:
    assert bot.replies("STATUS") == [ASK_NUMBER]
    assert is_silent(bot.text("STOP", OptOutType="STOP"))  # Twilio already confirmed it
    assert opted_out(settings)
    assert conversation_row(settings)[:2] == (None, None)
    for later in ("123456", "STATUS"):
        assert is_silent(bot.text(later)), later
    assert bot.replies("HELP") == [PROGRAM.help]  # HELP is answered whatever the subscription
    assert opted_out(settings)
    assert is_silent(bot.text("START", OptOutType="START"))  # Twilio answered this one too
    assert not opted_out(settings)
    assert bot.replies("123456") == [PROGRAM.fallback]
    assert bot.replies("HELP") == [PROGRAM.help]


def test_twilio_opt_out_type_with_a_custom_keyword(bot: SignedClient, settings: Settings) -> None:
    # Advanced Opt-Out can have its own keywords; OptOutType is what counts, not the body.
    assert is_silent(bot.text("arrêt", OptOutType="STOP"))
    assert opted_out(settings)


def test_twilio_opt_out_type_help_is_not_answered_twice(bot: SignedClient, settings: Settings) -> None:
    assert bot.replies("STATUS") == [ASK_NUMBER]
    assert is_silent(bot.text("HELP", OptOutType="HELP"))
    assert not opted_out(settings)
    assert bot.replies("123456") == [ORDER_123456]


# -- where the signature URL comes from -----------------------------------------------------------

def signed_status(client: TestClient, path: str, signed_url: str, **headers: str) -> int:
    """The status of a HELP posted to ``path`` and signed by Twilio for ``signed_url``."""
    return post_signed(client, twilio_form("HELP"), path=path, signed_url=signed_url, **headers).status_code


def test_public_url_is_the_signed_url(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, public_url="https://bot.example.com")) as client:
        status = partial(signed_status, client)
        assert status("/sms", "https://bot.example.com/sms") == 200
        assert status("/sms", "https://bot.example.com:443/sms") == 200
        assert status("/sms", "http://testserver/sms") == 403  # the Host the request came to
        assert status("/sms", "http://bot.example.com/sms") == 403
        assert status("/sms?tenant=acme&x=a%20b", "https://bot.example.com/sms?tenant=acme&x=a%20b") == 200
        assert status("/sms?tenant=acme", "https://bot.example.com/sms") == 403
        assert status("/sms?tenant=acme", "http://testserver/sms?tenant=acme") == 403
        # forwarded headers do not matter when PUBLIC_URL says where Twilio called
        assert status("/sms", "https://evil.example/sms", X_Forwarded_Proto="https",
                      X_Forwarded_Host="evil.example") == 403
        assert status("/sms", "https://bot.example.com/sms", X_Forwarded_Proto="http",
                      X_Forwarded_Host="evil.example") == 200


def test_public_url_with_a_path_prefix(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, public_url="https://example.com/bot")) as client:
        assert signed_status(client, "/sms", "https://example.com/bot/sms") == 200
        assert signed_status(client, "/sms", "https://example.com/sms") == 403


def test_trust_proxy_uses_forwarded_proto_and_host(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, trust_proxy=True)) as client:
        status = partial(signed_status, client)
        forwarded = {"X_Forwarded_Proto": "https", "X_Forwarded_Host": "bot.example.com"}
        assert status("/sms", "https://bot.example.com/sms", **forwarded) == 200
        assert status("/sms", "https://bot.example.com:443/sms", **forwarded) == 200
        assert status("/sms", "http://testserver/sms", **forwarded) == 403
        assert status("/sms?a=1", "https://bot.example.com/sms?a=1", **forwarded) == 200
        assert status("/sms?a=1", "https://bot.example.com/sms", **forwarded) == 403
        # a chain of proxies: the first (client-side) value counts
        assert status("/sms", "https://bot.example.com/sms", X_Forwarded_Proto="https, http",
                      X_Forwarded_Host="bot.example.com, internal:8080") == 200
        # only the scheme forwarded: the Host header gives the host
        assert status("/sms", "https://testserver/sms", X_Forwarded_Proto="https") == 200
        # no forwarded headers: the URL as received
        assert status("/sms", "http://testserver/sms") == 200


def test_without_settings_the_url_as_received_is_signed(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        status = partial(signed_status, client)
        forwarded = {"X_Forwarded_Proto": "https", "X_Forwarded_Host": "bot.example.com"}
        assert status("/sms", "https://bot.example.com/sms", **forwarded) == 403  # proxy headers not trusted
        assert status("/sms", "http://testserver/sms", **forwarded) == 200
        assert status("/sms", "http://testserver:80/sms") == 200
        assert status("/sms?a=1&b=two%20words", "http://testserver/sms?a=1&b=two%20words") == 200
        assert status("/sms?a=1&b=two%20words", "http://testserver/sms?a=1&b=two words") == 403
        assert status("/sms?a=1&b=two%20words", "http://testserver/sms") == 403
        assert status("/sms", "http://testserver/sms?a=1") == 403
        assert status("/sms", "http://other-host/sms", host="other-host") == 200


# -- stale state and long replies -----------------------------------------------------------------

@pytest.mark.parametrize(("flow", "state"), [("retired_flow", "ask"), ("order_status", "no_such_state")])
def test_stored_conversation_in_a_missing_flow_or_state_is_reset(bot: SignedClient, settings: Settings,
                                                                 flow: str, state: str) -> None:
    bot.client.get("/healthz")  # the store (and its schema) exists while the app runs
    with closing(sqlite3.connect(db_path(settings))) as db:
        db.execute("INSERT INTO conversations (sender, flow, state, vars, updated_at, version) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (SENDER, flow, state, json.dumps({"order": "123456"}), time.time(), 3))
        db.commit()
    replies = bot.replies("123456")  # not the order lookup of the stale state, and not a crash
    assert replies == [PROGRAM.reset] and "HELP" in replies[0]
    assert conversation_row(settings) == (None, None, 4)
    assert bot.replies("123456") == [PROGRAM.fallback]  # reset once, then an ordinary idle sender
    assert bot.replies("STATUS") == [ASK_NUMBER]
    assert bot.replies("123456") == [ORDER_123456]


def one_state_flow(name: str, trigger: str, say: str) -> str:
    return f"flow: {name}\ntriggers: [{trigger}]\nstart: s\nstates:\n  s:\n    say: {json.dumps(say)}\n"


LONG_TEXT = " ".join(f"Word{n:04d}" for n in range(600)) + " & <done>"


def test_long_reply_is_split_into_several_messages(tmp_path: Path) -> None:
    """Split at Twilio's 1,600 characters, and (issue 11) capped at 10 segments a turn: a text that
    long is cut once, visibly, instead of becoming any number of billed messages."""
    flows = write_flows(tmp_path / "flows", {
        "long.yaml": one_state_flow("long", "LONG", LONG_TEXT),
        "solid.yaml": one_state_flow("solid", "SOLID", "x" * 3500),
    })
    with running(make_settings(tmp_path, flows)) as client:
        bot = SignedClient(client)
        messages = bot.replies("LONG")
        assert len(messages) == 1
        assert all(0 < len(message) <= MAX_MESSAGE_CHARS for message in messages)
        assert sum(segment_cost(message).segments for message in messages) == MAX_TURN_SEGMENTS
        assert messages[-1].endswith("...")
        kept = messages[0].removesuffix("...")
        assert LONG_TEXT.startswith(kept + " ")  # cut at a space, no word broken
        assert bot.replies("SOLID") == ["x" * 1527 + "..."]  # no whitespace: a hard cut at 10 segments


def test_store_unavailable_answers_503_not_500(tmp_path: Path) -> None:
    """Redis down: Twilio (with #rc retries) and operators get a clear, temporary 503."""
    from bench.servers import free_port
    from bot.store import open_store

    settings = Settings(twilio_auth_token=AUTH_TOKEN, flows_dir=str(SHIPPED_FLOWS))
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    app = create_app(settings, load_flows(SHIPPED_FLOWS), store=store, fetcher=demo_fetcher())
    with TestClient(app) as client:
        response = SignedClient(client).text("HELP")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
