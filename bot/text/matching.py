"""Where a person's text is matched against what ops staff wrote: rule matchers and split conditions.

The flow compiler builds these once per rule at load time; the engine calls them per message.
Studio's importer uses the same conditions to predict which way a split goes, so the two can
never disagree about what "contains" or "greater than" means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from bot.text.normalise import normalise, parse_number, trim, words
from bot.text.wordsets import ANSWER_WORDS, NO_WORDS, YES_WORDS

#: A matcher gets the normalised and the original text; it returns the value to save, or None.
Matcher = Callable[[str, str], Any]
#: A condition gets the value and the rendered argument; it says whether the condition holds.
Condition = Callable[[str, str], bool]


def never(normalised: str, original: str) -> Any:
    """A rule whose test is not about the text (``media``): the text alone never matches it."""
    return None


def keywords_matcher(keywords: Iterable[str]) -> Matcher:
    """The whole message is one of ``keywords`` (after normalisation)."""
    accepted = frozenset(normalise(word) for word in keywords)

    def matches(normalised: str, original: str) -> Any:
        return trim(original) if normalised in accepted else None
    return matches


def any_of_matcher(entries: Iterable[str]) -> Matcher:
    """Any entry's words appear in the message, together and in order ("e-mail" = "e mail")."""
    split = [words(normalise(entry)) for entry in entries]
    single = frozenset(entry[0] for entry in split if len(entry) == 1)
    phrases = [entry for entry in split if len(entry) > 1]

    def matches(normalised: str, original: str) -> Any:
        said = words(normalised)
        if single.intersection(said) or any(_contains(said, phrase) for phrase in phrases):
            return trim(original)
        return None
    return matches


def _contains(said: list[str], phrase: list[str]) -> bool:
    width = len(phrase)
    return any(said[start:start + width] == phrase for start in range(len(said) - width + 1))


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A flow's regular expression, case-insensitive, with ``\\d`` meaning only 0-9.

    Python's ``\\d`` also takes other scripts' digits (Arabic-Indic ٣, Devanagari ३), which a
    pattern such as ``'^\\d{6}$'`` would then save and send to a web service expecting 0-9.
    ``re.ASCII`` would fix that, but would also make ``\\w`` and case-folding ASCII-only ("Zoë"),
    so only ``\\d`` and ``\\D`` are rewritten (:func:`ascii_digits`). Raises ``re.error``.
    """
    return re.compile(ascii_digits(pattern), re.IGNORECASE)


def ascii_digits(pattern: str) -> str:
    """``pattern`` with ``\\d`` as ``[0-9]`` (``0-9`` inside a character class) and ``\\D`` as
    ``[^0-9]`` outside one; an escaped backslash (``\\\\d``) is left alone. Inside a class ``\\D``
    stays Python's: it excludes every script's digits, the stricter reading."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            if escaped == "d":
                out.append("0-9" if in_class else "[0-9]")
            elif escaped == "D" and not in_class:
                out.append("[^0-9]")
            else:
                out.append(char + escaped)
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            # A "]" right after "[" or "[^" is a literal, not the end of the class.
            for opening in ("^", "]"):
                if index < len(pattern) and pattern[index] == opening:
                    out.append(opening)
                    index += 1
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


def pattern_matcher(pattern: str) -> Matcher:
    """A regular expression (case-insensitive, ``\\d`` = 0-9) found in the trimmed text; saves
    group 1 if any."""
    compiled = compile_pattern(pattern)

    def matches(normalised: str, original: str) -> Any:
        found = compiled.search(trim(original))
        if found is None:
            return None
        if compiled.groups and found.group(1) is not None:
            return found.group(1)
        return found.group(0)
    return matches


def number_matcher(low: float | None, high: float | None) -> Matcher:
    """A number within the bounds (inclusive); saves it as an int when it is whole."""
    lowest = Decimal(str(low)) if low is not None else None
    highest = Decimal(str(high)) if high is not None else None

    def matches(normalised: str, original: str) -> Any:
        number = parse_number(original)
        if number is None or (lowest is not None and number < lowest) or \
                (highest is not None and number > highest):
            return None
        return int(number) if number == number.to_integral_value() else float(number)
    return matches


def answer_matcher(answer: str, language: str | None = None) -> Matcher:
    """A yes or a no, as a whole message or as its first word ("yes please"); in ``language``
    (someone talked to in Spanish), that language's own words as well ("sí", "claro")."""
    own = ANSWER_WORDS.get((language or "").split("-")[0].lower())
    accepted = YES_WORDS if answer == "yes" else NO_WORDS
    if own is not None:
        accepted = accepted | (own[0] if answer == "yes" else own[1])

    def matches(normalised: str, original: str) -> Any:
        if normalised in accepted:
            return trim(original)
        first = words(normalised)[:1]
        return trim(original) if first and first[0] in accepted else None
    return matches


# -- split conditions (Twilio Studio's, used by ``branch``) -----------------------------------

def _folded(text: str) -> str:
    return text.strip().casefold()


def _listed(value: str, argument: str) -> bool:
    return _folded(value) in {_folded(item) for item in argument.split(",")}


def _compare(value: str, argument: str, less: bool) -> bool:
    left, right = parse_number(value), parse_number(argument)
    if left is None or right is None:
        return False
    return left < right if less else left > right


_CONDITIONS: dict[str, Condition] = {
    "equal_to": lambda v, a: _folded(v) == _folded(a),
    "not_equal_to": lambda v, a: _folded(v) != _folded(a),
    "matches_any_of": _listed,
    "does_not_match_any_of": lambda v, a: not _listed(v, a),
    "contains": lambda v, a: a.casefold() in v.casefold(),
    "does_not_contain": lambda v, a: a.casefold() not in v.casefold(),
    "starts_with": lambda v, a: v.casefold().startswith(a.casefold()),
    "does_not_start_with": lambda v, a: not v.casefold().startswith(a.casefold()),
    "is_blank": lambda v, a: not v.strip(),
    "is_not_blank": lambda v, a: bool(v.strip()),
    "less_than": lambda v, a: _compare(v, a, less=True),
    "greater_than": lambda v, a: _compare(v, a, less=False),
}

#: Every condition a ``branch`` case may name: Studio's split conditions, in snake_case and its order.
CONDITION_NAMES = ("equal_to", "not_equal_to", "matches_any_of", "does_not_match_any_of", "contains",
                   "does_not_contain", "starts_with", "does_not_start_with", "regex", "is_blank", "is_not_blank",
                   "less_than", "greater_than")
assert set(CONDITION_NAMES) == {*_CONDITIONS, "regex"}


def condition(name: str, pattern: str | None = None) -> Condition:
    """Studio's split condition ``name``: case-insensitive, comma lists for the any-of forms.
    ``regex`` takes its ``pattern`` here, compiled once; the others compare with the argument."""
    if name == "regex":
        if pattern is None:
            raise ValueError("the regex condition needs a pattern")
        compiled = compile_pattern(pattern)
        return lambda value, argument: compiled.search(value) is not None
    return _CONDITIONS[name]
