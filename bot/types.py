"""The shared vocabulary: the nouns every other module talks in."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WHATSAPP = "whatsapp:"  # Twilio's prefix of WhatsApp addresses (From, To)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One incoming message, as Twilio described it, reduced to what the bot uses."""

    message_sid: str
    sender: str
    to: str = ""
    body: str = ""
    media: tuple[str, ...] = ()
    opt_out_type: str | None = None  # Twilio Advanced Opt-Out already handled it: STOP, START or HELP


class MediaText(str):
    """A reply that carries pictures (MMS): the text as a plain ``str`` everywhere text goes
    (counting, masking, tests), with the media URLs that TwiML's ``<Media>`` and the REST API's
    ``media_url`` send beside it."""

    __slots__ = ("media",)
    media: tuple[str, ...]

    def __new__(cls, text: str, media: tuple[str, ...] = ()) -> MediaText:
        made = super().__new__(cls, text)
        made.media = tuple(media)
        return made

    def __repr__(self) -> str:
        return f"MediaText({str(self)!r}, media={self.media!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (MediaText, (str(self), self.media))


def media_of(text: str) -> tuple[str, ...]:
    """The pictures a reply carries (none for a plain ``str``)."""
    return text.media if isinstance(text, MediaText) else ()


@dataclass(frozen=True, slots=True)
class ArmedTimeout:
    """The waiting state's timeout: when it fires, and for which state it was armed."""

    at: float
    state: str


@dataclass(frozen=True, slots=True)
class ReturnPoint:
    """Where a flow entered with ``enter`` hands back to: the parent flow and its entering state."""

    flow: str
    state: str


class RunOutcome(enum.StrEnum):
    """How one run of a flow ended: results count each (``bot/results/``)."""

    FINISHED = "finished"  # it reached a final state or ``end``
    EXPIRED = "expired"  # ``expires_after`` passed since the person's last message
    OPTED_OUT = "opted_out"  # STOP (or a revocation in their own words) while in the flow
    LEFT = "left"  # another flow started (a trigger, a broadcast) before this one ended
    #: the bot or an operator ended it: its flow or state was removed by an update, it looped
    #: without waiting, an operator reset it, or the number was purged
    RESET = "reset"


@dataclass(slots=True)  # not frozen, as the two below: made on every message's path, never changed once made
class OpenRun:
    """A run of a flow the conversation is in (``Conversation.runs``, innermost last, as the flows
    it entered): its id, when it began, and the states it reached (each counted once per run)."""

    id: str
    flow: str
    started_at: float
    reached: tuple[str, ...] = ()


@dataclass(slots=True)
class Conversation:
    """Where one sender stands: which flow, which state, what they told us.

    ``state`` is also the attribute the shared ``transitions`` machines read and write,
    so a Conversation is the (throwaway) model an event is fired on. ``vars`` belong to the flow's
    author; what the engine itself must remember lives in the typed fields after it, so no name an
    author picks can collide with it.
    """

    sender: str
    flow: str | None = None
    state: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)
    version: int = 0  # compare-and-set token: the version this copy was loaded at
    timeout: ArmedTimeout | None = None
    returns: list[ReturnPoint] = field(default_factory=list)  # a stack: innermost entered flow last
    channel: str = ""  # our number this person texts; later answers are sent from it
    misses: int = 0  # unmatched answers in the state it waits in (``attempts``)
    reminders: int = 0  # reminders sent since the person last wrote, in the state it waits in (``remind``)
    #: the trigger the bot asked "Did you mean …?" about (normalised): a yes to the next message starts it
    suggested: str | None = None
    runs: list[OpenRun] = field(default_factory=list)  # the flow runs results follow (bot/results/)
    #: the language this person is talked to in (es, fr…; None: the flows' own), kept across flows:
    #: set by the trigger they used (ESTADO), a consent word (AYUDA) or a flow step (``language:``)
    language: str | None = None

    @property
    def active(self) -> bool:
        return self.flow is not None and self.state is not None

    def end(self) -> None:
        """Leave any flow; the next message starts fresh (``channel`` and ``language`` stay: our number,
        and the language the person speaks)."""
        self.flow = None
        self.state = None
        self.vars = {}
        self.timeout = None
        self.returns = []
        self.misses = 0
        self.reminders = 0
        self.suggested = None
        self.runs = []


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One routing decision, kept for logs, the simulator and tests."""

    rule: str  # what matched: "compliance STOP", "trigger STATUS", "keywords YES", "otherwise", ...
    before: str  # "flow:state" or "idle"
    after: str


@dataclass(slots=True)
class RunMark:
    """The engine's note that a run of ``flow`` began (``ended`` None) or ended in a turn
    (``bot/results/marks.py``): the trace steps from index ``step`` on came after it."""

    flow: str
    step: int
    ended: RunOutcome | None = None
    state: str | None = None  # where it ended
    vars: Mapping[str, Any] = field(default_factory=dict)  # its variables when it ended
    at: float | None = None  # when it ended, when that was not the turn's time (an expiry: when it lapsed)


@dataclass(slots=True)
class RunUpdate:
    """What one turn changes of one flow run, written by the store in the turn's transaction: the
    run's record (the answers table) and the per-flow, per-day counts results read."""

    id: str
    flow: str
    started_at: float  # its UTC day is the one the run is counted in, whatever happens later
    state: str | None  # where it is now, or where it ended
    vars: Mapping[str, Any]  # the flow's saved variables
    expires_at: float  # when it lapses if the person says nothing more
    began: bool = False  # this turn started it
    reached: tuple[str, ...] = ()  # states it reached for the first time, this turn
    outcome: RunOutcome | None = None  # how it ended, this turn (None: it goes on)
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A person texted us: the common turn."""

    inbound: Inbound


@dataclass(frozen=True, slots=True)
class Start:
    """Put someone into a flow from its start although they did not text (a broadcast, the
    simulator). ``inbound`` is the turn's record: its ``message_sid`` is the start's own id."""

    inbound: Inbound
    flow: str
    variables: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, sender: str, flow: str, variables: Mapping[str, Any], start_id: str) -> Start:
        return cls(Inbound(start_id, sender), flow, variables)


@dataclass(frozen=True, slots=True)
class TimeoutDue:
    """A waiting state's timeout came due (as the store's deadline index says; it may be stale)."""

    inbound: Inbound
    due_at: float

    @classmethod
    def of(cls, sender: str, due_at: float) -> TimeoutDue:
        # The firing is a turn with its own id, so it happens once however often it is attempted.
        return cls(Inbound(f"timeout:{sender}:{due_at!r}", sender), due_at)


@dataclass(frozen=True, slots=True)
class Reset:
    """An operator ended the conversation (the console's reset): it ends as if it expired, silently."""

    inbound: Inbound

    @classmethod
    def of(cls, sender: str, reset_id: str) -> Reset:
        return cls(Inbound(reset_id, sender))


@dataclass(frozen=True, slots=True)
class Elapse:
    """Time passes for one simulated sender only (the console simulator's wait): the conversation's
    times move ``seconds`` into the past, so its timers come due and its expiry nears as if they had."""

    inbound: Inbound
    seconds: float

    @classmethod
    def of(cls, sender: str, seconds: float, elapse_id: str) -> Elapse:
        return cls(Inbound(elapse_id, sender), seconds)


@dataclass(frozen=True, slots=True)
class SetLanguage:
    """From now on, talk to this person in ``language`` (``chat --language``, a conversation test's
    ``language:``): as if they had chosen it, before or between their messages."""

    inbound: Inbound
    language: str

    @classmethod
    def of(cls, sender: str, language: str, turn_id: str) -> SetLanguage:
        return cls(Inbound(turn_id, sender), language)


#: What starts a turn. The one turn pipeline (``bot/inbox.py``) treats them all alike; how each
#: moves a conversation is the engine's business (``bot/engine.py``; ``Reset``, ``Elapse`` and
#: ``SetLanguage``: ``bot/interventions.py``).
Event = Message | Start | TimeoutDue | Reset | Elapse | SetLanguage


class Skip(enum.Enum):
    """Why a turn saved nothing and said nothing."""

    OPTED_OUT = "opted out"  # a start for someone who opted out
    SILENT = "silent"  # a start whose flow says nothing when it starts


class ConsentStatus(enum.StrEnum):
    """A number's consent, as the ledger names it."""

    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"


class ConsentMethod(enum.StrEnum):
    """How a number's consent changed: the ledger's ``how`` column."""

    KEYWORD = "keyword"  # STOP, START, UNSTOP, YES, ALTO, ARRET… (``detail``: the word as texted)
    PHRASE = "phrase"  # a revocation in the person's own words (``detail``: the text that triggered it)
    TWILIO_OPT_OUT_TYPE = "twilio_opt_out_type"  # Twilio Advanced Opt-Out handled it (``detail``: OptOutType)
    DELIVERY_ERROR = "delivery_error_21610"  # Twilio refused a send: the number is opted out at Twilio
    OPERATOR = "operator"  # an operator's command (``detail``: the command and its note)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One change of a number's consent, kept by the append-only ledger as evidence: the full
    number and the triggering text are stored on purpose (they never go to a log)."""

    number: str
    status: ConsentStatus
    how: ConsentMethod
    detail: str = ""
    message_sid: str = ""
    at: float = field(default_factory=time.time)

    @property
    def opted_out(self) -> bool:
        return self.status is ConsentStatus.OPTED_OUT


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """A turn's change of the sender's consent: the direction, how it came about and what
    triggered it (the ledger's ``how`` and ``detail``), decided together so none can be missing."""

    opted_out: bool  # True: opt the sender out; False: opt back in
    how: ConsentMethod
    detail: str = ""


@dataclass(slots=True)
class Outcome:
    """What the engine decided for one turn."""

    conversation: Conversation
    replies: list[str] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    consent: ConsentDecision | None = None  # None: the sender's consent is unchanged
    notifications: list[tuple[str, str]] = field(default_factory=list)  # (to, text): sent after saving
    deadline: float | None = None  # when the waiting state's timeout fires (None: no timeout pending)
    deadline_changed: bool = False  # the store's deadline index needs updating
    skipped: Skip | None = None  # nothing to save or send
    #: False when the turn left the conversation as it was (HELP, START): then it is not written,
    #: so a compliance word answered beside a slow turn never makes that turn conflict and redo.
    conversation_changed: bool = True
    #: The reply may go to a number that opted out: the HELP text, which carriers require to be
    #: answered whatever the subscription (nothing else ever is).
    answers_opted_out: bool = False
    run_marks: list[RunMark] = field(default_factory=list)  # flow runs that began or ended (bot/results/)

    @property
    def opt_out(self) -> bool | None:
        """True: opt the sender out; False: opt back in; None: unchanged."""
        return self.consent.opted_out if self.consent is not None else None


@dataclass(frozen=True, slots=True)
class Turn:
    """Everything one message changes, written by the store in one transaction."""

    inbound: Inbound
    conversation: Conversation
    expected_version: int
    replies: tuple[str, ...]
    #: the sender's consent as this turn changes it (None: unchanged). The store applies it, and
    #: appends it to the consent ledger, only when it differs from the stored status.
    consent: ConsentChange | None
    at: float = field(default_factory=time.time)
    deadline: float | None = None
    deadline_changed: bool = False  # only then is the deadline index written (keeps turns lean)
    conversation_changed: bool = True  # False: record the turn, leave the stored conversation alone
    trace: tuple[TraceStep, ...] = ()  # how the engine routed it, kept with the turn (the console's transcript)
    runs: tuple[RunUpdate, ...] = ()  # what it changed of flow runs: results (bot/results/tracking.py)
    #: replies to send later through the REST API, kept until sent (bot/store/owed.py): a deferred
    #: answer's, a timeout's. Empty for an answer sent inline (TwiML, the simulator).
    owed: tuple[str, ...] = ()


class OutboundState(enum.StrEnum):
    """Where one message we send stands (stored as its text, so records stay readable)."""

    PREPARED = "prepared"  # decided, not yet handed to Twilio
    SENDING = "sending"  # the API call began: if we crash now, the outcome is unknown (*in doubt*)
    ACCEPTED = "accepted"  # Twilio took it; ``sid`` set
    FAILED = "failed"
    SKIPPED = "skipped"
    REPORT = "report"  # not ours (yet): a delivery report that arrived before our create call's answer


@dataclass(slots=True)
class OutboundMessage:
    """One message we send (a broadcast's, a notify, a ``send``), and what became of it.

    ``state`` follows the send: ``prepared`` (decided, not yet handed to Twilio) → ``sending``
    (the API call began: if we crash now, the outcome is unknown, *in doubt*) → ``accepted``
    (Twilio took it; ``sid`` set) or ``failed`` / ``skipped`` (``reason`` says why).
    ``status``/``error_code`` are what Twilio's status callbacks later reported. ``media``: the
    pictures sent with ``body`` (an MMS; none in records from before pictures).
    """

    id: str
    to: str
    body: str
    broadcast: str | None = None
    state: OutboundState = OutboundState.PREPARED
    sid: str | None = None
    reason: str = ""
    status: str | None = None
    error_code: str | None = None
    from_number: str = ""
    updated_at: float = field(default_factory=time.time)
    media: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.state = OutboundState(self.state)  # records read back from JSON carry the plain text
        self.media = tuple(self.media)  # and a list for the media
