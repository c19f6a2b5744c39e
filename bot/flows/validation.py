"""Pydantic's validation errors as located problems, in words an ops person can act on: one
translation for every YAML file the bot reads (flows, the program file, consent files,
conversation tests)."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.flows.problems import LocatedValueError, Path, Problem
from bot.flows.suggest import FIELD_SYNONYMS, closest, did_you_mean
from bot.flows.yamlsource import SourceMap

_QUOTED = re.compile(r"'([^']*)'")  # the values pydantic lists in a literal_error: "'yes' or 'no'"


def validation_problems(file: str, source: SourceMap, model_type: type[BaseModel],
                        error: ValidationError) -> list[Problem]:
    """Pydantic's errors as located problems, in words an ops person can act on. A required field
    written misspelt is one problem (the unknown field, and which one it meant), not two."""
    details = error.errors()
    meant = {(tuple(detail["loc"][:-1]), _meant_field(model_type, tuple(detail["loc"])))
             for detail in details if detail["type"] == "extra_forbidden"}
    return [_validation_problem(file, source, model_type, detail) for detail in details
            if not (detail["type"] == "missing" and (tuple(detail["loc"][:-1]), detail["loc"][-1]) in meant)]


def _meant_field(model_type: type[BaseModel], path: Path) -> str | None:
    """The allowed field an unknown one most likely meant (``repiles`` → ``replies``)."""
    return closest(str(path[-1]), _allowed_fields(model_type, path[:-1]), FIELD_SYNONYMS)


def _validation_problem(file: str, source: SourceMap, model_type: type[BaseModel], detail: Any) -> Problem:
    path: Path = tuple(detail["loc"])
    located = detail.get("ctx", {}).get("error")
    if isinstance(located, LocatedValueError):  # a model's check about one of its parts: at that part
        path = (*path, *located.where)
    kind = detail["type"]
    message = str(detail["msg"]).removeprefix("Value error, ")
    hint = ""
    if kind == "extra_forbidden":
        field_name = str(path[-1])
        allowed = _allowed_fields(model_type, path[:-1])
        message = f"unknown field {field_name!r}"
        hint = did_you_mean(_meant_field(model_type, path)) or f"allowed here: {', '.join(allowed)}"
        path = (*path, "[key]")
    elif kind == "missing":
        message = f"missing field {path[-1]!r}"
        path = path[:-1]
    elif detail.get("input") is None and kind.endswith("_type"):
        message = f"{_field_name(path)!r} is empty"
        hint = "write a value after the colon"
    elif kind == "too_short":
        message = f"{_field_name(path)!r} needs at least {detail.get('ctx', {}).get('min_length', 1)} item(s)"
    elif kind == "string_pattern_mismatch":
        message = f"{detail.get('input')!r} is not a valid name"
        hint = "use letters, digits and _, not starting with a digit"
    elif kind == "bool_type" or isinstance(detail.get("input"), bool):
        hint = "quote words such as 'true' and 'false' if you mean the words"
    elif kind == "literal_error" and isinstance(detail.get("input"), str):
        hint = did_you_mean(closest(detail["input"], _QUOTED.findall(str(detail.get("ctx", {}).get("expected", "")))))
    line, col = source.locate(path)
    return Problem(file, line, col, message, hint=hint)


def _field_name(path: Path) -> str:
    """The last named part of a path: ``flow`` for ("flow",), ``keywords`` for (..., "keywords", 0)."""
    return next((str(part) for part in reversed(path) if isinstance(part, str) and part != "[key]"), "value")


def _allowed_fields(model_type: type[BaseModel], path: Path) -> list[str]:
    """The field names valid at ``path`` of a model, found by walking the type annotations
    (so a state named ``fetch`` is a dict key, not the Fetch field)."""
    current: Any = model_type
    for part in path:
        current = _descend(current, part)
        if current is None:
            return []
    return list(_yaml_fields(current)) if _is_model(current) else []


def _yaml_fields(model_type: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the names written in flow files (``replies`` for ``State.rules``)."""
    return {info.alias or name: info for name, info in model_type.model_fields.items()}


def _descend(annotation: Any, part: str | int) -> Any:
    """The type found one step into ``annotation`` along ``part`` (a field, a dict key, an index)."""
    if _is_model(annotation):
        field_info = _yaml_fields(annotation).get(str(part))
        return field_info.annotation if field_info is not None else None
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _descend(arguments[0], part)
    if origin is dict:
        return arguments[1]
    if origin is list:
        return arguments[0] if isinstance(part, int) else None
    for option in arguments:  # a union such as ``Fetch | None``: the option that can hold ``part``
        found = _descend(option, part)
        if found is not None:
            return found
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
