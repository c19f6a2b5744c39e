"""What a translator is told about each entry: what it is (trigger words, a menu label, a text the
bot sends), where the flow has it, the ``{{ values }}`` to keep as written, and what it costs as SMS.

A translator works in Poedit or a spreadsheet, not in the flow: the note is all they see of how a
text is used, so it says what would break (a label on two lines, a dropped ``{{ order }}``).
"""

from __future__ import annotations

from babel import Locale, UnknownLocaleError
from liquid.exceptions import LiquidError
from liquid.token import TOKEN_OUTPUT, TOKEN_TAG

from bot import segments
from bot.flows.checks import CheckOptions
from bot.flows.template_checks import measured_text
from bot.text.templates import ENVIRONMENT
from bot.translation_files.entries import TEXT, WORDS, Entry

TRIGGERS, KEYWORDS, ANY_OF, ALSO, LABEL, LISTED, SENT = "triggers", "keywords", "any_of", "also", "label", \
    "listed", "text"
#: Texts shown as written, never rendered as templates
LITERAL_ROLES = frozenset({LABEL, LISTED})
#: Words a person texts as the whole message: never a compliance keyword
WHOLE_MESSAGE_ROLES = frozenset({TRIGGERS, KEYWORDS, ALSO, LABEL})

_WHAT = {
    TRIGGERS: "Trigger words: a person who texts one of them (as the whole message) starts this flow.",
    KEYWORDS: "Reply words: a reply that is exactly one of them (as the whole message) is understood.",
    ANY_OF: "Reply words found anywhere in a reply.",
    ALSO: "Other words that choose this menu item.",
    LABEL: "A menu label, listed as \"1) label\" and texted back to choose it: keep it on one line.",
    LISTED: "How the help text describes this flow, after its trigger word (\"STATUS to track an order\").",
    SENT: "A text the bot sends.",
}


def role(where: str) -> str:
    """What the place ``where`` (``ask.replies.2.keywords``) holds: one of the roles above."""
    if where in (TRIGGERS, LISTED):
        return where
    last = where.rsplit(".", 1)[-1]
    return last if last in (KEYWORDS, ANY_OF, ALSO, LABEL) else SENT


def roles(entry: Entry) -> set[str]:
    return {role(place.where) for place in entry.places}


def language_name(code: str) -> str:
    """``es`` as "Spanish" (Babel's names), or the code itself for one Babel does not know."""
    try:
        return Locale.parse(code.replace("-", "_")).get_display_name("en") or code
    except (ValueError, UnknownLocaleError):
        return code


def kept_as_written(text: str) -> list[str]:
    """The ``{{ … }}`` outputs and ``{% … %}`` tags of a text, as a translator must copy them."""
    try:
        tokens = list(ENVIRONMENT.tokenizer()(text))
    except LiquidError:
        return []
    kept: list[str] = []
    for token in tokens:
        shown = token.value if token.kind == TOKEN_OUTPUT else f"{{% {token.value} %}}" if token.kind == TOKEN_TAG \
            else None
        if shown is not None and shown not in kept:
            kept.append(shown)
    return kept


def cost(text: str) -> segments.Cost:
    """What a text costs as SMS, each ``{{ value }}`` counted as lint counts it."""
    return segments.cost(measured_text(text, "x" * CheckOptions().assumed_variable_length))


def notes(entry: Entry, base_language: str, language: str, *, where: bool = True) -> list[str]:
    """The lines a translator reads above the entry (``where``: with the places the flow uses it)."""
    found = roles(entry)
    lines = [_WHAT[kind] for kind in (TRIGGERS, KEYWORDS, ANY_OF, ALSO, LABEL, LISTED, SENT) if kind in found]
    if entry.kind == WORDS:
        lines.append(f"Write the {language_name(language)} words separated by commas: a person may text any of "
                     f"them (the {language_name(base_language)} ones still work). Never a word such as STOP, "
                     "HELP, ALTO or AYUDA: those always opt out or get the help text.")
    elif LITERAL_ROLES & found:
        lines.append("Shown as written: no {{ }} here.")
    else:
        kept = kept_as_written(entry.base)
        if kept:
            lines.append(f"Keep {', '.join(kept)} as written: the bot fills {'them' if len(kept) > 1 else 'it'} in.")
    if entry.kind == TEXT and SENT in found:
        lines.append(_sms_note(entry, base_language, language))
    if entry.previous is not None:
        lines.append("STALE: the text changed since it was translated; the translation is the old text's. "
                     "Check it, then remove the fuzzy mark.")
    if where:
        lines.append("Where: " + ", ".join(place.where for place in entry.places))
    return lines


def _sms_note(entry: Entry, base_language: str, language: str) -> str:
    note = f"SMS: the {language_name(base_language)} text costs {cost(entry.base)}"
    if isinstance(entry.translation, str):
        translated = cost(entry.translation)
        note += f"; the current {language_name(language)} one {translated}"
        if translated.first_non_gsm is not None and cost(entry.base).first_non_gsm is None:
            note += f" because of {segments.describe(translated.first_non_gsm)}"
    return note + "."
