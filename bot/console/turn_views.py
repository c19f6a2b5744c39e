"""How the Conversations and Simulator pages show turns and where a conversation stands: plain
data (JSON for the pages' scripts, the same for the templates), with every texted value left a
value (the templates escape it, the scripts set it as text) and every number masked."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.flows.loader import FlowSet
from bot.flows.schema_types import format_duration
from bot.privacy import mask
from bot.simulated_numbers import is_simulated
from bot.store.listings import TurnRecord
from bot.types import Conversation, TraceStep, media_of

#: What a turn was, by its id (a Twilio MessageSid, or the id the pipeline gave another kind of turn).
_KINDS = (("timeout:", "timer", "Timer fired"), ("broadcast:", "start", "Started by a broadcast"),
          ("reset:", "reset", "Reset by an operator"), ("wait:", "wait", "Simulated wait"),
          ("SMsim", "simulated", "Simulated message"), ("SMstart", "start", "Flow started"))


def kind_of(message_sid: str) -> tuple[str, str]:
    """(kind, label) of a turn: message, simulated, timer, start, reset or wait."""
    for prefix, kind, label in _KINDS:
        if message_sid.startswith(prefix):
            return kind, label
    return "message", "Message"


def safe_href(url: str) -> str | None:
    """A picture's URL as a link target: http(s) or this site's own path; None for anything else
    (``javascript:``…), which is then shown as text only."""
    stripped = url.strip()
    if stripped.lower().startswith(("https://", "http://")) or (stripped.startswith("/") and
                                                              not stripped.startswith("//")):
        return stripped
    return None


def same_site(url: str) -> bool:
    """A picture on this site may be drawn inline; one elsewhere is only linked (the page's
    Content-Security-Policy allows images from this site alone)."""
    return url.startswith("/") and not url.startswith(("//", "/\\"))


def utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float) -> str:
    """How long ago, as ops staff say it: 45s, 12m, 3h5m, 2d4h."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return format_duration(int(seconds // 60) * 60)
    return format_duration(int(seconds // 3600) * 3600)


def reply_view(reply: str) -> dict[str, Any]:
    return {"text": str(reply), "media": [media_view(url) for url in media_of(reply)]}


def media_view(url: str) -> dict[str, Any]:
    href = safe_href(url)
    return {"url": url, "href": href, "inline": href is not None and same_site(href)}


def trace_view(trace: tuple[TraceStep, ...]) -> list[dict[str, str]]:
    return [{"rule": step.rule, "before": step.before, "after": step.after} for step in trace]


def turn_view(record: TurnRecord, *, media: tuple[str, ...] = (), notified: tuple[tuple[str, str], ...] = (),
              after: float | None = None) -> dict[str, Any]:
    """One turn: what was texted (for a message), what was answered, how it was routed."""
    kind, label = kind_of(record.message_sid)
    return {"sid": record.message_sid, "kind": kind, "label": label, "at": record.at, "when": utc(record.at),
            "body": record.body if kind in ("message", "simulated") else "",
            "media": [media_view(url) for url in media], "replies": [reply_view(reply) for reply in record.replies],
            "trace": trace_view(record.trace), "after": None if after is None else format_duration(round(after)),
            "notified": [{"to": mask(to), "text": text} for to, text in notified]}


def where_view(conversation: Conversation, flows: FlowSet, now: float, *, opted_out: bool = False) -> dict[str, Any]:
    """Where a sender stands: flow and state, since when, the next timer, and whether the
    conversation is over in all but name (expired, or its flow or state is gone)."""
    active = conversation.active
    flow = flows.flows.get(conversation.flow or "") if active else None
    gone = active and (flow is None or conversation.state not in flow.states)
    idle = now - conversation.updated_at
    expired = flow is not None and not gone and idle > flow.expires_after
    timeout = conversation.timeout
    return {
        "number": mask(conversation.sender), "simulated": is_simulated(conversation.sender),
        # a simulated number is no one's: shown whole, so the simulator can be opened on it
        "simulated_number": conversation.sender if is_simulated(conversation.sender) else None,
        "flow": conversation.flow if active else None, "state": conversation.state if active else None,
        "where": f"{conversation.flow}:{conversation.state}" if active else "idle",
        "known": conversation.version > 0, "version": conversation.version,
        "updated_at": conversation.updated_at, "idle": ago(idle), "idle_seconds": idle,
        "expired": expired, "gone": gone, "opted_out": opted_out,
        "timer": None if timeout is None or not active else
        {"state": timeout.state, "in": ago(timeout.at - now), "due": timeout.at <= now, "when": utc(timeout.at)},
    }
