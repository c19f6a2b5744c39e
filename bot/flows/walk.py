"""Walking a flow as lint sees it: every template with its path in the file and the names set
by then, every state a state can move to, every name saved, and what may be set on arrival."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from bot.flows.json_body import json_strings
from bot.flows.problems import Path
from bot.flows.schema import Flow, Rule, State


def template_sources(state_name: str, state: State) -> Iterator[tuple[Path, str, set[str]]]:
    """Every template a state holds, its path in the file, and the variables set by then (a state
    runs its ``set``, then its ``fetch``, then the rest). A field that holds templates is checked
    by lint, and measured, once it has its line here."""
    base: Path = ("states", state_name)
    given = {root_name(name) for name in state.set}
    fetched = saved_names(state.fetch.save if state.fetch is not None else None) | given
    # A ``set`` may read the name it sets: a counter ({{ tries | plus: 1 }}) starts from nothing.
    yield from (((*base, "set", name), text, saved_names(name)) for name, text in state.set.items())
    if state.branch is not None:
        yield (*base, "branch", "value"), state.branch.value, fetched
        for index, case in enumerate(state.branch.cases):
            argument = getattr(case, case.condition)
            if isinstance(argument, str) and case.condition != "regex":
                yield (*base, "branch", "cases", index, case.condition), argument, fetched
    if state.fetch is not None:
        yield (*base, "fetch", "url"), state.fetch.url, given
        yield from _each((*base, "fetch", "params"), state.fetch.params, given)
        yield from _each((*base, "fetch", "form"), state.fetch.form or {}, given)
        yield from (((*base, "fetch", "json", *where), text, given)
                    for where, text in json_strings(state.fetch.json_document))
        yield from _each((*base, "fetch"), {"fallback": state.fetch.fallback, "not_found": state.fetch.not_found},
                         given)
    yield from _each((*base, "say"), state.say, fetched)
    if state.notify is not None:
        yield (*base, "notify", "to"), state.notify.to, fetched
        yield from _each((*base, "notify", "say"), state.notify.say, fetched)
    yield from _each((*base, "otherwise"), state.otherwise, fetched)
    for index, rule in enumerate(state.rules):
        yield from _each((*base, "replies", index, "say"), rule.say, fetched | saved_names(rule.save))
    yield from _each((*base, "media"), state.media, fetched)
    if state.notify is not None:
        yield from _each((*base, "notify", "media"), state.notify.media, fetched)
    if state.menu is not None:
        chosen = fetched | saved_names(state.menu.save)
        for index, choice in enumerate(state.menu.choices):
            yield from _each((*base, "menu", "choices", index, "say"), choice.say, chosen)
    if state.attempts is not None:
        yield from _each((*base, "attempts", "reask"), state.attempts.reask, fetched)
    if state.remind is not None:
        yield from _each((*base, "remind", "say"), state.remind.say, fetched)


def _each(path: Path, texts: Sequence[str] | Mapping[str, str | None],
          names: set[str]) -> Iterator[tuple[Path, str, set[str]]]:
    """Each text of a list (by index) or of a mapping (by key; an absent one skipped), at its path."""
    items = texts.items() if isinstance(texts, Mapping) else enumerate(texts)
    for key, text in items:
        if text is not None:
            yield (*path, key), text, names


def all_template_sources(flow: Flow) -> Iterator[tuple[str, Path, str, set[str]]]:
    """Every template in a flow: the state it belongs to ("" for the flow's ``anywhere``
    replies), its path in the file, the text, and the variables set by then."""
    for name, state in flow.states.items():
        for path, source, set_here in template_sources(name, state):
            yield name, path, source, set_here
    for path, source, set_here in anywhere_sources(flow):
        yield "", path, source, set_here


def anywhere_sources(flow: Flow) -> Iterator[tuple[Path, str, set[str]]]:
    """The templates of the flow's ``anywhere`` replies (said in whichever state they are heard)."""
    for index, rule in enumerate(flow.anywhere):
        yield from _each(("anywhere", index, "say"), rule.say, saved_names(rule.save))


def targets(state_name: str, state: State, anywhere: Sequence[Rule] = ()) -> Iterator[tuple[Path, str, set[str]]]:
    """Every state a state can move to: path in the file, target, and variables set on the way
    (``anywhere``: the flow's replies heard in every waiting state)."""
    base: Path = ("states", state_name)
    fetched = {root_name(state.fetch.save)} if state.fetch is not None else set()
    fetched |= {root_name(name) for name in state.set}
    if state.timeout is not None:
        yield (*base, "timeout", "go"), state.timeout.go, fetched
    if state.enter is not None:
        yield (*base, "enter", "then"), state.enter.then, fetched
    if state.go is not None:
        yield (*base, "go"), state.go, fetched
    if state.branch is not None:
        for index, case in enumerate(state.branch.cases):
            yield (*base, "branch", "cases", index, "go"), case.go, fetched
        yield (*base, "branch", "otherwise"), state.branch.otherwise, fetched
    if state.fetch is not None and state.fetch.on_error is not None:
        yield (*base, "fetch", "on_error"), state.fetch.on_error, set()
    for index, rule in enumerate(state.rules):
        if rule.go is not None:
            yield (*base, "replies", index, "go"), rule.go, fetched | saved_names(rule.save)
    if state.menu is not None:
        for index, choice in enumerate(state.menu.choices):
            if choice.go is not None:
                yield (*base, "menu", "choices", index, "go"), choice.go, fetched | saved_names(state.menu.save)
    if state.attempts is not None:
        yield (*base, "attempts", "go"), state.attempts.go, fetched
    for index, path in enumerate(state.split or ()):
        yield (*base, "split", index, "go"), path.go, fetched
    if state.waits:
        for index, rule in enumerate(anywhere):
            if rule.go is not None:
                yield ("anywhere", index, "go"), rule.go, fetched | saved_names(rule.save)


def saved_names(name: str | None) -> set[str]:
    """The name a template reads for what is saved at ``name`` (none for nothing saved)."""
    return {root_name(name)} if name is not None else set()


def root_name(path: str) -> str:
    """The name a template reads for a dotted save path: ``widgets`` for ``widgets.ask.inbound.Body``."""
    return path.split(".", 1)[0]


def saves(state_name: str, state: State) -> Iterator[tuple[Path, str]]:
    if state.fetch is not None:
        yield ("states", state_name, "fetch", "save"), state.fetch.save
    for index, rule in enumerate(state.rules):
        if rule.save is not None:
            yield ("states", state_name, "replies", index, "save"), rule.save
    if state.menu is not None and state.menu.save is not None:
        yield ("states", state_name, "menu", "save"), state.menu.save


def saved_anywhere(flow: Flow) -> set[str]:
    """Every name the flow saves or sets, wherever: what a mistyped name may have meant."""
    names = {root_name(saved) for name, state in flow.states.items() for _, saved in saves(name, state)}
    names |= {root_name(name) for state in flow.states.values() for name in state.set}
    return names | {root_name(rule.save) for rule in flow.anywhere if rule.save is not None}


def possibly_set(flow: Flow) -> dict[str, set[str]]:
    """For each reachable state, the variables saved on at least one path from the start to it."""
    reached: dict[str, set[str]] = {flow.start: set()}
    pending = [flow.start]
    while pending:
        name = pending.pop()
        state = flow.states.get(name)
        if state is None:
            continue
        for _, target, saved in targets(name, state, flow.anywhere):
            if target not in flow.states:
                continue
            before = reached.get(target)
            after = (before or set()) | reached[name] | saved
            if before is None or after != before:
                reached[target] = after
                pending.append(target)
    return reached
