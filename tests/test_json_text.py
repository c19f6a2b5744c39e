"""bot/store/json_text.py: orjson's speed, json.dumps's meaning, for whatever a flow may save."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.store.json_text import _non_finite, dumps, dumps_own, dumps_record, dumps_text, loads_own
from bot.types import MediaText

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text()
           | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2))
KEYS = (st.text(max_size=8) | st.integers(min_value=-5, max_value=5) | st.booleans() | st.none()
        | st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)


def meaning(text: bytes | str) -> str:
    """What the text means once read back, written canonically (NaN compares as NaN)."""
    return json.dumps(json.loads(text))


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_dumps_means_what_json_dumps_means(value: Any) -> None:
    assert meaning(dumps(value)) == meaning(json.dumps(value))
    assert meaning(dumps_text(value)) == meaning(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_a_record_with_author_data_means_what_json_dumps_means(variables: Any) -> None:
    record = {"flow": "signup", "state": None, "vars": variables, "engine": {"timeout": None, "runs": []},
              "updated_at": 1_700_000_000.25}
    assert meaning(dumps_record(record, "vars")) == meaning(json.dumps(record))


def test_what_orjson_would_write_otherwise_is_written_by_json_dumps() -> None:
    for value in ({"n": math.nan}, {"big": 2 ** 70}, ["\ud800"], {"inf": [-math.inf]}):
        assert dumps(value) == json.dumps(value)
    assert json.loads(dumps({1: "a", "b": MediaText("hi", ("https://x/1.png",))})) == {"1": "a", "b": "hi"}
    assert dumps({"é": "🎉"}) == '{"é":"🎉"}'.encode()  # compact UTF-8: json.loads reads it alike


def _non_finite_recursively(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite_recursively(key) or _non_finite_recursively(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(_non_finite_recursively(item) for item in value)
    return False


@settings(max_examples=1000, deadline=None)
@given(VALUES)
def test_the_walk_for_nan_finds_what_recursion_finds(value: Any) -> None:
    assert _non_finite(value) == _non_finite_recursively(value)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12))
def test_the_bots_own_records_read_back_as_json_loads_reads_them(value: Any) -> None:
    for text in (dumps_own(value), json.dumps(value), json.dumps(value, indent=1)):
        assert loads_own(text) == json.loads(text)


def test_a_record_orjson_refuses_is_read_by_json_loads() -> None:
    assert loads_own('{"at": NaN, "n": 123456789012345678901234567890}')["n"] == 123456789012345678901234567890
