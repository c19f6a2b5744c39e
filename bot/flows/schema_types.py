"""The field types of flow files: durations, names, texts, words, media — each validated where it
is written, so a mistake is reported at its own line. :mod:`bot.flows.schema` builds the flow's
models from these.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from bot.text.matching import compile_pattern
from bot.text.normalise import normalise
from bot.text.wordsets import is_compliance_word

END = "end"  # the built-in target that ends a conversation
MAX_FETCH_TIMEOUT = 14.0  # Twilio abandons a webhook after 15 s

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
STATE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"  # Studio widget names such as save-booked are state names
#: where a value is saved: a name, or a dotted path stored nested ("widgets.ask.inbound.Body")
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$"


def parse_duration(value: object) -> float:
    """Read "30m", "1h30m", "45s", "500ms", "2d" (or a plain number of seconds) as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 2h or 1d")
    if isinstance(value, (int, float)):
        return _finite(float(value), value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 10m, 2h or 1d")
    text = value.strip().replace(" ", "")
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group(0) for p in parts).lower() != text.lower():
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 10m, 2h, 1d or 1h30m")
    return _finite(sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2).lower()] for p in parts), value)


def _finite(seconds: float, value: object) -> float:
    """Refuse YAML's ``.inf`` and ``.nan`` and digits too many for a float: a timer armed for ever,
    or at "not a number", is no timer a conversation could keep (nor store: JSON has no infinity)."""
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration one can wait; write it like 30s, 10m, 2h, 1d or 1h30m")
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` as ``1h30m``: how flow files write a duration (``parse_duration`` reads it back)."""
    whole = int(seconds)
    fraction = seconds - whole
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{count}{unit}" for count, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if count]
    if secs or fraction or not parts:
        parts.append(f"{secs + fraction:.3f}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)


_DURATION_SCHEMA = {"anyOf": [{"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$",
                                "examples": ["30s", "10m", "1h30m", "2d"]},
                               {"type": "number", "description": "seconds"}]}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
SavePath = Annotated[str, Field(pattern=PATH_PATTERN)]


def valid_regex(pattern: str) -> str:
    """A regular expression that compiles as the bot runs it (compile_pattern), or a ValueError
    saying why not."""
    try:
        compile_pattern(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None
    return pattern


def _as_list(value: object) -> object:
    """Let ops staff write a single message without list brackets; ``say: 42`` is the text "42"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, list):
        return [str(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else item
                for item in value]
    return [value] if isinstance(value, str) else value


def _as_words(value: object) -> object:
    """A keyword list may hold numbers (menu choices ``[1, 2, 3]``): they are words too."""
    value = [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value
    if isinstance(value, list):
        return [str(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else item
                for item in value]
    return value


Texts = Annotated[list[str], BeforeValidator(_as_list), WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})]


def _has_words(word: str) -> str:
    """Checked word by word, so an error points at the word's own line in a block list."""
    if not normalise(word):
        raise ValueError(f"{word!r} is empty once spaces and punctuation are removed")
    return word


def _not_compliance_word(word: str) -> str:
    """A whole-message word (a trigger, a keyword, a menu synonym) can never be a compliance
    keyword: that message always opts out, opts in or gets the help text."""
    _has_words(word)
    if is_compliance_word(word):
        raise ValueError(
            f"{word!r} is a compliance keyword (STOP, START, HELP and their kin always opt out, "
            "opt in or answer with the help text, whatever the flow says); choose another word"
        )
    return word


_WORDS_SCHEMA = WithJsonSchema({"anyOf": [{"type": ["string", "number"]},
                                          {"type": "array", "minItems": 1, "items": {"type": ["string", "number"]}}]})
Keyword = Annotated[str, AfterValidator(_not_compliance_word)]
Keywords = Annotated[list[Keyword], BeforeValidator(_as_words), Field(min_length=1), _WORDS_SCHEMA]
#: ``any_of`` words: found inside a message, so a compliance word is allowed (lint warns): only the
#: whole-message word is reserved, as at Twilio ("cancel my refill" is a flow's; "CANCEL" opts out)
Words = Annotated[list[Annotated[str, AfterValidator(_has_words)]], BeforeValidator(_as_words),
                  Field(min_length=1), _WORDS_SCHEMA]


def _language_code(code: str) -> str:
    from bot.consent.words import LANGUAGE_CODE

    if not LANGUAGE_CODE.fullmatch(code):
        raise ValueError(f"{code!r} is not a language code; write a code such as en, es, fr or pt-BR")
    return code


#: A language, as ``program.yaml`` and the consent files name them: es, fr, pt-BR
LanguageCode = Annotated[str, AfterValidator(_language_code)]


def _translation_row(row: object) -> object:
    """A row of a flow's ``translations:``: the same text (or list of words) in several languages."""
    if not isinstance(row, dict) or not row:
        raise ValueError("each translation is a mapping of language codes to the same text in each "
                         "(en: \"Hello\", es: \"Hola\"), or to lists of words (en: [MENU], es: [MENÚ])")
    kinds = {"words" if isinstance(value, list) else "text" for value in row.values()}
    if len(kinds) != 1:
        raise ValueError("a translation pairs texts with texts, or lists of words with lists of words, not both")
    for code, value in row.items():
        if isinstance(value, list):
            for word in value:
                _has_words(str(word))  # compliance words: Flow checks the translated ones (it knows the base)
        elif not isinstance(value, str) or not value.strip():
            raise ValueError(f"{code}: a translation is a text (or a list of words), not {value!r}")
    return row


def _number_as_text(value: object) -> object:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def row_values(row: object) -> object:
    """A row repeats the flow's texts and words as the flow writes them, numbers too (``say: 42``,
    ``keywords: [1, one]`` are "42" and ["1", "one"]); a value that is neither says so, by language."""
    if not isinstance(row, dict):
        return row
    values: dict[object, object] = {}
    for code, value in row.items():
        value = _number_as_text(value)
        if isinstance(value, list):
            value = [_number_as_text(word) for word in value]
            odd = next((word for word in value if not isinstance(word, str)), None)
            if not value or odd is not None:
                raise ValueError(f"{code}: {'an empty list' if not value else repr(odd)} is not a list of words: write "
                                 f"them as the flow does ({code}: [WORD, 2, ANOTHER WORD]), or leave {code} out")
        elif value is None:
            raise ValueError(f"{code}: is empty: write the translation after the colon, or leave {code} out")
        elif not isinstance(value, str):
            raise ValueError(f"{code}: a translation is a text (or a list of words), not {value!r}")
        values[code] = value
    return values


TranslationRow = Annotated[dict[LanguageCode, str | list[str]], BeforeValidator(row_values),
                           AfterValidator(_translation_row)]


def _lower_case(value: object) -> object:
    """``answer: YES`` and ``answer: Yes`` mean ``yes``: the case of a word never matters to people."""
    return value.strip().lower() if isinstance(value, str) else value


Answer = Annotated[Literal["yes", "no"], BeforeValidator(_lower_case),
                   WithJsonSchema({"type": "string", "enum": ["yes", "no", "Yes", "No", "YES", "NO"]})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NumberRange(_Strict):
    """A reply that is a number, optionally between ``min`` and ``max`` (inclusive)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NumberRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


MAX_MEDIA = 10  # Twilio attaches at most 10 pictures (media URLs) to one message


def _media_urls(urls: list[str]) -> list[str]:
    if len(urls) > MAX_MEDIA:
        raise ValueError(f"{len(urls)} media URLs: Twilio attaches at most {MAX_MEDIA} to one message")
    for url in urls:
        if not url.strip():
            raise ValueError("a media URL is empty")
        if "{{" not in url and "{%" not in url and not url.strip().lower().startswith(("https://", "http://")):
            raise ValueError(f"{url!r} is not a web address: Twilio fetches each picture from an "
                             "https:// URL (or write a template such as \"{{ photo[0] }}\")")
    return urls


Media = Annotated[list[str], BeforeValidator(_as_list), AfterValidator(_media_urls), WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": MAX_MEDIA, "items": {"type": "string"}}]})]
