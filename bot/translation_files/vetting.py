"""What a translation may not do, checked before it is written into a flow: each refusal says why.

A translation file comes from outside (a translator, a spreadsheet someone edited), and a row of
the table changes what the bot sends and listens for, so a translation is held to what its base
text is: the same ``{{ values }}`` (a ``{{ env.SECRET }}`` the text lacks would be sent to people),
no new logic, one line where people text it back, no compliance keyword where a whole message is
compared (it would opt people out instead), and no more than a turn may send.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from liquid import BoundTemplate
from liquid.exceptions import LiquidError

from bot import segments
from bot.text.normalise import normalise
from bot.text.templates import ENVIRONMENT
from bot.text.wordsets import is_compliance_word
from bot.translation_files.entries import WORDS, Translation, split_words
from bot.translation_files.notes import LITERAL_ROLES, TRIGGERS, WHOLE_MESSAGE_ROLES, cost

#: One SMS segment: the most a word (or a menu label) people text back may be
MAX_WORD_LENGTH = 160


class Refused(ValueError):
    """A translation that is not written; the message says why and what to do."""


@dataclass(frozen=True)
class Subject:
    """What a translation translates: its kind, its base text and the roles the flow gives it."""

    kind: str  # TEXT or WORDS
    base: str
    roles: frozenset[str]


def vetted(subject: Subject, translation: str, other_triggers: Mapping[str, str] = {}) -> Translation:
    """The translation as the table holds it (a text, or the words), or :class:`Refused`.
    ``other_triggers``: every other flow's trigger words (normalised) and that flow's name."""
    if not translation.strip():
        raise Refused("is only spaces: leave it empty to keep the text untranslated")
    _no_control_characters(translation, one_line=subject.kind == WORDS or bool(LITERAL_ROLES & subject.roles))
    if subject.kind == WORDS:
        return _words(subject, translation, other_triggers)
    if LITERAL_ROLES & subject.roles:
        _literal(subject, translation)
    else:
        _same_template(subject.base, translation)
    measured = cost(translation)
    if measured.segments > segments.MAX_TURN_SEGMENTS:
        raise Refused(f"is {len(translation):,} characters, {measured.segments} SMS segments: more than the "
                      f"{segments.MAX_TURN_SEGMENTS} a turn may send (the rest would be cut); shorten it")
    return translation


def _no_control_characters(text: str, *, one_line: bool) -> None:
    for char in text:
        if one_line and (char in "\n\r" or unicodedata.category(char) in ("Zl", "Zp")):  # U+2028 too
            raise Refused("has a line break: these words are texted back as one line; write them on one line")
        if char not in "\n" and unicodedata.category(char) == "Cc":
            raise Refused(f"has the control character {segments.describe(char)}: a text holds letters, "
                          "punctuation, spaces and line breaks only")


def _words(subject: Subject, translation: str, other_triggers: Mapping[str, str]) -> tuple[str, ...]:
    words = split_words(translation)
    for word in words:
        if not normalise(word):
            raise Refused(f"has {word!r}, a word with no letters or digits: people could not text it")
        if len(word) > MAX_WORD_LENGTH:
            raise Refused(f"has a word of {len(word):,} characters: a word people text back is at most "
                          f"{MAX_WORD_LENGTH}; separate words with commas")
        if is_compliance_word(word):
            raise Refused(f"has {word!r}, a compliance keyword (STOP, HELP, ALTO, AYUDA and their kin always opt "
                          "out, opt in or get the help text, whatever the flow says): choose another word")
        owner = other_triggers.get(normalise(word)) if TRIGGERS in subject.roles else None
        if owner is not None:
            raise Refused(f"has {word!r}, already a trigger of flow {owner!r}: a word can start only one flow")
    return words


def _literal(subject: Subject, translation: str) -> None:
    """A menu label or a flow's description: shown as written and, for a label, texted back."""
    if len(translation) > MAX_WORD_LENGTH:
        raise Refused(f"is {len(translation):,} characters: a label people text back is at most {MAX_WORD_LENGTH}")
    if ("{{" in translation or "{%" in translation) and not ("{{" in subject.base or "{%" in subject.base):
        raise Refused("has {{ }} or {% %}: this text is shown as written, never filled in")
    if WHOLE_MESSAGE_ROLES & subject.roles and is_compliance_word(translation):
        raise Refused(f"is {translation!r}, a compliance keyword: a person who texts the label back would be "
                      "opted out, opted in or sent the help text instead; choose another label")


def _same_template(base: str, translation: str) -> None:
    """The translation reads the same values as its text, with no tag or filter the text lacks."""
    try:
        template = ENVIRONMENT.from_string(translation)
    except LiquidError as error:
        raise Refused(f"is not a template the bot can fill in ({error.message}); copy each {{{{ … }}}} from "
                      "the text exactly") from None
    theirs = _parts(template)
    try:
        ours = _parts(ENVIRONMENT.from_string(base))
    except LiquidError:  # the text itself is broken: lint reports it; the translation must not add to it
        ours = (set(), set(), set())
    for kind, mine, given in zip(("value", "tag", "filter"), ours, theirs, strict=True):
        added, dropped = sorted(given - mine), sorted(mine - given)
        if added:
            raise Refused(f"uses the {kind}{'s' * (len(added) > 1)} {_listed(kind, added)}, which the text does "
                          f"not: a translation keeps the text's {{{{ values }}}} exactly")
        if dropped and kind == "value":
            raise Refused(f"leaves out {_listed(kind, dropped)}, which the text has: keep every {{{{ value }}}} of "
                          "the text, as written")


def _parts(template: BoundTemplate) -> tuple[set[str], set[str], set[str]]:
    """The values (``result.status``), tags and filters a template uses."""
    analysis = template.analyze(include_partials=False)
    values = {str(variable) for variables in analysis.variables.values() for variable in variables}
    return values, set(analysis.tags), set(analysis.filters)


def _listed(kind: str, names: list[str]) -> str:
    shown = [f"{{{{ {name} }}}}" if kind == "value" else f"{{% {name} %}}" if kind == "tag" else f"| {name}"
             for name in names]
    return ", ".join(shown)
