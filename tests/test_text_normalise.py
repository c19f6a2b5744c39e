"""Normalisation: what people type versus the words ops staff wrote."""

import pytest

from bot.text.normalise import normalise, parse_number, words
from bot.text.wordsets import COMPLIANCE_WORDS


@pytest.mark.parametrize(("typed", "expected"), [
    ("STOP", "stop"),
    (" Stop! ", "stop"),
    ("stop.", "stop"),
    ("¡¿Stop?!", "stop"),
    ("ＳＴＯＰ", "stop"),  # full-width letters (NFKC)
    ("\tHelp\n", "help"),
    ("order   status", "order status"),
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),  # case-folding, not just lower()
    ("👍", "👍"),
    ("", ""),
    ("...", ""),
])
def test_normalise(typed: str, expected: str) -> None:
    assert normalise(typed) == expected


def test_inner_punctuation_is_kept() -> None:
    assert normalise("don't stop") == "don't stop"
    assert normalise("stop!!!") in COMPLIANCE_WORDS
    assert normalise("please stop") not in COMPLIANCE_WORDS


def test_words() -> None:
    assert words(normalise("Yes, please!")) == ["yes", "please"]


@pytest.mark.parametrize(("typed", "expected"), [
    ("3", 3), ("-2.5", -2.5), ("1,000", 1000), ("４２", 42), ("three", None), ("", None), ("nan", None),
    ("inf", None), (" 7! ", 7), ("+5", 5), ("\u22122", -2), ("1,5", None), ("1 2", None), ("1e3", None),
    ("12,345.5", 12345.5), (".5", 0.5),
])
def test_parse_number(typed: str, expected: float | None) -> None:
    result = parse_number(typed)
    assert (None if result is None else float(result)) == expected
