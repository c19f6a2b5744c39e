"""Typo-tolerant triggers: "STAUTS" gets "Did you mean STATUS? Reply YES", and YES starts it.

Through the real inbox on the SQLite store, so the offer has to survive between two webhooks
(answered here by two inboxes on the same file, as two workers would); the matching itself
(:class:`bot.text.trigger_typos.TriggerTypos`) is checked on its own and by property tests.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bot.app import create_app
from bot.engine import Engine
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.inbox import Inbox, Received
from bot.settings import load_settings
from bot.store import CommitResult, Store, open_store
from bot.store.records import bookkeeping, conversation_from_record
from bot.text.normalise import normalise
from bot.text.trigger_typos import TriggerTypos, allowed_slips
from bot.text.wordsets import COMPLIANCE_WORDS
from bot.types import Conversation, Inbound, Turn
from tests.conftest import PROGRAM_YAML, SHIPPED_FLOWS, SignedClient, demo_fetcher, write_flows
from tests.signed_webhooks import AUTH_TOKEN
from tests.test_inbox import Clock
from tests.test_store import load

SENDER = "+15550001234"
FALLBACK = "Sorry, I didn't get that. Text HELP for help."
OFFER_STATUS = "Did you mean STATUS? Reply YES"

STATUS = """\
flow: status
triggers: [STATUS]
expires_after: 10m
start: ask
states:
  ask:
    say: "Your order number?"
    replies:
      - pattern: '^\\d{4}$'
        save: order
        say: "Order {{ order }} is on its way."
        go: end
    otherwise: "Four digits, please."
"""

REFILL = """\
flow: refill
triggers: [REFILL]
start: ask
states:
  ask:
    say: "Your prescription number?"
    replies:
      - pattern: '(?s).*'
        save: number
        say: "Refill of {{ number }} requested."
        go: end
"""


def flow(name: str, *triggers: str) -> str:
    return f'flow: {name}\ntriggers: [{", ".join(triggers)}]\nstart: hello\nstates:\n  hello: {{say: "{name} here"}}\n'


class NoFetcher:
    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        raise AssertionError("these flows look nothing up")


def flows_in(tmp_path: Path, files: dict[str, str], program: str = PROGRAM_YAML) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", files, program=program))


class Bot:
    """Two workers on one SQLite file: each message goes to the next one in turn, so nothing
    carries over between turns except through the store."""

    def __init__(self, flows: FlowSet, stores: list[Store], clock: Clock, **engine: Any) -> None:
        self.inboxes = [Inbox(store, Engine(flows, NoFetcher(), env={}, clock=clock, **engine)) for store in stores]
        self.sent = 0

    async def text(self, body: str) -> Received:
        self.sent += 1
        inbox = self.inboxes[self.sent % len(self.inboxes)]
        return await inbox.receive(Inbound(f"SM{self.sent}", SENDER, to="+15550009999", body=body))

    async def says(self, body: str) -> list[str]:
        return list((await self.text(body)).replies)

    async def rule(self, body: str) -> str:
        return (await self.text(body)).trace[-1].rule

    async def conversation(self) -> Conversation:
        return await load(self.inboxes[0].store, SENDER)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list[Store]]:
    opened = [open_store(f"sqlite:///{tmp_path / 'bot.db'}") for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bot(tmp_path: Path, stores: list[Store], clock: Clock) -> Bot:
    return Bot(flows_in(tmp_path, {"status.yaml": STATUS, "refill.yaml": REFILL}), stores, clock)


# -- the offer, and YES ----------------------------------------------------------------------------

async def test_a_mistyped_trigger_is_offered_and_yes_starts_its_flow_on_another_worker(bot: Bot) -> None:
    received = await bot.text("STAUTS")
    assert received.replies == (OFFER_STATUS,)
    assert [step.rule for step in received.trace] == ["did you mean STATUS?"]
    stored = await bot.conversation()
    assert (stored.active, stored.suggested) == (False, "status")  # kept in the store, not in a worker
    received = await bot.text("YES")
    assert received.replies == ("Your order number?",)
    assert [(step.rule, step.before, step.after) for step in received.trace] == [
        ("did you mean STATUS: yes", "idle", "status:ask")]
    stored = await bot.conversation()
    assert (stored.flow, stored.state, stored.suggested) == ("status", "ask", None)
    assert await bot.says("1234") == ["Order 1234 is on its way."]


@pytest.mark.parametrize("typed, trigger", [("staus", "STATUS"), ("Stauts!", "STATUS"), ("STATSU", "STATUS"),
                                            ("refil", "REFILL"), ("REFIIL", "REFILL"), ("refills", "REFILL")])
async def test_one_slip_from_a_trigger_is_offered(bot: Bot, typed: str, trigger: str) -> None:
    assert await bot.says(typed) == [f"Did you mean {trigger}? Reply YES"]


@pytest.mark.parametrize("yes", ["yes", "Y", "ok", "Sure!", "yes please", "👍", "sí"])
async def test_any_yes_answer_takes_the_offer_up(bot: Bot, yes: str) -> None:
    await bot.text("refil")
    assert await bot.says(yes) == ["Your prescription number?"]


# -- anything else withdraws it ---------------------------------------------------------------------

async def test_no_gets_the_fallback_and_withdraws_the_offer(bot: Bot) -> None:
    await bot.text("stauts")
    assert await bot.says("no") == [FALLBACK]
    assert (await bot.conversation()).suggested is None
    assert await bot.says("yes") == [FALLBACK]  # the offer was good for one message


async def test_another_text_is_routed_as_if_nothing_was_offered(bot: Bot) -> None:
    await bot.text("stauts")
    assert await bot.says("REFILL") == ["Your prescription number?"]  # a trigger starts its flow
    assert await bot.says("yes") == ["Refill of yes requested."]  # and "yes" is that flow's answer now
    await bot.text("stauts")
    assert await bot.says("what?") == [FALLBACK]
    assert await bot.says("y") == [FALLBACK]


async def test_an_offer_expires_with_the_offered_flows_idle_time(bot: Bot, clock: Clock) -> None:
    await bot.text("stauts")
    clock.now += 11 * 60  # the STATUS flow's expires_after is 10m
    assert await bot.says("yes") == [FALLBACK]


async def test_an_offer_for_a_flow_removed_since_is_not_taken_up(
        tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    before = Bot(flows_in(tmp_path / "before", {"status.yaml": STATUS}), stores, clock)
    await before.text("stauts")
    after = Bot(flows_in(tmp_path / "after", {"refill.yaml": REFILL}), stores, clock)
    after.sent = before.sent
    assert await after.says("yes") == [FALLBACK]


# -- compliance comes first --------------------------------------------------------------------------

async def test_stop_withdraws_the_offer_so_yes_is_an_opt_in_not_a_flow(bot: Bot) -> None:
    await bot.text("stauts")
    assert await bot.says("STOP") == ["You are unsubscribed. Reply START to come back."]
    assert await bot.says("YES") == ["Welcome back. Reply STOP to opt out."]  # YES while opted out
    assert not (await bot.conversation()).active


async def test_help_in_between_leaves_the_offer_standing(bot: Bot) -> None:
    """Compliance words never touch the conversation (so they are answered beside a slow turn):
    someone who asks HELP before answering the question can still say YES."""
    await bot.text("stauts")
    assert await bot.says("HELP") == ["Test Program: text COUNT to count. Reply STOP to opt out."]
    assert await bot.says("yes") == ["Your order number?"]


async def test_a_slip_of_a_compliance_word_is_never_offered_anything(
        tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    bot = Bot(flows_in(tmp_path, {"stomp.yaml": flow("stomp", "STOMP"), "hello.yaml": flow("hello", "HELLO"),
                                  "quiz.yaml": flow("quiz", "QUIZ")}), stores, clock)
    assert await bot.says("stomq") == ["Did you mean STOMP? Reply YES"]  # two slips from STOP
    assert await bot.says("hallo") == ["Did you mean HELLO? Reply YES"]  # three from HELP
    assert await bot.says("quizz") == ["Did you mean QUIZ? Reply YES"]
    for typed in ("helo", "hepl", "qiut", "ned"):  # one slip from HELP, QUIT, END
        assert await bot.rule(typed) == "fallback", typed
        assert (await bot.conversation()).suggested is None
    for typed in ("QUITT", "stpo", "STOPP"):  # (read as revocations in the person's own words: they opt out)
        assert not (await bot.rule(typed)).startswith("did you mean"), typed


async def test_the_programs_own_consent_words_block_suggestions_too(
        tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    program = PROGRAM_YAML + "  consent:\n    en:\n      opt_out: [BASTA]\n"
    bot = Bot(flows_in(tmp_path, {"pasta.yaml": flow("pasta", "PASTA")}, program), stores, clock)
    assert await bot.rule("bastq") == "fallback"  # one slip from the program's BASTA
    assert await bot.says("pasat") == ["Did you mean PASTA? Reply YES"]


def test_a_compliance_word_is_never_offered() -> None:
    suggestions = TriggerTypos(["stop", "status", "alto"], COMPLIANCE_WORDS)
    assert suggestions.triggers == ("status",)
    assert suggestions.suggest("stopp") is None
    assert suggestions.suggest("altp") is None


async def test_a_message_that_might_ask_to_stop_gets_the_fallback_and_the_hint(
        tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    bot = Bot(flows_in(tmp_path, {"span.yaml": flow("span", "SPAN")}), stores, clock)
    assert await bot.says("spam") == [FALLBACK, "Reply STOP to stop all messages."]  # one slip from SPAN
    assert await bot.says("spann") == ["Did you mean SPAN? Reply YES"]


# -- only where the fallback would answer ------------------------------------------------------------

async def test_a_trigger_or_a_waiting_states_rule_is_never_second_guessed(bot: Bot) -> None:
    assert await bot.rule("status") == "trigger STATUS"
    assert await bot.says("stauts") == ["Four digits, please."]  # the waiting state's otherwise
    assert (await bot.conversation()).suggested is None
    await bot.text("REFILL")
    assert await bot.says("stauts") == ["Refill of stauts requested."]  # a rule took it


async def test_a_catch_all_flow_takes_what_no_trigger_matched(
        tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    menu = 'flow: menu\nstart_on_any_message: true\nstart: hello\nstates:\n  hello: {say: "Menu: STATUS"}\n'
    bot = Bot(flows_in(tmp_path, {"status.yaml": STATUS, "menu.yaml": menu}), stores, clock)
    assert await bot.says("stauts") == ["Menu: STATUS"]


async def test_two_triggers_equally_close_get_no_suggestion(
        tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    bot = Bot(flows_in(tmp_path, {"cart.yaml": flow("cart", "CART"), "card.yaml": flow("card", "CARD")}),
              stores, clock)
    assert await bot.says("cars") == [FALLBACK]  # CART or CARD?
    assert await bot.says("carts") == ["Did you mean CART? Reply YES"]  # one slip from CART, two from CARD


async def test_the_setting_off_keeps_the_plain_fallback(tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    bot = Bot(flows_in(tmp_path, {"status.yaml": STATUS}), stores, clock, suggest_triggers=False)
    assert await bot.says("stauts") == [FALLBACK]
    assert (await bot.conversation()).suggested is None
    assert await bot.says("yes") == [FALLBACK]


@pytest.mark.parametrize("variable, offered", [({}, True), ({"SUGGEST_TRIGGERS": "0"}, False)])
def test_the_server_offers_as_its_setting_says(tmp_path: Path, variable: dict[str, str], offered: bool) -> None:
    settings = load_settings({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
                              "FLOWS_DIR": str(SHIPPED_FLOWS), **variable})
    assert settings.suggest_triggers is offered
    with TestClient(create_app(settings, load_flows(SHIPPED_FLOWS), fetcher=demo_fetcher())) as client:
        bot = SignedClient(client)
        first = bot.replies("STAUTS")
        if offered:
            assert first == [OFFER_STATUS]
            assert bot.replies("yes") == bot.replies("STATUS")  # the order status flow's opening question
        else:
            assert first == bot.replies("sorry?")  # the fallback


async def test_the_program_words_the_offer(tmp_path: Path, stores: list[Store], clock: Clock) -> None:
    program = PROGRAM_YAML + '  did_you_mean: "Do you mean {{ trigger }}? Reply YES to start, or HELP."\n'
    bot = Bot(flows_in(tmp_path, {"status.yaml": STATUS}, program), stores, clock)
    assert await bot.says("stauts") == ["Do you mean STATUS? Reply YES to start, or HELP."]


@pytest.mark.parametrize("text, error", [
    ("Did you mean it?", "the did-you-mean text must name the trigger: write {{ trigger }} where it goes"),
    ("Did you mean {{ trigger }}, {{ name }}?", "the did-you-mean text can only use {{ trigger }}, not name"),
    ("Did you mean {{ trigger | upcas }}?", "the did-you-mean text cannot be sent: unknown filter 'upcas'"),
])
def test_a_did_you_mean_text_that_cannot_work_is_refused_where_it_is(tmp_path: Path, text: str, error: str) -> None:
    program = PROGRAM_YAML + f'  did_you_mean: "{text}"\n'
    with pytest.raises(FlowLoadError) as refused:
        flows_in(tmp_path, {"status.yaml": STATUS}, program)
    assert f"program.yaml:7:17: error: {error}" in refused.value.listing()


# -- short words, and the rules of a slip ----------------------------------------------------------

@pytest.mark.parametrize("typed, expected", [
    ("pya", "pay"), ("pays", "pay"), ("pat", "pay"),  # one slip, same first letter
    ("day", None), ("pa", None), ("p", None),  # another first letter; too short to be a slip
    ("goo", None), ("og", None),  # a two-letter trigger is never suggested
    ("schedlue", "schedule"), ("schedual", "schedule"),  # eight letters may carry two slips
    ("agnt", "agent"), ("agetn", "agent"), ("aegnt", "agent"),
    ("agxyz", None),  # three slips
    ("12345", None), ("yes", None), ("nope", None), ("no thanks", None),
])
def test_which_slips_are_read_as_which_trigger(typed: str, expected: str | None) -> None:
    suggestions = TriggerTypos(["pay", "go", "schedule", "agent"], COMPLIANCE_WORDS)
    assert suggestions.suggest(normalise(typed)) == expected


def test_how_many_slips_a_word_may_carry() -> None:
    assert [allowed_slips(length) for length in range(1, 11)] == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2]


def test_a_long_message_is_not_compared_at_all() -> None:
    suggestions = TriggerTypos(["status"], COMPLIANCE_WORDS)
    assert suggestions.suggest("s" * 2_000) is None


# -- stored between turns ------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "sqlite", "redis"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"
    opened = open_store(url)
    yield opened
    await opened.close()


async def test_every_store_keeps_the_offer(any_store: Store) -> None:
    store = any_store
    conversation = await load(store, SENDER)
    conversation.suggested = "subscribe me"
    inbound = Inbound("SM1", SENDER, body="subscrib em")
    assert await store.commit(Turn(inbound, conversation, conversation.version, (OFFER_STATUS,), None)) is \
        CommitResult.COMMITTED
    loaded = await load(store, SENDER)
    assert loaded.suggested == "subscribe me"
    loaded.end()
    assert await store.commit(Turn(Inbound("SM2", SENDER, body="no"), loaded, loaded.version, (), None)) is \
        CommitResult.COMMITTED
    assert (await load(store, SENDER)).suggested is None


def test_a_record_from_before_suggestions_loads_without_an_offer() -> None:
    before: dict[str, Any] = {"timeout": None, "returns": [], "channel": "+15550009999", "misses": 0, "reminders": 0}
    assert conversation_from_record(SENDER, None, None, {}, before, 1_000.0, 3).suggested is None
    conversation = Conversation(SENDER, suggested="status")
    kept = bookkeeping(conversation)
    assert conversation_from_record(SENDER, None, None, {}, kept, 1_000.0, 3).suggested == "status"


def test_a_timer_stored_as_null_loads_as_no_timer() -> None:
    """orjson writes an infinite time as null: a record from before durations had to be finite
    loads with no timer (one armed for ever never fires), not as an error on every message."""
    kept = {"timeout": [None, "ask"], "returns": [], "channel": "+15550001111"}
    assert conversation_from_record(SENDER, "demo", "ask", {}, kept, 1_000.0, 3).timeout is None



# -- properties ------------------------------------------------------------------------------------

WORDS = st.text(alphabet="abcdeilnoprstuy ", min_size=1, max_size=10).map(normalise).filter(bool)


@settings(max_examples=300, deadline=None, database=None)
@given(triggers=st.lists(WORDS, min_size=1, max_size=8, unique=True), message=WORDS)
def test_a_suggestion_is_another_trigger_and_always_the_same(triggers: list[str], message: str) -> None:
    suggestions = TriggerTypos(triggers, COMPLIANCE_WORDS)
    found = suggestions.suggest(message)
    assert found != message  # a trigger itself is never "suggested": it starts its flow
    assert found is None or (found in triggers and found not in COMPLIANCE_WORDS)
    shuffled = random.Random(message).sample(triggers, len(triggers))
    assert TriggerTypos(shuffled, COMPLIANCE_WORDS).suggest(message) == found == suggestions.suggest(message)
    for trigger in triggers:
        assert suggestions.suggest(trigger) is None


@settings(max_examples=200, deadline=None, database=None)
@given(message=WORDS)
def test_nothing_near_a_compliance_word_is_ever_offered(message: str) -> None:
    suggestions = TriggerTypos(["stomp", "stoop", "helps", "quilt", "ends", "started"], COMPLIANCE_WORDS)
    if suggestions.suggest(message) is not None:
        assert all(not _within(message, word) for word in COMPLIANCE_WORDS)


def _within(text: str, word: str) -> bool:
    from rapidfuzz.distance import OSA

    return OSA.distance(text, word) <= allowed_slips(len(word))
