"""Issue 13's promise that today's flow syntax keeps working, pinned by the ops trial's own flow.

``tests/trial_refill/`` holds the pharmacy refill flow an ops person wrote with the flow syntax
of the time (22 states: a hand-built counter, the cancel rule copied into every waiting state, a
timeout → nudge → remind trio per waiting state with a ``reminded`` flag) and its 8 conversation
tests. New constructs are additions: this flow must keep linting clean and passing unchanged.
The files are pinned by hash so that nobody "fixes" the fixture to make a change pass; see
``tests/trial_refill/README.md``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from bot.engine import Engine
from bot.flows.checks import CheckOptions
from bot.flows.loader import lint_paths, load_flows
from bot.flows.schema import Flow
from bot.flows.yamlsource import read_yaml_file
from bot.flowtests import run_conversations
from bot.inbox import Inbox
from bot.settings import load_settings
from bot.store.memory import MemoryStore
from bot.types import Inbound
from tests.conftest import ROOT

TRIAL = ROOT / "tests" / "trial_refill" / "flows"
FLOW_FILE = TRIAL / "refill.yaml"
TESTS_FILE = TRIAL / "tests" / "refill.yaml"

#: sha256 of each fixture file (line endings normalised). A mismatch means the fixture was edited:
#: undo the edit and change the code instead (README.md says why).
PINNED = {
    "program.yaml": "3b60ff09a6aa8cdbafa79b69a7193709f31968cc7644d1cbb960dd48a97ca69d",
    "refill.yaml": "7376f574bcf0665432b8583adaeffcd4af3fb3c96ce9c64ada83f91598eefcde",
    "tests/refill.yaml": "e8b0acfd76d3a8b8b5f34383ba93c26a7cab8453087fe82ef8f0e49eb70ea2a4",
}

#: The fields the flow language gained after the trial: the fixture must not use any of them.
NEW_CONSTRUCTS = frozenset({"anywhere", "attempts", "remind", "menu", "split", "media"})

HOUR = 3600.0
ASK_RX = "What's the 7-digit prescription number on your label? (Text CANCEL REFILL to stop.)"
REMINDER = "Just a reminder: your refill isn't finished yet."
GOODBYE = "We haven't heard back, so we've stopped your refill for now. Text REFILL any time to start again."


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def test_the_fixture_is_unchanged() -> None:
    edited = sorted(name for name, digest in PINNED.items() if _digest(TRIAL / name) != digest)
    assert edited == [], ("tests/trial_refill is the backward-compatibility promise of issue 13 and is never "
                          "edited to make a change pass (see its README.md): restore the files, fix the code")


def test_the_flow_has_22_states_and_uses_only_the_syntax_of_the_trial() -> None:
    data, _ = read_yaml_file(FLOW_FILE)
    flow = Flow.model_validate(data)
    assert len(flow.states) == 22
    used = {key for state in data["states"].values() for key in state} | set(data)
    assert used & NEW_CONSTRUCTS == set()
    assert len(load_flows(TRIAL).flows["refill"].states) == 22


def test_it_lints_clean_as_lint_checks() -> None:
    options = CheckOptions.of_the_bot(load_settings(environ={}).flow_env)  # as bot/cli/authoring.py's _lint
    assert [str(problem) for problem in lint_paths([TRIAL], options)] == []


def test_python_m_bot_lint_says_0_errors_0_warnings(tmp_path: Path) -> None:
    # From an empty folder, so a developer's .env cannot change what is checked.
    result = subprocess.run([sys.executable, "-m", "bot", "lint", str(TRIAL)], cwd=tmp_path,
                            capture_output=True, text=True, encoding="utf-8", timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (result.returncode, result.stdout, result.stderr.strip()) == (0, "", "0 errors, 0 warnings")


async def test_its_8_conversation_tests_pass() -> None:
    run = await run_conversations(load_flows(TRIAL), [TESTS_FILE])
    assert run.problems == []
    assert [(result.name, result.report) for result in run.results if not result.passed] == []
    assert len(run.results) == 8


# -- the reminder and the goodbye, on a clock the test moves ---------------------------------------

class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _NoFetcher:
    """The refill flow looks nothing up."""

    async def get_json(self, url: str, timeout: float, **request: object) -> object:
        raise AssertionError(f"unexpected fetch of {url}")


class Sent:
    """A ``Deliver``: what the timeouts sent, in order."""

    def __init__(self) -> None:
        self.replies: list[str] = []

    async def __call__(self, record: Inbound, replies: tuple[str, ...]) -> None:
        self.replies.extend(replies)


async def _fire_due(store: MemoryStore, inbox: Inbox, clock: Clock, sent: Sent) -> int:
    """Fire every timeout due by now, as the server's TimeoutScheduler does; how many fired."""
    due = await store.due(clock.now)
    for sender, due_at in due:
        await inbox.time_out(sender, due_at, sent)
    return len(due)


async def test_an_hour_of_silence_reminds_once_then_says_goodbye_then_nothing() -> None:
    clock, store, sent = Clock(), MemoryStore(), Sent()
    inbox = Inbox(store, Engine(load_flows(TRIAL), _NoFetcher(), env={}, clock=clock))
    started = await inbox.receive(Inbound("SM1", "+15551234567", to="+15550001111", body="REFILL"))
    assert started.replies == (ASK_RX,)

    clock.now += HOUR - 1
    assert await _fire_due(store, inbox, clock, sent) == 0  # not yet
    clock.now += 1
    assert await _fire_due(store, inbox, clock, sent) == 1
    assert sent.replies == [REMINDER, ASK_RX]  # the reminder, and the question again

    clock.now += HOUR - 1
    assert await _fire_due(store, inbox, clock, sent) == 0
    clock.now += 1
    assert await _fire_due(store, inbox, clock, sent) == 1
    assert sent.replies == [REMINDER, ASK_RX, GOODBYE]

    clock.now += 30 * 24 * HOUR
    assert await _fire_due(store, inbox, clock, sent) == 0  # nothing more, ever
    assert await store.due(float("inf")) == []
    assert sent.replies == [REMINDER, ASK_RX, GOODBYE]
    assert (await store.snapshot("+15551234567", "")).conversation.active is False


async def test_the_reminder_is_once_per_refill_not_per_question() -> None:
    """The trial's one ``reminded`` flag: reminded while asked for the number, the person answers,
    then goes quiet at the next question: an hour later they get the goodbye, no second reminder."""
    clock, store, sent = Clock(), MemoryStore(), Sent()
    inbox = Inbox(store, Engine(load_flows(TRIAL), _NoFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+15551234567", body="REFILL"))
    clock.now += HOUR
    assert await _fire_due(store, inbox, clock, sent) == 1
    assert sent.replies == [REMINDER, ASK_RX]
    clock.now += 10 * 60
    answered = await inbox.receive(Inbound("SM2", "+15551234567", body="1234567"))
    assert "PICKUP or DELIVERY" in answered.replies[0]
    clock.now += HOUR - 1
    assert await _fire_due(store, inbox, clock, sent) == 0  # the answer restarted the clock
    clock.now += 1
    assert await _fire_due(store, inbox, clock, sent) == 1
    assert sent.replies == [REMINDER, ASK_RX, GOODBYE]
    assert await store.due(float("inf")) == []
