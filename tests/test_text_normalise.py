"""Normalisation: what people type versus the words ops staff wrote."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.text.normalise import _SPACE_RUN, _UNSEEN, _strip_punctuation, fold, normalise, parse_number, words
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


def _fold_the_long_way(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_UNSEEN).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(char for char in decomposed if not unicodedata.combining(char)))


def _normalise_the_long_way(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_UNSEEN)
    return _strip_punctuation(_SPACE_RUN.sub(" ", text).strip()).casefold()


@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.text())
@settings(max_examples=3000)
def test_the_ascii_shortcut_folds_as_unicode_does(text: str) -> None:
    """ASCII texts skip the Unicode normal forms (they are their own): same result, every time."""
    assert fold(text) == _fold_the_long_way(text)
    assert normalise(text) == _normalise_the_long_way(text)


def test_every_ascii_character_folds_as_unicode_does() -> None:
    everything = "".join(map(chr, range(128)))
    for text in (everything, *everything, everything.upper()):
        assert fold(text) == _fold_the_long_way(text) and normalise(text) == _normalise_the_long_way(text)
