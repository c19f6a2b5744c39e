""""Did you mean …?": the name someone most likely meant, out of the names allowed where they wrote one.

One helper for every such hint (fields, states, flows, program-text variables), so they all judge
closeness alike: the same name in other case or with ``-`` for ``_``, then a word people carry over
from other tools (``next:`` for ``go:``), then the only name that starts with what was written
(``any`` → ``any_of``), then the closest by rapidfuzz's ratio (``repiles`` → ``replies``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rapidfuzz import fuzz, process

#: How alike two names must be (rapidfuzz's ratio, 0-100): "confrim"/"confirm" score 86,
#: "aks"/"ask" 67, "any"/"say" 67 (the prefix rule decides that one first).
MIN_SCORE = 60
MIN_PREFIX = 3  # "go" starts too many names to mean any one of them

#: Field names people bring from Twilio Studio, RapidPro, chatbot tools or plain English;
#: suggested only where that field is allowed.
FIELD_SYNONYMS: Mapping[str, str] = {
    "next": "go", "goto": "go", "go_to": "go", "next_state": "go", "transition": "go",
    "text": "say", "message": "say", "messages": "say", "body": "say", "send": "say", "reply": "replies",
    "answers": "replies", "responses": "replies", "options": "menu", "choices": "menu",
    "else": "otherwise", "default": "otherwise", "no_match": "otherwise", "invalid": "otherwise",
    "regex": "pattern", "regexp": "pattern", "match": "pattern", "contains": "any_of", "any": "any_of",
    "words": "keywords", "keyword": "keywords", "trigger": "triggers", "keywords": "triggers",
    "expires": "expires_after", "expiry": "expires_after", "ttl": "expires_after",
    "variable": "save", "store": "save", "save_as": "save", "on_timeout": "timeout", "wait": "timeout",
    "http": "fetch", "request": "fetch", "webhook": "fetch", "lookup": "fetch",
    "reply_contains": "expect_contains", "tries": "attempts", "retries": "attempts", "reminder": "remind",
}

#: Names people give the end of a conversation; ``end`` is the built-in state that does it.
END_SYNONYMS = frozenset({"finish", "finished", "exit", "stop", "quit", "done", "close", "bye", "goodbye",
                          "hangup", "hang_up", "end_flow", "end_conversation", "the_end", "over"})


def _key(name: str) -> str:
    return name.strip().casefold().replace("-", "_").replace(" ", "_")


def closest(written: str, choices: Iterable[str], synonyms: Mapping[str, str] | None = None) -> str | None:
    """The choice ``written`` most likely meant, or None when none is close enough."""
    options = list(dict.fromkeys(choices))
    keys = [_key(option) for option in options]
    key = _key(written)
    if key in keys:
        return options[keys.index(key)]
    meant = (synonyms or {}).get(key)
    if meant is not None and meant in options:
        return meant
    if len(key) >= MIN_PREFIX:
        starting = [option for option, option_key in zip(options, keys, strict=True) if option_key.startswith(key)]
        if len(starting) == 1:
            return starting[0]
    found = process.extractOne(key, keys, scorer=fuzz.ratio, score_cutoff=MIN_SCORE)
    return options[found[2]] if found is not None else None


def closest_state(written: str, states: Iterable[str], end: str) -> str | None:
    """The state a ``go`` (or any other reference) most likely meant, ``end`` included."""
    names = [*states, end]
    found = closest(written, names)
    if found is None and _key(written) in END_SYNONYMS:
        return end
    return found


def did_you_mean(suggestion: str | None) -> str:
    """The hint's opening words, or nothing."""
    return f"did you mean {suggestion!r}?" if suggestion is not None else ""
