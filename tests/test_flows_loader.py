"""Flow files: what loads, and the located, specific errors for what does not."""

from pathlib import Path

import pytest

from bot.flows.loader import load_flows
from bot.flows.problems import FlowLoadError
from tests.conftest import SHIPPED_FLOWS, write_flows

GOOD = """\
flow: demo
triggers: [DEMO]
start: ask
states:
  ask:
    say: "Yes or no?"
    replies:
      - keywords: [YES, NO, on, off, Y]
        save: answer
        go: done
    otherwise: "Please answer YES or NO."
  done:
    say: "You said {{ answer }}."
"""


def problems_of(tmp_path: Path, files: dict[str, str], **kwargs: str) -> list[str]:
    with pytest.raises(FlowLoadError) as raised:
        load_flows(write_flows(tmp_path / "flows", files, **kwargs))
    return [str(problem) for problem in raised.value.problems if problem.severity == "error"]


def test_shipped_flows_load_clean() -> None:
    flows = load_flows(SHIPPED_FLOWS)
    assert {"order_status", "signup"} <= set(flows.flows)
    assert flows.warnings == []
    assert "stop" in flows.program.help.lower()


def test_yaml_booleans_stay_words(tmp_path: Path) -> None:
    """YAML 1.1 would read YES/NO/on/off as True/False; ops staff mean the words."""
    flows = load_flows(write_flows(tmp_path, {"demo.yaml": GOOD}))
    rule = flows.flows["demo"].states["ask"].rules[0]
    assert rule.event == "YES / NO / on / off / Y"
    assert rule.matches("no", "NO") == "NO"


def test_each_flow_has_one_shared_machine(tmp_path: Path) -> None:
    flow = load_flows(write_flows(tmp_path, {"demo.yaml": GOOD})).flows["demo"]
    assert flow.machine.models == []  # conversations are throwaway models, never added
    assert set(flow.machine.states) == {"ask", "done", "end"}
    assert flow.machine.initial == "ask"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    broken = GOOD.replace('say: "You said {{ answer }}."', 'say: "You said {{ answer }}.')
    [problem] = problems_of(tmp_path, {"demo.yaml": broken})
    assert problem.startswith(f"{tmp_path / 'flows' / 'demo.yaml'}:")
    assert "error: YAML syntax" in problem


def test_unknown_target_state_points_at_the_go(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("go: done", "go: donne")})
    assert ":10:13: error: unknown state 'donne'" in problem
    assert "(did you mean 'done'? States in this flow: ask, done, or end to finish)" in problem


def test_unknown_field_suggests_the_right_one(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("    otherwise:", "    otherwize:")})
    assert ":11:5: error: unknown field 'otherwize' (did you mean 'otherwise'?)" in problem


def test_missing_field(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("start: ask\n", "")})
    assert "error: missing field 'start'" in problem


@pytest.mark.parametrize("word", ["STOP", "stop", "Unsubscribe", "HELP", "info", "START", "Cancel!"])
def test_flow_keyword_shadowing_compliance_word_is_refused(tmp_path: Path, word: str) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("[YES, NO, on, off, Y]", f"['{word}']")})
    assert ":8:" in problem and "is a compliance keyword" in problem


def test_trigger_shadowing_stop_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("[DEMO]", "[DEMO, STOP]")})
    assert ":2:" in problem and "'STOP' is a compliance keyword" in problem


def test_same_trigger_in_two_flows_is_refused(tmp_path: Path) -> None:
    other = GOOD.replace("flow: demo", "flow: other").replace("[DEMO]", "[demo]")
    [problem] = problems_of(tmp_path, {"a.yaml": GOOD, "b.yaml": other})
    assert "b.yaml:2:" in problem and "trigger 'demo' is also a trigger of flow 'demo'" in problem


def test_invalid_regex(tmp_path: Path) -> None:
    bad = GOOD.replace("- keywords: [YES, NO, on, off, Y]", "- pattern: '([0-9]'")
    [problem] = problems_of(tmp_path, {"demo.yaml": bad})
    assert "invalid regular expression" in problem and ":8:" in problem


def test_template_syntax_error(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("{{ answer }}", "{{ answer ")})
    assert ":13:20: error: template error: expected '}}', found end of file" in problem  # at the {{ left open


def test_duplicate_state_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD + "  done:\n    say: again\n"})
    assert "duplicate key 'done' (first written on line 12)" in problem


def test_reply_needs_exactly_one_test(tmp_path: Path) -> None:
    two = GOOD.replace("- keywords: [YES, NO, on, off, Y]", "- keywords: [YES]\n        pattern: 'x'")
    [problem] = problems_of(tmp_path, {"demo.yaml": two})
    assert "exactly one test" in problem


def test_fetch_timeout_is_bounded_by_twilio(tmp_path: Path) -> None:
    flow = GOOD.replace('    say: "You said {{ answer }}."',
                        '    fetch: {url: "http://127.0.0.1:9/x", save: r, timeout: 20s}')
    [problem] = problems_of(tmp_path, {"demo.yaml": flow})
    assert "timeout must be above 0 and at most 14s" in problem


def test_bad_duration(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, {"demo.yaml": GOOD.replace("start: ask", "start: ask\nexpires_after: soon")})
    assert "'soon' is not a duration" in problem


@pytest.mark.parametrize("forever", [".inf", ".nan", "-.inf", "9" * 400 + "s"])
def test_a_duration_must_be_one_can_wait(tmp_path: Path, forever: str) -> None:
    """YAML's infinity and not-a-number (and more digits than a float holds) are no timer: refused
    with the line, never armed (JSON has no infinity, so a stored timer would read back as null)."""
    flow = GOOD.replace("start: ask", f"start: ask\nexpires_after: {forever}")
    [problem] = problems_of(tmp_path, {"demo.yaml": flow})
    assert "is not a duration one can wait" in problem or "longer than zero" in problem


def test_program_file_is_required_and_checked(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "demo.yaml").write_text(GOOD)
    with pytest.raises(FlowLoadError, match="no program file"):
        load_flows(folder)
    problems = problems_of(tmp_path / "x", {"demo.yaml": GOOD},
                           program="program:\n  name: X\n  help: Text us.\n  opt_out: Bye\n  opt_in: Hi\n")
    assert any("must tell people how to opt out" in problem for problem in problems)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace("    otherwise:", "    otherwize:").replace("[DEMO]", "[STOP]")
    unknown = GOOD.replace("flow: demo", "flow: other").replace("[DEMO]", "[OTHER]").replace("go: done", "go: x")
    problems = problems_of(tmp_path, {"demo.yaml": bad, "other.yaml": unknown, "junk.yaml": "just: text\n"})
    assert len(problems) == 4, problems


def test_warnings_do_not_stop_loading(tmp_path: Path) -> None:
    lonely = GOOD + "  orphan:\n    say: nobody comes here\n"
    flows = load_flows(write_flows(tmp_path, {"demo.yaml": lonely}))
    assert [p.message for p in flows.warnings] == ["no path reaches state 'orphan'"]


def test_subfolders_are_not_flows(tmp_path: Path) -> None:
    folder = write_flows(tmp_path, {"demo.yaml": GOOD})
    (folder / "tests").mkdir()
    (folder / "tests" / "demo_test.yaml").write_text("not: a flow\n")
    assert set(load_flows(folder).flows) == {"demo"}
