"""Turn a validated flow into what runs: one shared ``transitions`` machine plus fast matchers.

Built once per flow at load time. Conversations are throwaway models: the engine fires
``machine.events[name].trigger(conversation)``, never ``add_model`` and never a Machine per request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from liquid import BoundTemplate
from transitions import Machine

from bot import templates
from bot.flows.checks import always_matches
from bot.flows.schema import END, Branch, Fetch, Flow, NumberRange, Reply, State
from bot.keywords import NO_WORDS, YES_WORDS, normalise, parse_number, trim, words

logging.getLogger("transitions").setLevel(logging.WARNING)  # INFO costs 5x per transition

OTHERWISE_EVENT = "otherwise"
NEXT_EVENT = "next"
FETCH_FAILED_EVENT = "lookup failed"
TIMEOUT_EVENT = "no reply in time"
ENTER_EVENT = "after flow"

#: A matcher gets the normalised and the original text; it returns the value to save, or None.
Matcher = Callable[[str, str], Any]


@dataclass(frozen=True, slots=True)
class CompiledReply:
    event: str  # the transitions event; also the label in diagrams and traces
    matches: Matcher
    save: str | None
    say: tuple[BoundTemplate, ...]
    go: str | None


@dataclass(frozen=True, slots=True)
class CompiledFetch:
    url: BoundTemplate
    save: str
    method: str
    params: tuple[tuple[str, BoundTemplate], ...]
    json_body: BoundTemplate | None
    form: tuple[tuple[str, BoundTemplate], ...] | None
    timeout: float
    fallback: BoundTemplate
    not_found: BoundTemplate | None
    on_error: str  # a state name, or END


@dataclass(frozen=True, slots=True)
class CompiledNotify:
    to: BoundTemplate
    say: tuple[BoundTemplate, ...]


@dataclass(frozen=True, slots=True)
class CompiledCase:
    event: str
    holds: Callable[[str, str], bool]  # (value, rendered argument) -> does the condition hold
    argument: BoundTemplate | None
    go: str


@dataclass(frozen=True, slots=True)
class CompiledBranch:
    value: BoundTemplate
    cases: tuple[CompiledCase, ...]
    otherwise: str


@dataclass(frozen=True, slots=True)
class CompiledState:
    name: str
    say: tuple[BoundTemplate, ...]
    fetch: CompiledFetch | None
    notify: CompiledNotify | None
    replies: tuple[CompiledReply, ...]
    otherwise: tuple[BoundTemplate, ...]
    go: str | None
    set: tuple[tuple[str, BoundTemplate], ...] = ()
    branch: CompiledBranch | None = None
    timeout: tuple[float, str] | None = None  # (seconds, state) for a waiting state's timeout
    takes_anything: bool = False  # a reply accepts any text: "otherwise" can never happen
    enter: tuple[str, str] | None = None  # (flow, state to carry on at)

    @property
    def waits(self) -> bool:
        return bool(self.replies)


@dataclass(slots=True)
class CompiledFlow:
    name: str
    description: str
    file: str
    triggers: frozenset[str]  # normalised
    start: str
    expires_after: float
    states: dict[str, CompiledState]
    machine: Machine
    transitions: list[dict[str, Any]] = field(default_factory=list)  # kept to draw diagrams
    start_on_any_message: bool = False


def compile_flow(flow: Flow, file: str = "") -> CompiledFlow:
    states = {name: _compile_state(name, state) for name, state in flow.states.items()}
    transitions = [spec for state in states.values() for spec in _transition_specs(state)]
    machine_states: list[dict[str, Any]] = [
        {"name": name, "final": not state.waits and state.go is None and state.branch is None
         and state.enter is None}
        for name, state in states.items()
    ]
    if END not in states:
        machine_states.append({"name": END, "final": True})
    machine = Machine(
        model=None,
        states=machine_states,
        transitions=transitions,
        initial=flow.start,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        name=flow.flow,
    )
    return CompiledFlow(
        name=flow.flow,
        description=flow.description,
        file=file,
        triggers=frozenset(normalise(word) for word in flow.triggers or ()),
        start=flow.start,
        expires_after=flow.expires_after,
        states=states,
        machine=machine,
        transitions=transitions,
        start_on_any_message=flow.start_on_any_message,
    )


def _compile_state(name: str, state: State) -> CompiledState:
    used: set[str] = {OTHERWISE_EVENT, NEXT_EVENT, FETCH_FAILED_EVENT, TIMEOUT_EVENT}
    replies = tuple(_compile_reply(rule, _unique(_label(rule), used)) for rule in state.replies)
    return CompiledState(
        name=name,
        say=_parse_all(state.say),
        fetch=_compile_fetch(state.fetch) if state.fetch else None,
        notify=CompiledNotify(templates.parse(state.notify.to), _parse_all(state.notify.say))
        if state.notify else None,
        replies=replies,
        otherwise=_parse_all(state.otherwise),
        go=state.go,
        set=tuple((name, templates.parse(text)) for name, text in state.set.items()),
        branch=_compile_branch(state.branch, used) if state.branch else None,
        timeout=(state.timeout.after, state.timeout.go) if state.timeout else None,
        takes_anything=any(always_matches(rule) for rule in state.replies),
        enter=(state.enter.flow, state.enter.then) if state.enter else None,
    )


def _compile_branch(branch: Branch, used: set[str]) -> CompiledBranch:
    cases = []
    for case in branch.cases:
        argument = getattr(case, case.condition)
        label = case.condition.replace("_", " ") + (f" {argument}" if isinstance(argument, str) else "")
        cases.append(CompiledCase(
            event=_unique(label, used),
            holds=_condition(case.condition, argument if case.condition == "regex" else None),
            argument=templates.parse(argument) if isinstance(argument, str) and case.condition != "regex" else None,
            go=case.go))
    return CompiledBranch(templates.parse(branch.value), tuple(cases), branch.otherwise)


def _condition(name: str, pattern: str | None) -> Callable[[str, str], bool]:
    """Studio's split conditions: case-insensitive, comma lists for the any-of forms."""
    def listed(value: str, argument: str) -> bool:
        return value.strip().casefold() in {item.strip().casefold() for item in argument.split(",")}

    def number(text: str) -> Decimal | None:
        return parse_number(text)

    def compare(value: str, argument: str, less: bool) -> bool:
        left, right = number(value), number(argument)
        if left is None or right is None:
            return False
        return left < right if less else left > right

    regex = re.compile(pattern, re.IGNORECASE) if pattern is not None else None
    tests: dict[str, Callable[[str, str], bool]] = {
        "equal_to": lambda v, a: v.strip().casefold() == a.strip().casefold(),
        "not_equal_to": lambda v, a: v.strip().casefold() != a.strip().casefold(),
        "matches_any_of": listed,
        "does_not_match_any_of": lambda v, a: not listed(v, a),
        "contains": lambda v, a: a.casefold() in v.casefold(),
        "does_not_contain": lambda v, a: a.casefold() not in v.casefold(),
        "starts_with": lambda v, a: v.casefold().startswith(a.casefold()),
        "does_not_start_with": lambda v, a: not v.casefold().startswith(a.casefold()),
        "regex": lambda v, a: regex is not None and regex.search(v) is not None,
        "is_blank": lambda v, a: not v.strip(),
        "is_not_blank": lambda v, a: bool(v.strip()),
        "less_than": lambda v, a: compare(v, a, less=True),
        "greater_than": lambda v, a: compare(v, a, less=False),
    }
    return tests[name]


def _transition_specs(state: CompiledState) -> list[dict[str, Any]]:
    specs = [{"trigger": rule.event, "source": state.name, "dest": rule.go} for rule in state.replies]
    if state.waits and not state.takes_anything:
        specs.append({"trigger": OTHERWISE_EVENT, "source": state.name, "dest": None})
    if state.go is not None:
        specs.append({"trigger": NEXT_EVENT, "source": state.name, "dest": state.go})
    if state.timeout is not None:
        specs.append({"trigger": TIMEOUT_EVENT, "source": state.name, "dest": state.timeout[1]})
    if state.enter is not None:
        specs.append({"trigger": f"{ENTER_EVENT} {state.enter[0]}", "source": state.name, "dest": state.enter[1]})
    if state.branch is not None:
        specs += [{"trigger": case.event, "source": state.name, "dest": case.go} for case in state.branch.cases]
        specs.append({"trigger": OTHERWISE_EVENT, "source": state.name, "dest": state.branch.otherwise})
    if state.fetch is not None:
        specs.append({"trigger": FETCH_FAILED_EVENT, "source": state.name, "dest": state.fetch.on_error})
    return specs


def _compile_fetch(fetch: Fetch) -> CompiledFetch:
    return CompiledFetch(
        url=templates.parse(fetch.url),
        save=fetch.save,
        method=fetch.method,
        params=tuple((key, templates.parse(text)) for key, text in fetch.params.items()),
        json_body=templates.parse(fetch.json_body) if fetch.json_body is not None else None,
        form=tuple((key, templates.parse(text)) for key, text in fetch.form.items())
        if fetch.form is not None else None,
        timeout=fetch.timeout,
        fallback=templates.parse(fetch.fallback),
        not_found=templates.parse(fetch.not_found) if fetch.not_found is not None else None,
        on_error=fetch.on_error or END,
    )


def _compile_reply(rule: Reply, event: str) -> CompiledReply:
    return CompiledReply(event=event, matches=_matcher(rule), save=rule.save,
                         say=_parse_all(rule.say), go=rule.go)


def _parse_all(sources: list[str]) -> tuple[BoundTemplate, ...]:
    return tuple(templates.parse(source) for source in sources)


def _unique(label: str, used: set[str]) -> str:
    candidate, count = label, 1
    while candidate in used:
        count += 1
        candidate = f"{label} ({count})"
    used.add(candidate)
    return candidate


def _label(rule: Reply) -> str:
    if rule.keywords is not None:
        return " / ".join(rule.keywords)
    if rule.any_of is not None:
        return "any of " + ", ".join(rule.any_of)
    if rule.pattern is not None:
        return f"/{rule.pattern}/"
    if rule.number is not None:
        return "number " + _range_label(rule.number)
    return f"answer {rule.answer}"


def _range_label(bounds: NumberRange) -> str:
    low, high = bounds.min, bounds.max
    if low is not None and high is not None:
        return f"{low:g}..{high:g}"
    if low is not None:
        return f">= {low:g}"
    return f"<= {high:g}" if high is not None else ""


def _matcher(rule: Reply) -> Matcher:
    if rule.keywords is not None:
        return _keywords_matcher(frozenset(normalise(word) for word in rule.keywords))
    if rule.any_of is not None:
        return _any_of_matcher([normalise(word) for word in rule.any_of])
    if rule.pattern is not None:
        return _pattern_matcher(re.compile(rule.pattern, re.IGNORECASE))
    if rule.number is not None:
        return _number_matcher(rule.number)
    return _answer_matcher(YES_WORDS if rule.answer == "yes" else NO_WORDS)


def _keywords_matcher(accepted: frozenset[str]) -> Matcher:
    def matches(normalised: str, original: str) -> Any:
        return trim(original) if normalised in accepted else None
    return matches


def _any_of_matcher(accepted: list[str]) -> Matcher:
    """Any entry's words appear in the message, together and in order ("e-mail" = "e mail")."""
    single = frozenset(entry[0] for entry in (words(item) for item in accepted) if len(entry) == 1)
    phrases = [entry for entry in (words(item) for item in accepted) if len(entry) > 1]

    def matches(normalised: str, original: str) -> Any:
        said = words(normalised)
        if single.intersection(said) or any(_contains(said, phrase) for phrase in phrases):
            return trim(original)
        return None
    return matches


def _contains(said: list[str], phrase: list[str]) -> bool:
    width = len(phrase)
    return any(said[start:start + width] == phrase for start in range(len(said) - width + 1))


def _pattern_matcher(pattern: re.Pattern[str]) -> Matcher:
    def matches(normalised: str, original: str) -> Any:
        found = pattern.search(trim(original))
        if found is None:
            return None
        if pattern.groups and found.group(1) is not None:
            return found.group(1)
        return found.group(0)
    return matches


def _number_matcher(bounds: NumberRange) -> Matcher:
    low = Decimal(str(bounds.min)) if bounds.min is not None else None
    high = Decimal(str(bounds.max)) if bounds.max is not None else None

    def matches(normalised: str, original: str) -> Any:
        number = parse_number(original)
        if number is None or (low is not None and number < low) or (high is not None and number > high):
            return None
        return int(number) if number == number.to_integral_value() else float(number)
    return matches


def _answer_matcher(accepted: frozenset[str]) -> Matcher:
    def matches(normalised: str, original: str) -> Any:
        if normalised in accepted:
            return trim(original)
        first = words(normalised)[:1]
        return trim(original) if first and first[0] in accepted else None
    return matches
