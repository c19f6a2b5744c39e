"""Program texts that list the flows (issue 13, item 11): ``{{ triggers }}`` in HELP or the
fallback names the flows people can start, so adding a flow updates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine import Engine
from bot.flows.checks import CheckOptions
from bot.flows.loader import FlowSet, lint_paths, load_flows
from bot.flows.problems import FlowLoadError
from bot.flows.program_texts import Entry, joined, values
from tests.conftest import SHIPPED_FLOWS, write_flows
from tests.test_engine import CannedFetcher, Chat

PROGRAM = """\
program:
  name: Acme Pharmacy
  help: "Acme Pharmacy: text {{ triggers_described }}. Reply STOP to opt out."
  opt_out: "You're unsubscribed."
  opt_in: "You're subscribed again."
  fallback: "Sorry, I didn't understand that. Text {{ triggers }}, or HELP."
  languages:
    es:
      help: "Acme: envíe {{ triggers }}. Responda ALTO para darse de baja."
      opt_out: "Baja."
      opt_in: "Alta."
"""


def flow(name: str, triggers: str, listed: str = "") -> str:
    return (f"flow: {name}\ntriggers: {triggers}\n{listed}start: a\nstates:\n"
            f"  a:\n    say: \"{name}\"\n")


FLOWS = {"status.yaml": flow("status", "[STATUS, ORDER]", "listed: to track an order\n"),
         "join.yaml": flow("join", "[join, SUBSCRIBE ME]"),
         "agent.yaml": flow("agent", "[AGENT]", "listed: false\n"),
         "reminder.yaml": "flow: reminder\nstart: a\nstates:\n  a:\n    say: hi\n"}


def load(tmp_path: Path, files: dict[str, str] = FLOWS, program: str = PROGRAM) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", files, program=program))


def test_triggers_list_each_listed_flow_by_its_first_trigger_in_alphabetical_order(tmp_path: Path) -> None:
    program = load(tmp_path).program
    assert program.fallback == "Sorry, I didn't understand that. Text join or STATUS, or HELP."
    assert program.help == "Acme Pharmacy: text join or STATUS to track an order. Reply STOP to opt out."


def test_other_languages_join_with_their_own_word(tmp_path: Path) -> None:
    program = load(tmp_path).program
    assert program.languages["es"].help == "Acme: envíe join o STATUS. Responda ALTO para darse de baja."


def test_joining() -> None:
    assert [joined(items, "en") for items in ([], ["A"], ["A", "B"], ["A", "B", "C"])] == [
        "", "A", "A or B", "A, B or C"]
    assert joined(["A", "B", "C"], "fr") == "A, B ou C"
    assert joined(["A", "B", "C"], "pt-BR") == "A, B ou C"
    assert joined(["A", "B", "C"], "sv") == "A, B, C"  # no word known: commas only
    assert values([Entry("REFILL", "to order a refill"), Entry("STATUS")], "en") == {
        "triggers": "REFILL or STATUS", "triggers_described": "REFILL to order a refill or STATUS"}


async def test_the_engine_sends_the_rendered_texts_and_adding_a_flow_updates_them(tmp_path: Path) -> None:
    person = Chat(Engine(load(tmp_path), CannedFetcher(), env={}))
    assert await person.send("hello") == ["Sorry, I didn't understand that. Text join or STATUS, or HELP."]
    assert await person.send("ayuda") == ["Acme: envíe join o STATUS. Responda ALTO para darse de baja."]
    refill = flow("refill", "[REFILL]", "listed: to order a refill\n")
    person = Chat(Engine(load(tmp_path / "more", {**FLOWS, "refill.yaml": refill}), CannedFetcher(), env={}))
    assert await person.send("hello") == ["Sorry, I didn't understand that. Text join, REFILL or STATUS, or HELP."]
    assert await person.send("HELP") == [
        "Acme Pharmacy: text join, REFILL to order a refill or STATUS to track an order. Reply STOP to opt out."]


def test_the_shipped_program_lists_the_shipped_flows() -> None:
    program = load_flows(SHIPPED_FLOWS).program
    assert program.fallback == ("Sorry, I didn't understand that. Text JOIN or STATUS, "
                                "or HELP for everything you can do.")
    assert program.help.startswith("Acme Orders: text JOIN to get shipping updates or STATUS to track an order. ")


def test_help_must_still_name_stop_once_rendered(tmp_path: Path) -> None:
    hidden = PROGRAM.replace("Reply STOP to opt out.", "{% if false %}Reply STOP to opt out.{% endif %}")
    with pytest.raises(FlowLoadError) as raised:
        load(tmp_path, program=hidden)
    [problem] = raised.value.problems
    assert (problem.line, problem.col) == (3, 9)
    assert problem.message == "the help text must tell people how to opt out (mention STOP)"


def test_an_unknown_name_is_an_error_with_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(FlowLoadError) as raised:
        load(tmp_path, program=PROGRAM.replace("{{ triggers }}, or HELP", "{{ trigers }}, or HELP"))
    [problem] = raised.value.problems
    assert (problem.line, problem.col, problem.message, problem.hint) == (
        6, 13, "a program text cannot show {{ trigers }}", "did you mean 'triggers'?")


def test_an_unknown_filter_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FlowLoadError, match="unknown filter 'upcas'"):
        load(tmp_path, program=PROGRAM.replace("{{ triggers }}, or HELP", "{{ triggers | upcas }}, or HELP"))


def test_filters_work(tmp_path: Path) -> None:
    program = load(tmp_path, program=PROGRAM.replace("{{ triggers }}, or", "{{ triggers | downcase }}, or")).program
    assert program.fallback == "Sorry, I didn't understand that. Text join or status, or HELP."


def test_segments_are_counted_on_the_rendered_text(tmp_path: Path) -> None:
    many = {f"f{n}.yaml": flow(f"f{n}", f"[KEYWORD{n:02}]") for n in range(40)}
    folder = write_flows(tmp_path / "flows", many, program=PROGRAM)
    warnings = [problem for problem in lint_paths([folder], CheckOptions())
                if "program.yaml" in problem.file and "SMS segments" in problem.message]
    assert [(p.line, p.col, p.message.split(" (")[0]) for p in warnings] == [
        (3, 9, "this text costs 4 SMS segments"), (6, 13, "this text costs 4 SMS segments"),
        (9, 13, "this text costs 8 SMS segments")]


def test_a_text_that_lists_no_flow_warns(tmp_path: Path) -> None:
    flows = load(tmp_path, {"reminder.yaml": FLOWS["reminder.yaml"]})
    [warning] = [problem for problem in flows.warnings if problem.file.endswith("program.yaml")]
    assert warning.message == "no flow is listed here: no flow has triggers, or every one has listed: false"


def test_a_listed_text_on_a_flow_without_triggers_warns(tmp_path: Path) -> None:
    lonely = "flow: reminder\nlisted: to be reminded\nstart: a\nstates:\n  a:\n    say: hi\n"
    flows = load(tmp_path, {**FLOWS, "reminder.yaml": lonely})
    [warning] = [problem for problem in flows.warnings if problem.file.endswith("reminder.yaml")]
    assert warning.line == 2
    assert warning.message == ("listed: describes the flow in the program's {{ triggers_described }}, "
                               "but a flow without triggers is never listed")


def test_texts_without_a_placeholder_are_left_as_written(tmp_path: Path) -> None:
    plain = PROGRAM.replace("{{ triggers_described }}", "STATUS").replace("{{ triggers }}", "STATUS")
    program = load(tmp_path, program=plain).program
    assert program.fallback == "Sorry, I didn't understand that. Text STATUS, or HELP."
