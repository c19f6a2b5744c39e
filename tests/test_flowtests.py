"""Conversation tests: the shipped ones pass, a mismatch is reported readably, and ``wait:``
lets time pass in a test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.flows.loader import load_flows
from bot.flowtests import RunResult, TurnSpec, check_turn, run_conversations
from tests.conftest import SHIPPED_FLOWS, write_flows


async def test_every_shipped_conversation_test_passes() -> None:
    run = await run_conversations(load_flows(SHIPPED_FLOWS), [SHIPPED_FLOWS / "tests"])
    assert run.problems == []
    failures = [f"{result.name}:\n{result.report}" for result in run.results if not result.passed]
    assert failures == []
    tested = {Path(result.file).stem for result in run.results}
    assert {"status", "signup", "compliance"} <= tested  # every shipped flow has tests
    assert len(run.results) >= 10


async def test_a_mismatch_stops_the_test_with_a_diff(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("""\
tests:
  - name: wrong
    turns:
      - send: JOIN
        expect_contains: first name
      - send: Ada
        expect: "Thanks Ada!"
      - send: yes
        expect_contains: never reached
""")
    run = await run_conversations(load_flows(SHIPPED_FLOWS), [tmp_path])
    [result] = run.results
    assert not result.passed and result.turns_run == 2
    assert "turn 2: > Ada" in result.report
    assert "-< Thanks Ada!" in result.report
    assert "+< Thanks, Ada! Sign you up for shipping updates? Reply YES or NO." in result.report


async def test_unreadable_test_file_is_located(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("tests:\n  - name: x\n    turns:\n      - sned: hi\n")
    run = await run_conversations(load_flows(SHIPPED_FLOWS), [tmp_path])
    assert not run.ok
    assert any("4:9: error: unknown field 'sned' (did you mean 'send'?)" in str(p) for p in run.problems)


@pytest.mark.parametrize(("turn", "replies", "fails"), [
    (TurnSpec(send="x", expect=[]), [], False),
    (TurnSpec(send="x", expect=[]), ["hi"], True),
    (TurnSpec(send="x", expect="hi"), ["hi"], False),
    (TurnSpec(send="x", expect=["a", "b"]), ["a"], True),
    (TurnSpec(send="x", expect_contains=["a", "c"]), ["abc"], False),
    (TurnSpec(send="x", expect_contains="z"), ["abc"], True),
    (TurnSpec(send="x", expect_regex=r"^b", expect_contains="a"), ["a", "b"], False),
    (TurnSpec(send="x", expect_regex=r"^c"), ["a", "b"], True),
    (TurnSpec(send="x"), ["anything"], False),
])
def test_check_turn(turn: TurnSpec, replies: list[str], fails: bool) -> None:
    assert bool(check_turn(turn, replies)) is fails


# -- wait: time passing in a test -----------------------------------------------------------------

NUDGE_FLOW = """\
flow: feedback
triggers: [RATE]
start: ask
states:
  ask:
    say: "How did we do? Reply 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: rating
        go: thanks
    otherwise: "Please reply with a number from 1 to 5."
    timeout: {after: 1h, go: nudge}
  nudge:
    say: "Still happy to hear from you: reply 1-5 any time."
    notify: {to: "+15550000000", say: "{{ sender }} did not rate us."}
  thanks:
    say: "Thanks for the {{ rating }}!"
"""


def _run_with_nudge(tmp_path: Path, tests: str) -> RunResult:
    flows = load_flows(write_flows(tmp_path / "flows", {"feedback.yaml": NUDGE_FLOW}))
    (tmp_path / "t.yaml").write_text(tests, encoding="utf-8")
    return asyncio.run(run_conversations(flows, [tmp_path / "t.yaml"]))


def test_a_wait_turn_checks_what_the_timeouts_sent(tmp_path: Path) -> None:
    run = _run_with_nudge(tmp_path, """\
tests:
  - name: nudges after an hour, once
    turns:
      - send: rate
        expect: "How did we do? Reply 1-5."
      - wait: 59m
        expect: []
      - wait: 1m
        expect: "Still happy to hear from you: reply 1-5 any time."
        expect_notify: "+15551234567 did not rate us."
      - wait: 1d
        expect: []
  - name: an answer in time stops the nudge
    turns:
      - send: rate
      - wait: 30m
        expect: []
      - send: "5"
        expect: "Thanks for the 5!"
      - wait: 2h
        expect: []
""")
    assert run.problems == []
    assert [(result.name, result.passed, result.report) for result in run.results] == [
        ("nudges after an hour, once", True, ""), ("an answer in time stops the nudge", True, "")]


def test_a_wait_turn_that_does_not_go_as_expected_is_reported_like_any_turn(tmp_path: Path) -> None:
    run = _run_with_nudge(tmp_path, """\
tests:
  - name: expects the nudge too early
    turns:
      - send: rate
      - wait: 30m
        expect: "Still happy to hear from you: reply 1-5 any time."
  - name: expects silence but gets the nudge
    turns:
      - send: rate
      - wait: 1h30m
        expect: []
  - name: expects the wrong staff text
    turns:
      - send: rate
      - wait: 2h
        expect_contains: Still happy
        expect_notify: "someone did not rate us"
""")
    early, silent, staff = run.results
    assert not early.passed and early.turns_run == 2
    assert early.report == ("> rate\n< How did we do? Reply 1-5.\n"
                            "turn 2: (wait 30m)\n"
                            "--- expected\n+++ actual\n@@ -1 +0,0 @@\n"
                            "-< Still happy to hear from you: reply 1-5 any time.")
    assert not silent.passed
    assert "turn 2: (wait 1h30m)" in silent.report
    assert "+< Still happy to hear from you: reply 1-5 any time." in silent.report
    assert not staff.passed
    assert "-notify: someone did not rate us" in staff.report
    assert "+notify: +15551234567 did not rate us." in staff.report


def test_a_wait_in_the_middle_shows_in_the_report_of_a_later_turn(tmp_path: Path) -> None:
    run = _run_with_nudge(tmp_path, """\
tests:
  - name: the nudge ended the flow
    turns:
      - send: rate
      - wait: 1h
      - send: "4"
        expect: "Thanks for the 4!"
""")
    [result] = run.results
    assert not result.passed and result.turns_run == 3
    assert result.report.startswith("> rate\n< How did we do? Reply 1-5.\n(wait 1h)\n"
                                    "< Still happy to hear from you: reply 1-5 any time.\nturn 3: > 4\n")


@pytest.mark.parametrize(("turn", "message"), [
    ("wait: soon", "4:15: error: 'soon' is not a duration; write it like 30s, 10m, 2h, 1d or 1h30m"),
    ("wait: -5", "4:15: error: Input should be greater than or equal to 0"),
    ("{send: hi, wait: 1h}", "4:9: error: each turn either sends a text (send:), starts a flow (start:) "
                             "or lets time pass (wait:), exactly one of them"),
])
def test_a_wrong_wait_is_located(tmp_path: Path, turn: str, message: str) -> None:
    run = _run_with_nudge(tmp_path, f"tests:\n  - name: x\n    turns:\n      - {turn}\n")
    assert not run.ok
    assert any(message in str(problem) for problem in run.problems), "\n".join(map(str, run.problems))
