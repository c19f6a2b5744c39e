"""The engine on its own: routing, transitions, captures, expiry, fetch — no HTTP, no store."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from bot.actions import FetchFailed
from bot.engine import Engine
from bot.flows.loader import load_flows
from bot.text import templates
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Conversation, Inbound, Message, Skip
from tests.conftest import SHIPPED_FLOWS, SURVEY_WITH_NUDGE, write_flows

_sids = itertools.count()


class CannedFetcher:
    """Answers fetches from a dict (url -> JSON), or fails like a service that is down."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.urls: list[str] = []
        self.requests: list[dict[str, Any]] = []

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        self.urls.append(url)
        self.requests.append(request)
        if url not in self.answers:
            raise FetchFailed("down")
        return self.answers[url]


class Chat:
    """One sender talking to an engine, carrying the conversation between turns."""

    def __init__(self, engine: Engine, sender: str = "+15551230000") -> None:
        self.engine = engine
        self.conversation = Conversation(sender)
        self.opted_out = False

    async def send(self, text: str, **inbound: Any) -> list[str]:
        message = Inbound(message_sid=f"SM{next(_sids)}", sender=self.conversation.sender, body=text, **inbound)
        outcome = await self.engine.step(self.conversation, Message(message), self.opted_out)
        self.conversation = outcome.conversation
        if outcome.opt_out is not None:
            self.opted_out = outcome.opt_out
        return outcome.replies


def shipped(fetcher: CannedFetcher | None = None, **kwargs: Any) -> Chat:
    return Chat(Engine(load_flows(SHIPPED_FLOWS), fetcher or CannedFetcher(), env={}, **kwargs))


async def test_status_flow_fetches_and_answers() -> None:
    fetcher = CannedFetcher({"/demo/orders/123456": {"status": "shipped", "detail": "Soon."}})
    chat = shipped(fetcher)
    assert await chat.send("status") == ["What's your order number? (6 digits, like 123456)"]
    assert chat.conversation.state == "ask_number"
    assert (await chat.send("12"))[0].startswith("Order numbers have 6 digits")
    assert chat.conversation.state == "ask_number"
    assert await chat.send(" 123456 ") == ["Order 123456 is shipped. Soon."]
    assert not chat.conversation.active
    assert fetcher.urls == ["/demo/orders/123456"]


async def test_fetch_failure_sends_the_fallback_and_ends() -> None:
    chat = shipped(CannedFetcher())
    await chat.send("STATUS")
    assert await chat.send("123456") == [
        "Sorry, our order system isn't answering right now. Please try again in a few minutes."]
    assert not chat.conversation.active


async def test_fetch_url_uses_env_and_encodes_what_people_typed(tmp_path: Path) -> None:
    flow = """\
flow: lookup
triggers: [LOOK]
start: ask
states:
  ask:
    say: "Name?"
    replies:
      - pattern: '.+'
        save: name
        go: fetch
    otherwise: "Name please."
  fetch:
    fetch: {url: "{{ env.API }}/people/{{ name }}", save: person}
    say: "{{ person.greeting }}"
"""
    fetcher = CannedFetcher({"http://api.test/people/a%2F..%2Fadmin%3Fx%3D1%26y": {"greeting": "hi"}})
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"f.yaml": flow})), fetcher, env={"API": "http://api.test"}))
    await chat.send("look")
    assert await chat.send("a/../admin?x=1&y") == ["hi"]


async def test_signup_captures_and_branches_on_yes_no() -> None:
    chat = shipped()
    assert await chat.send("Join!") == ["Welcome to Acme Orders updates! What's your first name?"]
    assert await chat.send("12345") == ["Please reply with just your first name (letters only)."]
    assert await chat.send("Ada") == ["Thanks, Ada! Sign you up for shipping updates? Reply YES or NO."]
    assert await chat.send("maybe") == ["Please reply YES to sign up, NO to cancel, or CHANGE to fix your name."]
    assert await chat.send("change") == ["Welcome to Acme Orders updates! What's your first name?"]
    await chat.send("Grace")
    assert await chat.send("yeah sure") == [
        "You're signed up, Grace! We'll text you when your orders ship.", "Reply STOP at any time to opt out."]
    assert not chat.conversation.active


async def test_no_says_goodbye() -> None:
    chat = shipped()
    await chat.send("JOIN")
    await chat.send("Ada")
    assert await chat.send("nope") == ["No problem, Ada. You're not signed up. Text JOIN any time."]
    assert not chat.conversation.active


async def test_idle_message_gets_fallback_mentioning_help() -> None:
    replies = await shipped().send("what is this")
    assert len(replies) == 1 and "HELP" in replies[0]


async def test_trigger_restarts_from_any_state() -> None:
    chat = shipped()
    await chat.send("JOIN")
    assert await chat.send("status") == ["What's your order number? (6 digits, like 123456)"]
    assert chat.conversation.flow == "order_status"


async def test_help_keeps_the_conversation_where_it_was() -> None:
    chat = shipped()
    await chat.send("JOIN")
    assert "STOP" in (await chat.send("help"))[0]
    assert chat.conversation.state == "ask_name"
    assert (await chat.send("Ada"))[0].startswith("Thanks, Ada!")


async def test_stop_opts_out_once_then_silence() -> None:
    chat = shipped()
    await chat.send("JOIN")
    assert (await chat.send("Stop!"))[0].startswith("You're unsubscribed")
    assert chat.opted_out and not chat.conversation.active
    for text in ["STOP", "JOIN", "hello"]:
        assert await chat.send(text) == []
    assert (await chat.send("help"))[0].startswith("Acme Orders")  # HELP: answered whatever the subscription
    assert chat.opted_out
    assert (await chat.send("yes"))[0].startswith("You're subscribed")
    assert not chat.opted_out
    assert (await chat.send("yes"))[0].startswith("Sorry")  # YES is not an opt-in word any more


async def test_twilio_advanced_opt_out_is_recorded_silently() -> None:
    chat = shipped()
    assert await chat.send("STOP", opt_out_type="STOP") == []
    assert chat.opted_out
    assert await chat.send("START", opt_out_type="START") == []
    assert not chat.opted_out


async def test_idle_conversation_expires() -> None:
    now = [1_000_000.0]
    chat = shipped(clock=lambda: now[0])
    await chat.send("STATUS")
    now[0] += 31 * 60  # status.yaml: expires_after 30m
    assert "HELP" in (await chat.send("123456"))[0]  # a fresh start: the fallback, not the lookup
    assert not chat.conversation.active


async def test_stale_conversation_is_reset_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    chat = shipped()
    chat.conversation = Conversation("+15551230000", flow="deleted_flow", state="gone")
    assert await chat.send("hi") == [
        "Sorry, this service was just updated and our conversation had to start over. "
        "Text HELP for what you can do."]
    assert "no longer exists" in caplog.text
    chat.conversation = Conversation("+15551230000", flow="signup", state="renamed_state")
    assert (await chat.send("JOIN"))[0].startswith("Welcome")


async def test_number_ranges_and_saving_numbers(tmp_path: Path) -> None:
    flow = """\
flow: rate
triggers: [RATE]
start: ask
states:
  ask:
    say: "Rate us 1-5"
    replies:
      - number: {min: 1, max: 5}
        save: score
        go: thanks
    otherwise: "A number from 1 to 5, please."
  thanks:
    say: "Thanks for the {{ score }}!"
"""
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"rate.yaml": flow})), CannedFetcher(), env={}))
    await chat.send("rate")
    assert await chat.send("6") == ["A number from 1 to 5, please."]
    assert await chat.send("4!") == ["Thanks for the 4!"]
    assert chat.conversation.vars == {}  # the conversation ended; its variables went with it


async def test_any_of_and_states_that_stay(tmp_path: Path) -> None:
    flow = """\
flow: menu
triggers: [MENU]
start: menu
states:
  menu:
    say: "Ask about hours or prices. Text DONE to finish."
    replies:
      - any_of: [hours, open, "opening times"]
        say: "We're open 9-5."
      - any_of: [price, prices, cost]
        say: "Everything is $10."
      - keywords: [DONE]
        go: end
    otherwise: "Try: hours, prices, or DONE."
"""
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"menu.yaml": flow})), CannedFetcher(), env={}))
    await chat.send("menu")
    assert await chat.send("When are you open?") == ["We're open 9-5."]
    assert await chat.send("what are your opening times") == ["We're open 9-5."]
    assert await chat.send("How much does it cost") == ["Everything is $10."]
    assert chat.conversation.state == "menu"
    assert await chat.send("done") == []
    assert not chat.conversation.active


async def test_a_loop_of_states_that_never_wait_is_stopped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flow = """\
flow: loop
triggers: [LOOP]
start: a
states:
  a: {say: "a", go: b}
  b: {go: a}
"""
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"loop.yaml": flow})), CannedFetcher(), env={}))
    replies = await chat.send("loop")
    assert 0 < len(replies) <= 10
    assert not chat.conversation.active
    assert "without waiting" in caplog.text


async def test_templates_see_sender_and_message_but_not_secrets(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_NAME", "Acme")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("PAYMENTS_API_KEY", "k3y")
    flow = """\
flow: echo
triggers: [ECHO]
start: echo
states:
  echo:
    say: "{{ env.SHOP_NAME }} {{ sender }} {{ message }} [{{ env.TWILIO_AUTH_TOKEN }}{{ env.PAYMENTS_API_KEY }}]"
"""
    # Only what FLOW_ENV allows (issue 11): the secrets are unlisted, so empty.
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"echo.yaml": flow})), CannedFetcher(),
                       env=templates.public_environment(["SHOP_NAME"])))
    assert await chat.send("echo") == ["Acme +15551230000 echo []"]


async def test_user_text_is_never_a_template(tmp_path: Path) -> None:
    flow = """\
flow: name
triggers: [NAME]
start: ask
states:
  ask:
    say: "Name?"
    replies:
      - pattern: '.+'
        save: name
        go: hi
    otherwise: "?"
  hi:
    say: "Hi {{ name }}"
"""
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"n.yaml": flow})), CannedFetcher(), env={}))
    await chat.send("name")
    assert await chat.send("x {{ 7 | plus: 1 }} {% raw %} y") == ["Hi x {{ 7 | plus: 1 }} {% raw %} y"]


BRANCHING = """\
flow: triage
triggers: [TRIAGE]
start: ask
states:
  ask:
    say: "How are you feeling, 1 to 10?"
    replies:
      - pattern: '.+'
        save: answer
        go: decide
    otherwise: "A number please."
  decide:
    set: {label: "score {{ answer }}"}
    branch:
      value: "{{ answer }}"
      cases:
        - is_blank: true
          go: ask
        - matches_any_of: "great, fine , OK"
          go: good
        - greater_than: "7"
          go: good
        - less_than: "4"
          go: bad
        - regex: '^\\d+$'
          go: middling
        - contains: "sick"
          go: bad
      otherwise: unsure
  good: {say: "Glad to hear it ({{ label }})."}
  bad: {say: "Sorry to hear that ({{ label }})."}
  middling: {say: "Thanks ({{ label }})."}
  unsure: {say: "I did not understand {{ answer }}."}
"""


@pytest.mark.parametrize(("answer", "reply"), [
    ("Fine", "Glad to hear it (score Fine)."),
    ("ok", "Glad to hear it (score ok)."),
    ("9", "Glad to hear it (score 9)."),
    ("2", "Sorry to hear that (score 2)."),
    ("5", "Thanks (score 5)."),
    ("a bit SICK today", "Sorry to hear that (score a bit SICK today)."),
    ("meh", "I did not understand meh."),
])
async def test_branch_on_a_saved_value(tmp_path: Path, answer: str, reply: str) -> None:
    chat = Chat(Engine(load_flows(write_flows(tmp_path, {"t.yaml": BRANCHING})), CannedFetcher(), env={}))
    await chat.send("triage")
    assert await chat.send(answer) == [reply]
    assert not chat.conversation.active


async def test_branch_on_a_lookup_result_with_templated_arguments(tmp_path: Path) -> None:
    flow = """\
flow: parcel
triggers: [PARCEL]
start: lookup
states:
  lookup:
    fetch: {url: "/parcel", save: result}
    set: {expected: "delivered"}
    branch:
      value: "{{ result.status }}"
      cases:
        - equal_to: "{{ expected }}"
          go: done
        - not_equal_to: "lost"
          go: moving
      otherwise: lost
  done: {say: "Delivered."}
  moving: {say: "On its way ({{ result.status }})."}
  lost: {say: "Lost, sorry."}
"""
    flows = load_flows(write_flows(tmp_path, {"p.yaml": flow}))
    for status, reply in [("DELIVERED", "Delivered."), ("in transit", "On its way (in transit)."),
                          ("lost", "Lost, sorry.")]:
        chat = Chat(Engine(flows, CannedFetcher({"/parcel": {"status": status}}), env={}))
        assert await chat.send("parcel") == [reply]


def test_branch_targets_and_conditions_are_checked(tmp_path: Path) -> None:
    from bot.flows.problems import FlowLoadError

    broken = BRANCHING.replace("go: middling", "go: nowhere").replace("- contains: \"sick\"",
                                                                      "- contains: \"sick\"\n          regex: 'x'")
    with pytest.raises(FlowLoadError) as raised:
        load_flows(write_flows(tmp_path, {"t.yaml": broken}))
    text = str(raised.value)
    assert "exactly one condition" in text


def test_branch_to_an_unknown_state_is_an_error_and_the_diagram_shows_cases(tmp_path: Path) -> None:
    from bot.flows import graph
    from bot.flows.problems import FlowLoadError

    with pytest.raises(FlowLoadError, match="unknown state 'nowhere'"):
        load_flows(write_flows(tmp_path / "a", {"t.yaml": BRANCHING.replace("go: middling", "go: nowhere")}))
    drawn = graph.mermaid(load_flows(write_flows(tmp_path / "b", {"t.yaml": BRANCHING})).flows["triage"])
    assert "n_decide --> n_good: matches any of great, fine , OK" in drawn
    assert "n_decide --> n_unsure: otherwise" in drawn


STUDIO_LIKE = """\
flow: studio_like
start_on_any_message: true
start: ask
states:
  ask:
    say: "Hi {{ contact.channel.address }}, you said {{ trigger.message.Body }} to {{ flow.channel.address }}."
    replies:
      - pattern: '(?s).*'
        save: widgets.ask.inbound.Body
        go: remember
    otherwise: "?"
  remember:
    set: {flow.variables.answer: "{{ widgets.ask.inbound.Body | upcase }}"}
    fetch:
      url: "/log"
      method: POST
      json: '{"answer": "{{ flow.variables.answer }}"}'
      save: widgets.remember.parsed
      fallback: ""
      on_error: failed
    go: quiz
  quiz:
    enter: {flow: quiz, then: bye}
  bye: {say: "Back in the first flow; quiz said {{ widgets.quiz_q.inbound.Body }}."}
  failed: {say: "The log is down."}
"""

QUIZ = """\
flow: quiz
start: quiz_q
states:
  quiz_q:
    say: "Quiz: 2+2?"
    replies:
      - pattern: '(?s).*'
        save: widgets.quiz_q.inbound.Body
        go: end
    otherwise: "?"
"""


async def test_studio_shaped_flows_run(tmp_path: Path) -> None:
    """Dotted saves, Studio's template names, a catch-all flow, POST lookups, entering a flow."""
    fetcher = CannedFetcher({"/log": {"ok": True}})
    flows = load_flows(write_flows(tmp_path, {"a.yaml": STUDIO_LIKE, "quiz.yaml": QUIZ}))
    chat = Chat(Engine(flows, fetcher, env={}), sender="+15550001234")
    message = Inbound("SMx1", "+15550001234", to="+15550009999", body="hello there")
    outcome = await chat.engine.step(chat.conversation, Message(message), False)
    chat.conversation = outcome.conversation
    assert outcome.replies == ["Hi +15550001234, you said hello there to +15550009999."]
    assert await chat.send("blue") == ["Quiz: 2+2?"]
    assert fetcher.requests == [{"method": "POST", "params": {}, "json_body": {"answer": "BLUE"}, "form": None}]
    assert chat.conversation.flow == "quiz"
    assert await chat.send("4") == ["Back in the first flow; quiz said 4."]
    assert not chat.conversation.active
    assert await chat.send("STATUS?")  # idle again: the catch-all starts it afresh
    assert chat.conversation.flow == "studio_like"


async def test_a_silent_failed_lookup_takes_its_branch(tmp_path: Path) -> None:
    flows = load_flows(write_flows(tmp_path, {"a.yaml": STUDIO_LIKE, "quiz.yaml": QUIZ}))
    chat = Chat(Engine(flows, CannedFetcher(), env={}))
    await chat.send("hi")
    assert await chat.send("blue") == ["The log is down."]


def test_entering_an_unknown_flow_and_two_catch_alls_are_errors(tmp_path: Path) -> None:
    from bot.flows.problems import FlowLoadError

    other = STUDIO_LIKE.replace("flow: studio_like", "flow: other")
    with pytest.raises(FlowLoadError) as raised:
        load_flows(write_flows(tmp_path, {"a.yaml": STUDIO_LIKE, "b.yaml": other}))
    text = str(raised.value)
    assert "unknown flow 'quiz'" in text and "already starts on any message" in text




async def test_a_wait_timeout_fires_once_through_the_inbox(tmp_path: Path) -> None:
    from bot.inbox import Inbox
    from bot.store.memory import MemoryStore

    now = [1_000.0]
    store = MemoryStore()
    engine = Engine(load_flows(write_flows(tmp_path, {"s.yaml": SURVEY_WITH_NUDGE})), CannedFetcher(), env={},
                    clock=lambda: now[0])
    inbox = Inbox(store, engine)
    assert (await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))).replies == ("Rate us 1-5.",)
    assert await store.due(now[0] + 599) == []
    assert await store.due(now[0] + 601) == [("+1", 1_600.0)]
    now[0] += 300
    assert (await inbox.receive(Inbound("SM2", "+1", body="help"))).replies[0].startswith("Test Program")
    assert await store.due(now[0] + 301) == [("+1", 1_600.0)]  # HELP does not restart the clock

    sent: list[tuple[str, tuple[str, ...]]] = []

    async def deliver(inbound: Inbound, replies: tuple[str, ...]) -> None:
        sent.append((inbound.to, replies))

    now[0] = 1_601.0
    fired = await inbox.time_out("+1", 1_600.0, deliver)
    assert fired.replies == ("Still there? Rate us 1-5.",)
    assert sent == [("+15550009999", ("Still there? Rate us 1-5.",))]  # from the number they texted
    assert (await inbox.time_out("+1", 1_600.0, deliver)).duplicate  # fired once
    assert len(sent) == 1
    assert await store.due(10_000.0) == []  # the nudge state has no timeout
    assert (await inbox.receive(Inbound("SM3", "+1", body="4"))).replies == ("Thanks for the 4!",)


async def test_a_flow_started_by_a_broadcast_arms_its_timeout_once(tmp_path: Path) -> None:
    from bot.inbox import Inbox
    from bot.store.memory import MemoryStore

    store = MemoryStore()
    engine = Engine(load_flows(write_flows(tmp_path, {"s.yaml": SURVEY_WITH_NUDGE})), CannedFetcher(), env={},
                    clock=lambda: 1_000.0)
    inbox = Inbox(store, engine)
    started = await inbox.start("+1", "survey", {}, "broadcast:b|+1")
    assert (started.duplicate, started.skipped, started.replies) == (False, None, ("Rate us 1-5.",))
    assert await store.due(2_000.0) == [("+1", 1_600.0)]  # the start state's timeout is armed
    again = await inbox.start("+1", "survey", {}, "broadcast:b|+1")
    assert (again.duplicate, again.replies) == (True, ("Rate us 1-5.",))
    await store.set_consent(ConsentChange("+2", ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR))
    assert (await inbox.start("+2", "survey", {}, "broadcast:b|+2")).skipped is Skip.OPTED_OUT
    untouched = (await store.snapshot("+2", "")).conversation
    assert (untouched.version, untouched.active) == (0, False)  # never started


ECHO_RESERVED = """\
flow: echo
triggers: [ECHO]
start: ask
states:
  ask:
    say: "Say something."
    replies:
      - pattern: '(?s).*'
        save: _timeout
        go: again
    otherwise: "?"
    timeout: {after: 10m, go: end}
  again:
    enter: {flow: inner, then: both}
  both:
    say: "you said {{ _timeout }} and {{ _return }}"
"""

INNER = """\
flow: inner
start: ask_more
states:
  ask_more:
    say: "And?"
    replies:
      - pattern: '(?s).*'
        save: _return
        go: end
    otherwise: "?"
"""


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_variables_named_like_the_engine_bookkeeping_are_the_authors(tmp_path: Path, store_kind: str) -> None:
    """The armed timeout and the return stack are typed fields, not variables: an author's
    ``_timeout`` and ``_return`` survive the turn (they used to be dropped)."""
    from bot.inbox import Inbox
    from bot.store import open_store

    store = open_store("memory://" if store_kind == "memory" else f"sqlite:///{tmp_path / 'bot.db'}")
    flows = load_flows(write_flows(tmp_path / "flows", {"echo.yaml": ECHO_RESERVED, "inner.yaml": INNER}))
    inbox = Inbox(store, Engine(flows, CannedFetcher(), env={}))
    try:
        assert (await inbox.receive(Inbound("SM1", "+1", body="echo"))).replies == ("Say something.",)
        assert (await inbox.receive(Inbound("SM2", "+1", body="hello"))).replies == ("And?",)
        waiting = (await store.snapshot("+1", "")).conversation
        assert [(point.flow, point.state) for point in waiting.returns] == [("echo", "again")]
        assert waiting.vars["_timeout"] == "hello"
        assert (await inbox.receive(Inbound("SM3", "+1", body="world"))).replies == ("you said hello and world",)
    finally:
        await store.close()


async def test_help_is_answered_after_stop_unless_the_program_turns_it_off(tmp_path: Path) -> None:
    """CTIA's short-code rules want HELP answered whatever the subscription; nothing else is.
    A program may turn that off (``help_when_opted_out: false``)."""
    from bot.inbox import Inbox
    from bot.store.memory import MemoryStore
    from tests.conftest import PROGRAM_YAML

    for allowed, expected in ((True, ("Test Program: text COUNT to count. Reply STOP to opt out.",)), (False, ())):
        program = PROGRAM_YAML + ("" if allowed else "  help_when_opted_out: false\n")
        flows = load_flows(write_flows(tmp_path / str(allowed), {}, program=program))
        inbox = Inbox(MemoryStore(), Engine(flows, CannedFetcher(), env={}))
        await inbox.receive(Inbound("SM1", "+1", body="STOP"))
        assert (await inbox.receive(Inbound("SM2", "+1", body="help"))).replies == expected
        assert (await inbox.receive(Inbound("SM3", "+1", body="hello"))).replies == ()
