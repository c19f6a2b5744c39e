"""The Conversations page (bot/console/conversations.py): who is where now (masked, and as JSON for
the live refresh), one sender's transcript with each turn's trace, a reset through the turn
pipeline, the opt-out list and each number's consent history; hostile texts only ever values."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.console.sender_ids import SenderIds
from tests.conftest import write_flows
from tests.console_pages import console_bot, csrf, links_to_senders, text
from tests.test_console_security import PASSWORD

ADA, BO, CY = "+15551230001", "+15551230002", "+15551230003"
HOSTILE = '<script>alert("x")</script> "quoted" & \nsecond line'

CHASE = """\
flow: chase
triggers: [PARCEL]
start: ask
expires_after: 2h
states:
  ask:
    say: "Is anyone home to sign for the parcel? Reply YES or NO."
    replies:
      - answer: "yes"
        say: "Great, the driver is on the way."
        go: end
    otherwise: "Please reply YES or NO."
    timeout: {after: 10m, go: chase}
  chase:
    say: "Still there? Reply YES if someone can sign."
    replies:
      - answer: "yes"
        say: "Great, the driver is on the way."
        go: end
"""

QUIZ = """\
flow: quiz
triggers: [QUIZ]
start: ask
states:
  ask:
    say: "Capital of France?"
    replies:
      - any_of: [paris]
        say: "Right!"
        go: end
    otherwise: "Not quite. Capital of France?"
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    flows = write_flows(tmp_path / "flows", {"chase.yaml": CHASE, "quiz.yaml": QUIZ})
    with console_bot(tmp_path, flows) as client:
        yield client


def test_the_live_list_shows_who_is_where_with_numbers_masked(client: TestClient) -> None:
    text(client, ADA, "PARCEL")
    text(client, BO, "QUIZ")
    text(client, CY, "HELP")  # answered, but in no flow: not listed
    page = client.get("/console/conversations")
    assert page.status_code == 200
    assert "+1555…0001" in page.text and "+1555…0002" in page.text and "+1555…0003" not in page.text
    for number in (ADA, BO, CY):
        assert number not in page.text  # never in full, not even in a link
    assert "<code>chase</code>" in page.text and "<code>ask</code>" in page.text
    assert '<script src="/console/static/console/conversations.js" defer></script>' in page.text
    assert len(links_to_senders(page.text)) == 2

    live = client.get("/console/conversations/live.json")
    assert live.status_code == 200 and live.headers["content-type"] == "application/json"
    assert not any(number in live.text for number in (ADA, BO, CY))
    rows = live.json()["items"]
    assert [(row["number"], row["flow"], row["state"]) for row in rows] == [
        ("+1555…0002", "quiz", "ask"), ("+1555…0001", "chase", "ask")]  # who wrote last, first
    assert rows[0]["idle_seconds"] < 60 and rows[0]["idle"].endswith("s") and not rows[0]["expired"]
    assert rows[0]["href"] == f"/console/conversations/{rows[0]['id']}"

    only_chase = client.get("/console/conversations/live.json", params={"flow": "chase"}).json()["items"]
    assert [row["number"] for row in only_chase] == ["+1555…0001"]
    first = client.get("/console/conversations/live.json", params={"limit": 1}).json()
    second = client.get("/console/conversations/live.json", params={"limit": 1, "cursor": first["cursor"]}).json()
    assert [row["number"] for row in first["items"] + second["items"]] == ["+1555…0002", "+1555…0001"]
    assert second["cursor"] is None
    assert client.get("/console/conversations/live.json", params={"cursor": "nonsense"}).status_code == 400


def test_the_list_follows_people_as_they_move(client: TestClient) -> None:
    text(client, ADA, "PARCEL")
    assert [row["state"] for row in client.get("/console/conversations/live.json").json()["items"]] == ["ask"]
    text(client, ADA, "yes")  # the flow ends
    assert client.get("/console/conversations/live.json").json()["items"] == []


def test_the_console_pages_need_a_login(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"chase.yaml": CHASE})
    with console_bot(tmp_path, flows) as client:
        client.post("/console/logout", headers={"X-CSRF-Token": csrf(client)})
        for path in ("/console/conversations", "/console/conversations/live.json", "/console/conversations/opt-outs"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")


def test_a_sender_page_has_the_transcript_with_each_turns_trace(client: TestClient) -> None:
    text(client, ADA, "PARCEL")
    text(client, ADA, HOSTILE)
    link = links_to_senders(client.get("/console/conversations").text)[0]
    assert ADA not in link and "1230001" not in link
    page = client.get(link)
    assert page.status_code == 200 and ADA not in page.text and "+1555…0001" in page.text
    assert "Is anyone home to sign for the parcel? Reply YES or NO." in page.text
    assert "<code>idle</code> → <code>chase:ask</code> <span class=\"rule\">trigger PARCEL</span>" in page.text
    assert "<code>chase:ask</code> → <code>chase:ask</code> <span class=\"rule\">otherwise</span>" in page.text
    # What they texted is a value: escaped, never markup (the newline kept, shown by the style)
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &#34;quoted&#34; &amp; \nsecond line" in page.text
    assert "Next timer" in page.text and "Reset this conversation" in page.text


def test_a_sender_link_that_was_not_made_here_is_refused(client: TestClient) -> None:
    assert client.get("/console/conversations/" + SenderIds("another password").id_of(ADA)).status_code == 404
    assert client.get("/console/conversations/not-an-id").status_code == 404
    own = SenderIds(PASSWORD).id_of(ADA)
    tampered = own[:-2] + ("AA" if not own.endswith("AA") else "BB")
    assert client.get(f"/console/conversations/{tampered}").status_code == 404


def test_reset_ends_the_conversation_as_if_it_expired(client: TestClient) -> None:
    text(client, ADA, "PARCEL")
    link = links_to_senders(client.get("/console/conversations").text)[0]
    assert client.post(link + "/reset").status_code == 403  # no CSRF token
    answer = client.post(link + "/reset", data={"csrf": csrf(client)})
    assert answer.status_code == 303 and answer.headers["location"] == link + "?reset=1"
    page = client.get(answer.headers["location"])
    assert "The conversation was reset" in page.text and "<code>idle</code>" in page.text
    assert "Reset by an operator" in page.text
    assert "<code>chase:ask</code> → <code>idle</code> <span class=\"rule\">reset by an operator</span>" in page.text
    assert "Next timer" not in page.text  # its timeout is disarmed, not merely left to go stale
    assert client.get("/console/conversations/live.json").json()["items"] == []
    # Nothing was texted; their next message starts afresh (here: the program's fallback, not "Please reply")
    assert "Please reply YES or NO." not in text(client, ADA, "maybe")


def test_the_opt_out_list_and_a_numbers_consent_history(client: TestClient) -> None:
    text(client, ADA, "STOP")
    text(client, BO, "STOP")
    text(client, BO, "START")
    text(client, CY, 'stop texting me <b>"now"</b>')  # a revocation in their own words
    page = client.get("/console/conversations/opt-outs")
    assert page.status_code == 200
    assert "+1555…0001" in page.text and "+1555…0003" in page.text and "+1555…0002" not in page.text
    assert ADA not in page.text and CY not in page.text
    links = links_to_senders(page.text)
    assert len(links) == 2
    history = client.get(links[0]).text  # the most recent first: CY
    assert "opted out" in history and "phrase" in history
    assert "&lt;b&gt;&#34;now&#34;&lt;/b&gt;" in history and "<b>" not in history
    bo = client.get(f"/console/conversations/{SenderIds(PASSWORD).id_of(BO)}").text
    assert bo.count("<td>keyword</td>") == 2 and "opted in" in bo and "subscribed" in bo


def test_an_expired_conversation_is_marked(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"chase.yaml": CHASE.replace("expires_after: 2h", "expires_after: 1s")})
    with console_bot(tmp_path, flows) as client:
        text(client, ADA, "PARCEL")
        time.sleep(1.1)
        assert client.get("/console/conversations/live.json").json()["items"][0]["expired"] is True
        assert '<span class="badge warn">expired</span>' in client.get("/console/conversations").text


def test_sender_ids_are_opaque_stable_and_unforgeable() -> None:
    ids = SenderIds(PASSWORD)
    for number in (ADA, "whatsapp:+447700900123", "+1"):
        made = ids.id_of(number)
        assert ids.number_of(made) == number and made == ids.id_of(number)
        assert number.lstrip("+") not in made and all(c.isalnum() or c in "-_" for c in made)
    assert ids.id_of(ADA) != ids.id_of(BO)
    assert SenderIds("another password").number_of(ids.id_of(ADA)) is None
    assert ids.number_of("") is None and ids.number_of("x" * 1000) is None and ids.number_of("!!!") is None


LOOKUP = """\
flow: lookup
triggers: [LOOK]
start: fetching
states:
  fetching:
    fetch: {url: "https://orders.example/slow", save: found, fallback: "down"}
    say: "found {{ found.x }}"
    go: wait_here
  wait_here:
    say: "Anything else?"
    replies:
      - any_of: ["no"]
        go: end
"""


async def test_a_reset_waits_for_a_turn_under_way_and_loses_nothing(tmp_path: Path) -> None:
    """A reset is a turn of its own (Inbox.reset): it takes the sender's lock, so a message being
    handled (here, waiting for a slow lookup) finishes and is saved first, then the reset applies."""
    from bot.engine import Engine
    from bot.flows.loader import load_flows
    from bot.inbox import Inbox
    from bot.store import open_store
    from bot.types import Inbound
    from tests.test_inbox import CannedFetcher

    gate = asyncio.Event()
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    inbox = Inbox(store, Engine(load_flows(write_flows(tmp_path / "flows", {"lookup.yaml": LOOKUP})),
                                CannedFetcher({"x": 1}, gate), env={}))
    try:
        message = asyncio.create_task(inbox.receive(Inbound("SM1", ADA, body="LOOK")))
        await asyncio.sleep(0.05)
        reset = asyncio.create_task(inbox.reset(ADA))
        await asyncio.sleep(0.05)
        assert not message.done() and not reset.done()  # the reset waits its turn
        gate.set()
        assert (await message).replies == ("found 1", "Anything else?")
        assert [step.rule for step in (await reset).trace] == ["reset by an operator"]
        assert not (await store.snapshot(ADA, "")).conversation.active
        turns = await store.recent_turns(ADA)
        assert [turn.message_sid[:6] for turn in turns] == ["SM1", "reset:"]
    finally:
        await store.close()
