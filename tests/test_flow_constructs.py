"""The flow language's newer constructs, through the real inbox and store: flow-wide replies
(``anywhere``), ``attempts``, ``remind``, ``menu``, ``split`` and ``media``; and lint's view of
timers that would never stop."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bot.flows.loader import FlowSet, lint_paths, load_flows
from bot.flows.problems import FlowLoadError
from bot.simulator import Simulation, simulation
from bot.types import Conversation, Inbound, Message, media_of
from tests.conftest import write_flows

SENDER = "+15551230000"
HOUR = 3600.0

REFILL = """\
flow: refill
triggers: [REFILL]
start: ask_rx
expires_after: 1d
anywhere:
  - any_of: [never mind, cancel my refill]
    go: cancelled
states:
  ask_rx:
    say: "Prescription number? (7 digits)"
    replies:
      - pattern: '^\\d{7}$'
        save: rx
        go: how
    attempts:
      max: 3
      go: call_us
      reask: ["7 digits, like 1234567.", "Still not it: just the 7 digits."]
    remind: {after: 1h, say: "Still there? Send your prescription number.", times: 2}
    timeout: {after: 1h, go: expired}
  how:
    say: "How would you like it?"
    menu:
      save: method
      choices:
        - {label: Pick-up, also: [pickup, pick it up], value: pick-up, go: done}
        - {label: Delivery, also: [delivery please], go: done}
    otherwise: "Please choose:"
    remind: {after: 1h, say: "Still there?"}
  done:
    say: "Refill {{ rx }} by {{ method }}."
  call_us: {say: "Please call us."}
  cancelled: {say: "Cancelled."}
  expired: {say: "Stopped."}
"""


@pytest.fixture
def flows(tmp_path: Path) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", {"refill.yaml": REFILL}))


async def said(sim: Simulation, text: str) -> list[str]:
    return list((await sim.text(text, SENDER)).replies)


async def waited(sim: Simulation, seconds: float) -> list[str]:
    return [reply for fired in await sim.wait(seconds) for reply in fired.replies]


# -- anywhere -------------------------------------------------------------------------------------


async def test_flow_wide_replies_are_heard_in_every_waiting_state_before_its_own(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        assert await said(sim, "oh never mind") == ["Cancelled."]
        await said(sim, "REFILL")
        await said(sim, "1234567")
        assert await said(sim, "please cancel my refill") == ["Cancelled."]


async def test_a_bare_compliance_word_still_opts_out_inside_a_flow(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        received = await sim.text("cancel", SENDER)
        assert received.trace[-1].rule.startswith("compliance")


# -- attempts -------------------------------------------------------------------------------------


async def test_each_unmatched_answer_gets_its_own_reask_and_the_last_one_gives_up(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        assert await said(sim, "12") == ["7 digits, like 1234567."]
        assert await said(sim, "HELP") != []  # compliance words don't count as tries
        assert await said(sim, "123") == ["Still not it: just the 7 digits."]
        received = await sim.text("1234", SENDER)
        assert list(received.replies) == ["Please call us."]
        assert received.trace[0].rule == "too many tries"


async def test_the_count_of_tries_starts_again_each_time_the_state_is_entered(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        await said(sim, "12")
        await said(sim, "13")
        await said(sim, "REFILL")  # a fresh start
        assert await said(sim, "14") == ["7 digits, like 1234567."]


async def test_the_count_of_tries_is_kept_in_the_store_between_turns(flows: FlowSet, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    async with simulation(flows, store_url=store) as sim:
        await said(sim, "REFILL")
        await said(sim, "12")
    async with simulation(flows, store_url=store) as sim:  # another process, the same store
        assert await said(sim, "13") == ["Still not it: just the 7 digits."]
        assert await said(sim, "14") == ["Please call us."]


# -- remind ---------------------------------------------------------------------------------------


async def test_reminders_are_sent_times_times_then_the_timeout_then_nothing(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        assert await waited(sim, HOUR - 1) == []
        assert await waited(sim, 1) == ["Still there? Send your prescription number."]
        assert await waited(sim, HOUR) == ["Still there? Send your prescription number."]
        assert await waited(sim, HOUR) == ["Stopped."]
        assert await waited(sim, 30 * 24 * HOUR) == []


async def test_an_answer_starts_the_reminders_again(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        assert await waited(sim, HOUR) == ["Still there? Send your prescription number."]
        await said(sim, "12")
        assert await waited(sim, 2 * HOUR) == ["Still there? Send your prescription number."] * 2
        assert await waited(sim, HOUR) == ["Stopped."]


async def test_a_reminder_in_a_menu_state_lists_the_menu_again(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        await said(sim, "1234567")
        assert await waited(sim, HOUR) == ["Still there?\n1) Pick-up\n2) Delivery"]
        assert await waited(sim, 10 * HOUR) == []  # one reminder, no timeout: the state waits quietly


async def test_reminders_never_extend_the_conversation_past_expires_after(tmp_path: Path) -> None:
    flow = REFILL.replace("expires_after: 1d", "expires_after: 90m")
    flows = load_flows(write_flows(tmp_path / "flows", {"refill.yaml": flow}))
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        assert await waited(sim, HOUR) == ["Still there? Send your prescription number."]
        assert await waited(sim, 5 * HOUR) == []  # the second reminder would come after the expiry
        assert await said(sim, "1234567") != ["How would you like it?\n1) Pick-up\n2) Delivery"]


# -- menu -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "saved"), [("1", "pick-up"), ("Pick-up", "pick-up"), ("PICK UP!", "pick-up"),
                                               ("pick it up", "pick-up"), ("option 2", "Delivery"),
                                               ("delivery please", "Delivery"), ("2", "Delivery")])
async def test_a_menu_takes_the_number_the_label_or_a_synonym(flows: FlowSet, answer: str, saved: str) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        assert await said(sim, "1234567") == ["How would you like it?\n1) Pick-up\n2) Delivery"]
        assert await said(sim, answer) == [f"Refill 1234567 by {saved}."]


async def test_a_menu_lists_its_choices_under_the_reask(flows: FlowSet) -> None:
    async with simulation(flows) as sim:
        await said(sim, "REFILL")
        await said(sim, "1234567")
        assert await said(sim, "3") == ["Please choose:\n1) Pick-up\n2) Delivery"]


def test_a_word_that_would_choose_two_items_is_an_error(tmp_path: Path) -> None:
    flow = REFILL.replace("also: [delivery please]", "also: [pickup]")
    with pytest.raises(FlowLoadError, match="'pickup' would choose both 'Pick-up' and 'Delivery'"):
        load_flows(write_flows(tmp_path / "flows", {"refill.yaml": flow}))


# -- split ----------------------------------------------------------------------------------------

SPLIT = """\
flow: promo
triggers: [OFFER]
start: pick
states:
  pick:
    split:
      - {weight: 3, go: a}
      - {weight: 1, go: b}
  a: {say: "A"}
  b: {say: "B"}
"""


async def test_a_split_is_sticky_per_sender_and_fills_by_weight(tmp_path: Path) -> None:
    flows = load_flows(write_flows(tmp_path / "flows", {"promo.yaml": SPLIT}))
    engine_a = flows.flows["promo"]
    assert [path.event for path in engine_a.states["pick"].split] == ["split 75%", "split 25%"]
    from bot.engine import Engine

    async def path_of(sender: str) -> str:
        engine = Engine(flows, fetcher=None, env={})  # type: ignore[arg-type]  # no fetch in this flow
        outcome = await engine.step(Conversation(sender), Message(Inbound("SM1", sender, body="offer")), False)
        return outcome.replies[0]

    counts = Counter([await path_of(f"+1555{number:07d}") for number in range(4000)])
    assert 2840 <= counts["A"] <= 3160, counts  # 3,000 expected; about 5 standard deviations either side
    for number in range(50):
        sender = f"+1555{number:07d}"
        assert await path_of(sender) == await path_of(sender)


# -- media ----------------------------------------------------------------------------------------

PHOTO = """\
flow: damaged
triggers: [DAMAGED]
start: ask
states:
  ask:
    say: "Send a photo of the box."
    media: "https://acme.example/how-to.png"
    replies:
      - media: true
        save: photos
        go: thanks
    otherwise: "A photo, please."
  thanks:
    say: "Got {{ photos | size }} photo(s); the first is {{ media[0] }}."
    notify:
      to: "+15550009999"
      say: "Damage report"
      media: ["{{ photos[0] }}", "{{ photos[1] }}"]
"""


async def test_a_media_rule_takes_a_message_with_pictures_and_saves_their_urls(tmp_path: Path) -> None:
    flows = load_flows(write_flows(tmp_path / "flows", {"damaged.yaml": PHOTO}))
    async with simulation(flows) as sim:
        opening = (await sim.text("DAMAGED", SENDER)).replies
        assert opening == ("Send a photo of the box.",)
        assert media_of(opening[0]) == ("https://acme.example/how-to.png",)
        assert await said(sim, "here") == ["A photo, please."]
        pictures = ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
                    "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2")
        received = await sim.inbox.receive(Inbound("SMphoto", SENDER, to="+15550001111", body="", media=pictures))
        assert list(received.replies) == [f"Got 2 photo(s); the first is {pictures[0]}."]
        (to, text), = sim.notified
        assert (to, text, media_of(text)) == ("+15550009999", "Damage report", pictures)


@pytest.mark.parametrize(("media", "error"), [
    ("[" + ", ".join(f'"https://a.example/{n}.png"' for n in range(11)) + "]", "at most 10"),
    ('"acme.example/x.png"', "is not a web address"),
])
def test_media_urls_are_checked(tmp_path: Path, media: str, error: str) -> None:
    flow = PHOTO.replace('"https://acme.example/how-to.png"', media)
    problems = lint_paths([write_flows(tmp_path / "flows", {"damaged.yaml": flow})])
    assert any(error in problem.message and problem.line == 7 for problem in problems), problems


# -- timers that never stop -----------------------------------------------------------------------

CYCLE = """\
flow: nag
triggers: [NAG]
start: ask
{expires}
states:
  ask:
    say: "Reply YES."
    replies:
      - {{answer: yes, go: end}}
    otherwise: "Reply YES."
    timeout: {{after: 3s, go: nudge}}
  nudge:
{nudge}
"""


@pytest.mark.parametrize(("expires", "nudge", "severity"), [
    ("", "    say: Still there?\n    go: ask", "error"),
    ("expires_after: 20s", "    say: Still there?\n    go: ask", "warning"),
    ("", "    branch:\n      value: '{{ n }}'\n      cases: [{equal_to: '3', go: end}]\n      otherwise: ask", None),
])
def test_a_timeout_cycle_is_an_error_unless_bounded(tmp_path: Path, expires: str, nudge: str,
                                                     severity: str | None) -> None:
    flow = CYCLE.format(expires=expires, nudge=nudge)
    problems = [p for p in lint_paths([write_flows(tmp_path / "flows", {"nag.yaml": flow})])
                if "comes back round" in p.message]
    assert [p.severity for p in problems] == ([severity] if severity else [])
    if severity == "warning":
        assert "up to 6 times" in problems[0].message


async def test_expires_after_ends_a_timeout_cycle_in_the_running_bot(tmp_path: Path) -> None:
    flow = CYCLE.format(expires="expires_after: 20s", nudge="    say: Still there?\n    go: ask")
    flows = load_flows(write_flows(tmp_path / "flows", {"nag.yaml": flow}))
    async with simulation(flows) as sim:
        await said(sim, "NAG")
        sent = await waited(sim, 45)
        assert sent == ["Still there?\nReply YES."] * 6 or sent == ["Still there?", "Reply YES."] * 6, sent
