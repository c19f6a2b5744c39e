"""What an edit to a flow does to the people in it right now, said before it is saved.

RapidPro's most common complaint is an edit that breaks contacts mid-flow. A conversation stores
only its flow and state names, so the edits that strand people are the ones that remove the state
they wait in (the engine starts them over with the program's reset text, ``Engine._current_flow``)
or make it stop waiting for a reply (the engine then says the state's text again to every message:
nothing can match). Both are read from the state names before and after, and the store's counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.flows.schema import Flow
from bot.flows.schema_types import format_duration


@dataclass(frozen=True)
class Effect:
    """People waiting in ``state`` whom the edit strands, and what happens to them."""

    state: str
    people: int
    message: str


def _conversations(count: int) -> str:
    return f"{count} conversation{'s' * (count != 1)} wait{'s' * (count == 1)}"


def edit_impact(before: Flow | None, after: Flow, counts: Mapping[str, int], reset_text: str) -> list[Effect]:
    """The effects of replacing ``before`` (None: a new flow) by ``after`` on the people counted in
    each state (``Positions.state_counts`` of the flow), in the order of the states' names."""
    effects = []
    for state, people in sorted(counts.items()):
        if people <= 0:
            continue
        if state not in after.states:
            effects.append(Effect(state, people, f"{_conversations(people)} in state {state!r}, which this change "
                                                 f"removes: at their next message they get the reset text "
                                                 f"(\"{reset_text}\") and start over; a reminder or timeout "
                                                 "armed there will not fire."))
        elif before is not None and state in before.states and before.states[state].waits and \
                not after.states[state].waits:
            effects.append(Effect(state, people, f"{_conversations(people)} in state {state!r}, which no longer "
                                                 "waits for a reply: every message they send gets its text again "
                                                 f"until the flow expires ({format_duration(after.expires_after)} "
                                                 "after their last message) or they text a trigger."))
    return effects
