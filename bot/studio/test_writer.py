"""Write the conversation test of an imported flow by walking it as the engine would, one test per way through."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from liquid.exceptions import LiquidError

from bot.engine import MAX_REPLIES_PER_TURN, MAX_STEPS_PER_TURN
from bot.flows.schema import END
from bot.studio.examples import PLAIN_REPLIES, candidates, failing_candidates
from bot.studio.liquid import LIQUID, variable_paths
from bot.studio.widgets import BLANK_CONDITIONS, WAIT_PATTERN
from bot.studio.yaml_writer import Text
from bot.text.matching import CONDITION_NAMES, Condition, condition
from bot.text.normalise import normalise, trim
from bot.text.wordsets import is_compliance_word
from bot.variables import forget_at, store_at

TEST_SENDER = "+15551234567"  # the number conversation tests text from (bot.flowtests.DEFAULT_SENDER)
TEST_BOT_NUMBER = "+15550001111"  # the number they text (bot.simulator.Simulation.text)
MAX_TESTS = 40  # more ways through a flow than people would read; the rest are noted as not walked
MAX_TURNS = 15  # turns one generated test may take
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def conversation_test(document: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The flow's conversation test (None when no way through it can be walked), and notes on
    what it does not walk."""
    return _TestWriter(document).build()


@dataclass
class _Free:
    """An input the test may still choose: the reply of turn ``turn``, or a broadcast variable."""

    turn: int
    variable: str | None = None


@dataclass
class _Walk:
    turns: list[dict[str, Any]]  # {"send"|"start", "vars", "says": [template…]}
    context: dict[str, Any]  # what templates see, as far as the test knows it
    free: dict[str, _Free] = field(default_factory=dict)  # template path -> the input it comes from
    stubs: dict[str, Any] = field(default_factory=dict)  # fetch URL -> {} (success) or "fail"
    stubbed_in: dict[str, int] = field(default_factory=dict)  # fetch URL -> the turn that first needs it
    decisions: list[tuple[int, str]] = field(default_factory=list)  # (turn, the way the walk took)

    def decide(self, label: str) -> None:
        self.decisions.append((len(self.turns) - 1, label))

    def copy(self) -> _Walk:
        return copy.deepcopy(self)


@dataclass(frozen=True)
class _Case:
    """A branch case as the walk knows it: its condition, the argument rendered, and the test itself."""

    condition: str
    argument: str
    holds: Condition

    @property
    def label(self) -> str:
        return f"{self.condition} {self.argument}".rstrip()


class _TestWriter:
    """Walk the converted flow as the engine would, choosing replies that take each way out."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.states: dict[str, Any] = document["states"]
        self.triggers: list[str] = document.get("triggers", [])
        self.normalised_triggers = {normalise(word) for word in self.triggers}
        self.walked: set[str] = set()  # waiting states already walked from
        self.finished: list[_Walk] = []
        self.notes: list[str] = []

    def build(self) -> tuple[dict[str, Any] | None, list[str]]:
        if self.triggers or self.document.get("start_on_any_message"):
            first = self.triggers[0] if self.triggers else "hello"
            turn: dict[str, Any] = {"send": first, "says": []}
            channel = {"Body": first, "From": TEST_SENDER, "To": TEST_BOT_NUMBER}
        else:
            turn = {"start": self.document["flow"], "vars": {}, "says": []}
            channel = {"Body": "", "From": TEST_SENDER, "To": ""}
        context = {"trigger": {"message": channel}, "contact": {"channel": {"address": TEST_SENDER}},
                   "flow": {"channel": {"address": channel["To"]}, "variables": {}}, "sender": TEST_SENDER}
        self._enter(_Walk([turn], context), self.document["start"], 0)
        tests: list[dict[str, Any]] = []
        seen: set[str] = set()
        for walk in self.finished:
            test = self._test(walk)
            key = json.dumps(test["turns"], sort_keys=True) + json.dumps(test.get("fetch"), sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            names = {existing["name"] for existing in tests}
            while test["name"] in names:
                test["name"] += " (again)"
            tests.append(test)
        tests = [test for test in tests if not any(_covers(other, test) for other in tests if other is not test)]
        return ({"tests": tests} if tests else None), self.notes

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    # walking

    def _enter(self, walk: _Walk, name: str, steps: int) -> None:
        if len(self.finished) >= MAX_TESTS:
            self._note(f"The flow has more ways through it than {MAX_TESTS} tests; the rest are not walked.")
            return
        if steps >= MAX_STEPS_PER_TURN:
            self._finish(walk, f"A turn that moves through more than {MAX_STEPS_PER_TURN} states (the engine ends "
                               "the conversation there) is not walked.", drop_last=True)
            return
        if name == END and END not in self.states:
            self._finish(walk)
            return
        state = self.states[name]
        for key, source in (state.get("set") or {}).items():
            if key.startswith("flow.data.") and "start" in walk.turns[0] and len(walk.turns) == 1 and \
                    key not in walk.free and source == f"{{{{ {key[len('flow.data.'):]} | default: '' }}}}":
                walk.free[key] = _Free(0, key[len("flow.data."):])
                continue
            value = self._render(walk, source)
            if value is not None:
                store_at(walk.context, key, value.strip())
            else:
                forget_at(walk.context, key)
        fetch = state.get("fetch")
        if fetch is None:
            self._after_fetch(walk, name, state, steps)
            return
        url = fetch["url"]
        if variable_paths(url) != set() or not url.startswith(("http://", "https://")):
            self._stop_before(walk, name, f"it calls {url}, an address the test cannot stub (made from a template, "
                                          "or the bot's own).")
            return
        answers: list[Any] = [walk.stubs[url]] if url in walk.stubs else [{}, "fail"]
        for answer in answers:
            branch = walk.copy() if answer is not answers[-1] else walk
            branch.stubs[url] = answer
            branch.stubbed_in.setdefault(url, len(branch.turns) - 1)
            if answer == "fail":
                if len(answers) > 1:
                    branch.decide(f"{name} fails")
                branch.turns[-1]["says"].append(fetch.get("fallback", ""))
                self._enter(branch, fetch.get("on_error") or END, steps + 1)
            else:
                if len(answers) > 1:
                    branch.decide(f"{name} succeeds")
                store_at(branch.context, fetch["save"], {})
                self._after_fetch(branch, name, state, steps)

    def _after_fetch(self, walk: _Walk, name: str, state: dict[str, Any], steps: int) -> None:
        says = state.get("say") or []
        walk.turns[-1]["says"].extend([says] if isinstance(says, str) else says)
        if state.get("replies"):
            self._wait(walk, name, state)
        elif state.get("branch"):
            self._branch(walk, name, state["branch"], steps)
        elif state.get("enter"):
            self._stop_before(walk, name, f"it enters the flow {state['enter']['flow']!r} (test that flow on its own).")
        elif state.get("go"):
            self._enter(walk, state["go"], steps + 1)
        else:
            self._finish(walk)

    def _wait(self, walk: _Walk, name: str, state: dict[str, Any]) -> None:
        self._settle(walk)
        if state.get("timeout"):
            self._note(f"The timeout branch of {name!r} (no reply within {state['timeout']['after']}) is not "
                       "walked: it needs time to pass.")
        replies = state["replies"]
        if name in self.walked or len(walk.turns) >= MAX_TURNS:
            self._finish(walk)
            return
        self.walked.add(name)
        if len(replies) != 1 or replies[0].get("pattern") != WAIT_PATTERN or not replies[0].get("go"):
            self._finish(walk, f"The replies of {name!r} are not walked: only Studio's wait for any reply is.")
            return
        reply = replies[0]
        walk.turns.append({"send": None, "says": []})
        walk.free[reply["save"]] = _Free(len(walk.turns) - 1)
        self._enter(walk, reply["go"], 0)

    def _branch(self, walk: _Walk, name: str, branch: dict[str, Any], steps: int) -> None:
        key = _bare_reference(branch["value"])
        if key is not None and key in walk.free:
            self._choose_ways(walk, name, key, branch, steps)
            return
        value = self._render(walk, branch["value"])
        if value is None:
            self._stop_before(walk, name, f"it tests {branch['value']}, which the test cannot know.")
            return
        for source in branch["cases"]:
            case = self._case(walk, source)
            if case is None:
                self._stop_before(walk, name, f"it compares with {_written(source)}, which the test cannot know.")
                return
            if case.holds(value, case.argument):
                self._enter(walk, source["go"], steps + 1)
                return
        self._enter(walk, branch["otherwise"], steps + 1)

    def _case(self, walk: _Walk, source: Mapping[str, Any]) -> _Case | None:
        """The case with its argument as far as the test knows it (None: it does not)."""
        name = _condition_name(source)
        if name == "regex":
            return _Case(name, str(source[name]), condition(name, str(source[name])))
        argument = "" if name in BLANK_CONDITIONS else self._render(walk, str(source[name]))
        return None if argument is None else _Case(name, argument, condition(name))

    def _choose_ways(self, walk: _Walk, name: str, key: str, branch: dict[str, Any], steps: int) -> None:
        """Fork the walk once per way out of the branch, with an input chosen to take it."""
        free = walk.free[key]
        sources: list[dict[str, Any]] = branch["cases"]
        cases: list[_Case] = []
        for source in sources:
            case = self._case(walk, source)
            if case is None:
                self._note(f"The ways out of {name!r} from the case {_written(source)} on are not walked: "
                           "it compares with a value the test cannot know.")
                break
            cases.append(case)
        ways = [(index, source["go"]) for index, source in enumerate(sources[:len(cases)])]
        if len(cases) == len(sources):
            ways.append((len(cases), branch["otherwise"]))
        forks: list[tuple[_Walk, str]] = []
        for index, go in ways:
            label = "otherwise" if index == len(sources) else cases[index].label
            text = self._input_for(cases, index, free.variable is None)
            if text is None:
                self._note(f"The way out of {name!r} for {label} is not walked: no reply found that takes it.")
                continue
            fork = walk.copy()
            self._choose(fork, key, text)
            fork.decide(f"{name}: {label}")
            forks.append((fork, go))
        for fork, go in forks:
            self._enter(fork, go, steps + 1)

    def _input_for(self, cases: list[_Case], index: int, is_reply: bool) -> str | None:
        """A text for which case ``index`` is the first to hold (``len(cases)``: none holds)."""
        tries: list[str] = []
        if index < len(cases):
            tries += candidates(cases[index].condition, cases[index].argument)
        else:  # none may hold
            for case in cases:
                tries += failing_candidates(case.condition, case.argument)
        for text in [*tries, *PLAIN_REPLIES]:
            if is_reply and (trim(text) != text or is_compliance_word(text)
                             or normalise(text) in self.normalised_triggers):
                continue
            first = next((i for i, case in enumerate(cases) if case.holds(text, case.argument)), len(cases))
            if first == index:
                return text
        return None

    def _choose(self, walk: _Walk, key: str, text: str) -> None:
        free = walk.free.pop(key)
        if free.variable is None:
            walk.turns[free.turn]["send"] = text
            store_at(walk.context, key, trim(text))
        else:
            if text:
                walk.turns[free.turn]["vars"][free.variable] = text
            store_at(walk.context, key, text)

    def _settle(self, walk: _Walk) -> None:
        """Inputs nothing tested get a plain value: replies 'answer N', broadcast variables none."""
        for key, free in list(walk.free.items()):
            if free.variable is None:
                self._choose(walk, key, f"answer {free.turn}")

    def _render(self, walk: _Walk, source: str) -> str | None:
        """The template's value, as far as the test knows it (None: it does not)."""
        paths = variable_paths(source)
        if paths is None or any(path.split(".")[0] in ("env", "message") for path in paths):
            return None
        for path in paths:
            for key in list(walk.free):
                if path == key or path.startswith(key + ".") or key.startswith(path + "."):
                    free = walk.free[key]
                    self._choose(walk, key, f"answer {free.turn}" if free.variable is None else "")
        try:
            return LIQUID.from_string(source).render(**walk.context)
        except LiquidError:
            return None

    def _finish(self, walk: _Walk, note: str | None = None, drop_last: bool = False) -> None:
        if note:
            self._note(note)
        self._settle(walk)
        if drop_last:
            walk.turns.pop()
            walk.decisions = [(turn, label) for turn, label in walk.decisions if turn < len(walk.turns)]
            walk.stubs = {url: answer for url, answer in walk.stubs.items() if walk.stubbed_in[url] < len(walk.turns)}
        if walk.turns:
            self.finished.append(walk)

    def _stop_before(self, walk: _Walk, name: str, why: str) -> None:
        """End the walk without the turn that reaches the state ``name``, where the test cannot go on."""
        self._finish(walk, f"The walk stops before {name!r}: {why}", drop_last=True)

    # writing

    def _test(self, walk: _Walk) -> dict[str, Any]:
        first = walk.turns[0]
        opening = first["send"] if "send" in first else "broadcast start"
        test: dict[str, Any] = {"name": " -> ".join([opening, *(label for _, label in walk.decisions)])}
        if walk.stubs:
            test["fetch"] = {url: ({} if answer != "fail" else "fail") for url, answer in walk.stubs.items()}
        test["turns"] = [_turn(turn) for turn in walk.turns]
        return test


def _turn(turn: dict[str, Any]) -> dict[str, Any]:
    """A walked turn as the test file writes it: what is sent, and what the bot must say back."""
    written: dict[str, Any] = {}
    if "start" in turn:
        written["start"] = turn["start"]
        if turn["vars"]:
            written["vars"] = dict(sorted(turn["vars"].items()))
    else:
        written["send"] = turn["send"]
    says: list[str] = turn["says"]
    if all(variable_paths(text) == set() and "{%" not in text for text in says):
        texts = [Text(text.strip()) for text in says if text.strip()][:MAX_REPLIES_PER_TURN]
        written["expect"] = texts[0] if len(texts) == 1 else texts
        return written
    # The test cannot know all that templates fill in: it expects the literal pieces between them.
    fragments: list[str] = []
    for text in says[:MAX_REPLIES_PER_TURN]:
        if "{%" in text:
            continue
        for piece in _TAG.split(text):
            piece = _strip_ends(piece)
            if len(re.sub(r"\W", "", piece)) >= 4 and Text(piece) not in fragments:
                fragments.append(Text(piece))
    if fragments:
        written["expect_contains"] = fragments[0] if len(fragments) == 1 else fragments
    return written


def _covers(longer: dict[str, Any], shorter: dict[str, Any]) -> bool:
    """``longer`` runs every turn of ``shorter`` first, with the same stubbed answers."""
    turns, fetch = shorter["turns"], shorter.get("fetch", {})
    return len(longer["turns"]) > len(turns) and longer["turns"][:len(turns)] == turns and \
        all(longer.get("fetch", {}).get(url) == answer for url, answer in fetch.items())


def _strip_ends(piece: str) -> str:
    """A literal piece of a text without the spaces and punctuation around it."""
    return re.sub(r"^[\s.,;:!?-]+|[\s.,;:!?-]+$", "", piece)


def _bare_reference(source: str) -> str | None:
    found = re.fullmatch(r"\s*\{\{-?\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\s*-?\}\}\s*", source)
    return found.group(1) if found else None


def _condition_name(case: Mapping[str, Any]) -> str:
    return next(key for key in case if key in CONDITION_NAMES)


def _written(case: Mapping[str, Any]) -> Any:
    """The case's argument as the flow file writes it."""
    return case[_condition_name(case)]
