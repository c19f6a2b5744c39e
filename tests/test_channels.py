"""Channels (issue 11, findings 14 and "replies split into any number of messages").

WhatsApp through Twilio: senders are ``whatsapp:+E164``, bodies up to 4,096 characters come in,
and answers go back to the ``whatsapp:`` address from a ``whatsapp:`` sender — in TwiML, and
through the REST API for deferred answers and timeout nudges (the real SDK against the fake
Twilio API). And whatever a flow renders, one turn never sends more than 10 SMS segments' worth
(a WhatsApp turn: 4,096 characters), in TwiML and through the REST API alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from twilio.base.exceptions import TwilioRestException

from bot import segments
from bot.app import create_app
from bot.fake_twilio import FakeTwilio, LoopbackServer
from bot.flows.loader import load_flows
from bot.outbound import Outbox, send_for_turn
from bot.phones import InvalidNumber, normalise_number
from bot.settings import Settings
from bot.store.memory import MemoryStore
from bot.twilio_inbound import MAX_MESSAGE_CHARS
from bot.twilio_outbound import rest_client
from bot.types import Inbound, OutboundMessage, OutboundState
from tests.conftest import SignedClient, write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN

WA_USER = "whatsapp:+15557654321"
WA_BOT = "whatsapp:+15550001111"  # the WhatsApp sender the person wrote to (inbound To)
SMS_FROM = "+15550007777"  # TWILIO_FROM
ONCALL = "+15550009999"
TURN_SEGMENTS = 10

ECHO_FLOW = """\
flow: echo
triggers: [ECHO]
start: ask
states:
  ask:
    say: "Say something."
    replies:
      - pattern: '(?s).+'
        save: said
        go: echo
  echo:
    say:
      - "You said: {{ said }}"
      - "And again: {{ said }}"
"""

NUDGE_FLOW = """\
flow: survey
triggers: [SURVEY]
start: ask
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        go: end
    otherwise: "1 to 5, please."
    timeout: {after: 1s, go: nudge}
  nudge:
    say: "Still there? Rate us 1-5 any time."
"""

SLOW_FLOW = """\
flow: slow
triggers: [SLOW]
start: lookup
states:
  lookup:
    fetch: {{url: "{url}/answer", save: result, timeout: 10s}}
    say: "The answer is {{{{ result.value }}}}."
"""

NOTIFY_FLOW = """\
flow: agent
triggers: [AGENT]
start: handed_over
states:
  handed_over:
    notify:
      to: "ONCALL"
      say: "Someone asks for a person."
    say: "Someone will answer shortly."
""".replace("ONCALL", ONCALL)


def settings_for(tmp_path: Path, flows: Path, fake: FakeTwilio | None = None, **extra: object) -> Settings:
    outbound: dict[str, object] = {} if fake is None else {
        "twilio_account_sid": ACCOUNT_SID, "twilio_from": SMS_FROM, "twilio_api_base_url": fake.url}
    return Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                    flows_dir=str(flows), reload_flows=False, **outbound, **extra)  # type: ignore[arg-type]


@pytest.fixture
def slow_api() -> Iterator[LoopbackServer]:
    async def answer(request: Request) -> JSONResponse:
        await asyncio.sleep(0.8)
        return JSONResponse({"value": 42})

    server = LoopbackServer(Starlette(routes=[Route("/answer", answer)]), name="slow-api").start()
    yield server
    server.stop()


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def turn_segments(messages: list[str]) -> int:
    return sum(segments.cost(message).segments for message in messages)


# -- WhatsApp, inbound --------------------------------------------------------------------------

def test_whatsapp_body_up_to_4096_characters_is_accepted_through_the_signed_webhook(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"echo.yaml": ECHO_FLOW})
    with TestClient(create_app(settings_for(tmp_path, flows), load_flows(flows))) as client:
        bot = SignedClient(client)
        assert bot.replies("ECHO", WA_USER, to=WA_BOT) == ["Say something."]
        long_text = ("word " * 800).strip()  # 3,999 characters: refused as SMS, fine on WhatsApp
        replies = bot.replies(long_text, WA_USER, to=WA_BOT)
        assert replies[0].startswith("You said: word word")
        assert all(len(reply) <= MAX_MESSAGE_CHARS for reply in replies)  # Twilio's Body limit holds
        assert bot.text("x" * 4097, WA_USER, to=WA_BOT).status_code == 400
        assert bot.text("x" * 1601, "+15551234567").status_code == 400  # SMS keeps Twilio's 1,600


def test_whatsapp_turn_is_capped_at_4096_characters_not_at_sms_segments(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"echo.yaml": ECHO_FLOW})
    with TestClient(create_app(settings_for(tmp_path, flows), load_flows(flows))) as client:
        bot = SignedClient(client)
        bot.replies("ECHO", WA_USER, to=WA_BOT)
        said = "x" * 1500
        replies = bot.replies(said, WA_USER, to=WA_BOT)
        assert replies[:2] == [f"You said: {said}", f"And again: {said}"]  # 3,000+ characters: all sent
        assert sum(map(len, replies)) <= 4096


# -- WhatsApp, through the REST API ---------------------------------------------------------------

def test_whatsapp_numbers_are_valid_for_sending() -> None:
    assert normalise_number("whatsapp:+15557654321") == "whatsapp:+15557654321"
    assert normalise_number("+15557654321") == "+15557654321"
    # a national-format WhatsApp number is read in DEFAULT_REGION (issue 12: no longer refused)
    assert normalise_number("whatsapp:15557654321") == "whatsapp:+15557654321"
    for bad in ("whatsapp:", "whatsapp:+0555", "sms:+15557654321", "WhatsApp:+1555 1"):
        with pytest.raises(InvalidNumber):
            normalise_number(bad)


def test_whatsapp_deferred_answer_goes_to_the_whatsapp_address(tmp_path: Path, fake_twilio: FakeTwilio,
                                                               slow_api: LoopbackServer) -> None:
    flows = write_flows(tmp_path / "flows", {"slow.yaml": SLOW_FLOW.format(url=slow_api.url)})
    settings = settings_for(tmp_path, flows, fake_twilio, slow_reply_seconds=0.2)
    with TestClient(create_app(settings, load_flows(flows))) as client:
        assert SignedClient(client).replies("SLOW", WA_USER, to=WA_BOT) == ["One moment, I'm looking that up…"]
        wait_until(lambda: fake_twilio.attempts)
    assert [(a.to, a.from_, a.body, a.status) for a in fake_twilio.attempts] == [
        (WA_USER, WA_BOT, "The answer is 42.", 201)]


def test_whatsapp_timeout_nudge_goes_to_the_whatsapp_address(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    flows = write_flows(tmp_path / "flows", {"survey.yaml": NUDGE_FLOW})
    with TestClient(create_app(settings_for(tmp_path, flows, fake_twilio), load_flows(flows))) as client:
        assert SignedClient(client).replies("SURVEY", WA_USER, to=WA_BOT) == ["Rate us 1-5."]
        wait_until(lambda: fake_twilio.attempts)
    assert [(a.to, a.from_, a.body, a.status) for a in fake_twilio.attempts] == [
        (WA_USER, WA_BOT, "Still there? Rate us 1-5 any time.", 201)]


def test_notify_from_a_whatsapp_conversation_to_an_sms_number_comes_from_the_sms_sender(
        tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    flows = write_flows(tmp_path / "flows", {"agent.yaml": NOTIFY_FLOW})
    with TestClient(create_app(settings_for(tmp_path, flows, fake_twilio), load_flows(flows))) as client:
        assert SignedClient(client).replies("AGENT", WA_USER, to=WA_BOT) == ["Someone will answer shortly."]
        wait_until(lambda: fake_twilio.attempts)
    assert [(a.to, a.from_, a.status) for a in fake_twilio.attempts] == [(ONCALL, SMS_FROM, 201)]


async def test_a_message_to_a_whatsapp_address_without_a_sender_goes_from_the_whatsapp_twin(
        fake_twilio: FakeTwilio) -> None:
    outbox = Outbox(MemoryStore(), fake_twilio.outbound_settings(from_number=SMS_FROM))
    try:
        sent = await outbox.send(OutboundMessage("wa|1", WA_USER, "Hello on WhatsApp"))
    finally:
        await outbox.close()
    assert sent.state == OutboundState.ACCEPTED, sent.reason
    assert [(a.to, a.from_) for a in fake_twilio.created] == [(WA_USER, f"whatsapp:{SMS_FROM}")]


async def test_a_whatsapp_reply_from_a_bare_number_is_moved_to_the_whatsapp_channel(
        fake_twilio: FakeTwilio) -> None:
    outbox = Outbox(MemoryStore(), fake_twilio.outbound_settings(from_number=SMS_FROM))
    try:
        sent = await outbox.send(OutboundMessage("wa|2", WA_USER, "Hello", from_number="+15550001111"))
    finally:
        await outbox.close()
    assert sent.state == OutboundState.ACCEPTED, sent.reason
    assert [(a.to, a.from_) for a in fake_twilio.created] == [(WA_USER, "whatsapp:+15550001111")]


def test_the_fake_accepts_whatsapp_addresses_as_twilio_does(fake_twilio: FakeTwilio) -> None:
    """``whatsapp:+E164`` To and From are fine; From and To on different channels are Twilio's 21910."""
    client = rest_client(fake_twilio.outbound_settings())
    sent = client.messages.create(to=WA_USER, from_=WA_BOT, body="hi")
    assert (sent.to, sent.from_) == (WA_USER, WA_BOT)
    for to, from_ in ((WA_USER, SMS_FROM), ("+15557654321", WA_BOT)):
        with pytest.raises(TwilioRestException) as refused:
            client.messages.create(to=to, from_=from_, body="hi")
        assert refused.value.code == 21910
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to="whatsapp:15557654321", from_=WA_BOT, body="hi")
    assert refused.value.code == 21211


# -- the cap on a turn ---------------------------------------------------------------------------

def test_a_turn_sends_at_most_10_segments_in_twiml(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"echo.yaml": ECHO_FLOW})
    with TestClient(create_app(settings_for(tmp_path, flows), load_flows(flows))) as client:
        bot = SignedClient(client)
        bot.replies("ECHO")
        said = " ".join(f"word{n}" for n in range(200))  # 1,489 characters, echoed twice: 20 segments
        replies = bot.replies(said)
        assert turn_segments(replies) <= TURN_SEGMENTS
        assert replies[0].startswith("You said: word0 word1")
        assert replies[-1].endswith("...")  # cut, and it shows


async def test_a_turn_sends_at_most_10_segments_through_the_rest_api(fake_twilio: FakeTwilio) -> None:
    outbox = Outbox(MemoryStore(), fake_twilio.outbound_settings(from_number=SMS_FROM))
    inbound = Inbound(message_sid="SM" + "7" * 32, sender="+15557654321", to=SMS_FROM, body="x")
    long_reply = "A lookup answered with far too much text. " * 100  # 4,300 characters
    try:
        await send_for_turn(outbox, inbound, "later", [("+15557654321", long_reply), ("+15557654321", "more")])
    finally:
        await outbox.close()
    bodies = [attempt.body or "" for attempt in fake_twilio.created]
    assert all(attempt.status == 201 for attempt in fake_twilio.attempts)  # none over Twilio's 1,600
    assert turn_segments(bodies) <= TURN_SEGMENTS
    assert bodies[0].startswith("A lookup answered")
