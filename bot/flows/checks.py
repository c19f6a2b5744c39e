"""Checks across a whole flow (and across all flows) that a single field cannot make.

Errors stop the server from starting; warnings are printed and the flow still runs.
"""

from __future__ import annotations

from collections.abc import Iterator

from bot import templates
from bot.flows.problems import Finding, Path
from bot.flows.schema import END, Flow, State

#: Names templates get from the bot itself; a flow may not ``save`` over them.
RESERVED_NAMES = frozenset({"env", "sender", "message", "bot"})


def template_sources(state_name: str, state: State) -> Iterator[tuple[Path, str]]:
    """Every template a state holds, with its path in the flow file."""
    base: Path = ("states", state_name)
    for index, text in enumerate(state.say):
        yield (*base, "say", index), text
    for index, text in enumerate(state.otherwise):
        yield (*base, "otherwise", index), text
    if state.fetch is not None:
        yield (*base, "fetch", "url"), state.fetch.url
        yield (*base, "fetch", "fallback"), state.fetch.fallback
    for rule_index, rule in enumerate(state.replies):
        for index, text in enumerate(rule.say):
            yield (*base, "replies", rule_index, "say", index), text


def targets(state_name: str, state: State) -> Iterator[tuple[Path, str]]:
    """Every state name a state can move to, with its path in the flow file."""
    base: Path = ("states", state_name)
    if state.go is not None:
        yield (*base, "go"), state.go
    if state.fetch is not None and state.fetch.on_error is not None:
        yield (*base, "fetch", "on_error"), state.fetch.on_error
    for index, rule in enumerate(state.replies):
        if rule.go is not None:
            yield (*base, "replies", index, "go"), rule.go


def check_flow(flow: Flow) -> list[Finding]:
    findings: list[Finding] = []
    known = set(flow.states) | {END}
    if flow.start not in flow.states:
        findings.append(_unknown_state(("start",), flow.start, flow))
    for name, state in flow.states.items():
        if name == END and (state.waits or state.go is not None):
            findings.append(Finding(("states", END), f"the state {END!r} ends the conversation, so it "
                                    "cannot wait for replies or go on", hint="rename the state"))
        for path, target in targets(name, state):
            if target not in known:
                findings.append(_unknown_state(path, target, flow))
        for path, source in template_sources(name, state):
            try:
                templates.parse(source)
            except templates.TemplateSyntaxError as error:
                findings.append(Finding(path, str(error)))
        for path, saved in _saves(name, state):
            if saved in RESERVED_NAMES:
                findings.append(Finding(path, f"{saved!r} is a name the bot fills in itself",
                                        hint="save under another name"))
        if state.waits and not state.otherwise:
            findings.append(Finding(("states", name), f"state {name!r} waits for a reply but has no "
                                    "otherwise: an unexpected reply gets the question again",
                                    severity="warning", hint="add an otherwise that says what to send"))
    for name in sorted(set(flow.states) - _reachable(flow)):
        findings.append(Finding(("states", name, "[key]"), f"no path reaches state {name!r}",
                                severity="warning", hint="go to it from another state, or delete it"))
    return findings


def _saves(state_name: str, state: State) -> Iterator[tuple[Path, str]]:
    if state.fetch is not None:
        yield ("states", state_name, "fetch", "save"), state.fetch.save
    for index, rule in enumerate(state.replies):
        if rule.save is not None:
            yield ("states", state_name, "replies", index, "save"), rule.save


def _reachable(flow: Flow) -> set[str]:
    seen: set[str] = set()
    pending = [flow.start]
    while pending:
        name = pending.pop()
        if name in seen or name not in flow.states:
            continue
        seen.add(name)
        pending.extend(target for _, target in targets(name, flow.states[name]))
    return seen


def _unknown_state(path: Path, target: str, flow: Flow) -> Finding:
    choices = ", ".join(sorted(flow.states)) + f", or {END} to finish"
    return Finding(path, f"unknown state {target!r}", hint=f"states in this flow: {choices}")
