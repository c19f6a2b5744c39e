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

from bot.text.normalise import fold, folded_words

_TOKEN = re.compile(r"\(|\)|\[|\]|\||\*|[^\s()\[\]|*]+")


class PhraseError(ValueError):
    """A phrase that cannot be read; the message says what is wrong and how to write it."""


def compile_phrase(phrase: str) -> re.Pattern[str]:
    """One phrase as a regular expression over ``"word word "`` text; raises :class:`PhraseError`."""
    tokens = _TOKEN.findall(fold(phrase))
    if not tokens:
        raise PhraseError("the phrase is empty; write the words a person would text, e.g. 'stop texting me'")
    parser = _Parser(tokens, phrase)
    pattern = parser.sequence(closing=None)
    if parser.position != len(tokens):
        raise PhraseError(f"{tokens[parser.position]!r} closes a group that was never opened in {phrase!r}")
    if not pattern:
        raise PhraseError(f"{phrase!r} has no words")
    return re.compile(pattern)


class _Parser:
    """Recursive descent over the phrase's tokens, emitting regular-expression text."""

    def __init__(self, tokens: list[str], phrase: str) -> None:
        self.tokens, self.phrase, self.position = tokens, phrase, 0

    def sequence(self, closing: str | None) -> str:
        parts: list[str] = []
        while self.position < len(self.tokens):
            token = self.tokens[self.position]
            if token in {")", "]", "|"}:
                if closing is None:
                    break
                return "".join(parts)
            self.position += 1
            if token in {"(", "["}:
                parts.append(self.group(")" if token == "(" else "]"))
            elif token == "*":
                parts.append(r"[^ ]+ ")
            else:
                parts.extend(re.escape(word) + " " for word in folded_words(token))
        if closing is not None:
            raise PhraseError(f"a group in {self.phrase!r} is never closed: add {closing!r}")
        return "".join(parts)

    def group(self, closing: str) -> str:
        alternatives = [self.sequence(closing)]
        while self.position < len(self.tokens) and self.tokens[self.position] == "|":
            self.position += 1
            alternatives.append(self.sequence(closing))
        if self.position >= len(self.tokens) or self.tokens[self.position] != closing:
            found = self.tokens[self.position] if self.position < len(self.tokens) else "the end"
            raise PhraseError(f"expected {closing!r} in {self.phrase!r}, found {found!r}")
        self.position += 1
        if any(not alternative for alternative in alternatives):
            if closing == ")":
                raise PhraseError(f"an empty choice in {self.phrase!r}: use [a|b] for optional words")
            alternatives = [alternative for alternative in alternatives if alternative]
        body = "|".join(alternatives)
        return f"(?:{body})" if closing == ")" else f"(?:{body})?"
