"""A conversation's variables addressed by dotted paths (``widgets.ask.inbound.Body``), as flows
and Studio imports name them: one implementation for the engine, URL rendering and the importer's
predictions. Imports nothing from the bot, so every room may use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def store_at(variables: dict[str, Any], path: str, value: Any) -> None:
    """Save ``value`` under a name or a dotted path, creating the mappings on the way."""
    *parents, last = path.split(".")
    for part in parents:
        child = variables.get(part)
        if not isinstance(child, dict):
            child = variables[part] = {}
        variables = child
    variables[last] = value


def forget_at(variables: dict[str, Any], path: str) -> None:
    """Drop the value under a name or a dotted path, if there is one."""
    parent, last = _parent(variables, path)
    if parent is not None:
        parent.pop(last, None)


def replace_at(variables: dict[str, Any], path: str, value: Any) -> None:
    """Put ``value`` where a name or a dotted path already holds one (nothing is created)."""
    parent, last = _parent(variables, path)
    if parent is not None and last in parent:
        parent[last] = value


def value_at(variables: Mapping[str, Any], path: str) -> Any:
    """The value under a name or a dotted path; None when there is none."""
    parent, last = _parent(variables, path)
    return parent.get(last) if parent is not None else None


def _parent(variables: Mapping[str, Any], path: str) -> tuple[Any, str]:
    """The mapping holding the last part of ``path`` (None when a part on the way is not one)."""
    *parents, last = path.split(".")
    current: Any = variables
    for part in parents:
        current = current.get(part)
        if not isinstance(current, Mapping):
            return None, last
    return current, last
