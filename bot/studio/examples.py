"""Texts that make a split condition hold or fail, so that a generated test can take each way out of a branch."""

from __future__ import annotations

import re
from decimal import Decimal

from bot.text.normalise import parse_number

#: Tried after each condition's own candidates, to find a reply that takes a given way out.
PLAIN_REPLIES = ("something else", "maybe later", "42", "0", "-1", "1000000", "x", "")
#: What makes a negative condition fail is what makes its positive hold.
_OPPOSITE = {"not_equal_to": "equal_to", "does_not_match_any_of": "matches_any_of", "does_not_contain": "contains",
             "does_not_start_with": "starts_with", "is_not_blank": "is_blank"}
# A Studio export is not trusted: these bound the work and the text whatever the pattern is.
MAX_PATTERN = 200  # characters; a longer pattern is not guessed at (the walk notes the branch instead)
MAX_TEXT = 160  # characters, one SMS segment: a longer example would make a poor test reply
#: The character written for a class shorthand (``\d`` -> "1"): plain ones a reply may hold.
_SHORTHANDS = {"d": "1", "w": "a", "s": " ", "D": "a", "W": "-", "S": "a"}
_CONTROLS = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_ZERO_WIDTH = "bBAZ"  # \b, \B, \A and \Z take no characters
_NEGATED_TRIES = "abZ1-#"  # what a negated class ([^…]) is offered, in order
_CODE = re.compile(r"x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}")
_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")
_FLAGS = re.compile(r"\(\?[aiLmsu]+\)")  # global flags: nothing to write; (?x) changes the syntax, so not here
_SCOPED = re.compile(r"\(\?(?:[aiLmsu]*(?:-[imsu]+)?:|P<\w+>|>)")  # (?i:…), (?P<name>…), (?>…): a plain group


def candidates(condition: str, argument: str) -> list[str]:
    """Texts likely to make ``condition`` hold."""
    if condition in ("equal_to", "contains", "starts_with"):
        return [argument.strip(), argument]
    if condition == "matches_any_of":
        return [item.strip() for item in argument.split(",") if item.strip()]
    if condition == "regex":
        example = regex_example(argument)
        return [example] if example is not None else []
    if condition == "is_blank":
        return [""]
    if condition in ("less_than", "greater_than"):
        number = parse_number(argument)
        if number is None:
            return []
        moved = number - 1 if condition == "less_than" else number + 1
        return [_number_text(moved)]
    return []


def failing_candidates(condition: str, argument: str) -> list[str]:
    """Texts likely to make a negative ``condition`` fail; for the others, as :func:`candidates`."""
    return candidates(_OPPOSITE.get(condition, condition), argument)


def _number_text(number: Decimal) -> str:
    return str(int(number)) if number == number.to_integral_value() else format(number.normalize(), "f")


class _GiveUp(Exception):
    """The pattern uses what this deliberately small reader does not know, or asks for too much."""


def regex_example(pattern: str) -> str | None:
    """A text that ``pattern`` finds, case-insensitively as splits test it (``^\\d{3}$`` -> "111"),
    or None: for a pattern beyond the simple subset read here, or when the guess does not match."""
    if len(pattern) > MAX_PATTERN:
        return None
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
        text = _Reader(pattern).example()
    except (re.error, _GiveUp):
        return None
    return text if compiled.search(text) else None


class _Reader:
    """Reads the pattern once, left to right, writing the shortest text each part allows: the first
    alternative, the first character of a class, each repetition's least count."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.at = 0

    def example(self) -> str:
        text = self._alternatives()
        if self.at != len(self.pattern):  # an unbalanced ")" (re.compile refuses it first)
            raise _GiveUp
        return text

    def _alternatives(self) -> str:
        first = self._sequence()
        while self._take("|"):
            self._sequence()  # read past it: the first alternative is the example
        return first

    def _sequence(self) -> str:
        text = ""
        while self.at < len(self.pattern) and self.pattern[self.at] not in "|)":
            piece = self._atom()
            count = self._least_count()
            if len(text) + len(piece) * count > MAX_TEXT:
                raise _GiveUp
            text += piece * count
        return text

    def _least_count(self) -> int:
        """How often the atom just read must appear: its quantifier's least count (1 without one)."""
        char = self.pattern[self.at:self.at + 1]
        found = _COUNT.match(self.pattern, self.at)
        if char in ("*", "?", "+"):
            self.at += 1
            least = 1 if char == "+" else 0
        elif found and found.group(0) != "{}":
            self.at = found.end()
            least = int(found.group(1) or 0)
        else:
            return 1
        if not self._take("?"):  # lazy or possessive: the least count is the same
            self._take("+")
        return least

    def _take(self, char: str) -> bool:
        if self.pattern.startswith(char, self.at):
            self.at += len(char)
            return True
        return False

    def _read(self) -> str:
        """The next character ("" at the end), read past."""
        char = self.pattern[self.at:self.at + 1]
        self.at += 1
        return char

    def _atom(self) -> str:
        char = self._read()
        if char == "(":
            return self._group()
        if char == "[":
            return self._class()
        if char == ".":
            return "a"
        if char in "^$":
            return ""
        if char == "\\":
            return self._escape(in_class=False)
        return char

    def _group(self) -> str:
        start = self.at - 1
        flags = _FLAGS.match(self.pattern, start)
        if flags:
            self.at = flags.end()
            return ""
        if self.pattern.startswith("(?#", start):  # a comment
            self.at = self.pattern.index(")", start) + 1
            return ""
        scoped = _SCOPED.match(self.pattern, start)
        lookaround = next((opening for opening in ("(?=", "(?!", "(?<=", "(?<!")
                           if self.pattern.startswith(opening, start)), None)
        if scoped:
            self.at = scoped.end()
        elif lookaround:
            self.at = start + len(lookaround)
        elif self.pattern.startswith("(?", start):  # back-references, conditionals, (?x)
            raise _GiveUp
        text = self._alternatives()
        if not self._take(")"):
            raise _GiveUp
        return "" if lookaround else text  # a lookaround takes no characters; the final search checks it

    def _class(self) -> str:
        start = self.at - 1
        negated = self._take("^")
        first: str | None = None
        while self.at == start + 1 + negated or not self._take("]"):  # a leading "]" is a member
            if self.at >= len(self.pattern):
                raise _GiveUp
            char = self._class_member()
            if self._take("-") and self.pattern[self.at:self.at + 1] not in ("]", ""):
                self._class_member()  # the range's end; its start is the example
            first = char if first is None else first
        if not negated:
            if first is None:
                raise _GiveUp
            return first
        members = re.compile(self.pattern[start:self.at], re.IGNORECASE)
        for char in _NEGATED_TRIES:
            if members.fullmatch(char):
                return char
        raise _GiveUp

    def _class_member(self) -> str:
        char = self._read()
        return self._escape(in_class=True) if char == "\\" else char

    def _escape(self, in_class: bool) -> str:
        char = self._read()
        code = _CODE.match(self.pattern, self.at - 1)
        if code:
            self.at = code.end()
            return chr(int(code.group(0)[1:], 16))
        if char in _SHORTHANDS:
            return _SHORTHANDS[char]
        if char in _CONTROLS:
            return _CONTROLS[char]
        if char == "b" and in_class:
            return "\b"
        if char and char in _ZERO_WIDTH and not in_class:
            return ""
        if char and not char.isalnum():
            return char
        raise _GiveUp  # back-references (\1), octal codes, \N{…}, \U…
