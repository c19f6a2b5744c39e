"""Words a flow waits for that are also triggers: lint's warning that they can never arrive.

Triggers are routed before any waiting state (``Engine._route``), so a message of just a trigger
word starts that flow: it never reaches a reply, a flow-wide ``anywhere`` reply or a menu item
written with the same word.
"""

from __future__ import annotations

from collections.abc import Iterator

from bot.flows.problems import Finding, Path
from bot.flows.schema import Flow, Rule
from bot.text.normalise import normalise


def trigger_word_findings(flows: list[Flow]) -> Iterator[tuple[Flow, Finding]]:
    """A warning for each reply word, menu label or synonym that is some flow's trigger."""
    owners = {normalise(word): flow.flow for flow in flows for word in flow.triggers or ()}
    for flow in flows:
        for path, word, effect in _words_waited_for(flow):
            owner = owners.get(normalise(word))
            if owner is not None:
                yield flow, Finding(path, f"{word!r} is a trigger of flow {owner!r} (triggers are checked first), "
                                          f"{effect}", severity="warning",
                                    hint="use another word here, or remove it from the triggers")


def _words_waited_for(flow: Flow) -> Iterator[tuple[Path, str, str]]:
    """(where, word, what a trigger does to it) for every word a waiting state of ``flow`` hears."""
    rules: list[tuple[Path, Rule]] = [(("anywhere", index), rule) for index, rule in enumerate(flow.anywhere)]
    rules += [(("states", name, "replies", index), rule) for name, state in flow.states.items()
              for index, rule in enumerate(state.rules)]
    for path, rule in rules:
        for field in ("keywords", "any_of"):
            effect = ("so this reply never sees it" if field == "keywords" else
                      "so a message of just that word starts it instead of reaching this reply")
            for index, word in enumerate(getattr(rule, field) or ()):
                yield (*path, field, index), word, effect
    for name, state in flow.states.items():
        for index, choice in enumerate(state.menu.choices if state.menu is not None else ()):
            base = ("states", name, "menu", "choices", index)
            effect = "so a message of just that word starts it instead of choosing this item"
            yield (*base, "label"), choice.label, effect
            for word_index, word in enumerate(choice.also):
                yield (*base, "also", word_index), word, effect
