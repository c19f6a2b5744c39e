"""A conversation's variables addressed by dotted paths (``widgets.ask.inbound.Body``), as flows
and Studio imports name them: one implementation for the engine and the importer's predictions."""

from __future__ import annotations

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
    *parents, last = path.split(".")
    for part in parents:
        child = variables.get(part)
        if not isinstance(child, dict):
            return
        variables = child
    variables.pop(last, None)
