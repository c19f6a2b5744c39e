"""Conversation tests for ops staff: YAML files of turns, replayed against the real engine.

    tests:
      - name: looks up an order
        fetch:                               # optional: canned answers for fetch URLs
          /demo/orders/123456: {status: shipped, detail: Soon.}
          /demo/orders/999999: fail          # the lookup fails (fallback path)
        turns:
          - send: STATUS
            expect: "What's your order number? (6 digits, like 123456)"
          - send: "123456"
            expect_contains: shipped
          - wait: 1h                         # time passes: the timeouts and reminders due fire
            expect: []                       # what they sent (here: nothing)

Each test starts from a fresh, empty store. A test stops at its first mismatch and shows a diff.
``language: es`` on a test talks to the person in Spanish from the start, as if they had chosen it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.actions import FetchFailed
from bot.flows.loader import FlowSet
from bot.flows.problems import Problem
from bot.flows.schema import (  # Texts: one message or a list, numbers as text
    Duration,
    LanguageCode,
    Media,
    Texts,
    valid_regex,
)
from bot.flows.validation import validation_problems
from bot.flows.yamlsource import UnreadableFile, read_yaml_file
from bot.simulator import EndlessTimers, Simulation, UnknownLanguage, format_duration, simulation
from bot.text.normalise import normalise

DEFAULT_SENDER = "+15551234567"


def _as_text(value: object) -> object:
    """``send: 123456`` is the text "123456", not a number."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class TurnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send: Annotated[str, BeforeValidator(_as_text)] | None = None  # what the person texts, or…
    media: Media = []  # with send: the web addresses of pictures sent with the text (an MMS)
    start: str | None = None  # …start this flow as a broadcast would (its opening message is the reply), or…
    vars: dict[str, Annotated[str, BeforeValidator(_as_text)]] = {}  # the broadcast CSV's columns
    wait: Annotated[Duration, Field(ge=0)] | None = None  # …let time pass: the replies are what timeouts sent
    expect: Texts | None = None  # exactly these replies, in order ([] means no reply at all)
    expect_contains: Texts | None = None  # each of these appears somewhere in the replies
    expect_regex: str | None = None  # found in the replies (^ and $ also match at each reply)
    expect_notify: Texts | None = None  # exactly these texts went to staff through notify steps

    @model_validator(mode="after")
    def _send_or_start(self) -> TurnSpec:
        if sum(value is not None for value in (self.send, self.start, self.wait)) != 1:
            raise ValueError("each turn either sends a text (send:), starts a flow (start:) "
                             "or lets time pass (wait:), exactly one of them")
        if self.vars and self.start is None:
            raise ValueError("vars go with start:")
        if self.media and self.send is None:
            raise ValueError("media go with send: (write send: \"\" for a picture without text)")
        return self

    @property
    def label(self) -> str:
        if self.wait is not None:
            return f"(wait {format_duration(self.wait)})"
        return f"> {self.send}" if self.send is not None else f"(broadcast starts {self.start})"

    _compiles = field_validator("expect_regex")(lambda pattern: valid_regex(pattern))


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    sender: str = Field(DEFAULT_SENDER, alias="from")
    fetch: dict[str, Any] = {}  # URL -> JSON answer, or the word "fail"
    env: dict[str, str] = {}  # what templates see as {{ env.NAME }} in this test (these names are allowed)
    language: LanguageCode | None = None  # the person is talked to in it from the start (es, fr…)
    turns: list[TurnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _fail_is_the_only_word(self) -> CaseSpec:
        for url, answer in self.fetch.items():
            if isinstance(answer, str) and answer != "fail":
                raise ValueError(f"fetch answer for {url} must be JSON data or the word fail")
        return self


class ConversationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tests: list[CaseSpec] = Field(min_length=1)


@dataclass
class CaseResult:
    file: str
    name: str
    passed: bool
    turns_run: int
    report: str = ""  # the diff and context of the first mismatch


@dataclass
class RunResult:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # test files that could not be read

    @property
    def ok(self) -> bool:
        return not self.problems and all(result.passed for result in self.results)


def conversation_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"}))
        else:
            files.append(path)
    return files


def read_conversation_file(path: Path) -> tuple[ConversationFile | None, list[Problem]]:
    try:
        data, source = read_yaml_file(path)
    except UnreadableFile as error:
        return None, [error.problem]
    file = str(path)
    try:
        return ConversationFile.model_validate(data), []
    except ValidationError as error:
        return None, validation_problems(file, source, ConversationFile, error)


async def run_conversations(flows: FlowSet, paths: list[Path], allowed_env: Iterable[str] = (), *,
                            suggest_triggers: bool = True) -> RunResult:
    """Run every test in ``paths``; templates see the ``allowed_env`` names of the process
    environment (``python -m bot test`` passes FLOW_ENV, and SUGGEST_TRIGGERS as the server would)
    and each test's own ``env:``."""
    run = RunResult()
    for path in conversation_files(paths):
        spec, problems = read_conversation_file(path)
        run.problems.extend(problems)
        if spec is not None:
            for case in spec.tests:
                run.results.append(await run_case(flows, str(path), case, allowed_env,
                                                  suggest_triggers=suggest_triggers))
    return run


def starts(case: CaseSpec, flow: str, triggers: Iterable[str]) -> bool:
    """Whether one of the test's turns starts ``flow`` (``start:`` it, or text one of its
    ``triggers`` as written in the flow): the tests the console lists, and runs, with a flow."""
    words = {normalise(word) for word in triggers}
    return any(turn.start == flow or (turn.send is not None and normalise(turn.send) in words) for turn in case.turns)


async def run_cases(flows: FlowSet, cases: Iterable[tuple[str, CaseSpec]], allowed_env: Iterable[str] = (), *,
                    suggest_triggers: bool = True) -> RunResult:
    """Run the given tests (file, test), as :func:`run_conversations` runs a file's."""
    run = RunResult()
    for file, case in cases:
        run.results.append(await run_case(flows, file, case, allowed_env, suggest_triggers=suggest_triggers))
    return run


async def run_case(flows: FlowSet, file: str, case: CaseSpec, allowed_env: Iterable[str] = (), *,
                   suggest_triggers: bool = True) -> CaseResult:
    async with simulation(flows, env=case.env, allowed_env=allowed_env, suggest_triggers=suggest_triggers) as sim:
        stubs = {url: FetchFailed("stubbed to fail") if answer == "fail" else answer
                 for url, answer in case.fetch.items()}
        sim.stub(stubs)
        if case.language is not None:  # as if they had chosen it before their first message
            try:
                await sim.set_language(case.sender, case.language)
            except UnknownLanguage as error:
                return CaseResult(file, case.name, False, 0, f"language: {error}")
        transcript: list[str] = []
        for number, turn in enumerate(case.turns, start=1):
            notified_before = len(sim.notified)
            if turn.start is not None and turn.start not in flows.flows:
                return CaseResult(file, case.name, False, number, f"turn {number}: no flow {turn.start!r}")
            try:
                replies = await _play(sim, turn, case.sender)
            except EndlessTimers as error:
                return CaseResult(file, case.name, False, number, f"turn {number}: {turn.label}\n{error}")
            notified = [text for _, text in sim.notified[notified_before:]]
            mismatch = check_turn(turn, replies) or check_notified(turn, notified)
            transcript.append(turn.label)
            if mismatch:
                report = "\n".join([*transcript[:-1][-6:], f"turn {number}: {turn.label}", mismatch])
                return CaseResult(file, case.name, False, number, report)
            transcript.extend(f"< {reply}" for reply in replies)
        return CaseResult(file, case.name, True, len(case.turns))


async def _play(sim: Simulation, turn: TurnSpec, sender: str) -> list[str]:
    """Play one turn; what the bot texted the person in it."""
    if turn.wait is not None:
        return [reply for fired in await sim.wait(turn.wait) if fired.sender == sender for reply in fired.replies]
    if turn.start is not None:
        received = await sim.start(turn.start, sender, dict(turn.vars))
    else:
        received = await sim.text(turn.send or "", sender, media=tuple(turn.media))
    return list(received.replies)


def check_turn(turn: TurnSpec, replies: list[str]) -> str:
    """Empty when the replies meet the turn's expectations; otherwise a readable explanation."""
    if turn.expect is not None and replies != turn.expect:
        diff = difflib.unified_diff([f"< {text}" for text in turn.expect], [f"< {text}" for text in replies],
                                    "expected", "actual", lineterm="")
        return "\n".join(diff) if replies or turn.expect else ""
    joined = "\n".join(replies)
    for fragment in turn.expect_contains or ():
        if fragment not in joined:
            return f"expected the replies to contain {fragment!r}; they were:\n" + _quoted(replies)
    if turn.expect_regex is not None and re.search(turn.expect_regex, joined, re.MULTILINE) is None:
        return f"expected the replies to match /{turn.expect_regex}/; they were:\n" + _quoted(replies)
    return ""


def check_notified(turn: TurnSpec, notified: list[str]) -> str:
    if turn.expect_notify is None or notified == turn.expect_notify:
        return ""
    diff = difflib.unified_diff([f"notify: {text}" for text in turn.expect_notify],
                                [f"notify: {text}" for text in notified], "expected", "actual", lineterm="")
    return "\n".join(diff)


def _quoted(replies: list[str]) -> str:
    return "\n".join(f"< {reply}" for reply in replies) or "  (no reply)"

