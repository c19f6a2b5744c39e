"""Pictures (MMS) everywhere a reply or a notification goes (issue 13, item 7): TwiML ``<Media>``
byte-for-byte as Twilio's SDK writes it, the REST API's ``MediaUrl`` through the REAL SDK to the
fake Twilio API, the answer a Twilio retry gets from every store (the store contract itself is in
tests/test_store.py), the inbound form, the logs, the Studio importer and lint's cost check."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from twilio.twiml.messaging_response import Message, MessagingResponse

from bot import studio
from bot.app import create_app
from bot.broadcast import Broadcast, Recipient
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import lint_paths, load_flows
from bot.inbox import Inbox
from bot.outbound import Outbox, send_for_turn
from bot.quiet_hours import QuietHours
from bot.segments import cost as segment_cost
from bot.settings import Settings
from bot.simulator import simulation
from bot.store import Retention, Store, open_store
from bot.twilio_inbound import (
    MAX_MEDIA,
    MAX_MESSAGE_CHARS,
    BadRequest,
    channel_of,
    outgoing_messages,
    parse_inbound,
    render_twiml,
)
from bot.twilio_media import is_media_url
from bot.types import Inbound, MediaText, OutboundMessage, media_of
from tests.conftest import PROGRAM_YAML, SignedClient, demo_fetcher
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, new_message_sid, twilio_form
from tests.test_broadcast import FakeClock
from tests.test_outbound import outbound_env, output_of, run_bot
from tests.test_studio import export
from tests.test_twilio_inbound import PROPERTY, XML_TEXT

USER = "+15557654321"
ONCALL = "+15550009999"
PHOTO = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
HOW_TO = "https://acme.example/help/how-to-photograph.png?size=large&lang=en"

DAMAGED = f"""\
flow: damaged
triggers: [DAMAGED]
start: ask
states:
  ask:
    say: "Sorry to hear that! Please send a photo of the damaged box."
    media: "{HOW_TO}"
    replies:
      - media: true
        save: photos
        go: thanks
    otherwise: "Please send a photo (MMS) of the box."
  thanks:
    say: "Thanks, we got your photo."
    notify:
      to: "{ONCALL}"
      say: "Damaged parcel reported by {{{{ sender }}}}"
      media: "{{{{ photos[0] }}}}"
"""


def sdk_twiml(replies: list[str]) -> str:
    """What Twilio's own MessagingResponse writes: a plain ``<Message>`` for a text, the nouns
    ``<Body>`` and ``<Media>`` for one with pictures."""
    response = MessagingResponse()
    for reply in replies:
        media = media_of(reply)
        if not media:
            response.message(reply)
            continue
        message = Message()
        if reply:
            message.body(reply)
        for url in media:
            message.media(url)
        response.append(message)
    return response.to_xml()


def messages_of(twiml: str) -> list[tuple[str, list[str]]]:
    """(text, media URLs) of each ``<Message>``, read back by an XML parser."""
    found = []
    for message in ElementTree.fromstring(twiml.encode("utf-8")):
        body = message.find("Body")
        text = (body.text or "") if body is not None else (message.text or "")
        found.append((text, [media.text or "" for media in message.findall("Media")]))
    return found


def flows_folder(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "program.yaml").write_text(PROGRAM_YAML, encoding="utf-8")
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


# -- TwiML ------------------------------------------------------------------------------------------

URL_TEXT = st.text(st.sampled_from("abc/?=&<>\"'%éß😀"), max_size=20).map(lambda path: f"https://cdn.example/{path}")
REPLY_WITH_MEDIA = st.builds(lambda text, media: MediaText(text, tuple(media)) if media else text,
                             XML_TEXT, st.lists(URL_TEXT, max_size=MAX_MEDIA)).filter(lambda r: r or media_of(r))


@PROPERTY
@given(st.lists(REPLY_WITH_MEDIA, max_size=4))
def test_twiml_with_media_is_byte_for_byte_messaging_response(replies: list[str]) -> None:
    assert render_twiml(replies).encode("utf-8") == sdk_twiml(replies).encode("utf-8")


def test_twiml_escapes_media_urls_and_allows_a_picture_without_text() -> None:
    replies = [MediaText("Tom & Jerry <3", (HOW_TO, PHOTO)), MediaText("", (PHOTO,)), "plain"]
    twiml = render_twiml(replies)
    assert twiml == sdk_twiml(replies)
    assert "size=large&amp;lang=en" in twiml
    assert messages_of(twiml) == [("Tom & Jerry <3", [HOW_TO, PHOTO]), ("", [PHOTO]), ("plain", [])]


def test_a_long_reply_split_keeps_its_pictures_on_the_first_piece() -> None:
    text = " ".join(["word"] * 450)  # 2,249 characters: an MMS of 1,600, then 5 SMS segments
    reply = MediaText(text, (HOW_TO, PHOTO))
    for twiml in (render_twiml([reply]), render_twiml(outgoing_messages([reply]))):
        messages = messages_of(twiml)
        assert [media for _, media in messages] == [[HOW_TO, PHOTO], []]
        assert all(0 < len(body) <= MAX_MESSAGE_CHARS for body, _ in messages)
        assert " ".join(body for body, _ in messages) == text


def test_a_message_carries_at_most_ten_pictures_that_twilio_can_fetch(caplog: pytest.LogCaptureFixture) -> None:
    urls = tuple(f"https://cdn.example/{n}.png" for n in range(12))
    typed = f"my number is {USER}, see https://private.example/me.png"  # a template rendered what someone typed
    caplog.set_level(logging.WARNING)
    [sent] = outgoing_messages([MediaText("Here you are", (typed, "", *urls))])
    assert media_of(sent) == urls[:MAX_MEDIA]
    assert render_twiml([sent]).count("<Media>") == MAX_MEDIA
    logged = caplog.text
    assert "dropped 2 picture(s)" in logged and "2 more were dropped" in logged
    assert USER not in logged and "private.example" not in logged and "cdn.example" not in logged


def test_whatsapp_gets_one_picture_per_message_the_text_with_the_first() -> None:
    reply = MediaText("Your boarding pass and seat map", (PHOTO, HOW_TO, "https://cdn.example/3.png"))
    messages = outgoing_messages([reply, "Have a good flight!"], channel_of("whatsapp:" + USER))
    assert [(str(message), media_of(message)) for message in messages] == [
        ("Your boarding pass and seat map", (PHOTO,)), ("", (HOW_TO,)), ("", ("https://cdn.example/3.png",)),
        ("Have a good flight!", ())]
    assert messages_of(render_twiml(messages))[1] == ("", [HOW_TO])


def test_a_text_with_pictures_counts_as_one_mms_in_the_turns_budget() -> None:
    long_caption = "x" * 1500  # ten SMS segments alone; one MMS with a picture
    nine_segments = "y" * (153 * 9)
    with_picture = outgoing_messages([MediaText(long_caption, (PHOTO,)), nine_segments])
    assert with_picture == [long_caption, nine_segments] and media_of(with_picture[0]) == (PHOTO,)
    [without] = outgoing_messages([long_caption, nine_segments])  # the plain text spends the whole budget
    assert without.endswith("...") and long_caption.startswith(without.removesuffix("..."))


def test_a_cut_at_the_budget_keeps_the_pictures_of_the_message_it_cuts() -> None:
    ten_segments = "z " * 765
    messages = outgoing_messages(["a" * 153 * 9, MediaText("Caption", (PHOTO,)), ten_segments])
    assert [media_of(message) for message in messages] == [(), (PHOTO,)]
    assert messages[1] == "Caption..."  # no room left for the next text: the last message says so


LONG_REPLY = st.builds(lambda text, media: MediaText(text, tuple(media)) if media else text,
                      st.lists(XML_TEXT, min_size=1, max_size=40).map(" ".join),
                      st.lists(URL_TEXT | st.sampled_from(["", "nope", "ftp://x.example/1"]), max_size=12))


@PROPERTY
@given(st.lists(LONG_REPLY, max_size=5), st.sampled_from([USER, "whatsapp:" + USER]))
def test_outgoing_messages_with_pictures_keep_every_limit(replies: list[str], sender: str) -> None:
    channel = channel_of(sender)
    messages = outgoing_messages(replies, channel)
    per_message = 1 if sender.startswith("whatsapp:") else MAX_MEDIA
    assert all(len(message) <= MAX_MESSAGE_CHARS and (message or media_of(message)) for message in messages)
    assert all(len(media_of(message)) <= per_message for message in messages)
    assert all(is_media_url(url) for message in messages for url in media_of(message))
    if sender.startswith("whatsapp:"):
        assert sum(map(len, messages)) <= 4096
    else:  # an MMS counts as one, a text as its segments
        assert sum(1 if media_of(m) else segment_cost(m).segments for m in messages) <= 10
    sent = [url for message in messages for url in media_of(message)]
    fetchable = [url for reply in replies for url in [u for u in media_of(reply) if is_media_url(u)][:MAX_MEDIA]]
    assert sent == fetchable[:len(sent)]  # in order; only a cut at the budget drops the last ones
    assert len(messages_of(render_twiml(messages))) == len(messages)


# -- the inbound form -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=6) | st.integers(-3, 15).map(str),
       st.dictionaries(st.integers(0, 12).map(lambda n: f"MediaUrl{n}"), st.text(max_size=30) | URL_TEXT))
def test_any_num_media_and_media_urls_are_read_or_refused_never_crash(num_media: str, urls: dict[str, str]) -> None:
    try:
        inbound = parse_inbound(twilio_form("", NumMedia=num_media, **urls))
    except BadRequest as error:
        # says which field, never echoes its value
        assert re.fullmatch(r"NumMedia is not a number|NumMedia must be between 0 and 10|"
                            r"MediaUrl\d+ is not a web address", str(error))
        return
    assert len(inbound.media) <= MAX_MEDIA
    assert all(is_media_url(url) for url in inbound.media)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "https://", "/Media/ME1",
                                 "https://x.example/a b.png", "https://[::1/x", "https://x.example:port/a"])
def test_a_media_url_that_is_no_web_address_is_a_bad_request(url: str) -> None:
    with pytest.raises(BadRequest, match="MediaUrl0 is not a web address"):
        parse_inbound(twilio_form("", NumMedia="1", MediaUrl0=url))


# -- the webhook and the REST API, through the real SDK to the fake Twilio -------------------------

@pytest.fixture
def damaged_app(fake_twilio: FakeTwilio, tmp_path: Path) -> Any:
    folder = flows_folder(tmp_path, damaged=DAMAGED)
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(folder), reload_flows=False, twilio_account_sid=ACCOUNT_SID,
                        twilio_from=BOT_NUMBER, twilio_api_base_url=fake_twilio.url)
    return lambda: TestClient(create_app(settings, load_flows(folder), fetcher=demo_fetcher()))


def test_a_photo_is_asked_for_with_a_picture_and_forwarded_to_staff(damaged_app: Any,
                                                                    fake_twilio: FakeTwilio) -> None:
    photo_sid = new_message_sid()
    with damaged_app() as client:
        bot = SignedClient(client)
        asked = bot.text("DAMAGED", USER)
        assert messages_of(asked.text) == [("Sorry to hear that! Please send a photo of the damaged box.", [HOW_TO])]
        assert asked.text == sdk_twiml([MediaText("Sorry to hear that! Please send a photo of the damaged box.",
                                                  (HOW_TO,))])
        mms = {"NumMedia": "1", "MediaUrl0": PHOTO, "MediaContentType0": "image/jpeg"}
        assert bot.replies("", USER, message_sid=photo_sid, **mms) == ["Thanks, we got your photo."]
        # Twilio retries the webhook: the recorded answer, and no second notify
        assert bot.replies("", USER, message_sid=photo_sid, **mms) == ["Thanks, we got your photo."]
    [created] = fake_twilio.attempts  # leaving the app waited for its background sends
    assert created.accepted and (created.to, created.body) == (ONCALL, f"Damaged parcel reported by {USER}")
    assert created.media == (PHOTO,)
    assert fake_twilio.messages[created.sid or ""]["num_media"] == "1"


def test_a_retried_webhook_gets_the_same_pictures_again(damaged_app: Any) -> None:
    sid = new_message_sid()
    with damaged_app() as client:
        bot = SignedClient(client)
        first, retry = bot.text("DAMAGED", USER, message_sid=sid), bot.text("DAMAGED", USER, message_sid=sid)
    assert retry.text == first.text and messages_of(first.text)[0][1] == [HOW_TO]


def test_an_mms_with_a_hostile_media_url_is_a_400(damaged_app: Any) -> None:
    with damaged_app() as client:
        response = SignedClient(client).text("", USER, NumMedia="1", MediaUrl0="javascript:alert(1)")
        assert response.status_code == 400 and "javascript" not in response.text
        assert SignedClient(client).text("", USER, NumMedia="10000").status_code == 400


async def test_send_for_turn_sends_media_url_and_records_it(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    inbound = Inbound(new_message_sid(), USER, to=BOT_NUMBER)
    try:
        await send_for_turn(outbox, inbound, "notify", [
            (ONCALL, MediaText("Photo from a customer", (PHOTO, HOW_TO))), (ONCALL, "Second note"),
            ("whatsapp:" + ONCALL, MediaText("", (PHOTO, HOW_TO)))])
        records = [await store.outbound(f"notify|{inbound.message_sid}|{index}") for index in range(4)]
    finally:
        await outbox.close()
        await store.close()
    created = fake_twilio.attempts
    assert [(attempt.to, attempt.body, attempt.media) for attempt in created] == [
        (ONCALL, "Photo from a customer", (PHOTO, HOW_TO)), (ONCALL, "Second note", ()),
        ("whatsapp:" + ONCALL, None, (PHOTO,)), ("whatsapp:" + ONCALL, None, (HOW_TO,))]  # no Body field sent
    assert all(attempt.accepted for attempt in created)
    assert [(record.body, record.media, record.state) for record in records if record is not None] == [
        ("Photo from a customer", (PHOTO, HOW_TO), "accepted"), ("Second note", (), "accepted"),
        ("", (PHOTO,), "accepted"), ("", (HOW_TO,), "accepted")]


async def test_the_fake_refuses_what_twilio_refuses(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    store = open_store("memory://")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        too_many = await outbox.send(OutboundMessage("a", USER, "x", media=tuple(f"https://c.example/{n}"
                                                                               for n in range(11))))
        not_a_url = await outbox.send(OutboundMessage("b", USER, "x", media=("ftp://c.example/1",)))
    finally:
        await outbox.close()
    assert (too_many.state, too_many.error_code) == ("failed", "21623")
    assert (not_a_url.state, not_a_url.error_code) == ("failed", "21620")


def test_send_command_attaches_pictures(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    env = outbound_env(fake_twilio, f"sqlite:///{tmp_path / 'bot.db'}")
    result = run_bot("send", "--to", USER, "", "--media", PHOTO, "--media", HOW_TO, cwd=tmp_path, env=env)
    assert result.returncode == 0, output_of(result)
    [created] = fake_twilio.attempts
    assert (created.body, created.media) == (None, (PHOTO, HOW_TO))
    refused = run_bot("send", "--to", USER, "hi", "--media", "pizza.png", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "--media 'pizza.png' is not a web address" in refused.stderr
    assert len(fake_twilio.attempts) == 1


# -- the recorded answer of a MessageSid, in every store --------------------------------------------

@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"
    opened = open_store(url, Retention(seconds=3600))
    yield opened
    await opened.close()


async def test_a_twilio_retry_is_answered_with_the_same_pictures(store: Store, tmp_path: Path) -> None:
    inbox = Inbox(store, Engine(load_flows(flows_folder(tmp_path, damaged=DAMAGED)), demo_fetcher()))
    asked = Inbound(new_message_sid(), USER, BOT_NUMBER, "DAMAGED")
    photo = Inbound(new_message_sid(), USER, BOT_NUMBER, "", (PHOTO,))
    first = [await inbox.receive(asked), await inbox.receive(photo)]
    again = [await inbox.receive(asked), await inbox.receive(photo)]
    assert [received.duplicate for received in again] == [True, True]
    assert [[(str(reply), media_of(reply)) for reply in received.replies] for received in again] == [
        [("Sorry to hear that! Please send a photo of the damaged box.", (HOW_TO,))],
        [("Thanks, we got your photo.", ())]]
    assert [received.replies for received in again] == [received.replies for received in first]
    assert isinstance(again[0].replies[0], MediaText)


async def test_purge_blanks_a_recorded_answer_with_pictures(store: Store, tmp_path: Path) -> None:
    inbox = Inbox(store, Engine(load_flows(flows_folder(tmp_path, damaged=DAMAGED)), demo_fetcher()))
    asked = Inbound(new_message_sid(), USER, BOT_NUMBER, "DAMAGED")
    await inbox.receive(asked)
    await store.purge(USER)
    assert (await store.snapshot(USER, asked.message_sid)).recorded_replies == ()


async def test_sqlite_reads_old_records_and_the_sweep_blanks_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = open_store(f"sqlite:///{path}", Retention(seconds=3600))
    try:
        db = sqlite3.connect(path, isolation_level=None)
        old = {"id": "x", "to": ONCALL, "body": "old", "broadcast": None, "state": "accepted", "sid": None,
               "reason": "", "status": None, "error_code": None, "from_number": "", "updated_at": 2e9}
        db.execute("INSERT INTO processed (message_sid, sender, body, replies, at) "
                   "VALUES ('SMold', ?, 'hi', '[\"plain\"]', 1000.0)", (USER,))
        db.execute("INSERT INTO outbound VALUES ('x', NULL, NULL, ?)", (json.dumps(old),))
        assert (await store.snapshot(USER, "SMold")).recorded_replies == ("plain",)
        assert (await store.outbound("x")) == OutboundMessage("x", ONCALL, "old", state="accepted",  # type: ignore
                                                              updated_at=2e9)
        inbox = Inbox(store, Engine(load_flows(flows_folder(tmp_path, damaged=DAMAGED)), demo_fetcher()))
        await inbox.receive(Inbound("SMnew", USER, BOT_NUMBER, "DAMAGED"))
        rows = db.execute("SELECT direction, body, media FROM transcript WHERE message_sid = 'SMnew' ORDER BY id")
        assert rows.fetchall() == [("in", "DAMAGED", None),
                                   ("out", "Sorry to hear that! Please send a photo of the damaged box.",
                                    json.dumps([HOW_TO]).replace(" ", ""))]
        swept = await store.sweep(10**10)
        assert swept.transcript_lines >= 2
        assert (await store.snapshot(USER, "SMnew")).recorded_replies in ((), None)
    finally:
        db.close()
        await store.close()


def test_an_old_transcript_view_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("""
        CREATE TABLE processed (message_sid TEXT NOT NULL UNIQUE, sender TEXT NOT NULL, body TEXT NOT NULL,
                                replies TEXT NOT NULL, at REAL NOT NULL);
        CREATE VIEW transcript (id, sender, direction, body, message_sid, at) AS
            SELECT rowid * 1000, sender, 'in', body, message_sid, at FROM processed;
        INSERT INTO processed VALUES ('SM1', '+1', 'hi', '[{"text": "pic", "media": ["https://c.example/1"]}]', 1.0);
    """)
    asyncio.run(open_store(f"sqlite:///{path}").close())
    assert db.execute("SELECT direction, body, media FROM transcript ORDER BY id").fetchall() == [
        ("in", "hi", None), ("out", "pic", '["https://c.example/1"]')]
    db.close()


# -- the Studio importer and lint ------------------------------------------------------------------

async def test_a_studio_widgets_media_url_is_sent_with_its_text(tmp_path: Path) -> None:
    data = export("send-message")
    data["states"][1]["properties"]["media_url"] = HOW_TO
    imported = studio.import_flow(data, studio.Options(name="send_message", triggers=("GO",)))
    folder = flows_folder(tmp_path, send_message=imported.flow_yaml())
    assert [str(problem) for problem in lint_paths([folder]) if problem.severity == "error"] == []
    async with simulation(load_flows(folder)) as sim:
        received = await sim.text("GO", USER)
    assert [media_of(reply) for reply in received.replies] == [(HOW_TO,), ()]


def test_lint_counts_a_text_with_pictures_as_one_mms(tmp_path: Path) -> None:
    long_text = "A long caption. " * 90  # 1,440 characters: ten SMS segments, one MMS
    flow = f"""\
flow: catalog
triggers: [CATALOG]
start: show
states:
  show:
    say: "{long_text}"
    media: "{HOW_TO}"
    go: too_long
  too_long:
    say: "{long_text * 2}"
    media: "{HOW_TO}"
    notify: {{to: "{ONCALL}", say: "{long_text}", media: "{HOW_TO}"}}
    go: end
"""
    problems = [str(problem) for problem in lint_paths([flows_folder(tmp_path, catalog=flow)])]
    assert not [problem for problem in problems if "SMS segments" in problem], problems
    [too_long] = [problem for problem in problems if "MMS" in problem]
    assert "catalog.yaml:10:" in too_long  # the too_long state's say
    assert "one MMS of at most 1,600 characters, but it has 2,880: the rest goes as separate SMS" in too_long


async def test_the_log_never_shows_a_pictures_address(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    async with simulation(load_flows(flows_folder(tmp_path, damaged=DAMAGED))) as sim:
        await sim.text("DAMAGED", USER)
        await sim.inbox.receive(Inbound(new_message_sid(), USER, BOT_NUMBER, "", (PHOTO,)))
        logging.getLogger("bot.test").warning("forwarding %s", PHOTO)  # should any code ever log one
    assert "MM1" not in caplog.text and "ME1" not in caplog.text and USER not in caplog.text
    assert "forwarding https://api.twilio.com/…" in caplog.text


PROMO = f"""\
flow: promo
start: offer
states:
  offer:
    say: ["Hi {{{{ name }}}}! Our spring catalog:", "Reply STOP to opt out."]
    media: ["{HOW_TO}", "{PHOTO}"]
    go: end
"""


async def test_a_broadcasts_opening_message_carries_the_start_states_pictures(fake_twilio: FakeTwilio,
                                                                             tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    clock = FakeClock(1_710_514_800.0)  # 2024-03-15 15:00 UTC: 11:00 in New York
    engine = Engine(load_flows(flows_folder(tmp_path, promo=PROMO)), demo_fetcher())
    try:
        report = await Broadcast("spring", "promo", store, engine, outbox, hours=QuietHours(), clock=clock.time,
                                 sleep=clock.sleep, show=lambda line: None).run([
            Recipient(2, "+12125550171", {"name": "Kim"}), Recipient(3, "whatsapp:+12125550172", {"name": "Bo"})])
        records = await store.broadcast_messages("spring")
    finally:
        await outbox.close()
        await store.close()
    assert report.sent == 2
    assert [(attempt.to, attempt.body, attempt.media) for attempt in fake_twilio.attempts] == [
        ("+12125550171", "Hi Kim! Our spring catalog:\nReply STOP to opt out.", (HOW_TO, PHOTO)),
        ("whatsapp:+12125550172", "Hi Bo! Our spring catalog:\nReply STOP to opt out.", (HOW_TO,))]
    assert sorted(record.media for record in records) == [(HOW_TO,), (HOW_TO, PHOTO)]
