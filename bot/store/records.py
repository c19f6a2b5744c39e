"""How a conversation is written down and read back by the SQLite and Redis stores.

The author's variables and the engine's own bookkeeping are stored apart. Conversations saved
before the bookkeeping had its own fields (it lived in the variables as ``_timeout`` and
``_return``) still load: only a record without bookkeeping is read that old way, so an author's
variable that happens to be called ``_timeout`` is never mistaken for the engine's.
"""

from __future__ import annotations

from typing import Any

from bot.types import ArmedTimeout, Conversation, OpenRun, ReturnPoint


def bookkeeping(conversation: Conversation) -> dict[str, Any]:
    """The engine's typed fields as plain JSON-able data."""
    timeout = conversation.timeout
    return {
        "timeout": [timeout.at, timeout.state] if timeout is not None else None,
        "returns": [[point.flow, point.state] for point in conversation.returns],
        "channel": conversation.channel,
        "misses": conversation.misses,
        "reminders": conversation.reminders,
        "suggested": conversation.suggested,
        "runs": [[run.id, run.flow, run.started_at, list(run.reached)] for run in conversation.runs],
        "language": conversation.language,
    }


def conversation_from_record(sender: str, flow: str | None, state: str | None, variables: dict[str, Any],
                             kept: dict[str, Any] | None, updated_at: float, version: int) -> Conversation:
    """A stored conversation; ``kept`` is its :func:`bookkeeping`, None in records from before it."""
    conversation = Conversation(sender, flow, state, variables, updated_at, version)
    if kept is None:
        _read_old_shape(conversation)
        return conversation
    if kept.get("timeout"):
        at, armed_state = kept["timeout"]
        # None: a timer armed for ever, which JSON written by orjson holds as null (durations are
        # finite now; a record from before that still loads, with no timer, as it would never fire)
        conversation.timeout = ArmedTimeout(float(at), str(armed_state)) if at is not None else None
    conversation.returns = [ReturnPoint(str(parent), str(at_state)) for parent, at_state in kept.get("returns", [])]
    conversation.channel = str(kept.get("channel", ""))
    conversation.misses = int(kept.get("misses", 0))
    conversation.reminders = int(kept.get("reminders", 0))
    suggested = kept.get("suggested")
    conversation.suggested = str(suggested) if suggested is not None else None
    language = kept.get("language")
    conversation.language = str(language) if language else None
    conversation.runs = [OpenRun(str(run_id), str(flow), float(started), tuple(str(state) for state in reached))
                         for run_id, flow, started, reached in kept.get("runs", [])]
    return conversation


def _read_old_shape(conversation: Conversation) -> None:
    """Move the bookkeeping an older version kept in the variables into its typed fields."""
    variables = conversation.vars
    armed = variables.pop("_timeout", None)
    if isinstance(armed, dict) and "at" in armed and "state" in armed:
        conversation.timeout = ArmedTimeout(float(armed["at"]), str(armed["state"]))
    stack = variables.pop("_return", None)
    if isinstance(stack, list):
        conversation.returns = [ReturnPoint(str(point[0]), str(point[1])) for point in stack
                                if isinstance(point, list) and len(point) == 2]
    channel = variables.get("flow", {}).get("channel", {}) if isinstance(variables.get("flow"), dict) else {}
    if isinstance(channel, dict):
        conversation.channel = str(channel.get("address") or "")
