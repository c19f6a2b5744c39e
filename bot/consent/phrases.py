"""The small phrase language ops staff write revocations in, and the word-folding it is read against.

A phrase is words separated by spaces, matched against the *whole* clause a person texted (after
spellings, fuzzy typos and filler words are dealt with by :mod:`bot.consent.rules`):

- ``(texting|messaging)`` — exactly one of the alternatives (an alternative may be several words);
- ``[me|us]`` — optionally one of them;
- ``*`` — any one word ("take me off * list").

Groups nest. A phrase compiles to one regular expression over the clause's words, each followed
by one space, so ``stop [texting] me`` can never match "stopping" or "stop texting meow".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.text.normalise import fold, folded_words

_TOKEN = re.compile(r"\(|\)|\[|\]|\||\*|[^\s()\[\]|*]+")


class PhraseError(ValueError):
    """A phrase that cannot be read; the message says what is wrong and how to write it."""


@dataclass(frozen=True, slots=True)
class ReadPhrase:
    """A phrase compiled: its expression, and words one of which every match contains (its
    ``anchors``: None when it has none, e.g. ``* list``), so a message without any of them need
    not be matched at all."""

    pattern: re.Pattern[str]
    anchors: frozenset[str] | None


def compile_phrase(phrase: str) -> re.Pattern[str]:
    """One phrase as a regular expression over ``"word word "`` text; raises :class:`PhraseError`."""
    return read_phrase(phrase).pattern


def read_phrase(phrase: str) -> ReadPhrase:
    """One phrase, compiled, with its anchors; raises :class:`PhraseError`."""
    tokens = _TOKEN.findall(fold(phrase))
    if not tokens:
        raise PhraseError("the phrase is empty; write the words a person would text, e.g. 'stop texting me'")
    parser = _Parser(tokens, phrase)
    pattern, anchors = parser.sequence(closing=None)
    if parser.position != len(tokens):
        raise PhraseError(f"{tokens[parser.position]!r} closes a group that was never opened in {phrase!r}")
    if not pattern:
        raise PhraseError(f"{phrase!r} has no words")
    return ReadPhrase(re.compile(pattern), anchors)


#: A piece of a phrase: its expression, and the words one of which any match of it contains.
_Piece = tuple[str, frozenset[str] | None]


class _Parser:
    """Recursive descent over the phrase's tokens, emitting regular-expression text and anchors."""

    def __init__(self, tokens: list[str], phrase: str) -> None:
        self.tokens, self.phrase, self.position = tokens, phrase, 0

    def sequence(self, closing: str | None) -> _Piece:
        """A run of words and groups; its anchors are those of its first required part that has
        any (an optional group or ``*`` has none)."""
        parts: list[str] = []
        anchors: frozenset[str] | None = None
        while self.position < len(self.tokens):
            token = self.tokens[self.position]
            if token in {")", "]", "|"}:
                if closing is None:
                    break
                return "".join(parts), anchors
            self.position += 1
            if token in {"(", "["}:
                part, found = self.group(")" if token == "(" else "]")
            elif token == "*":
                part, found = r"[^ ]+ ", None
            else:
                said = folded_words(token)
                part, found = "".join(re.escape(word) + " " for word in said), frozenset(said[:1]) or None
            parts.append(part)
            anchors = anchors or found
        if closing is not None:
            raise PhraseError(f"a group in {self.phrase!r} is never closed: add {closing!r}")
        return "".join(parts), anchors

    def group(self, closing: str) -> _Piece:
        alternatives = [self.sequence(closing)]
        while self.position < len(self.tokens) and self.tokens[self.position] == "|":
            self.position += 1
            alternatives.append(self.sequence(closing))
        if self.position >= len(self.tokens) or self.tokens[self.position] != closing:
            found = self.tokens[self.position] if self.position < len(self.tokens) else "the end"
            raise PhraseError(f"expected {closing!r} in {self.phrase!r}, found {found!r}")
        self.position += 1
        if any(not pattern for pattern, _ in alternatives):
            if closing == ")":
                raise PhraseError(f"an empty choice in {self.phrase!r}: use [a|b] for optional words")
            alternatives = [(pattern, anchors) for pattern, anchors in alternatives if pattern]
        body = "|".join(pattern for pattern, _ in alternatives)
        if closing == "]":
            return f"(?:{body})?", None  # optional: a match need not contain any of it
        every = [anchors for _, anchors in alternatives if anchors is not None]
        return f"(?:{body})", frozenset().union(*every) if len(every) == len(alternatives) else None
