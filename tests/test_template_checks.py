"""Templates checked by Liquid's own parser and analysis at lint time (bot/flows/template_checks.py),
located inside the template, and rendered at run time so that a failing part never silences a text
(bot/text/templates.py ``render_text``)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from bot.engine import Engine
from bot.flows.checks import CheckOptions
from bot.flows.loader import lint_paths, load_flows
from bot.flows.problems import FlowLoadError, Problem
from bot.flows.template_checks import measured_text, printed_values
from bot.flows.yamlsource import read_yaml
from bot.text import templates
from bot.types import Conversation, Inbound, Message
from tests.conftest import write_flows

TYPED = "Pineapple-Unicorn-7781"  # what a person typed: distinctive, so a leak into the log is found


def lint(tmp_path: Path, text: str, options: CheckOptions = CheckOptions()) -> list[str]:
    path = tmp_path / "flow.yaml"
    path.write_text(text, encoding="utf-8")
    return [_short(problem, path) for problem in lint_paths([path], options)]


def _short(problem: Problem, path: Path) -> str:
    return str(problem).removeprefix(f"{path}:")


def at(text: str, line: int, col: int) -> str:
    """What the file says from LINE:COL: where a finding points."""
    return text.splitlines()[line - 1][col - 1:]


ASK_RX = """\
flow: refill
triggers: [REFILL]
start: ask
states:
  ask:
    say: "Your prescription number?"
    replies:
      - pattern: '^\\d{7}$'
        save: rx
        go: done
    otherwise: "7 digits, please."
  done:
    say: "Refill of {{ rx | upcas }} booked."
"""


# -- the trial's typo ----------------------------------------------------------------------------

def test_an_unknown_filter_fails_lint_where_it_is_written(tmp_path: Path) -> None:
    assert lint(tmp_path, ASK_RX) == [
        "13:29: error: unknown filter 'upcas' (did you mean 'upcase'?)"]
    assert at(ASK_RX, 13, 29).startswith("upcas }}")
    with pytest.raises(FlowLoadError) as refused:  # the server refuses it too
        load_flows(write_flows(tmp_path / "flows", {"refill.yaml": ASK_RX}))
    assert "refill.yaml:13:29: error: unknown filter 'upcas'" in str(refused.value)
    assert lint(tmp_path, ASK_RX.replace("upcas", "upcase")) == []


def test_a_filter_nothing_is_close_to_lists_some_that_exist(tmp_path: Path) -> None:
    [problem] = lint(tmp_path, ASK_RX.replace("upcas", "yell"))
    assert problem.startswith("13:29: error: unknown filter 'yell' (Liquid's filters include upcase")
    [problem] = lint(tmp_path, ASK_RX.replace("upcas", "upper"))  # a name from another template language
    assert problem.endswith("unknown filter 'upper' (did you mean 'upcase'?)")


# -- where: inside the template, whatever the YAML style ------------------------------------------

STYLES = """\
flow: styles
triggers: [STYLES]
start: show
states:
  show:
    set: {rx: "1234567"}
    say:
      - "Double {{ rx | default: \\"none\\" }}\\n{{ rx | upcas }}"
      - 'It''s {{ rx | upcas }}'
      - Plain {{ rx }},
        folded {{ rx | upcas }}
      - |
        Block {{ rx }}
          indented {{ rx | upcas }}
      - >-
        Folded {{ rx }}

        again {{ rx | upcas }}
"""


def test_every_yaml_style_is_located_at_the_filter(tmp_path: Path) -> None:
    """Double quotes with escapes, single quotes with '', a plain text over two lines, a literal
    block and a folded block: each finding points at its filter, as an editor counts."""
    problems = lint(tmp_path, STYLES)
    places = [tuple(map(int, problem.split(":")[:2])) for problem in problems]
    assert [line for line, _ in places] == [8, 9, 11, 14, 18], problems
    for line, col in places:
        assert at(STYLES, line, col).startswith("upcas }}"), (line, col)


def test_a_single_text_where_a_list_may_be_is_located_too() -> None:
    data, source = read_yaml('say: "Hi {{ rx | upcas }}"\n')
    assert source.locate(("say", 0), data["say"].index("upcas")) == (1, 18)
    assert source.locate(("say", 0)) == (1, 6)  # without a place inside: the start of the text
    assert source.locate(("say", 1), 3) == (1, 6)  # a path the file does not have: no guessing inside


# -- every template a flow holds is checked -------------------------------------------------------

EVERYWHERE = """\
flow: everywhere
triggers: [ALL]
start: ask
anywhere:
  - keywords: [CANCEL ALL]
    say: "Cancelled {{ x | upcas }}"
    go: end
states:
  ask:
    set: {x: "{{ x | upcas }}"}
    say: "Ask {{ x | upcas }}"
    media: "https://example.com/{{ x | upcas }}.png"
    notify:
      to: "{{ x | upcas }}"
      say: "Note {{ x | upcas }}"
      media: ["https://example.com/{{ x | upcas }}.jpg"]
    replies:
      - keywords: [GO]
        say: "Going {{ x | upcas }}"
        go: pick
    otherwise: "Again {{ x | upcas }}"
    attempts: {max: 3, go: end, reask: ["Reask {{ x | upcas }}"]}
    remind: {after: 1h, say: "Remind {{ x | upcas }}"}
  pick:
    say: "Pick one"
    menu:
      save: choice
      choices:
        - {label: Pick-up, say: "Picked {{ x | upcas }}", go: decide}
        - {label: Delivery, go: decide}
    otherwise: "One or two."
  decide:
    branch:
      value: "{{ x | upcas }}"
      cases:
        - equal_to: "{{ x | upcas }}"
          go: look
      otherwise: post
  look:
    fetch:
      url: "https://example.com/{{ x | upcas }}"
      params: {q: "{{ x | upcas }}"}
      save: result
      fallback: "Down {{ x | upcas }}"
      not_found: "Missing {{ x | upcas }}"
    go: post
  post:
    fetch:
      url: "https://example.com/post"
      method: POST
      json: {a: {b: ["{{ x | upcas }}"]}}
      save: posted
    go: form
  form:
    fetch:
      url: "https://example.com/form"
      method: POST
      form: {f: "{{ x | upcas }}"}
      save: formed
"""


def test_every_field_that_holds_a_template_is_checked(tmp_path: Path) -> None:
    """set, say, media, notify (to, say, media), a reply's say, otherwise, attempts' reask, remind,
    a menu choice's say, branch value and case, fetch url, params, json, form, fallback, not_found,
    and the flow's anywhere replies: one error each, each at its own filter."""
    problems = lint(tmp_path, EVERYWHERE)
    places = sorted(tuple(map(int, problem.split(":")[:2])) for problem in problems)
    written = [(number, line.index("upcas") + 1) for number, line in enumerate(EVERYWHERE.splitlines(), start=1)
               if "upcas" in line]
    assert places == written and len(written) == 20
    assert all(" error: unknown filter 'upcas' (did you mean 'upcase'?)" in problem for problem in problems)


def test_a_menu_label_is_not_a_template(tmp_path: Path) -> None:
    flow = EVERYWHERE.replace("upcas", "upcase").replace("{label: Delivery,", "{label: 'Deliver to {{ zip }}',")
    [problem] = lint(tmp_path, flow)
    assert at(flow, 30, 31).startswith("{{ zip }}")
    assert problem == ("30:31: warning: a menu label is shown as written: {{ … }} and {% … %} are not filled in "
                       "here (write it as plain text)")


# -- tags and syntax ------------------------------------------------------------------------------

def test_an_unknown_tag_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    flow = ASK_RX.replace("{{ rx | upcas }}", "{% iff rx %}{{ rx }}{% endif %}")
    assert lint(tmp_path, flow) == ["13:24: error: unknown tag 'iff' (did you mean 'if'?)"]
    assert at(flow, 13, 24).startswith("iff rx %}")
    flow = ASK_RX.replace("{{ rx | upcas }}", "{% if rx %}{{ rx }}{% esle %}none{% elif x %}{% endif %}")
    assert lint(tmp_path, flow) == ["13:43: error: unknown tag 'esle' (did you mean 'else'?)",
                                    "13:57: error: unknown tag 'elif' (did you mean 'elsif'?)"]
    assert at(flow, 13, 43).startswith("esle %}") and at(flow, 13, 57).startswith("elif x %}")
    flow = ASK_RX.replace("{{ rx | upcas }}", "{% liquid assing y = rx %}{{ y }}")  # a line of a liquid tag
    assert lint(tmp_path, flow) == ["13:31: error: unknown tag 'assing' (did you mean 'assign'?)"]
    assert at(flow, 13, 31).startswith("assing y")


def test_a_tag_that_reads_template_files_is_an_error(tmp_path: Path) -> None:
    flow = ASK_RX.replace("{{ rx | upcas }}", "{% render 'footer' %}")
    assert lint(tmp_path, flow) == [
        "13:24: error: {% render %} reads another template file, and flows have none (write the text here instead)"]


def test_a_syntax_error_points_into_the_template(tmp_path: Path) -> None:
    flow = ASK_RX.replace('say: "Refill of {{ rx | upcas }} booked."', "say: |\n      Refill of\n      {{ rx booked.")
    [problem] = lint(tmp_path, flow)
    assert problem.startswith("15:7: error: template error: expected '}}', found end of file (close each {{ with }}")


# -- names nothing saves, and env names FLOW_ENV does not allow -----------------------------------

def test_a_name_never_saved_is_a_warning_with_the_saved_name_it_may_mean(tmp_path: Path) -> None:
    assert lint(tmp_path, ASK_RX.replace("{{ rx | upcas }}", "{{ r_x }}")) == [
        "13:24: warning: {{ r_x }} is never saved on any path to state 'done' (did you mean 'rx'? "
        "save: r_x in an earlier reply or fetch, or give it a default)"]


def test_a_default_makes_an_unset_name_fine_where_it_is_used(tmp_path: Path) -> None:
    assert lint(tmp_path, ASK_RX.replace("{{ rx | upcas }}", "{{ nick | upcase | default: 'you' }}")) == []
    # ...there only: the same name printed bare elsewhere in the text still comes out empty.
    assert lint(tmp_path, ASK_RX.replace("{{ rx | upcas }}", "{{ nick | default: 'you' }} ({{ nick }})")) == [
        "13:53: warning: {{ nick }} is never saved on any path to state 'done' "
        "(save: nick in an earlier reply or fetch, or give it a default)"]


def test_names_a_template_makes_itself_are_not_reported(tmp_path: Path) -> None:
    flow = ASK_RX.replace("{{ rx | upcas }}", "{% assign n = rx | size %}{{ n }} {% for digit in (1..n) %}"
                          "{{ forloop.index }}{{ digit }}{% endfor %} {% capture c %}x{% endcapture %}{{ c }}")
    assert lint(tmp_path, flow) == []


def test_an_env_name_flow_env_does_not_allow_suggests_an_allowed_one(tmp_path: Path) -> None:
    flow = ASK_RX.replace("{{ rx | upcas }}", "{{ env.ORDER_API | default: '/demo' }}")
    assert lint(tmp_path, flow, CheckOptions(allowed_env=frozenset({"ORDERS_API", "ONCALL_NUMBER"}))) == [
        "13:24: warning: {{ env.ORDER_API }} is not in FLOW_ENV, so flows cannot read it: it is always empty "
        "(did you mean 'ORDERS_API'? if flows may read it, add ORDER_API to FLOW_ENV (names separated by commas, "
        "in .env or the environment))"]
    assert lint(tmp_path, flow) == []  # the loader on its own does not know FLOW_ENV


TRIAL_STYLE = """\
flow: trial_style
triggers: [TRIAL]
start: count
states:
  count:
    set:
      tries: "{{ tries | plus: 1 }}"
      flow.variables.base: "{{ env.ORDERS_API | default: '/demo' }}"
    say: "Hello {{ name | default: \\"friend\\" }}, try {{ tries }}."
    replies:
      - pattern: '(?s).+'
        save: widgets.ask.inbound.Body
        go: echo
    otherwise: "Say something."
  echo:
    say:
      - "You said {{ widgets.ask.inbound.Body | truncate: 100 }}, at {{ flow.variables.base }}."
      - "From {{ contact.channel.address }}, {{ media.size }} pictures, first {{ media[0] | default: 'none' }}."
"""


def test_what_the_trial_and_studio_write_lints_clean(tmp_path: Path) -> None:
    """A counter reading itself, a default, Studio's widget and flow variables, the bot's own names."""
    assert lint(tmp_path, TRIAL_STYLE, CheckOptions.of_the_bot(["ORDERS_API"])) == []


# -- the checks of a text's length read Liquid's tokens too --------------------------------------

def test_measured_text_and_printed_values_come_from_liquid() -> None:
    assert measured_text("Hi {{ name }}!{% if x %} Yes{% endif %}", "#") == "Hi #!# Yes#"
    assert measured_text("{% raw %}{{ kept }}{% endraw %} {{- gone }}", "#") == "{{ kept }}#"
    assert [(value.path, set(value.filters)) for value in printed_values(
        "{{ result.status | truncate: 30 }} {% if a %}{{ note }}{% endif %} {% echo message | upcase %}")] == [
        ("result.status", {"truncate"}), ("note", set()), ("message", {"upcase"})]


# -- at run time: a failing part is left empty, the rest is said ---------------------------------

def test_render_text_leaves_the_failing_part_empty_and_logs_only_its_kind(caplog: pytest.LogCaptureFixture) -> None:
    template = templates.parse("Hi {{ name }}, code {{ code | upcas }}, {{ said | base64_decode }}end.")
    context = {"name": "Ann", "code": "x", "said": TYPED}
    with caplog.at_level(logging.ERROR, logger="bot.text.templates"):
        assert templates.render_text(template, context, "refill:done") == "Hi Ann, code , end."
        assert templates.render_text(template, context, "refill:done", partial=False) == ""
    assert [record.getMessage() for record in caplog.records] == [
        "template failed in refill:done: unknown filter 'upcas' (line 1, column 31 of "
        "'Hi {{ name }}, code {{ code | upcas }}, {{ said | base64_decode }}end.'); that part was left empty",
        "template failed in refill:done: unknown filter 'upcas' (line 1, column 31 of "
        "'Hi {{ name }}, code {{ code | upcas }}, {{ said | base64_decode }}end.'); left out"]
    assert templates.render_text(templates.parse("{{ said | base64_decode }}!"), context) == "!"


SPLIT_BILL = """\
flow: split_bill
triggers: [BILL]
start: ask
states:
  ask:
    say: "How many people, and your name?"
    replies:
      - pattern: '^\\S+$'
        save: said
        go: share
    otherwise: "One word, please."
  share:
    set: {label: "Bill {{ said | slice: said }} for {{ said | size }}"}
    branch:
      value: "{{ 120 | divided_by: said }}"
      cases:
        - equal_to: "0"
          go: nobody
      otherwise: each
  each:
    say:
      - "That is {{ 120 | divided_by: said }} dollars each. {{ label }}."
      - "{{ said | slice: said }}"
  nobody:
    say: "Nobody to split with. {{ label }}."
"""

_sids = itertools.count()


async def test_a_text_whose_template_fails_at_run_time_is_still_sent(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Lint cannot know that a reply will be no number: the text goes out with that part empty,
    a text that is nothing but the failing part is not sent, a branch tests the empty value, and
    the log names the state and the failure's kind, never what the person typed."""
    engine = Engine(load_flows(write_flows(tmp_path / "flows", {"split_bill.yaml": SPLIT_BILL})), None,  # type: ignore[arg-type]
                    env={})
    conversation = Conversation("+15551230000")
    replies = []
    with caplog.at_level(logging.ERROR):
        for text in ("BILL", TYPED):
            inbound = Inbound(message_sid=f"SM{next(_sids)}", sender=conversation.sender, body=text)
            outcome = await engine.step(conversation, Message(inbound), False)
            conversation, replies = outcome.conversation, outcome.replies
    assert replies == [f"That is  dollars each. Bill  for {len(TYPED)}."]
    messages = [record.getMessage() for record in caplog.records]
    assert [message.split(": ", 1)[0] for message in messages] == [
        "template failed in split_bill:share", "template failed in split_bill:share",
        "template failed in split_bill:each", "template failed in split_bill:each"]
    assert "FilterArgumentError at 'slice'" in messages[0] and "FilterArgumentError at 'divided_by'" in messages[1]
    assert not any(TYPED in message or TYPED in caplog.text for message in messages)
