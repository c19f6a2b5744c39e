"""How a turn's answer is written down and read back by the SQLite and Redis stores: the answer a
Twilio retry of the same MessageSid gets again, so it must keep a reply's pictures too.

A plain reply is a JSON string, as it always was; a reply with pictures is an object
``{"text": …, "media": […]}``, read back as a :class:`~bot.types.MediaText`. Records written
before pictures existed (lists of strings) load unchanged, and a purge or the retention sweep
blanks the whole list (``[]``) whatever it holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from bot.store.json_text import dumps_own_text
from bot.types import MediaText, media_of


def entry(reply: str) -> str | dict[str, Any]:
    """One reply as JSON-able data."""
    media = media_of(reply)
    return {"text": str(reply), "media": list(media)} if media else str(reply)


def reply_from(value: Any) -> str:
    """One stored reply: a ``str``, or a ``MediaText`` for an object with pictures."""
    if isinstance(value, dict):
        return MediaText(str(value.get("text", "")), tuple(str(url) for url in value.get("media") or ()))
    return str(value)


def dump_replies(replies: Iterable[str]) -> str:
    return dumps_own_text([entry(reply) for reply in replies])  # strings only: no NaN to look for


def load_replies(text: str) -> tuple[str, ...]:
    return tuple(reply_from(value) for value in json.loads(text))
