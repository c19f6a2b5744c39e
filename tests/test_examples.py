"""The worked examples in docs/examples/ load with the shipped program file and pass their own
conversation tests, run by the command their files document (``python -m bot test --flows
docs/examples``)."""

from __future__ import annotations

import re

import pytest

from bot import cli
from bot.flows.loader import load_flows
from tests.conftest import ROOT, SHIPPED_FLOWS

EXAMPLES = ROOT / "docs" / "examples"


def test_the_examples_run_with_the_shipped_program_file() -> None:
    # A link, not a copy, so the examples' HELP and opt-out texts are the shipped ones.
    assert (EXAMPLES / "program.yaml").resolve() == (SHIPPED_FLOWS / "program.yaml").resolve()


def test_the_examples_lint_clean() -> None:
    flowset = load_flows(EXAMPLES)
    assert flowset.warnings == []
    assert sorted(flowset.flows) == ["refill"]


def test_the_refill_example_keeps_to_ten_states() -> None:
    """Issue 13: the trial's refill conversation took 22 states; with anywhere, attempts, menu
    and remind it takes at most 10."""
    refill = load_flows(EXAMPLES).flows["refill"]
    assert len(refill.states) <= 10


def test_the_documented_command_runs_the_examples_tests(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    status = cli.main(["test", "--flows", str(EXAMPLES)])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    results = out.splitlines()
    assert results and all(line.startswith("ok    ") for line in results), out
    assert re.fullmatch(rf"{len(results)} passed, 0 failed\n", err), err
    assert len(results) >= 15
    # The command the test file tells its readers to run.
    assert "python -m bot test --flows docs/examples" in (EXAMPLES / "tests" / "refill.yaml").read_text()
