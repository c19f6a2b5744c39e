"""Menus: numbered choices listed under a state's text, taken by number, label or synonym.

A menu is sugar over replies: each choice becomes one rule naming its words, so a choice such as
"Stop the refill" outranks a revocation in the person's own words exactly as ``keywords`` would.
"""

from __future__ import annotations

from bot.flows.schema import Choice, Menu
from bot.text.matching import Matcher
from bot.text.normalise import normalise, words

#: Words people put around a number ("option 2", "number 2", "#2" is already just "2").
_NUMBER_PREFIXES = frozenset({"option", "number", "no", "choice"})


def listing(menu: Menu) -> str:
    """The choices as the person sees them, one per line: "1) Pick-up"."""
    return "\n".join(f"{number}) {choice.label}" for number, choice in enumerate(menu.choices, start=1))


def _key(text: str) -> tuple[str, ...]:
    """How a choice is compared: its words, so "Pick-up", "pick up" and "PICK UP!" are one."""
    return tuple(words(normalise(text)))


def choice_matcher(number: int, choice: Choice) -> Matcher:
    """The reply picks this choice: its number (alone or as "option 2"), its label or a synonym,
    as the whole message. The value saved is the choice's ``value``, else its label."""
    accepted = {_key(text) for text in (choice.label, *choice.also)}
    accepted |= {(str(number),), *((prefix, str(number)) for prefix in _NUMBER_PREFIXES)}
    accepted.discard(())
    value = choice.value if choice.value is not None else choice.label

    def matches(normalised: str, original: str) -> str | None:
        return value if tuple(words(normalised)) in accepted else None
    return matches


def label(number: int, choice: Choice) -> str:
    """The event's name in traces and diagrams: "1) Pick-up"."""
    return f"{number}) {choice.label}"
