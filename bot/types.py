"""The shared vocabulary: the nouns every other module talks in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Inbound:
    """One incoming message, as Twilio described it, reduced to what the bot uses."""

    message_sid: str
    sender: str
    to: str = ""
    body: str = ""
    media: tuple[str, ...] = ()
    opt_out_type: str | None = None  # Twilio Advanced Opt-Out already handled it: STOP, START or HELP


@dataclass(slots=True)
class Conversation:
    """Where one sender stands: which flow, which state, what they told us.

    ``state`` is also the attribute the shared ``transitions`` machines read and write,
    so a Conversation is the (throwaway) model an event is fired on.
    """

    sender: str
    flow: str | None = None
    state: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)
    version: int = 0  # compare-and-set token: the version this copy was loaded at

    @property
    def active(self) -> bool:
        return self.flow is not None and self.state is not None

    def end(self) -> None:
        """Leave any flow; the next message starts fresh."""
        self.flow = None
        self.state = None
        self.vars = {}


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One routing decision, kept for logs, the simulator and tests."""

    rule: str  # what matched: "compliance STOP", "trigger STATUS", "keywords YES", "otherwise", ...
    before: str  # "flow:state" or "idle"
    after: str


@dataclass(slots=True)
class Outcome:
    """What the engine decided for one inbound message."""

    conversation: Conversation
    replies: list[str] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    opt_out: bool | None = None  # True: opt the sender out; False: opt back in; None: unchanged
    notifications: list[tuple[str, str]] = field(default_factory=list)  # (to, text): sent after saving
    deadline: float | None = None  # when the waiting state's timeout fires (None: no timeout pending)
    deadline_changed: bool = False  # the store's deadline index needs updating


@dataclass(frozen=True, slots=True)
class Turn:
    """Everything one message changes, written by the store in one transaction."""

    inbound: Inbound
    conversation: Conversation
    expected_version: int
    replies: tuple[str, ...]
    opt_out: bool | None
    at: float = field(default_factory=time.time)
    deadline: float | None = None
    deadline_changed: bool = False  # only then is the deadline index written (keeps turns lean)


@dataclass(slots=True)
class OutboundMessage:
    """One message we send (a broadcast's, a notify, a ``send``), and what became of it.

    ``state`` follows the send: ``prepared`` (decided, not yet handed to Twilio) → ``sending``
    (the API call began: if we crash now, the outcome is unknown, *in doubt*) → ``accepted``
    (Twilio took it; ``sid`` set) or ``failed`` / ``skipped`` (``reason`` says why).
    ``status``/``error_code`` are what Twilio's status callbacks later reported.
    """

    id: str
    to: str
    body: str
    broadcast: str | None = None
    state: str = "prepared"
    sid: str | None = None
    reason: str = ""
    status: str | None = None
    error_code: str | None = None
    from_number: str = ""
    updated_at: float = field(default_factory=time.time)
