"""Friendlier errors (issue 13, item 10): compliance words inside ``any_of``, ``answer:`` in any
case, "did you mean" for states and fields, and YAML syntax errors that name the mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine import Engine
from bot.flows.loader import lint_paths, load_flows
from bot.flows.problems import FlowLoadError, Problem
from bot.flows.suggest import closest, closest_state
from bot.flows.yamlsource import YamlError, read_yaml
from bot.flowtests import read_conversation_file
from tests.conftest import PROGRAM_YAML, write_flows
from tests.test_engine import CannedFetcher, Chat

REFILL = """\
flow: refill
triggers: [REFILL]
start: ask
states:
  ask:
    say: "Your 7-digit prescription number? Or CANCEL MY REFILL."
    replies:
      - any_of: [cancel, never mind]
        say: "OK, no refill."
        go: end
      - pattern: '^\\d{7}$'
        save: rx
        say: "Refill {{ rx }} is on its way."
        go: end
    otherwise: "7 digits, please, or CANCEL MY REFILL."
"""


def lint(tmp_path: Path, files: dict[str, str], program: str = PROGRAM_YAML) -> list[Problem]:
    return lint_paths([write_flows(tmp_path / "flows", files, program=program)])


def errors(tmp_path: Path, files: dict[str, str], program: str = PROGRAM_YAML) -> list[str]:
    with pytest.raises(FlowLoadError) as raised:
        load_flows(write_flows(tmp_path / "flows", files, program=program))
    return [str(problem) for problem in raised.value.problems if problem.severity == "error"]


def chat(tmp_path: Path, files: dict[str, str]) -> Chat:
    return Chat(Engine(load_flows(write_flows(tmp_path / "flows", files)), CannedFetcher(), env={}))


# -- a compliance word inside any_of -------------------------------------------------------------


def test_any_of_may_hold_a_compliance_word_with_a_warning_at_the_word(tmp_path: Path) -> None:
    [problem] = lint(tmp_path, {"refill.yaml": REFILL})
    assert problem.severity == "warning"
    assert (problem.line, problem.col) == (8, 18)
    assert problem.message.startswith("'cancel' is a compliance keyword: this reply takes it inside a longer message")
    assert "a message of just CANCEL still opts the sender out" in problem.message


async def test_cancel_inside_a_message_is_the_flows_but_cancel_alone_still_opts_out(tmp_path: Path) -> None:
    person = chat(tmp_path, {"refill.yaml": REFILL})
    await person.send("refill")
    assert await person.send("Cancel my refill") == ["OK, no refill."]
    assert not person.opted_out
    await person.send("refill")
    assert await person.send("cancel") == ["You are unsubscribed. Reply START to come back."]
    assert person.opted_out and not person.conversation.active


async def test_an_any_of_compliance_word_never_outranks_a_revocation(tmp_path: Path) -> None:
    """"cancel my subscription" contains the flow's word, but is a request to stop: it opts out."""
    person = chat(tmp_path, {"refill.yaml": REFILL})
    await person.send("refill")
    assert await person.send("cancel my subscription") == ["You are unsubscribed. Reply START to come back."]
    assert person.opted_out


async def test_an_any_of_without_compliance_words_still_outranks_a_revocation(tmp_path: Path) -> None:
    survey = REFILL.replace("[cancel, never mind]", "[stop texting me]")
    person = chat(tmp_path, {"refill.yaml": survey})
    await person.send("refill")
    assert await person.send("stop texting me") == ["OK, no refill."]
    assert not person.opted_out


def test_anywhere_any_of_with_a_compliance_word_warns_at_its_place(tmp_path: Path) -> None:
    flow = REFILL.replace("start: ask\n", "start: ask\nanywhere:\n  - any_of: [quit]\n    go: end\n")
    warnings = [p for p in lint(tmp_path, {"refill.yaml": flow}) if "'quit' is a compliance keyword" in p.message]
    assert [(p.line, p.col) for p in warnings] == [(5, 14)]


@pytest.mark.parametrize(("field", "where"), [("keywords: [CANCEL]", "8:20"),
                                              ("keywords: [never mind, Cancel!]", "8:32")])
def test_keywords_still_refuse_a_compliance_word(tmp_path: Path, field: str, where: str) -> None:
    [problem] = errors(tmp_path, {"refill.yaml": REFILL.replace("any_of: [cancel, never mind]", field)})
    assert f":{where}: error:" in problem and "is a compliance keyword" in problem


def test_triggers_and_menu_synonyms_still_refuse_a_compliance_word(tmp_path: Path) -> None:
    [trigger] = errors(tmp_path, {"refill.yaml": REFILL.replace("[REFILL]", "[REFILL, CANCEL]")})
    assert ":2:20: error: 'CANCEL' is a compliance keyword" in trigger
    menu = REFILL.replace("""    replies:
      - any_of: [cancel, never mind]
        say: "OK, no refill."
        go: end
      - pattern: '^\\d{7}$'
        save: rx
        say: "Refill {{ rx }} is on its way."
        go: end
""", """    menu:
      choices:
        - {label: Pick-up, go: end}
        - {label: Delivery, also: [quit], go: end}
""")
    [synonym] = errors(tmp_path / "menu", {"refill.yaml": menu})
    assert "'quit' is a compliance keyword" in synonym


# -- answer: in any case ---------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["YES", "Yes", "yes", " yes "])
async def test_answer_is_read_in_any_case(tmp_path: Path, written: str) -> None:
    flow = REFILL.replace("any_of: [cancel, never mind]", f"answer: '{written}'")
    person = chat(tmp_path, {"refill.yaml": flow})
    await person.send("refill")
    assert await person.send("yeah") == ["OK, no refill."]


def test_a_misspelt_answer_gets_a_did_you_mean(tmp_path: Path) -> None:
    [problem] = errors(tmp_path, {"refill.yaml": REFILL.replace("any_of: [cancel, never mind]", "answer: yse")})
    assert problem.endswith(":8:17: error: Input should be 'yes' or 'no' (did you mean 'yes'?)")


# -- did you mean: states ---------------------------------------------------------------------------

EVERYWHERE = """\
flow: tour
triggers: [TOUR]
start: ask
anywhere:
  - keywords: [ABORT]
    go: end
states:
  ask:
    say: "Pick one."
    menu:
      choices:
        - {label: Branch, go: check}
        - {label: Lookup, go: lookup}
    attempts: {max: 3, go: given_up}
    timeout: {after: 1h, go: given_up}
  check:
    branch:
      value: "{{ message }}"
      cases:
        - {equal_to: a, go: lookup}
      otherwise: given_up
  lookup:
    fetch: {url: "https://example.com/x", save: found, on_error: given_up}
    enter: {flow: other, then: given_up}
  coin:
    split:
      - {weight: 1, go: check}
      - {weight: 1, go: lookup}
  given_up:
    say: "Bye."
"""
OTHER = "flow: other\ntriggers: [OTHER]\nstart: a\nstates:\n  a:\n    say: hi\n"


@pytest.mark.parametrize(("old", "new", "where"), [
    ("start: ask", "start: aks", "3:8"),
    ("    go: end\nstates", "    go: ned\nstates", "6:9"),
    ("{label: Branch, go: check}", "{label: Branch, go: chekc}", "12:31"),
    ("{max: 3, go: given_up}", "{max: 3, go: givenup}", "14:28"),
    ("{after: 1h, go: given_up}", "{after: 1h, go: Given_Up}", "15:30"),
    ("{equal_to: a, go: lookup}", "{equal_to: a, go: lokup}", "20:29"),
    ("      otherwise: given_up", "      otherwise: given-up", "21:18"),
    ("save: found, on_error: given_up}", "save: found, on_error: give_up}", "23:66"),
    ("then: given_up}", "then: gven_up}", "24:32"),
    ("{weight: 1, go: check}", "{weight: 1, go: chek}", "27:25"),
])
def test_every_reference_to_a_state_suggests_the_closest(tmp_path: Path, old: str, new: str, where: str) -> None:
    flow = EVERYWHERE.replace(old, new, 1)
    assert flow != EVERYWHERE
    [problem] = errors(tmp_path, {"tour.yaml": flow, "other.yaml": OTHER})
    typo = new.split(": ")[-1].rstrip("}\n").split("\n")[0]
    assert f":{where}: error: unknown state '{typo}' (did you mean '" in problem
    assert "? States in this flow: ask, check, coin, given_up, lookup, or end to finish)" in problem


def test_a_word_for_ending_suggests_end_and_nothing_close_suggests_nothing(tmp_path: Path) -> None:
    [finish] = errors(tmp_path, {"tour.yaml": EVERYWHERE.replace("otherwise: given_up", "otherwise: finish"),
                                 "other.yaml": OTHER})
    assert "unknown state 'finish' (did you mean 'end'? States in this flow:" in finish
    [far] = errors(tmp_path / "far", {"tour.yaml": EVERYWHERE.replace("otherwise: given_up", "otherwise: xyz"),
                                      "other.yaml": OTHER})
    assert "unknown state 'xyz' (states in this flow: ask, check" in far


def test_an_unknown_flow_suggests_the_closest(tmp_path: Path) -> None:
    [problem] = errors(tmp_path, {"tour.yaml": EVERYWHERE.replace("flow: other,", "flow: othr,"), "other.yaml": OTHER})
    assert "unknown flow 'othr' (did you mean 'other'? Flows: other, tour)" in problem


# -- did you mean: fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "meant"), [
    ("    replies:", "    repiles:", "replies"),
    ("        go: end\n      - pattern", "        next: end\n      - pattern", "go"),
    ("      - any_of:", "      - any:", "any_of"),
    ("    otherwise:", "    Otherwise:", "otherwise"),
    ("triggers:", "trigger:", "triggers"),
])
def test_an_unknown_field_suggests_the_closest_allowed_one(tmp_path: Path, old: str, new: str, meant: str) -> None:
    [problem] = errors(tmp_path, {"refill.yaml": REFILL.replace(old, new, 1)})
    assert f"error: unknown field '{new.split(':')[0].split()[-1]}' (did you mean '{meant}'?)" in problem


def test_a_field_nothing_like_any_lists_the_allowed_ones(tmp_path: Path) -> None:
    [problem] = errors(tmp_path, {"refill.yaml": REFILL.replace("        save: rx", "        zzz: rx")})
    assert ("unknown field 'zzz' (allowed here: keywords, any_of, pattern, number, answer, media, save, say, go, "
            "language)" in problem)


def test_a_misspelt_required_field_is_one_problem_not_two(tmp_path: Path) -> None:
    """Pydantic reports `strat` as unknown and `start` as missing; the first says it all."""
    assert errors(tmp_path, {"refill.yaml": REFILL.replace("start: ask", "strat: ask")}) == [
        f"{tmp_path / 'flows' / 'refill.yaml'}:3:1: error: unknown field 'strat' (did you mean 'start'?)"]


def test_program_file_fields_get_a_did_you_mean_and_no_false_no_program_file(tmp_path: Path) -> None:
    program = PROGRAM_YAML.replace("  help:", "  hlep:").replace("  fallback:", "  fallbak:")
    problems = errors(tmp_path, {"refill.yaml": REFILL}, program=program)
    assert [problem.split(": error: ")[1] for problem in problems] == [
        "unknown field 'hlep' (did you mean 'help'?)", "unknown field 'fallbak' (did you mean 'fallback'?)"]


def test_an_unreadable_program_file_is_not_also_missing(tmp_path: Path) -> None:
    problems = errors(tmp_path, {"refill.yaml": REFILL}, program="program:\n  name: 'Acme\n")
    assert len(problems) == 1 and "this quoted text is never closed" in problems[0]


def test_conversation_test_fields_get_a_did_you_mean(tmp_path: Path) -> None:
    file = tmp_path / "refill_test.yaml"
    file.write_text("tests:\n  - name: x\n    turns:\n      - send: refill\n        expcet: hi\n      - snd: x\n")
    spec, problems = read_conversation_file(file)
    assert spec is None
    assert [(p.line, p.col, p.message, p.hint) for p in problems] == [
        (5, 9, "unknown field 'expcet'", "did you mean 'expect'?"),
        (6, 9, "unknown field 'snd'", "did you mean 'send'?")]


@pytest.mark.parametrize(("written", "choices", "meant"), [
    ("repiles", ["say", "replies", "go"], "replies"),
    ("Done", ["ask", "done"], "done"),
    ("given-up", ["given_up"], "given_up"),
    ("any", ["say", "any_of"], "any_of"),
    ("go", ["goodbye", "say"], None),
    ("xyz", ["ask", "done"], None),
])
def test_closest(written: str, choices: list[str], meant: str | None) -> None:
    assert closest(written, choices) == meant


def test_closest_state_knows_words_for_the_end() -> None:
    assert closest_state("finish", ["ask"], "end") == "end"
    assert closest_state("done", ["done"], "end") == "done"


# -- YAML syntax errors -----------------------------------------------------------------------------


def yaml_error(text: str) -> YamlError:
    with pytest.raises(YamlError) as raised:
        read_yaml(text)
    return raised.value


STATE = "flow: x\nstates:\n  a:\n"


def test_a_colon_in_a_text_says_to_quote_it_and_shows_the_line_quoted() -> None:
    error = yaml_error(STATE + "    say: Note: we are closed\n")
    assert (error.line, error.col) == (4, 14)
    assert "mapping values are not allowed here" in error.message
    assert error.hint == "quote text that contains ': ', like this: say: \"Note: we are closed\""


def test_a_colon_in_a_list_item_with_double_quotes_is_shown_in_single_quotes() -> None:
    error = yaml_error(STATE + '    say:\n      - He said "no": fine: ok\n')
    assert error.hint.endswith("""like this: - 'He said "no": fine: ok'""")


def test_a_field_indented_under_a_text_is_an_indentation_problem_not_a_quoting_one() -> None:
    error = yaml_error(STATE + "    say: hi\n      go: end\n")
    assert (error.line, error.col) == (5, 9)
    assert error.message == "YAML syntax: this field is indented more than the one above it"


@pytest.mark.parametrize(("text", "where", "hint"), [
    (STATE + "\tsay: hi\n", (4, 1), "YAML indents with spaces, never tabs: replace the tab with spaces"),
    (STATE + "    say:\thi\n", (4, 9), "replace the tab with a space"),
])
def test_a_tab_is_named(text: str, where: tuple[int, int], hint: str) -> None:
    error = yaml_error(text)
    assert ((error.line, error.col), error.message, error.hint) == (where, "YAML syntax: a tab character", hint)


def test_an_unclosed_quote_points_where_it_opens_not_at_the_end_of_the_file() -> None:
    error = yaml_error(STATE + '    say: "hello there\n    go: b\n  b:\n    say: hi\n')
    assert (error.line, error.col) == (4, 10)
    assert error.message == "YAML syntax: this quoted text is never closed: it runs to the end of the file"
    assert error.hint.startswith('end the text with " on the line where it ends')


def test_an_apostrophe_in_single_quotes_is_named() -> None:
    error = yaml_error(STATE + "    say: 'It's here'\n")
    assert (error.line, error.col, error.message) == (4, 14, "YAML syntax: an apostrophe ends a text in single quotes")
    assert error.hint.endswith("""put the text in double quotes: say: "It's here\"""")


def test_words_after_a_closing_quote_are_shown_inside_it() -> None:
    error = yaml_error(STATE + '    say: "Hi" there\n')
    assert error.message == "YAML syntax: the text goes on after its closing quote"
    assert error.hint == 'put all of the text inside the quotes: say: "Hi there"'


@pytest.mark.parametrize("value", ["{{ name }}, welcome", "{{ name }}", "{% if x %}a{% endif %}"])
def test_a_template_at_the_start_of_a_value_says_to_quote_it(value: str) -> None:
    """``say: {{ name }}`` is valid YAML (a mapping used as a key), which used to crash lint."""
    error = yaml_error(STATE + f"    say: {value}\n")
    assert (error.line, error.col) == (4, 10)
    assert error.message == "YAML syntax: a text starting with '{' is read as a mapping"
    assert error.hint == f'quote a text that starts with {{{{ or {{%, like this: say: "{value}"'


def test_a_template_at_the_start_of_a_list_item_says_to_quote_it() -> None:
    error = yaml_error(STATE + "    say:\n      - {{ name }} hi\n")
    assert (error.line, error.col) == (5, 9)
    assert error.hint.endswith('like this: - "{{ name }} hi"')


@pytest.mark.parametrize(("value", "meaning"), [
    ("@home", "is not allowed"), ("`hi`", "is not allowed"), ("*important*", "is read as an alias"),
    ("!important", "is read as a tag"), ("| hello", "is read as a block of lines"),
    ("[Reply] YES", "is read as a list"),
])
def test_a_text_starting_with_a_yaml_character_says_to_quote_it(value: str, meaning: str) -> None:
    error = yaml_error(STATE + f"    say: {value}\n")
    assert (error.line, error.col) == (4, 10)
    assert error.message.startswith(f"YAML syntax: a text starting with {value[0]!r} {meaning}")
    assert error.hint.endswith(f'like this: say: "{value}"')


def test_a_misindented_line_is_named() -> None:
    error = yaml_error(STATE + "    say: hi\n   go: b\n")
    assert (error.line, error.col) == (5, 4)
    assert error.message == "YAML syntax: the indentation of this line does not fit the lines above it"


def test_a_list_never_closed_points_where_it_opens() -> None:
    error = yaml_error("flow: x\ntriggers: [JOIN, SIGNUP\nstart: a\n")
    assert (error.line, error.col) == (2, 11)
    assert "never closed with ']'" in error.message


def test_yaml_hints_reach_lint_with_file_line_and_column(tmp_path: Path) -> None:
    [problem] = errors(tmp_path, {"refill.yaml": REFILL.replace('say: "OK, no refill."', "say: OK: no refill.")})
    assert problem == (f"{tmp_path / 'flows' / 'refill.yaml'}:9:16: error: YAML syntax: mapping values are not "
                       "allowed here: YAML reads the ': ' in this text as the start of a field (quote text that "
                       "contains ': ', like this: say: \"OK: no refill.\")")


@pytest.mark.parametrize(("text", "line", "shown"), [
    (STATE + "    say: hi\n    go end\n  b:\n    say: x\n", 5, "go: end"),
    (STATE + '    say "hi"\n    go: b\n', 4, 'say: "hi"'),
])
def test_a_field_without_its_colon_is_shown_with_it(text: str, line: int, shown: str) -> None:
    error = yaml_error(text)
    assert (error.line, error.col, error.message) == (line, 5, "YAML syntax: this line has no ':' after its field name")
    assert error.hint.endswith(f"like this: {shown}")


def test_a_quote_never_closed_on_its_line_points_there_not_at_the_quote_that_ends_it() -> None:
    error = yaml_error(STATE + '    say: "Hello there\n    otherwise: "Say HI."\n')
    assert (error.line, error.col) == (4, 10)
    assert error.message == 'YAML syntax: this quoted text is never closed on its line: it runs on to the " on line 5'
