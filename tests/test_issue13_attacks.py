"""Issue 13's flow-language features attacked the way a real sender or ops person would: each test
is a problem found by an adversarial pass (hostile texts, pictures and flow files), kept so it
stays fixed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from bot.flows import graph, yaml_hints
from bot.flows.loader import lint_paths, load_flows
from bot.flows.problems import FlowLoadError, Problem
from bot.flows.yamlsource import _Loader
from bot.simulator import simulation
from bot.types import Inbound, media_of
from tests.conftest import write_flows
from tests.test_cli import bot, output_of

SENDER = "+15551230000"


def lint(tmp_path: Path, **files: str) -> list[Problem]:
    return lint_paths([write_flows(tmp_path / "flows", {f"{name}.yaml": text for name, text in files.items()})])


# -- templates: a texted number must not make the bot loop for minutes -------------------------------

STARS = """\
flow: stars
triggers: [STARS]
start: ask
states:
  ask:
    say: "How many stars?"
    replies:
      - number: {min: 1}
        save: n
        go: show
    otherwise: "A number, please."
  show:
    say: "{% for i in (1..n) %}*{% endfor %}Thanks for the {{ n }} stars."
"""


async def test_a_texted_number_cannot_make_a_template_loop_for_minutes(tmp_path: Path) -> None:
    """Liquid had no loop limit: 10 million iterations took seconds of the one event loop every
    conversation shares (a billion, many minutes), and the reply was megabytes."""
    assert not [problem for problem in lint(tmp_path, stars=STARS) if problem.severity == "error"]
    flows = load_flows(tmp_path / "flows")
    async with simulation(flows) as sim:
        await sim.text("STARS", SENDER)
        started = time.perf_counter()
        replies = (await sim.text("3000000", SENDER)).replies
        assert time.perf_counter() - started < 1.0
    assert list(replies) == ["Thanks for the 3000000 stars."]  # the loop left empty, the rest said


# -- menus: labels are words people text back ----------------------------------------------------

MENU = """\
flow: order
triggers: [ORDER]
start: how
states:
  how:
    say: "How would you like it?"
    menu:
      save: method
      choices:
        - {{label: Pick-up, go: done}}
        - {{label: {label}, go: done}}
  done: {{say: "OK: {{{{ method }}}}."}}
"""


@pytest.mark.parametrize("label", ["Cancel", "STOP", "help", "Unsubscribe"])
def test_a_menu_label_that_is_a_compliance_word_is_refused(tmp_path: Path, label: str) -> None:
    """Lint passed "2) Cancel"; a person who chose it by its label was unsubscribed."""
    problems = lint(tmp_path, order=MENU.format(label=label))
    assert any(problem.severity == "error" and "compliance keyword" in problem.message and problem.line == 11
               for problem in problems), problems


@pytest.mark.parametrize("label", ['"Pick\\nup"', '"   "'])
def test_a_menu_label_is_one_line_of_text(tmp_path: Path, label: str) -> None:
    """A line break in a label made the numbered list look like two items and broke the diagram;
    a blank label listed "2)   "."""
    problems = lint(tmp_path, order=MENU.format(label=label))
    assert any(problem.severity == "error" and problem.line == 11 for problem in problems), problems


REFILL_TRIGGER = """\
flow: refill
triggers: [REFILL, STATUS]
start: a
states:
  a: {say: "Refill."}
"""

ORDER_WITH_TRIGGER_WORDS = """\
flow: order
triggers: [ORDER]
start: how
anywhere:
  - keywords: [status]
    say: "Your order is on its way."
states:
  how:
    say: "How would you like it?"
    menu:
      choices:
        - {label: Pick-up, also: [refill], go: done}
        - {label: Delivery, go: done}
  done: {say: "OK."}
"""


def test_a_menu_or_anywhere_word_that_is_a_trigger_is_warned(tmp_path: Path) -> None:
    """Triggers are routed first: "refill" started the refill flow instead of choosing Pick-up,
    and "status" never reached the flow-wide reply, with lint silent."""
    problems = lint(tmp_path, refill=REFILL_TRIGGER, order=ORDER_WITH_TRIGGER_WORDS)
    warned = {(problem.line, problem.severity) for problem in problems if "is a trigger of flow 'refill'" in
              problem.message}
    assert warned == {(5, "warning"), (12, "warning")}, problems


# -- attempts: the stop hint is not lost on the last try ------------------------------------------

TRIES = """\
flow: rx
triggers: [RX]
start: ask
states:
  ask:
    say: "Prescription number?"
    replies:
      - number: {}
        go: done
    otherwise: "Just the number, please."
    attempts: {max: 2, go: call_us}
  call_us: {say: "Please call us at 555-0100."}
  done: {say: "Thanks."}
"""


async def test_the_last_unmatched_answer_still_gets_the_stop_hint(tmp_path: Path) -> None:
    """A message that may be an opt-out gets the stop hint where no flow rule took it; on the last
    of the attempts it was dropped."""
    flows = load_flows(write_flows(tmp_path / "flows", {"rx.yaml": TRIES}))
    maybe = "Stop! That's the wrong address"
    async with simulation(flows) as sim:
        await sim.text("RX", SENDER)
        first = list((await sim.text(maybe, SENDER)).replies)
        last = list((await sim.text(maybe, SENDER)).replies)
    hint = flows.program.stop_hint
    assert first == ["Just the number, please.", hint]
    assert last == ["Please call us at 555-0100.", hint]


# -- pictures: a saved list of pictures is every picture -------------------------------------------

FORWARD = """\
flow: damaged
triggers: [DAMAGED]
start: ask
states:
  ask:
    say: "Send photos of the box."
    replies:
      - media: true
        save: photos
        go: thanks
    otherwise: "A photo, please."
  thanks:
    say: "Thanks, here is what we got."
    media: "{{ photos }}"
    notify:
      to: "+15550009999"
      say: "Damage report"
      media: "{{ media }}"
"""


async def test_media_of_a_saved_list_attaches_every_picture(tmp_path: Path) -> None:
    """``media: "{{ photos }}"`` printed the list as one string: two pictures became one address
    that Twilio cannot fetch, so the MMS (to the person and to staff) failed."""
    assert not lint(tmp_path, damaged=FORWARD)
    flows = load_flows(tmp_path / "flows")
    pictures = ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2")
    async with simulation(flows) as sim:
        await sim.text("DAMAGED", SENDER)
        received = await sim.inbox.receive(Inbound("SMphotos", SENDER, to="+15550001111", body="", media=pictures))
        (reply,) = received.replies
        (_, report), = sim.notified
    assert media_of(reply) == pictures
    assert media_of(report) == pictures


# -- timers: a reminder or timeout after no time at all --------------------------------------------

NUDGE = """\
flow: nudge
triggers: [NUDGE]
start: ask
states:
  ask:
    say: "Reply YES."
    replies:
      - {answer: yes, go: end}
    otherwise: "Reply YES."
    remind: {after: %s, say: "Still there?", times: 10}
    timeout: {after: %s, go: end}
"""


@pytest.mark.parametrize(("remind", "timeout", "line"), [("0s", "1h", 10), ("-5", "1h", 10), ("1h", "0s", 11)])
def test_a_reminder_or_timeout_after_no_time_is_refused(tmp_path: Path, remind: str, timeout: str,
                                                        line: int) -> None:
    """``after: 0s`` passed lint: ten reminders went out at once in the server, and in chat and
    conversation tests the second reminder had the first one's turn id, so it and the timeout
    were silently dropped."""
    problems = lint(tmp_path, nudge=NUDGE % (remind, timeout))
    assert any(problem.severity == "error" and "longer than zero" in problem.message and problem.line == line
               for problem in problems), problems


# -- flow files: what a word processor or a mistake pastes in -------------------------------------

def test_a_control_character_in_a_flow_file_is_a_located_error(tmp_path: Path) -> None:
    """A vertical tab (Word's line break, pasted) or a NUL made lint and load raise PyYAML's
    ReaderError: a traceback for lint, and the hot-reload watcher died, so later good edits were
    never loaded and ``status`` showed nothing."""
    flow = 'flow: hi\ntriggers: [HI]\nstart: a\nstates:\n  a: {say: "Hello\x0bthere"}\n'
    problems = lint(tmp_path, hi=flow)
    assert [(problem.line, problem.col) for problem in problems] == [(5, 18)], problems
    assert "U+000B" in problems[0].message
    with pytest.raises(FlowLoadError, match="hi.yaml:5:18"):
        load_flows(tmp_path / "flows")


def test_a_file_nested_too_deeply_is_an_error_not_a_crash(tmp_path: Path) -> None:
    problems = lint(tmp_path, deep="flow: x\nstart: a\nstates: " + "[" * 3000 + "]" * 3000 + "\n")
    assert len(problems) == 1 and "too deeply" in problems[0].message, problems


def test_the_yaml_hint_stays_fast_on_a_line_of_many_spaces() -> None:
    """The hint's line pattern backtracked quadratically over runs of spaces: 40,000 took seconds,
    inside the server's event loop when a hot reload refused the file."""
    text = "flow: x\nstart: a\nstates:\n  a:\n    say: Note: " + " " * 100_000 + "closed\n"
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        _Loader(text).get_single_node()
    started = time.perf_counter()
    explained = yaml_hints.explain(raised.value, text)
    assert time.perf_counter() - started < 0.5
    assert explained.line == 5 and "quote" in explained.hint


# -- split: weights YAML reads as infinite ---------------------------------------------------------

def test_an_infinite_split_weight_is_refused(tmp_path: Path) -> None:
    """``weight: 1e400`` is infinite: the shares became NaN and everyone took the other path."""
    flow = ("flow: promo\ntriggers: [OFFER]\nstart: pick\nstates:\n  pick:\n    split:\n"
            "      - {weight: 1e400, go: a}\n      - {weight: 1, go: b}\n  a: {say: A}\n  b: {say: B}\n")
    problems = lint(tmp_path, promo=flow)
    assert any(problem.severity == "error" and problem.line == 7 for problem in problems), problems


# -- timer cycles: a waiting state's failed lookup -------------------------------------------------

CYCLE_THROUGH_LOOKUP = """\
flow: look
triggers: [LOOK]
start: ask
states:
  ask:
    say: "Reply YES to look it up."
    replies:
      - {answer: yes, go: look}
    otherwise: "Reply YES."
    timeout: {after: 1h, go: look}
  look:
    fetch: {url: "https://orders.example/status", save: order, on_error: ask}
    say: "It is {{ order.status }}. OK?"
    replies:
      - {answer: yes, go: end}
    otherwise: "Reply YES."
"""


def test_a_timeout_cycle_through_a_waiting_states_failed_lookup_is_reported(tmp_path: Path) -> None:
    """A failed lookup moves on without waiting, in a state that waits too: while the service is
    down, ask → look → ask texts the person every hour; lint saw it only for states that do not wait."""
    problems = [problem for problem in lint(tmp_path, look=CYCLE_THROUGH_LOOKUP)
                if "comes back round" in problem.message]
    assert [(problem.line, problem.severity) for problem in problems] == [(10, "error")], problems


# -- anywhere: a reply that takes every message ---------------------------------------------------

CATCH_ALL_ANYWHERE = """\
flow: survey
triggers: [SURVEY]
start: rate
anywhere:
  - pattern: '.*'
    save: comment
    say: "Thanks for the comment."
states:
  rate:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        go: end
    otherwise: "1 to 5, please."
"""


def test_an_anywhere_reply_that_takes_any_message_is_warned(tmp_path: Path) -> None:
    """Heard first in every waiting state, it leaves every state's own replies unreachable."""
    problems = lint(tmp_path, survey=CATCH_ALL_ANYWHERE)
    assert any(problem.severity == "warning" and problem.line == 5 and "never" in problem.message
               for problem in problems), problems


# -- status: a wrong STORE_URL -------------------------------------------------------------------

def test_status_with_a_wrong_store_url_says_so_and_never_prints_its_password() -> None:
    unknown = bot("status", "--store", "postgres://ops:s3cret@db.example/textflow")
    assert unknown.returncode == 2 and "unsupported STORE_URL scheme" in unknown.stderr, output_of(unknown)
    assert "Traceback" not in unknown.stderr and "s3cret" not in unknown.stderr, output_of(unknown)
    down = bot("status", "--store", "redis://:s3cret@127.0.0.1:9/0")  # the discard port: nothing answers
    assert down.returncode == 2 and "cannot read the store" in down.stderr, output_of(down)
    assert "s3cret" not in down.stderr, output_of(down)


# -- graph: a label with a line break -------------------------------------------------------------

BROKEN_LINE = """\
flow: k
triggers: [GO]
start: ask
states:
  ask:
    say: "Pick it up?"
    replies:
      - keywords: ["pick\\nup"]
        go: done
      - pattern: "^ok\\r\\nthanks$"
        go: done
    otherwise: "Reply PICK UP."
  done: {say: "OK."}
"""


def test_a_label_with_a_line_break_keeps_each_transition_on_one_line(tmp_path: Path) -> None:
    """A keyword or pattern holding a line break (lint passes it) split its transition over two
    lines of Mermaid: a syntax error, so ``graph --html`` showed "could not be drawn"."""
    flow = load_flows(write_flows(tmp_path / "flows", {"k.yaml": BROKEN_LINE})).flows["k"]
    source = graph.mermaid(flow)
    assert "  n_ask --> n_done: pick up | /^ok thanks$/\n" in source, source
    assert all(line.startswith(("  ", "---", "title:", "stateDiagram")) for line in source.splitlines()), source
