"""How a texted message is normalised and compared with the words ops staff wrote.

People type " Stop! ", "stop", "ＳＴＯＰ" and mean the same thing; everything that
compares a message with a keyword goes through :func:`normalise` first.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
OPT_IN_WORDS = frozenset({"start", "unstop"})
OPT_IN_WHILE_OPTED_OUT = frozenset({"yes"})  # YES re-subscribes only someone who opted out
HELP_WORDS = frozenset({"help", "info"})
#: Words no flow may capture: carriers require them to work from any state.
COMPLIANCE_WORDS = OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS

YES_WORDS = frozenset(
    {"yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "correct", "si", "sí", "👍"}
)
NO_WORDS = frozenset({"no", "n", "nope", "nah", "not really", "👎"})

_SPACE_RUN = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def normalise(text: str) -> str:
    """Fold a message to the form keywords are compared in.

    NFKC (full-width and compatibility forms become plain letters), case-folded,
    inner whitespace collapsed, surrounding whitespace and punctuation stripped.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _SPACE_RUN.sub(" ", folded).strip()
    start, end = 0, len(folded)
    while start < end and (_is_punctuation(folded[start]) or folded[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(folded[end - 1]) or folded[end - 1].isspace()):
        end -= 1
    return folded[start:end]


def words(normalised: str) -> list[str]:
    """The words of an already normalised message, punctuation dropped."""
    return _WORD.findall(normalised)


def parse_number(text: str) -> Decimal | None:
    """Read a reply such as "3", "-2.5", "1,000" or "４２!" as a number; None when it is not one.

    Works on the text as typed, not on :func:`normalise`'s output, which would drop a minus sign.
    """
    candidate = unicodedata.normalize("NFKC", text).strip().rstrip("!?.").replace(",", "").replace(" ", "")
    if not candidate:
        return None
    try:
        number = Decimal(candidate)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
