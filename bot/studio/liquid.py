"""The variable paths that a Studio flow's Liquid templates read (``widgets.ask.inbound.Body``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from liquid import Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError

#: Strict, so that a test's guess at a template's value fails where it reads what the test does not know.
LIQUID = Environment(undefined=StrictDefaultUndefined)


def variable_paths(text: str) -> set[str] | None:
    """The variable paths a template reads; None when it does not parse."""
    if "{" not in text:
        return set()
    try:
        return set(LIQUID.from_string(text).variable_paths())
    except LiquidError:
        return None


def strings(value: Any) -> Iterator[str]:
    """Every string inside ``value``, however deep in mappings and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def paths_in(widgets: Sequence[dict[str, Any]]) -> set[str]:
    """Every variable path the widgets' templates read."""
    found: set[str] = set()
    for widget in widgets:
        for text in strings(widget.get("properties")):
            found |= variable_paths(text) or set()
    return found
