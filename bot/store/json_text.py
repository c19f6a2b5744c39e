"""The JSON a turn's write is made of, made fast: orjson, meaning exactly what ``json.dumps`` means.

A Redis turn writes five or six small JSON documents (the conversation, the transcript lines, the
replies, the trace, the flow runs). ``json.dumps`` spends about 3 µs on each (it builds its C
encoder anew per call); orjson about 0.1 µs. The text differs only in spacing and escaping (orjson
writes compact UTF-8), which every reader (``json.loads``, Lua's cjson) takes alike. Where orjson
would *mean* something else, ``json.dumps`` writes it as before: orjson refuses integers beyond
64 bits, lone surrogates and keys that are not strings, and writes NaN and ±Infinity as
``null`` (``json.dumps`` writes ``NaN``, which Python reads back as NaN).

Reading author data is ``json.loads`` (about 2.6 µs for a conversation's variables) unless the
text is known to be orjson's: orjson would read an integer beyond 64 bits as a float, and spotting
one in the text first costs more than orjson saves. Known: the bot's own records (a conversation's
bookkeeping, :func:`loads_own`), and a Redis conversation record that orjson wrote (no space after
its first key, ``redis_turns.read_record``: what orjson writes holds no such integer).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

#: No option: a key that is not a ``str`` makes orjson refuse, and ``json.dumps`` writes the record.
#: (``OPT_NON_STR_KEYS`` would write a float key as "5.960464477539063e-8" where ``json.dumps``
#: writes "5.960464477539063e-08": another key once read back. Variables from JSON have ``str`` keys.)
_OPTIONS = 0


def dumps(value: Any) -> bytes | str:
    """``value`` as JSON text that ``json.loads`` reads back exactly as it reads ``json.dumps(value)``."""
    try:
        text = orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a huge integer, a lone surrogate (or not JSON at all)
        return json.dumps(value)
    if b"null" in text and _non_finite(value):  # orjson wrote null for a NaN or an infinity
        return json.dumps(value)
    return text


def dumps_own(value: Any) -> bytes | str:
    """A record the bot makes, holding no NaN or infinity (its floats are clock times), as
    :func:`dumps` would write it, without looking for them."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value)


def dumps_record(record: dict[str, Any], author_key: str) -> bytes | str:
    """:func:`dumps_own` of a record whose ``record[author_key]`` a flow's author filled (a
    conversation's variables: anything a flow saved), that part written as :func:`dumps` writes it."""
    author = dumps(record[author_key])
    if isinstance(author, str):  # json.dumps had to write it: the record is written the same way
        return json.dumps(record)
    try:
        return orjson.dumps({**record, author_key: orjson.Fragment(author)}, option=_OPTIONS)
    except TypeError:
        return json.dumps(record)


def dumps_text(value: Any) -> str:
    """:func:`dumps` as ``str`` (JSON nested in JSON as a string; SQLite's TEXT columns)."""
    return _as_str(dumps(value))


def dumps_own_text(value: Any) -> str:
    """:func:`dumps_own` as ``str`` (SQLite's TEXT columns: bytes would be stored as a BLOB)."""
    return _as_str(dumps_own(value))


def _as_str(text: bytes | str) -> str:
    return text.decode() if isinstance(text, bytes) else text


def loads_own(text: bytes | str) -> Any:
    """A record the bot wrote itself (:func:`dumps_own`: no integer beyond 64 bits, no NaN),
    read by orjson, 4× faster than ``json.loads``. Author data (variables) stays ``json.loads``.
    Whatever orjson refuses (a record from an older release, edited by hand) ``json.loads`` reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity is anywhere in ``value`` (keys included). Walked with a list
    and exact types first, not recursion: a conversation's variables hold nested records with
    nulls in them, so this runs for most of them (1.4 µs for one, where recursion took 5)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str or kind is int or item is None:
            continue
        if kind is dict:
            pending.extend(item.values())
            pending.extend(key for key in item if type(key) is not str)
        elif kind is list:
            pending.extend(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):  # subclasses
            pending.extend(item.values())
            pending.extend(item)
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False
