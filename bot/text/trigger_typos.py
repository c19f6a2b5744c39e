"""Typo-tolerant triggers: which trigger a message that matched nothing was probably meant to be.

"STAUTS" and "REFIL" are one slip away from STATUS and REFILL; rather than the fallback, the
person is asked "Did you mean STATUS?" (the engine's side is :mod:`bot.trigger_offers`). Built once
per flow load (``FlowSet.trigger_typos``), asked only where the fallback would answer.

Slips are counted with rapidfuzz's optimal string alignment distance: a wrong, missing or extra
character, or two neighbouring characters swapped ("STAUTS"), is one slip each. The shorter the
trigger, the fewer slips it may carry before a message is more likely another word than a typo.
"""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz import process
from rapidfuzz.distance import OSA

from bot.text.matching import answer_matcher
from bot.text.normalise import fold

MIN_LENGTH = 3  # "ok", "hi", "no": a message this short is a word of its own, never a slip
MAX_SLIPS = 2
#: Below this length a slip must keep the first letter: people rarely mistype the first letter,
#: and a short word with another first letter is usually just another word ("DAY" is not "PAY").
SAME_START_BELOW = 5

_YES, _NO = answer_matcher("yes"), answer_matcher("no")


def allowed_slips(length: int) -> int:
    """How many slips a word of ``length`` characters may carry and still be recognised: none
    below 3 characters, one up to 7, two from 8 ("SCHEDUEL" → SCHEDULE, "REFIL" → REFILL)."""
    if length < MIN_LENGTH:
        return 0
    return 1 if length < 8 else MAX_SLIPS


def _close(text: str, candidate: str, slips: int, *, strict: bool) -> bool:
    """Whether ``text`` is within the slips ``candidate`` allows; ``strict`` adds the short
    words' first-letter rule (used for suggesting, not for the words that block a suggestion)."""
    if slips > allowed_slips(len(candidate)):
        return False
    return not strict or len(candidate) >= SAME_START_BELOW or text[:1] == candidate[:1]


class TriggerTypos:
    """The triggers a message may be a slip of, and the reserved words that forbid suggesting.

    ``triggers`` are in :func:`bot.text.normalise.normalise`'s form, as flows compile them;
    ``reserved`` are the compliance keywords of every language in :func:`fold`'s form (STOP,
    CANCEL, ALTO, YES…). A message near a reserved word is never offered anything: it may be a
    failed STOP, and a YES to a suggestion must never stand between a person and opting out. A
    reserved word is never offered either.
    """

    def __init__(self, triggers: Iterable[str], reserved: Iterable[str]) -> None:
        self._reserved = tuple(sorted(set(reserved)))
        self._every = frozenset(triggers)
        # Sorted, so the answer never depends on the order flows were loaded in.
        self._triggers = tuple(sorted(word for word in self._every
                                      if allowed_slips(len(word)) and fold(word) not in self._reserved))
        self._longest = max(map(len, self._triggers), default=0)

    @property
    def triggers(self) -> tuple[str, ...]:
        """The triggers a message may be offered (short ones and reserved words left out)."""
        return self._triggers

    def suggest(self, normalised: str) -> str | None:
        """The one trigger ``normalised`` (a whole message, normalised) is a slip of, or None:
        when it is no trigger's slip, when two triggers are equally close, when it is near a
        compliance word, when it is a yes or a no ("yes", "nope thanks"), or has no letter."""
        if not self._triggers or not MIN_LENGTH <= len(normalised) <= self._longest + MAX_SLIPS or \
                normalised in self._every:  # a trigger is no slip, even of another one ("tracks", "track")
            return None
        if not any(char.isalpha() for char in normalised) or _YES(normalised, normalised) is not None or \
                _NO(normalised, normalised) is not None:
            return None
        folded = fold(normalised)
        if any(_close(folded, word, slips, strict=False) for word, slips in _near(folded, self._reserved)):
            return None
        found = [(slips, word) for word, slips in _near(normalised, self._triggers)
                 if _close(normalised, word, slips, strict=True)]
        if not found:
            return None
        fewest = min(slips for slips, _ in found)
        nearest = [word for slips, word in found if slips == fewest]
        return nearest[0] if len(nearest) == 1 else None


def _near(text: str, candidates: tuple[str, ...]) -> list[tuple[str, int]]:
    """The candidates within :data:`MAX_SLIPS` of ``text``, with their distance."""
    found = process.extract(text, candidates, scorer=OSA.distance, score_cutoff=MAX_SLIPS, limit=None)
    return [(word, int(slips)) for word, slips, _ in found]
