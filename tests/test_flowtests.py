"""Conversation tests: the shipped ones pass, and a mismatch is reported readably."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.flows.loader import load_flows
from bot.flowtests import TurnSpec, check_turn, run_conversations
from tests.conftest import SHIPPED_FLOWS


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
