"""How a texted message is folded before it is compared with the words ops staff wrote.

People type " Stop! ", "stop", "ＳＴＯＰ" and mean the same thing; everything that
compares a message with a keyword goes through :func:`normalise` first.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

_SPACE_RUN = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
_LETTERS_OR_DIGITS = re.compile(r"[^\W_]+")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)['’‘`´](?=\w)")

#: Characters that are never visible in a text and change nothing a person meant: zero-width
#: space, non-joiner and joiner, word joiner, BOM, soft hyphen, Mongolian vowel separator.
#: Phones and copy-paste add them ("STOP\u200b"); every comparison ignores them.
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
#: and the marks that only set the direction of text (LRM, RLM, ALM, embeddings, overrides, isolates):
#: phones set to Arabic or Hebrew add them around words ("\u200fESTADO"). Words are compared without
#: them; a saved reply (:func:`trim`) keeps them, as the person's text is theirs.
DIRECTION_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e"
                                         "\u2066\u2067\u2068\u2069"), None)
_UNSEEN = {**INVISIBLE, **DIRECTION_MARKS}


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


_SENTENCE_END = ".!?,;:…。！？"
_SENTENCE_START = "¡¿"


def trim(text: str) -> str:
    """The reply as people meant it: NFKC, inner whitespace collapsed, surrounding whitespace
    and sentence punctuation ("Bob!", "123456.", "¿Sí?") removed, case and meaningful marks kept
    ("-3", "(555) 123-4567", "#12"). Patterns see this; ``save`` stores it."""
    text = _SPACE_RUN.sub(" ", unicodedata.normalize("NFKC", text).translate(INVISIBLE)).strip()
    while text and (text[-1] in _SENTENCE_END or text[-1].isspace()):  # "Bob! ." -> "Bob"
        text = text[:-1]
    while text and (text[0] in _SENTENCE_START or text[0].isspace()):
        text = text[1:]
    return text


def _strip_punctuation(text: str) -> str:
    start, end = 0, len(text)
    while start < end and (_is_punctuation(text[start]) or text[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(text[end - 1]) or text[end - 1].isspace()):
        end -= 1
    return text[start:end]


def normalise(text: str) -> str:
    """Fold a message to the form keywords are compared in.

    NFKC (full-width and compatibility forms become plain letters), case-folded, inner whitespace
    collapsed, all surrounding whitespace and punctuation stripped (" (Stop!) " -> "stop").
    """
    if not text.isascii():  # ASCII is its own NFKC form and holds no invisible character
        text = unicodedata.normalize("NFKC", text).translate(_UNSEEN)
    return _strip_punctuation(_SPACE_RUN.sub(" ", text).strip()).casefold()


def fold(text: str) -> str:
    """``text`` as consent words are compared: NFKC, invisible characters removed, case-folded
    and accents dropped ("ARRÊT" → "arret"), since people often type without accents."""
    if text.isascii():  # most texts: already NFKC and NFD, no marks, no invisible character
        return text.lower()  # casefold of ASCII
    text = unicodedata.normalize("NFKC", text).translate(_UNSEEN).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(char for char in decomposed if not unicodedata.combining(char)))


def folded_words(folded: str) -> list[str]:
    """The words of :func:`fold`-ed text: letters and digits only ("don't" → "dont"); emoji,
    punctuation and symbols are not words."""
    return _LETTERS_OR_DIGITS.findall(_INNER_APOSTROPHE.sub("", folded))


def keyword_form(text: str) -> str:
    """A whole message as a compliance keyword is looked up: folded, with everything that is not
    a letter or digit gone from both ends ("🛑 Stop!!", "STOP\u200b", "\ufeffSTOP" → "stop") and
    inner whitespace collapsed; inner punctuation stays ("opt-out" is not "optout")."""
    folded = _SPACE_RUN.sub(" ", fold(text)).strip()
    start, end = 0, len(folded)
    while start < end and not folded[start].isalnum():
        start += 1
    while end > start and not folded[end - 1].isalnum():
        end -= 1
    return folded[start:end]


def words(normalised: str) -> list[str]:
    """The words of an already normalised message, punctuation dropped."""
    return _WORD.findall(normalised)


_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")


def parse_number(text: str) -> Decimal | None:
    """Read a reply such as "3", "-2.5", "1,000" or "４２!" as a number; None when it is not one.

    Strict on purpose: "1,5", "1 2" and "1e3" are not numbers (they are more likely typos than
    fifteen, twelve or a thousand). Reads :func:`trim`'s form, as patterns do, since
    :func:`normalise` would drop a minus sign.
    """
    candidate = trim(text).replace("\u2212", "-")
    if not _NUMBER.fullmatch(candidate):
        return None
    return Decimal(candidate.replace(",", ""))
