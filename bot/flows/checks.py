"""Checks across a whole flow that a single field cannot make.

Errors stop the server from starting (and make ``lint`` exit 1); warnings are printed and the flow
still runs. The server and ``lint`` run exactly these checks.
"""

from __future__ import annotations

import re
import re._parser as regex_parser  # the stdlib's own parser, for the longest text a pattern matches
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bot import segments
from bot.flows.media_checks import mms_cost_findings, mms_paths
from bot.flows.problems import Finding, Path
from bot.flows.schema import END, Flow, Rule
from bot.flows.suggest import closest, closest_state, did_you_mean
from bot.flows.template_checks import Names, literal_findings, measured_text, printed_values, template_findings
from bot.flows.timer_checks import timer_cycle_findings
from bot.flows.trigger_words import trigger_word_findings
from bot.flows.walk import all_template_sources, possibly_set, root_name, saved_anywhere, saves, targets
from bot.text.normalise import normalise
from bot.text.wordsets import KeywordKind, compliance_kind, is_compliance_word

#: Names templates get from the bot itself; a flow may not ``save`` over them.
RESERVED_NAMES = frozenset({"env", "sender", "message", "media", "bot", "trigger", "contact"})
ALWAYS_SET = RESERVED_NAMES | {"flow"}  # flow.channel.address is filled in too (Studio's names)

_LIMITING = frozenset({"truncate", "truncatewords", "size"})  # filters that bound what an output prints
_LONGEST = 10_000  # a pattern that can match more than this is taken to match any length


@dataclass(frozen=True)
class CheckOptions:
    max_segments: int = 2  # warn when a say costs more SMS segments than this
    assumed_variable_length: int = 10  # characters a {{ variable }} is assumed to take when measuring
    # What only the running bot knows, so lint and the server pass it and the loader on its own does
    # not check it (None): the FLOW_ENV setting (warn about {{ env.NAME }} of any other name, always
    # empty), and the cap on one turn's messages (warn about texts that print a value of any length).
    allowed_env: frozenset[str] | None = None
    turn_segments: int | None = None

    @classmethod
    def of_the_bot(cls, flow_env: Iterable[str], **options: int) -> CheckOptions:
        """The checks lint and the server run: these options, FLOW_ENV and the turn's cap."""
        return cls(**options, allowed_env=frozenset(flow_env), turn_segments=segments.MAX_TURN_SEGMENTS)


def check_flow(flow: Flow, options: CheckOptions = CheckOptions()) -> list[Finding]:
    findings: list[Finding] = []
    known = set(flow.states) | {END}
    if flow.start not in flow.states:
        findings.append(_unknown_state(("start",), flow.start, flow))
    for name, state in flow.states.items():
        if name == END and (state.waits or state.moves_on):
            findings.append(Finding(("states", END), f"the state {END!r} ends the conversation, so it "
                                    "cannot wait for replies or go on", hint="rename the state"))
        for path, target, _ in targets(name, state):
            if target not in known:
                findings.append(_unknown_state(path, target, flow))
        for path, saved in saves(name, state):
            if root_name(saved) in RESERVED_NAMES:
                findings.append(Finding(path, f"{saved!r} is a name the bot fills in itself",
                                        hint="save under another name"))
    for index, rule in enumerate(flow.anywhere):
        if rule.go is not None and rule.go not in known:
            findings.append(_unknown_state(("anywhere", index, "go"), rule.go, flow))
        if rule.save is not None and root_name(rule.save) in RESERVED_NAMES:
            findings.append(Finding(("anywhere", index, "save"), f"{rule.save!r} is a name the bot fills in itself",
                                    hint="save under another name"))
    if any(finding.severity == "error" for finding in findings):
        return findings  # the flow's graph is broken; warnings about it would only add noise
    findings.extend(_template_findings(flow, options))
    if options.turn_segments is not None:
        findings.extend(_growing_texts(flow, options.turn_segments))
    findings.extend(_graph_warnings(flow))
    findings.extend(_compliance_words_inside(flow))
    if isinstance(flow.listed, str) and not flow.triggers:
        findings.append(Finding(("listed",), "listed: describes the flow in the program's {{ triggers_described }}, "
                                "but a flow without triggers is never listed", severity="warning",
                                hint="give the flow triggers, or remove listed:"))
    findings.extend(timer_cycle_findings(flow))
    return findings


def _compliance_words_inside(flow: Flow) -> Iterator[Finding]:
    """``any_of: [cancel]`` is allowed (it takes "cancel my refill"), but a message of just that
    word still opts out, which the author may not expect: say so."""
    rules: list[tuple[Path, Rule]] = [(("anywhere", index), rule) for index, rule in enumerate(flow.anywhere)]
    rules += [(("states", name, "replies", index), rule) for name, state in flow.states.items()
              for index, rule in enumerate(state.rules)]
    for path, rule in rules:
        for index, word in enumerate(rule.any_of or ()):
            kind = compliance_kind(word) if is_compliance_word(word) else None
            effect = _COMPLIANCE_EFFECT.get(kind) if kind is not None else None
            if effect is not None:
                said = normalise(word)
                yield Finding((*path, "any_of", index), f"{word!r} is a compliance keyword: this reply takes it "
                              f"inside a longer message (\"{said} my order\"), but a message of just "
                              f"{said.upper()} still {effect}", severity="warning",
                              hint=f"ask people for more than the word (\"{said.upper()} ORDER\"), never for "
                                   "the word alone")


_COMPLIANCE_EFFECT = {KeywordKind.OPT_OUT: "opts the sender out", KeywordKind.OPT_IN: "opts the sender back in",
                      KeywordKind.HELP: "gets the help text"}


def _template_findings(flow: Flow, options: CheckOptions) -> Iterator[Finding]:
    reachable = possibly_set(flow)
    reachable[""] = set().union(*reachable.values())  # anywhere: heard in any waiting state
    with_pictures = mms_paths(flow)  # sent as one MMS: not counted in SMS segments
    saved = frozenset(saved_anywhere(flow))
    for name, state in flow.states.items():
        for index, choice in enumerate(state.menu.choices if state.menu is not None else ()):
            yield from literal_findings(("states", name, "menu", "choices", index, "label"), choice.label,
                                        "a menu label")
    for name, path, source, set_here in all_template_sources(flow):
        available = frozenset(reachable.get(name, set()) | set_here | ALWAYS_SET)
        found = template_findings(path, source, Names(name, available, saved, options.allowed_env))
        yield from found
        if any(finding.severity == "error" for finding in found):
            continue
        if ("fetch" not in path and "set" not in path and "branch" not in path and "media" not in path) or \
                path[-1] in ("fallback", "not_found"):
            if path in with_pictures:
                yield from mms_cost_findings(path, source, options.assumed_variable_length)
            else:
                yield from _cost_findings(path, source, options)


def _cost_findings(path: Path, source: str, options: CheckOptions) -> Iterator[Finding]:
    placeholder = "x" * options.assumed_variable_length
    measured = measured_text(source, placeholder)
    cost = segments.cost(measured)
    templated = measured != source
    assumption = (f" (each {{{{ variable }}}} counted as {options.assumed_variable_length} characters)"
                  if templated else "")
    if cost.segments > options.max_segments:
        yield Finding(path, f"this text costs {cost.segments} SMS segments ({cost.encoding}, "
                            f"{cost.units} units){assumption}; the limit is {options.max_segments} "
                            f"segment{'s' * (options.max_segments != 1)}",
                      severity="warning", hint="shorten it, or split it over several states")
    # What it would cost in GSM-7: every character outside it as its plain twin (í as i, ’ as ').
    plain = segments.cost(segments.in_gsm7(measured)) if cost.first_non_gsm is not None else cost
    if cost.first_non_gsm is not None and cost.segments > plain.segments:
        yield Finding(path, f"{segments.describe(cost.first_non_gsm)} switches this text to UCS-2, "
                            f"making it {cost.segments} segments instead of {plain.segments}",
                      severity="warning", hint=_plain_hint(measured))
    elif cost.first_non_gsm is not None and _looks_accidental(cost.first_non_gsm):
        yield Finding(path, f"{segments.describe(cost.first_non_gsm)} switches this text to UCS-2 "
                            "(70 characters per segment instead of 160)",
                      severity="warning", hint="use a plain character (e.g. ' instead of ’) if you can")


def _growing_texts(flow: Flow, turn_segments: int) -> Iterator[Finding]:
    """Texts that print a value of any length without a ``truncate``: a lookup's answer, a reply
    taken whole, the message itself. The bot cuts a turn at its segment budget, so such a text
    can arrive cut; the author should choose where (``{{ detail | truncate: 200 }}``)."""
    growing = _growing_values(flow)
    for _, path, source, _ in all_template_sources(flow):
        if ("fetch" in path or "set" in path or "branch" in path or "media" in path) and \
                path[-1] not in ("fallback", "not_found"):
            continue  # not sent to anyone as text: a URL, a value, a test
        if path[-1] == "to" or path[-2:-1] == ("to",):
            continue
        for printed in printed_values(source):
            variable = printed.path
            origin = growing.get(variable) or growing.get(root_name(variable))
            if origin is None or printed.filters & _LIMITING:
                continue
            yield Finding(path, f"{{{{ {variable} }}}} is {origin}, which can be of any length: the bot cuts "
                                f"a turn at {turn_segments} SMS segments, so this text may arrive cut",
                          severity="warning",
                          hint=f"limit it yourself: {{{{ {variable} | truncate: 100 }}}}", at=printed.at)


def _growing_values(flow: Flow) -> dict[str, str]:
    """What a template can print of any length, by name or dotted path, and where it comes from."""
    growing = {"message": "the message just received", "trigger.message.Body": "the message that started the flow"}
    for state in flow.states.values():
        if state.fetch is not None:
            growing[root_name(state.fetch.save)] = "from a lookup"
        for rule in state.rules:
            if rule.save is not None and _takes_any_length(rule):
                growing[root_name(rule.save)] = "a reply saved as it was typed"
    return growing


def _takes_any_length(rule: Rule) -> bool:
    """Whether the reply a rule saves can be of any length: a yes/no or any_of reply is saved whole;
    a pattern saves what it matched, as long as the pattern allows; keywords and numbers are short."""
    if rule.any_of is not None or rule.answer is not None:
        return True
    if rule.pattern is None:
        return False
    try:
        return bool(regex_parser.parse(rule.pattern).getwidth()[1] > _LONGEST)
    except Exception:  # noqa: BLE001 - the schema already checked it compiles; if not, assume the worst
        return True


_LOOKALIKES = frozenset("‘’‚‛“”„‟–—―…\u00a0\u2009\u200b•′″")


def _looks_accidental(char: str) -> bool:
    """Typographic characters pasted from a word processor, with a plain GSM-7 twin."""
    return char in _LOOKALIKES


def _plain_hint(text: str) -> str:
    """How to bring a text back to GSM-7: a pasted quote or dash typed plainly; accented letters
    (a translation's í, ó) written without their accent, when the readers accept that."""
    outside = segments.outside_gsm7(text)
    twins = [(char, segments.plain_twin(char)) for char in outside]
    if any(_looks_accidental(char) for char in outside) or not all(twin for _, twin in twins):
        return "use a plain character (e.g. ' instead of ’) if you can"
    shown = ", ".join(f"{char} as {twin}" for char, twin in twins[:4]) + (", …" if len(twins) > 4 else "")
    return f"write {shown} if your readers accept it, or shorten it: in UCS-2 one segment holds 70 characters"


def check_flow_set(flows: list[Flow]) -> list[tuple[Flow, Finding]]:
    """Checks that need every flow: a reply word that is also a trigger can never be matched,
    because triggers are routed first (:mod:`bot.flows.trigger_words`)."""
    findings: list[tuple[Flow, Finding]] = []
    names = {flow.flow for flow in flows}
    catch_all = [flow for flow in flows if flow.start_on_any_message]
    for flow in catch_all[1:]:
        findings.append((flow, Finding(("start_on_any_message",), f"flow {catch_all[0].flow!r} already starts on "
                                       "any message", hint="only one flow can be the catch-all")))
    for flow in flows:
        for name, state in flow.states.items():
            if state.enter is not None and state.enter.flow not in names:
                meant = did_you_mean(closest(state.enter.flow, names))
                listing = f"{meant} Flows" if meant else "flows"
                findings.append((flow, Finding(("states", name, "enter", "flow"), f"unknown flow {state.enter.flow!r}",
                                               hint=f"{listing}: {', '.join(sorted(names))}")))
    findings.extend(trigger_word_findings(flows))
    return findings


def _graph_warnings(flow: Flow) -> Iterator[Finding]:
    for index, rule in enumerate(flow.anywhere):
        if always_matches(rule):
            yield Finding(("anywhere", index), "this reply takes any message, and anywhere replies are heard first "
                          "in every waiting state: their own replies and menus are never reached",
                          severity="warning", hint="give it a test only some messages pass (keywords, any_of), "
                                                   "or move it into the states that need it")
    for name, state in flow.states.items():
        for index, rule in enumerate(state.rules):
            if not rule.say and rule.go is None:
                yield Finding(("states", name, "replies", index), "this reply neither says anything nor goes "
                              "anywhere: the person gets no answer", severity="warning",
                              hint="add a say, or a go to the next state")
        reasks = state.menu is not None or (state.attempts is not None and bool(state.attempts.reask))
        if state.waits and not state.otherwise and not reasks and not any(always_matches(rule) for rule in state.rules):
            yield Finding(("states", name, "[key]"), f"state {name!r} waits for a reply but has no otherwise: "
                          "an unexpected reply gets the question again",
                          severity="warning", hint="add an otherwise that says what to send")
        ways_out = [rule.go for rule in [*state.rules, *flow.anywhere]] + \
            [choice.go for choice in (state.menu.choices if state.menu is not None else ())] + \
            [state.attempts.go if state.attempts is not None else None]
        if state.menu is not None:
            for index, choice in enumerate(state.menu.choices):
                if not choice.say and choice.go is None:
                    yield Finding(("states", name, "menu", "choices", index), f"choosing {choice.label!r} neither "
                                  "says anything nor goes anywhere: the person gets no answer", severity="warning",
                                  hint="add a say, or a go to the next state")
        if state.waits and all(target in (None, name) for target in ways_out):
            yield Finding(("states", name, "[key]"), f"state {name!r} waits for a reply but no reply leads "
                          "out of it (a dead end until the conversation expires)",
                          severity="warning", hint="give one reply a go: to another state or end")
    for name in sorted(set(flow.states) - set(possibly_set(flow))):
        yield Finding(("states", name, "[key]"), f"no path reaches state {name!r}",
                      severity="warning", hint="go to it from another state, or delete it")


def always_matches(rule: Rule) -> bool:
    """A reply that takes any text (``pattern: '(?s).*'``): its state needs no otherwise."""
    return rule.pattern is not None and re.search(rule.pattern, "") is not None


def _unknown_state(path: Path, target: str, flow: Flow) -> Finding:
    choices = ", ".join(sorted(flow.states)) + f", or {END} to finish"
    meant = did_you_mean(closest_state(target, flow.states, END))
    listing = f"{meant} States in this flow" if meant else "states in this flow"
    return Finding(path, f"unknown state {target!r}", hint=f"{listing}: {choices}")


def cost_findings(path: Path, text: str, options: CheckOptions) -> Iterator[Finding]:
    """The SMS segment warnings of any text the bot sends (a program text, once rendered)."""
    return _cost_findings(path, text, options)
