"""Turn a validated flow into what runs: one shared ``transitions`` machine plus fast matchers.

Built once per flow at load time. Conversations are throwaway models: the engine fires
``machine.events[name].trigger(conversation)``, never ``add_model`` and never a Machine per request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from liquid import BoundTemplate
from transitions import Machine

from bot.flows import menu
from bot.flows.checks import always_matches
from bot.flows.json_body import compile_json
from bot.flows.schema import END, Branch, Fetch, Flow, NumberRange, Rule, SplitPath, State
from bot.flows.translations import languages as translation_languages
from bot.flows.translations import translated, with_plain_spellings, words_key
from bot.text import matching, templates
from bot.text.matching import Condition, Matcher
from bot.text.normalise import normalise
from bot.text.templates import JsonTemplate
from bot.text.wordsets import is_compliance_word

OTHERWISE_EVENT = "otherwise"
NEXT_EVENT = "next"
FETCH_FAILED_EVENT = "lookup failed"
TIMEOUT_EVENT = "no reply in time"
ENTER_EVENT = "after flow"
REMIND_EVENT = "reminder"  # a reminder sent while waiting: the state stays
TOO_MANY_EVENT = "too many tries"  # ``attempts``: the last unmatched answer


@dataclass(frozen=True, slots=True)
class CompiledRule:
    event: str  # the transitions event; also the label in diagrams and traces
    matches: Matcher
    save: str | None
    say: tuple[BoundTemplate, ...]
    go: str | None
    #: written with the words themselves (``keywords``, ``any_of``): only such a rule outranks a
    #: revocation in a person's own words ("stop texting me" as a menu choice)
    names_words: bool = False
    media: bool = False  # the test is "the message carries pictures": it reads the media, not the text
    language: str | None = None  # taking it: talk to this person in this language from now on


@dataclass(frozen=True, slots=True)
class CompiledFetch:
    url: BoundTemplate
    save: str
    method: str
    params: tuple[tuple[str, BoundTemplate], ...]
    json_body: JsonTemplate | None  # the document, a template at each string value (bot/flows/json_body.py)
    form: tuple[tuple[str, BoundTemplate], ...] | None
    timeout: float
    fallback: BoundTemplate
    not_found: BoundTemplate | None
    on_error: str  # a state name, or END


@dataclass(frozen=True, slots=True)
class CompiledNotify:
    to: BoundTemplate
    say: tuple[BoundTemplate, ...]
    media: tuple[BoundTemplate, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledAttempts:
    max: int
    go: str
    reask: tuple[BoundTemplate, ...]  # re-ask n is reask[n-1], the last repeating; empty: otherwise


@dataclass(frozen=True, slots=True)
class CompiledRemind:
    after: float
    say: tuple[BoundTemplate, ...]
    times: int


@dataclass(frozen=True, slots=True)
class CompiledSplitPath:
    upto: float  # the path is taken by a sender whose draw in [0, 1) is below this (and above the last)
    event: str
    go: str


@dataclass(frozen=True, slots=True)
class CompiledCase:
    event: str
    holds: Condition  # (value, rendered argument) -> does the condition hold
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
    rules: tuple[CompiledRule, ...]  # what a person's text is matched against, in order
    otherwise: tuple[BoundTemplate, ...]
    go: str | None
    set: tuple[tuple[str, BoundTemplate], ...] = ()
    branch: CompiledBranch | None = None
    timeout: tuple[float, str] | None = None  # (seconds, state) for a waiting state's timeout
    takes_anything: bool = False  # a reply accepts any text: "otherwise" can never happen
    enter: tuple[str, str] | None = None  # (flow, state to carry on at)
    menu: str = ""  # the numbered choices, as listed under the state's text and its re-asks
    attempts: CompiledAttempts | None = None
    remind: CompiledRemind | None = None
    split: tuple[CompiledSplitPath, ...] = ()
    media: tuple[BoundTemplate, ...] = ()  # pictures sent with the state's text

    @property
    def waits(self) -> bool:
        return bool(self.rules)

    @property
    def moves_on(self) -> bool:
        return self.go is not None or self.branch is not None or self.enter is not None or bool(self.split)

    def next_timer(self, reminders_sent: int) -> float | None:
        """Seconds until this waiting state's next timer: a reminder while any is left, then the
        timeout; None when neither remains."""
        if self.remind is not None and reminders_sent < self.remind.times:
            return self.remind.after
        return self.timeout[0] if self.timeout is not None else None


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
    language: str = "en"  # the language of its texts
    #: the flow as it runs for people talked to in other languages (bot/flows/translations.py)
    variants: dict[str, CompiledFlow] = field(default_factory=dict)
    #: the trigger words only one of its languages has, and that language (ESTADO: es)
    trigger_languages: dict[str, str] = field(default_factory=dict)

    def in_language(self, language: str | None) -> CompiledFlow:
        """The flow for someone talked to in ``language``: its variant, else the flow itself."""
        if not language:
            return self
        # es-MX speaks the flow's es when it has no es-MX of its own
        return self.variants.get(language) or self.variants.get(language.split("-")[0].lower(), self)


def compile_flow(flow: Flow, file: str = "") -> CompiledFlow:
    """The flow, with a variant for each language its ``translations:`` name."""
    compiled = _compile_one(flow, file)
    for language in translation_languages(flow):
        compiled.variants[language] = _compile_one(translated(flow, language), file)
    compiled.trigger_languages = _trigger_languages(flow)
    return compiled


def _trigger_languages(flow: Flow) -> dict[str, str]:
    """Each trigger word that only one language's list has, and that language (STATUS: en,
    ESTADO: es): texting it says which language the person speaks. A word two lists share ("OK")
    says nothing; nor do the triggers of a flow that has no translated ones."""
    if not flow.triggers:
        return {}
    own = {flow.language: {normalise(word) for word in flow.triggers}}
    for row in flow.translations:
        base = row.get(flow.language)
        if isinstance(base, list) and words_key(base) == words_key(flow.triggers):
            for language, words in row.items():
                if language != flow.language and isinstance(words, list):
                    own.setdefault(language, set()).update(normalise(word) for word in with_plain_spellings(words))
    if len(own) < 2:
        return {}
    counts = Counter(word for words in own.values() for word in words)
    return {word: language for language, words in own.items() for word in words if counts[word] == 1}


def _compile_one(flow: Flow, file: str) -> CompiledFlow:
    language = flow.language
    states = {name: _compile_state(name, state, flow.anywhere, language) for name, state in flow.states.items()}
    transitions = [spec for state in states.values() for spec in _transition_specs(state)]
    machine_states: list[dict[str, Any]] = [
        {"name": name, "final": not state.waits and not state.moves_on}
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
        language=language,
    )


def _compile_state(name: str, state: State, anywhere: Sequence[Rule] = (), language: str = "en") -> CompiledState:
    used: set[str] = {OTHERWISE_EVENT, NEXT_EVENT, FETCH_FAILED_EVENT, TIMEOUT_EVENT, REMIND_EVENT, TOO_MANY_EVENT}
    # The flow's own replies come first in every waiting state, then the menu, then the state's.
    everywhere = list(anywhere) if state.waits else []
    heard = [*everywhere, *state.rules]
    rules = tuple(_compile_rule(rule, unique_label(_label(rule), used), language) for rule in everywhere)
    if state.menu is not None:
        rules += tuple(CompiledRule(event=unique_label(menu.label(number, choice), used),
                                    matches=menu.choice_matcher(number, choice), save=state.menu.save,
                                    say=_parse_all(choice.say), go=choice.go, names_words=True,
                                    language=choice.language)
                       for number, choice in enumerate(state.menu.choices, start=1))
    rules += tuple(_compile_rule(rule, unique_label(_label(rule), used), language) for rule in state.rules)
    return CompiledState(
        name=name,
        say=_parse_all(state.say),
        fetch=_compile_fetch(state.fetch) if state.fetch else None,
        notify=CompiledNotify(templates.parse(state.notify.to), _parse_all(state.notify.say),
                              _parse_all(state.notify.media))
        if state.notify else None,
        rules=rules,
        otherwise=_parse_all(state.otherwise),
        go=state.go,
        set=tuple((name, templates.parse(text)) for name, text in state.set.items()),
        branch=_compile_branch(state.branch, used) if state.branch else None,
        timeout=(state.timeout.after, state.timeout.go) if state.timeout else None,
        takes_anything=any(always_matches(rule) for rule in heard),
        enter=(state.enter.flow, state.enter.then) if state.enter else None,
        menu=menu.listing(state.menu) if state.menu is not None else "",
        attempts=CompiledAttempts(state.attempts.max, state.attempts.go, _parse_all(state.attempts.reask))
        if state.attempts else None,
        remind=CompiledRemind(state.remind.after, _parse_all(state.remind.say), state.remind.times)
        if state.remind else None,
        split=_compile_split(state.split, used) if state.split else (),
        media=_parse_all(state.media),
    )


def _compile_split(paths: list[SplitPath], used: set[str]) -> tuple[CompiledSplitPath, ...]:
    total = sum(path.weight for path in paths)
    compiled, reached = [], 0.0
    for path in paths:
        reached += path.weight / total
        compiled.append(CompiledSplitPath(reached, unique_label(f"split {path.weight / total:.0%}", used), path.go))
    return (*compiled[:-1], CompiledSplitPath(1.0, compiled[-1].event, compiled[-1].go))  # no rounding gap


def _compile_branch(branch: Branch, used: set[str]) -> CompiledBranch:
    cases = []
    for case in branch.cases:
        argument = getattr(case, case.condition)
        label = case.condition.replace("_", " ") + (f" {argument}" if isinstance(argument, str) else "")
        cases.append(CompiledCase(
            event=unique_label(label, used),
            holds=matching.condition(case.condition, argument if case.condition == "regex" else None),
            argument=templates.parse(argument) if isinstance(argument, str) and case.condition != "regex" else None,
            go=case.go))
    return CompiledBranch(templates.parse(branch.value), tuple(cases), branch.otherwise)


def _transition_specs(state: CompiledState) -> list[dict[str, Any]]:
    specs = [{"trigger": rule.event, "source": state.name, "dest": rule.go} for rule in state.rules]
    if state.waits and not state.takes_anything:
        specs.append({"trigger": OTHERWISE_EVENT, "source": state.name, "dest": None})
    if state.go is not None:
        specs.append({"trigger": NEXT_EVENT, "source": state.name, "dest": state.go})
    if state.timeout is not None:
        specs.append({"trigger": TIMEOUT_EVENT, "source": state.name, "dest": state.timeout[1]})
    if state.remind is not None:
        specs.append({"trigger": REMIND_EVENT, "source": state.name, "dest": None})
    if state.attempts is not None:
        specs.append({"trigger": TOO_MANY_EVENT, "source": state.name, "dest": state.attempts.go})
    specs += [{"trigger": path.event, "source": state.name, "dest": path.go} for path in state.split]
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
        json_body=compile_json(fetch.json_document) if fetch.json_body is not None else None,
        form=tuple((key, templates.parse(text)) for key, text in fetch.form.items())
        if fetch.form is not None else None,
        timeout=fetch.timeout,
        fallback=templates.parse(fetch.fallback),
        not_found=templates.parse(fetch.not_found) if fetch.not_found is not None else None,
        on_error=fetch.on_error or END,
    )


def _compile_rule(rule: Rule, event: str, language: str = "en") -> CompiledRule:
    return CompiledRule(event=event, matches=_matcher(rule, language), save=rule.save, say=_parse_all(rule.say),
                        go=rule.go, names_words=rule.keywords is not None or _names_own_words(rule.any_of),
                        media=rule.media is not None, language=rule.language)


def _names_own_words(any_of: list[str] | None) -> bool:
    """An ``any_of`` outranks a revocation in the person's own words only when none of its words
    is a compliance keyword: ``any_of: [cancel]`` takes "cancel my refill" (no revocation), but
    never "cancel my subscription" (one), which opts out as STOP would."""
    return any_of is not None and not any(is_compliance_word(word) for word in any_of)


def _parse_all(sources: list[str]) -> tuple[BoundTemplate, ...]:
    return tuple(templates.parse(source) for source in sources)


def unique_label(label: str, used: set[str], numbered: str = "{label} ({count})") -> str:
    """``label``, or ``label (2)``, ``label (3)``… — the first not in ``used`` (which it joins).
    ``numbered`` spells the numbered ones (the Studio importer's state names: ``{label}_{count}``)."""
    candidate, count = label, 1
    while candidate in used:
        count += 1
        candidate = numbered.format(label=label, count=count)
    used.add(candidate)
    return candidate


def _label(rule: Rule) -> str:
    if rule.keywords is not None:
        return " / ".join(rule.keywords)
    if rule.any_of is not None:
        return "any of " + ", ".join(rule.any_of)
    if rule.pattern is not None:
        return f"/{rule.pattern}/"
    if rule.number is not None:
        return "number " + _range_label(rule.number)
    if rule.media is not None:
        return "a picture"
    return f"answer {rule.answer}"


def _range_label(bounds: NumberRange) -> str:
    low, high = bounds.min, bounds.max
    if low is not None and high is not None:
        return f"{low:g}..{high:g}"
    if low is not None:
        return f">= {low:g}"
    return f"<= {high:g}" if high is not None else ""


def _matcher(rule: Rule, language: str = "en") -> Matcher:
    if rule.keywords is not None:
        return matching.keywords_matcher(rule.keywords)
    if rule.any_of is not None:
        return matching.any_of_matcher(rule.any_of)
    if rule.pattern is not None:
        return matching.pattern_matcher(rule.pattern)
    if rule.number is not None:
        return matching.number_matcher(rule.number.min, rule.number.max)
    if rule.media is not None:
        return matching.never  # the engine tests the message's media itself (CompiledRule.media)
    assert rule.answer is not None
    return matching.answer_matcher(rule.answer, language)
