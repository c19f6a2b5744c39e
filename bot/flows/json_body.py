"""A ``fetch``'s ``json:`` body: checked at load time, compiled to a template per string value.

The structure of the document (its fields, nesting and lists) is the flow file's; what people
text only ever fills in one string value of it, because each string is rendered on its own and
the fetcher serialises the result (issue 11: a texted ``5pm", "admin": true, "x": "`` used to
add fields to a body rendered as one JSON text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from bot.text import templates
from bot.text.templates import JsonTemplate

_PLACEHOLDER = re.compile(r"\{\{|\{%")
JSON_BODY_SCHEMA = {"anyOf": [
    {"type": "object", "description": "the JSON document to send: each text in it is a template that fills in "
                                      "one string value; numbers, true/false and null are sent as written"},
    {"type": "array"},
    {"type": "string", "description": "JSON text, with {{ … }} only inside its strings"}]}


def json_document(body: object) -> object:
    """The JSON document a ``fetch``'s ``json:`` describes, or a ValueError saying how to fix it.

    A mapping (or list) is the document itself. JSON text is parsed here, at load time, with its
    ``{{ … }}`` still inside the string values: each string is then rendered on its own to one
    value, so what people text can never add a field or close a string (issue 11).
    """
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as error:
            problem = f"json: the JSON text does not parse at line {error.lineno}, column {error.colno} ({error.msg})"
            if _PLACEHOLDER.search(error.doc):
                problem += (": a {{ … }} must be inside a JSON string value (\"{{ when }}\"), where it fills in "
                            "one value")
            raise ValueError(f"{problem}. Or write json: as a mapping, such as "
                             "json: {when: \"{{ when }}\", count: 3}") from None
    _check_json(body)
    return body


def _check_json(value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"json: the field name {key!r} must be text: put it in quotes")
            if _PLACEHOLDER.search(key):
                raise ValueError(f"json: {key!r} is the name of a JSON field, and names are sent as written; "
                                 "put the {{ … }} in the field's value")
            _check_json(item)
    elif isinstance(value, list):
        for item in value:
            _check_json(item)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"json: {value!r} is not a JSON value: put it in quotes")


def compile_json(document: object) -> JsonTemplate:
    """The checked document with each string parsed as a template (numbers, booleans, null kept)."""
    if isinstance(document, str):
        return templates.parse(document)
    if isinstance(document, dict):
        return {key: compile_json(item) for key, item in document.items()}
    if isinstance(document, list):
        return [compile_json(item) for item in document]
    assert document is None or isinstance(document, (int, float, bool)), document
    return document


def json_strings(document: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string value of a checked document (the templates), with its path in the document."""
    if isinstance(document, str):
        yield path, document
    elif isinstance(document, dict):
        for key, item in document.items():
            yield from json_strings(item, (*path, key))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from json_strings(item, (*path, index))
