"""The Simulator page (bot/console/simulator.py, bot/simulated_senders.py): texts through the
running bot's inbox from a simulated number, with each reply's trace; pictures; a wait that fires
that sender's timers only; nothing ever reaching Twilio; CSRF; hostile texts as values."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bot.engine import Engine
from bot.flows.loader import load_flows
from bot.inbox import Inbox
from bot.outbound import Outbox, send_for_turn
from bot.simulated_numbers import is_simulated, new_simulated_number
from bot.simulator import SimulatedClock, simulation
from bot.store import open_store
from bot.types import Inbound, OutboundMessage, OutboundState
from tests.conftest import SHIPPED_FLOWS, write_flows
from tests.console_pages import console_bot, post_json, text
from tests.signed_webhooks import ACCOUNT_SID
from tests.test_wait import NUDGE

SIM = "+19995550142"
OTHER_SIM = "+19995550199"
REAL = "+15551234567"
STAFF = "+15550000000"
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
    notify: {to: "+15550000000", say: "{{ sender }} has not answered about the parcel."}
    replies:
      - answer: "yes"
        say: "Great, the driver is on the way."
        go: end
    timeout: {after: 20m, go: give_up}
  give_up:
    say: "We'll try again tomorrow."
"""

DAMAGED = """\
flow: damaged
triggers: [DAMAGED]
start: ask
states:
  ask:
    say: "Please send a photo of the damaged box."
    media: https://acme.example/help/how-to-photograph.png
    replies:
      - media: true
        save: photos
        go: thanks
    otherwise: "Please send a photo (MMS) of the box."
  thanks:
    say: "Thanks, we got your photo."
    notify: {to: "+15550000000", say: "Damaged parcel reported by {{ sender }}", media: "{{ photos[0] }}"}
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    return write_flows(tmp_path / "flows", {"chase.yaml": CHASE, "damaged.yaml": DAMAGED, "nudge.yaml": NUDGE})


@pytest.fixture
def client(tmp_path: Path, flows: Path, fake_twilio: Any) -> Iterator[TestClient]:
    """The console with outbound messages configured (to the fake Twilio): nothing may reach it."""
    with console_bot(tmp_path, flows, twilio_account_sid=ACCOUNT_SID, twilio_from="+15550001111",
                     twilio_api_base_url=fake_twilio.url) as client:
        client.get("/console/simulator")  # the CSRF cookie
        yield client
    assert fake_twilio.created == []


def send(client: TestClient, body: str, sender: str = SIM, media: list[str] | None = None) -> Any:
    answer = post_json(client, "/console/simulator/send", {"from": sender, "body": body, "media": media or []})
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait(client: TestClient, duration: str, sender: str = SIM) -> Any:
    answer = post_json(client, "/console/simulator/wait", {"from": sender, "duration": duration})
    assert answer.status_code == 200, answer.text
    return answer.json()


def said(turns: list[dict[str, Any]]) -> list[str]:
    return [reply["text"] for turn in turns for reply in turn["replies"]]


def test_the_page_is_a_phone_from_a_simulated_number(client: TestClient) -> None:
    page = client.get("/console/simulator")
    assert page.status_code == 200
    number = re.search(r'id="sim-from" value="([^"]+)"', page.text)
    assert number is not None and is_simulated(number.group(1))
    assert '<script src="/console/static/console/simulator.js" defer></script>' in page.text
    assert "<script>" not in page.text  # no inline script: the CSP allows only the console's files
    assert 'id="sim-send"' in page.text and 'id="sim-wait"' in page.text and 'id="sim-media"' in page.text
    chosen = client.get("/console/simulator", params={"from": OTHER_SIM}).text
    assert f'value="{OTHER_SIM}"' in chosen
    assert f'value="{REAL}"' not in client.get("/console/simulator", params={"from": REAL}).text


def test_help_answers_with_the_help_text_and_its_trace(client: TestClient) -> None:
    answer = send(client, "HELP")
    [turn] = answer["turns"]
    assert turn["kind"] == "simulated" and turn["body"] == "HELP"
    assert said([turn]) == ["Test Program: text COUNT to count. Reply STOP to opt out."]
    assert turn["trace"] == [{"rule": "compliance HELP", "before": "idle", "after": "idle"}]
    assert answer["state"]["where"] == "idle" and answer["state"]["simulated_number"] == SIM
    # The same turn is in the store, as the webhook's would be, with its trace
    stored = client.get("/console/simulator/turns", params={"from": SIM}).json()["turns"]
    assert [(t["sid"], t["trace"]) for t in stored] == [(turn["sid"], turn["trace"])]


def test_a_flow_moves_and_the_sender_shows_in_the_live_list(client: TestClient) -> None:
    answer = send(client, "PARCEL")
    assert said(answer["turns"]) == ["Is anyone home to sign for the parcel? Reply YES or NO."]
    assert answer["turns"][0]["trace"][0] == {"rule": "trigger PARCEL", "before": "idle", "after": "chase:ask"}
    state = answer["state"]
    assert state["where"] == "chase:ask" and state["timer"]["state"] == "ask" and state["timer"]["in"] == "9m"
    live = client.get("/console/conversations/live.json").json()["items"]
    assert [(row["number"], row["simulated"], row["state"]) for row in live] == [("+1999…0142", True, "ask")]
    assert live[0]["href"] == state["href"]


def test_only_simulated_numbers_may_be_used(client: TestClient) -> None:
    for number in (REAL, "+12025550142", "+199955501420", "whatsapp:+15551234567", ""):
        answer = post_json(client, "/console/simulator/send", {"from": number, "body": "HELP"})
        assert answer.status_code == 400, number
        assert "simulated" in answer.json()["error"] and REAL not in answer.text
    assert post_json(client, "/console/simulator/wait", {"from": REAL, "duration": "1h"}).status_code == 400
    assert client.get("/console/simulator/turns", params={"from": REAL}).status_code == 400
    assert client.get("/console/conversations/live.json").json()["items"] == []
    whatsapp = send(client, "HELP", sender="whatsapp:" + SIM)  # a simulated WhatsApp sender
    assert said(whatsapp["turns"])


def test_every_post_needs_the_csrf_token(client: TestClient) -> None:
    for path, payload in (("send", {"from": SIM, "body": "PARCEL"}), ("wait", {"from": SIM, "duration": "1h"}),
                          ("reset", {"from": SIM})):
        answer = post_json(client, f"/console/simulator/{path}", payload, with_token=False)
        assert answer.status_code == 403, path
    assert client.get("/console/simulator/turns", params={"from": SIM}).json()["turns"] == []


def test_pictures_go_in_and_come_out(client: TestClient) -> None:
    first = send(client, "DAMAGED")
    assert first["turns"][0]["replies"][0]["media"] == [
        {"url": "https://acme.example/help/how-to-photograph.png",
         "href": "https://acme.example/help/how-to-photograph.png", "inline": False}]
    photo = "https://example.com/box.jpg?size=large&x=1"
    answer = send(client, "", media=[photo])
    [turn] = answer["turns"]
    assert turn["media"] == [{"url": photo, "href": photo, "inline": False}]
    assert said([turn]) == ["Thanks, we got your photo."]
    assert turn["trace"] == [{"rule": "a picture", "before": "damaged:ask", "after": "damaged:thanks"}]
    # the flow's notify (with the picture) is shown here, masked, and never sent (the fixture checks Twilio)
    assert turn["notified"] == [{"to": "+1555…0000", "text": "Damaged parcel reported by +19995550142"}]

    too_many = [f"https://e.example/{n}" for n in range(11)]
    for bad in (["javascript:alert(1)"], ["https://example.com/a b.jpg"], too_many):
        refused = post_json(client, "/console/simulator/send", {"from": SIM, "body": "", "media": bad})
        assert refused.status_code == 400 and "picture" in refused.json()["error"]


def test_wait_fires_that_senders_timers_only(client: TestClient, fake_twilio: Any) -> None:
    send(client, "PARCEL")
    text(client, REAL, "PARCEL")  # a real person, in the same state, with the same timer
    send(client, "PARCEL", sender=OTHER_SIM)  # and another simulated sender
    assert wait(client, "5m")["turns"] == []  # not due yet
    fired = wait(client, "5m")["turns"]
    assert said(fired) == ["Still there? Reply YES if someone can sign."]
    assert fired[0]["kind"] == "timer" and fired[0]["after"] == "5m"
    assert fired[0]["trace"] == [{"rule": "no reply in time", "before": "chase:ask", "after": "chase:chase"}]
    assert fired[0]["notified"] == [{"to": "+1555…0000", "text": "+19995550142 has not answered about the parcel."}]
    both = wait(client, "1h")
    assert said(both["turns"]) == ["We'll try again tomorrow."] and both["state"]["where"] == "idle"
    live = {row["number"]: row["state"] for row in client.get("/console/conversations/live.json").json()["items"]}
    assert live == {"+1555…4567": "ask", "+1999…0199": "ask"}  # nobody else's time moved


def test_waits_fire_what_the_simulators_clock_would(client: TestClient, flows: Path) -> None:
    """Reminders armed by a fired reminder count from its firing: the same firings as
    Simulation.wait on its own clock (bot/simulator.py), however the wait is cut up."""

    async def reference() -> list[list[str]]:
        async with simulation(load_flows(flows), clock=SimulatedClock(1_700_000_000.0)) as sim:
            await sim.text("NUDGE", SIM)
            return [[reply for fired in await sim.wait(seconds) for reply in fired.replies]
                    for seconds in (1800, 1800, 7200, 3600)]

    send(client, "NUDGE")
    ours = [said(wait(client, duration)["turns"]) for duration in ("30m", "30m", "2h", "1h")]
    assert ours == asyncio.run(reference())
    assert ours == [[], ["Just a reminder: reply YES to confirm."],
                    ["Just a reminder: reply YES to confirm.", "No answer: we'll call you."], []]


def test_waiting_past_expires_after_ends_the_conversation(client: TestClient) -> None:
    send(client, "PARCEL")
    send(client, "no idea")  # answered: the timers restart from now
    wait(client, "3h")  # the timeout (10m), the chase (20m), then past expires_after (2h)
    answer = send(client, "yes")
    assert "Great, the driver is on the way." not in said(answer["turns"])  # over: "yes" starts afresh


def test_reset_from_the_simulator(client: TestClient) -> None:
    send(client, "PARCEL")
    answer = post_json(client, "/console/simulator/reset", {"from": SIM})
    assert answer.status_code == 200
    assert answer.json()["turns"][0]["trace"] == [{"rule": "reset by an operator", "before": "chase:ask",
                                                   "after": "idle"}]
    assert answer.json()["state"]["where"] == "idle" and answer.json()["state"]["timer"] is None
    assert wait(client, "1h")["turns"] == []  # its timer went with it


def test_hostile_texts_stay_values(client: TestClient) -> None:
    send(client, "PARCEL")
    answer = send(client, HOSTILE)
    assert answer["turns"][0]["body"] == HOSTILE  # JSON: the script sets it as text
    assert said(answer["turns"]) == ["Please reply YES or NO."]
    stored = client.get("/console/simulator/turns", params={"from": SIM}).json()["turns"]
    assert stored[-1]["body"] == HOSTILE
    page = client.get(answer["state"]["href"]).text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)" in page


def test_bad_requests_say_what_is_wrong(client: TestClient) -> None:
    for path, payload, words in (("wait", {"from": SIM, "duration": "soon"}, "duration"),
                                 ("wait", {"from": SIM, "duration": "400d"}, "wait between"),
                                 ("send", {"from": SIM, "body": 5}, "body"),
                                 ("send", {"from": SIM, "body": "x" * 1601}, "1600")):
        answer = post_json(client, f"/console/simulator/{path}", payload)
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text
    raw = client.post("/console/simulator/send", content=b"not json",
                      headers={"X-CSRF-Token": client.cookies.get("textflow_console_csrf") or ""})
    assert raw.status_code == 400 and raw.json() == {"error": "send JSON"}


async def test_a_simulated_senders_later_answers_and_notifications_are_never_sent(tmp_path: Path,
                                                                                    fake_twilio: Any) -> None:
    """The server's timer loop fires a simulated sender's timers too: their answers stop at
    send_for_turn, and Outbox.send refuses a simulated number whatever asks it."""
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        await send_for_turn(outbox, Inbound("timeout:x", SIM), "later", [(SIM, "Still there?")])
        await send_for_turn(outbox, Inbound("SM1", SIM), "notify", [(STAFF, "page staff")])
        refused = await outbox.send(OutboundMessage("m1", new_simulated_number(), "hello"))
        assert refused.state is OutboundState.SKIPPED and "simulated" in refused.reason
        await send_for_turn(outbox, Inbound("SM2", REAL), "notify", [(STAFF, "a real one")])
    finally:
        await outbox.close()
        await store.close()
    assert [(attempt.to, attempt.body) for attempt in fake_twilio.created] == [(STAFF, "a real one")]


async def test_only_a_simulated_senders_time_can_move() -> None:
    inbox = Inbox(open_store("memory://"), Engine(load_flows(SHIPPED_FLOWS), None, env={}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a simulated number"):
        await inbox.elapse(REAL, 60)
    with pytest.raises(ValueError, match="forward"):
        await inbox.elapse(SIM, -1)
    assert (await inbox.elapse(SIM, 60)).replies == ()


async def test_a_timer_the_servers_loop_fired_first_is_shown_with_its_stored_trace(flows: Path) -> None:
    """The server's timer loop polls the same index: it may fire a timer a wait moved due a moment
    before the wait does. The wait's own firing is then a duplicate, shown with the stored turn."""
    from bot import simulated_senders

    store = open_store("memory://")
    inbox = Inbox(store, Engine(load_flows(flows), None, env={}))  # type: ignore[arg-type]
    real_time_out = inbox.time_out

    async def loop_first(sender: str, due_at: float, deliver: Any) -> Any:
        await real_time_out(sender, due_at, None)  # the server's loop, a moment earlier
        return await real_time_out(sender, due_at, deliver)

    await simulated_senders.text(inbox, SIM, "PARCEL")
    inbox.time_out = loop_first  # type: ignore[method-assign]
    [fired] = await simulated_senders.wait(inbox, SIM, 600, store)
    assert fired.received.duplicate and fired.received.replies == ("Still there? Reply YES if someone can sign.",)
    assert [step.rule for step in fired.received.trace] == ["no reply in time"]
