"""What a text costs as SMS: encoding (GSM-7 or UCS-2) and segment count.

GSM-7 fits 160 characters in one segment and 153 per segment when split; one character outside
it (a curly quote, an emoji) switches the whole message to UCS-2: 70, then 67 per segment.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # cost two septets each
#: What one turn may cost at most: replies beyond it are cut (``outgoing_messages`` in
#: bot/twilio_inbound.py), and lint warns about texts that can grow past it.
MAX_TURN_SEGMENTS = 10


@dataclass(frozen=True, slots=True)
class Cost:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    first_non_gsm: str | None = None  # the character that forced UCS-2

    def __str__(self) -> str:
        plural = "" if self.segments == 1 else "s"
        return f"{self.segments} segment{plural}, {self.encoding}"


def first_non_gsm(text: str) -> str | None:
    return next((char for char in text if char not in GSM7_BASIC and char not in GSM7_EXTENDED), None)


def cost(text: str) -> Cost:
    odd = first_non_gsm(text)
    if odd is None:
        units = sum(2 if char in GSM7_EXTENDED else 1 for char in text)
        return Cost("GSM-7", units, _segments(units, 160, 153))
    units = len(text.encode("utf-16-le")) // 2
    return Cost("UCS-2", units, _segments(units, 70, 67), odd)


def _segments(units: int, single: int, per_part: int) -> int:
    if units == 0:
        return 0
    return 1 if units <= single else math.ceil(units / per_part)


#: Characters outside GSM-7 with a plain twin people accept in a text message (typography pasted
#: from a word processor); an accented letter's twin is the letter without its accent.
_PLAIN_TWINS = {"‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "“": '"', "”": '"', "„": '"', "‟": '"',
                "″": '"', "–": "-", "—": "-", "―": "-", "…": "...", "\u00a0": " ", "\u2009": " ",
                "\u200b": "", "•": "*"}


def plain_twin(char: str) -> str | None:
    """The GSM-7 character(s) people would accept for ``char`` (``í`` → ``i``, ``’`` → ``'``), or
    None when it has none (an emoji, a letter of another alphabet)."""
    if char in _PLAIN_TWINS:
        return _PLAIN_TWINS[char]
    bare = "".join(part for part in unicodedata.normalize("NFD", char) if not unicodedata.combining(part))
    return bare if bare and bare != char and first_non_gsm(bare) is None else None


def in_gsm7(text: str) -> str:
    """``text`` with every character outside GSM-7 as its plain twin (or one plain character when
    it has none): what it would cost written in the basic alphabet."""
    return "".join(char if char in GSM7_BASIC or char in GSM7_EXTENDED else (plain_twin(char) or "?")
                   for char in text)


def outside_gsm7(text: str) -> list[str]:
    """The characters of ``text`` outside GSM-7, each once, in the order they first appear."""
    return list(dict.fromkeys(char for char in text if char not in GSM7_BASIC and char not in GSM7_EXTENDED))


def describe(char: str) -> str:
    """Name a character so an ops person can find it: ’ (U+2019 RIGHT SINGLE QUOTATION MARK)."""
    return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')})"
