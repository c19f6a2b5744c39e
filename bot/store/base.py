"""The store contract every backend keeps (see tests/test_store.py, run against each one)."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from bot.store.keyed_locks import KeyedLocks  # noqa: F401  (re-exported: the stores' per-sender locks)
from bot.store.listings import Listings
from bot.store.owed import OwedReplies
from bot.types import ConsentChange, Conversation, OutboundMessage, RunOutcome, Turn

if TYPE_CHECKING:  # schema_versions imports StoreUnavailable from here
    from bot.store.schema_versions import SchemaState


class StoreBusy(RuntimeError):
    """The message could not be processed now (lock or compare-and-set contention); retry later."""


class StoreUnavailable(StoreBusy):
    """The store cannot be written or reached: a read-only, deleted or unopenable SQLite file, a
    full disk, Redis down. A StoreBusy, so the webhook answers 503 with Retry-After (Twilio tries
    again) instead of 500; the message names what failed and the fix."""


@dataclass(frozen=True)
class StoreHealth:
    """What ``Health.health`` found: ``problem`` says what is wrong and how to fix it."""

    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class CommitResult(enum.Enum):
    COMMITTED = "committed"
    CONFLICT = "conflict"  # the conversation changed since it was loaded: load again and redo the turn
    DUPLICATE = "duplicate"  # this MessageSid was already processed: answer the recorded replies


MIN_DEDUP_SECONDS = 48 * 3600  # Twilio retries within hours; a MessageSid is remembered at least this long
DAY = 24 * 3600.0
CONSENT_RETENTION_DAYS = 1826  # the consent ledger's default: five years
#: The ledger is evidence against claims under the TCPA, whose limitation period is four years.
MIN_CONSENT_RETENTION_DAYS = 1461


@dataclass(frozen=True)
class Retention:
    """How long personal data is kept (phone numbers, what people texted).

    Transcripts and finished or idle conversations go after ``seconds``. Processed MessageSids
    (needed to answer Twilio's retries) stay at least 48 h whatever ``seconds`` says. Opt-outs
    are never dropped: forgetting one would text someone who said STOP. The consent ledger is
    kept apart, for ``consent_seconds`` (at least four years: it is evidence).
    """

    seconds: float = 30 * DAY
    consent_seconds: float = CONSENT_RETENTION_DAYS * DAY

    def __post_init__(self) -> None:
        if self.consent_seconds < MIN_CONSENT_RETENTION_DAYS * DAY:
            raise ValueError(f"the consent ledger must be kept at least {MIN_CONSENT_RETENTION_DAYS} days "
                             "(4 years, the TCPA's limitation period)")

    @property
    def dedup_seconds(self) -> float:
        return max(MIN_DEDUP_SECONDS, self.seconds)


@dataclass(frozen=True)
class Purged:
    """What a purge or a retention sweep removed."""

    conversations: int = 0
    transcript_lines: int = 0
    replies_blanked: int = 0
    consent_changes: int = 0  # ledger rows past the consent retention period (a sweep only)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a turn reads, in one trip to the store."""

    conversation: Conversation
    opted_out: bool
    recorded_replies: tuple[str, ...] | None  # this MessageSid's answer, if it was processed


class Turns(Protocol):
    """A turn's reads and its one atomic write (the pipeline in ``bot/inbox.py`` is their user)."""

    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        """The sender's conversation (a fresh idle one, version 0, when there is none), their
        opt-out, and the MessageSid's recorded answer — in one trip."""

    async def commit(self, turn: Turn) -> CommitResult:
        """Write a turn atomically: conversation (compare-and-set on version), opt-out (with its
        consent ledger row when the status changes), the MessageSid with its replies, the
        transcript and the deadline index."""


class Locks(Protocol):
    """Per-sender order, kept apart from the data as aiogram keeps it (state is loaded *after*
    the lock is taken)."""

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        """Hold while handling one turn, so a sender's turns go one at a time."""


class Timers(Protocol):
    """The deadline index of waiting states' timeouts (written by turns, read by the timer loop)."""

    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        """Senders whose waiting state's timeout is due: (sender, deadline), oldest first."""

    async def drop_deadline(self, sender: str, at: float) -> None:
        """Remove ``sender``'s entry if it still says ``at``: a timeout that kept failing is given up
        (``bot/timers.py``) instead of firing every second forever; a deadline armed since stays."""


class Positions(Protocol):
    """How many conversations are at each state of a flow: the console's live counts, and what an
    edit to a flow does to the people in it now. Kept cheap on every store (an index, never a scan
    of every conversation), as a console page may ask for it every few seconds."""

    async def state_counts(self, flow: str, since: float = 0.0) -> dict[str, int]:
        """Conversations at a state of ``flow`` whose person last wrote (``Conversation.updated_at``)
        at or after ``since``, by state; states with none are left out. A conversation the
        retention period dropped is not counted (Redis: even before the next sweep)."""


@dataclass(frozen=True)
class FlowResults:
    """What became of the runs of one flow that began in a period: how many began, reached each
    state (each run counted once per state) and ended each way. A run nobody wrote in for
    ``expires_after`` counts as expired even when no turn has noticed yet."""

    flow: str
    started: int = 0
    reached: dict[str, int] = field(default_factory=dict)
    ended: dict[RunOutcome, int] = field(default_factory=dict)

    @classmethod
    def of(cls, flow: str, counts: Mapping[str, int]) -> FlowResults:
        """From counts by name, as the stores keep them: "started", "state:NAME", an outcome."""
        return cls(flow, int(counts.get("started", 0)),
                   {name.removeprefix("state:"): int(n) for name, n in counts.items()
                    if name.startswith("state:") and n},
                   {outcome: int(counts[outcome]) for outcome in RunOutcome if counts.get(outcome)})

    def count(self, outcome: RunOutcome) -> int:
        return self.ended.get(outcome, 0)

    @property
    def in_progress(self) -> int:
        return self.started - sum(self.ended.values())


@dataclass(frozen=True)
class RunRow:
    """One run of a flow, for the answers table: whose (the full number: mask it to show it),
    when it began, where it is or ended, the flow's saved variables, and how and when it ended
    (None: it goes on, until ``expires_at`` unless the person writes)."""

    id: str
    flow: str
    sender: str
    started_at: float
    state: str | None
    vars: dict[str, Any]
    expires_at: float
    outcome: RunOutcome | None = None
    ended_at: float | None = None

    def as_of(self, now: float) -> RunRow:
        """The run as it stands at ``now``: one still open past its expiry had expired then."""
        if self.outcome is None and self.expires_at < now:
            return dataclasses.replace(self, outcome=RunOutcome.EXPIRED, ended_at=self.expires_at)
        return self


#: (started_at, id) of a run: the order runs are listed in, and where the next page begins.
RunKey = tuple[float, str]
RUNS_PAGE = 1000  # runs read from the store at once by ``Results.runs``


def epoch_day(at: float) -> int:
    """The UTC day of a time, as days since 1970-01-01: the day a run is counted in."""
    return int(at // DAY)


def period_days(since: date | None, until: date | None) -> tuple[int, int]:
    """The UTC days ``since`` to ``until`` (both included; None: no bound) as epoch days."""
    epoch = date(1970, 1, 1)
    return ((since - epoch).days if since is not None else -(10**9),
            (until - epoch).days if until is not None else 10**9)


class Results(Protocol):
    """What flows achieve (``bot/results/``). Each turn's commit writes its ``Turn.runs``: per
    flow and UTC day of a run's start, counts of runs started, reaching each state and ending each
    way, and one record per run (written as it begins, moves and ends). So reading results takes
    a few small reads whatever the number of conversations. Counts hold no personal data and are
    kept; run records leave with the retention period, and with a purge of their number."""

    async def flow_results(self, flow: str, since: date | None = None, until: date | None = None,
                           now: float | None = None) -> FlowResults:
        """The runs of ``flow`` that began on the UTC days ``since`` to ``until`` (both included;
        None: no bound), as they stand at ``now`` (default: the time now)."""

    def runs(self, flow: str, since: date | None = None, until: date | None = None, *,
             after: RunKey | None = None, limit: int | None = None, now: float | None = None) -> AsyncIterator[RunRow]:
        """Those runs themselves (``RunRow.as_of(now)``), oldest first, from the one after ``after``
        (the last one a page showed), at most ``limit``; read from the store a page at a time."""


class Consent(Protocol):
    """Who opted out, and the consent ledger: every change of a number's consent, append-only, kept
    for ``Retention.consent_seconds`` whatever a purge or the conversation retention says.
    Sending checks the opt-out; Twilio's 21610 and operators change it outside a turn."""

    async def is_opted_out(self, sender: str) -> bool: ...

    async def set_consent(self, change: ConsentChange) -> bool:
        """Apply a change learnt outside a conversation (Twilio error 21610, an operator) and append
        it to the ledger, atomically; only when the number's status differs (False: it did not)."""

    async def consent_history(self, number: str) -> list[ConsentChange]:
        """The number's ledger, oldest first."""

    def consent_changes(self, since: float | None = None) -> AsyncIterator[ConsentChange]:
        """The whole ledger from ``since`` (a time, inclusive), oldest first, read in pages."""


class Forgetting(Protocol):
    """Personal data leaves: on request, and when the retention period ends."""

    async def purge(self, sender: str) -> Purged:
        """Forget one sender on request: conversation, transcript, recorded reply texts.
        Their opt-out and consent ledger stay; their MessageSids stay (blank) so Twilio retries are
        still recognised."""

    async def sweep(self, now: float) -> Purged:
        """Drop what the retention period no longer allows (stores with TTLs may leave that to
        them), and consent ledger rows older than the consent retention period."""


class OutboundRecords(Protocol):
    """Messages we send (broadcasts, notifications) and what Twilio reported about them."""

    async def save_outbound(self, message: OutboundMessage) -> None:
        """Insert or replace by ``id`` (and index it by ``sid`` and ``broadcast``)."""

    async def outbound(self, message_id: str) -> OutboundMessage | None: ...

    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None: ...

    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]: ...


class Health(Protocol):
    """Whether the store could take a turn now; ``GET /healthz`` answers 503 with the problem
    otherwise, so a load balancer stops sending messages to a process that would lose them."""

    async def health(self) -> StoreHealth:
        """Healthy only when a write would succeed now and last past a restart."""


@dataclass(frozen=True)
class FlowsVersion:
    """Which flows a process runs: ``version`` is a short hash of the flow files' contents (the
    same files give the same version on every machine), loaded at ``loaded_at``."""

    version: str
    loaded_at: float
    flows: tuple[str, ...]


@dataclass(frozen=True)
class RejectedReload:
    """A hot reload refused at ``at``: the files' ``version`` and their problems, one
    ``file:line:col: severity: message (hint)`` line each, as lint prints them."""

    at: float
    version: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ProcessStatus:
    """What one server process (``host:pid``) runs, for operators (``python -m bot status``, the
    console): written at start-up, on every reload attempt, now and then while it runs (so the age
    of ``written_at`` tells a live process from a dead one) and when it stops cleanly."""

    process: str
    started_at: float
    written_at: float
    flows: FlowsVersion
    reloads: int = 0  # hot reloads applied since start-up
    rejected: RejectedReload | None = None  # the last refused one, even when a later one succeeded
    stopped_at: float | None = None
    release: str = ""  # the textflow it runs (bot.__version__); "" in entries from before it was recorded

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ProcessStatus:
        """Read an entry back, ignoring fields this version does not know (a newer process wrote it)."""
        data = json.loads(text)
        flows, rejected = data["flows"], data.get("rejected")
        known = {field.name for field in dataclasses.fields(cls)} - {"flows", "rejected"}
        return cls(**{name: value for name, value in data.items() if name in known},
                   flows=FlowsVersion(flows["version"], flows["loaded_at"], tuple(flows["flows"])),
                   rejected=None if rejected is None else RejectedReload(
                       rejected["at"], rejected["version"], tuple(rejected["problems"])))


#: A process not heard from for this long is forgotten (its entry leaves at the next write of any).
PROCESS_STATUS_KEEP_SECONDS = 7 * DAY


class ProcessStatuses(Protocol):
    """One status entry per server process, for operators; never on a message's path."""

    async def schema_state(self) -> SchemaState:
        """The store's schema version and the migrations it recorded (``bot/store/schema_versions.py``)."""

    async def record_status(self, status: ProcessStatus) -> None:
        """Insert or replace ``status.process``'s entry; drop entries not written for
        ``PROCESS_STATUS_KEEP_SECONDS``."""

    async def process_statuses(self) -> list[ProcessStatus]:
        """Every entry, the most recently written first."""


@dataclass(frozen=True)
class BroadcastProgress:
    """Where a broadcast stands, told after each recipient is settled (``Broadcast.progress``) and
    kept in the store for the Operations page and ``/metrics`` (``bot/broadcast_progress.py``).
    ``name`` identifies it (flow and CSV path): never a metric's label."""

    name: str
    flow: str
    requested: int
    sent: int  # accepted by Twilio, in this run or an earlier one
    skipped: int
    failed: int
    in_doubt: int
    waiting: int  # not settled yet: queued for their sending hours, or not reached
    finished: bool = False  # the run ended (all settled, or stopped early: ``waiting`` says how many are left)
    started_at: float = 0.0  # when this run began, stamped by whoever records it
    written_at: float = 0.0  # when it was recorded: a run under way rewrites it at least every minute

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> BroadcastProgress:
        """Read an entry back, ignoring fields this version does not know (a newer process wrote it)."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in json.loads(text).items() if name in known})


#: A broadcast not heard from for this long is forgotten (its entry leaves at the next write of any).
BROADCAST_KEEP_SECONDS = 7 * DAY


class Broadcasts(Protocol):
    """Where each broadcast stands, by its name (one entry per broadcast: a run resuming it replaces
    it), written by the broadcast's own process; never on a message's path."""

    async def record_broadcast_progress(self, progress: BroadcastProgress) -> None:
        """Insert or replace ``progress.name``'s entry; drop entries not written for
        ``BROADCAST_KEEP_SECONDS``."""

    async def broadcasts(self, active_within: float, now: float | None = None) -> list[BroadcastProgress]:
        """The entries written in the ``active_within`` seconds before ``now`` (default: the time
        now), the most recently written first."""


class Store(Turns, Locks, Timers, Positions, Consent, Forgetting, OutboundRecords, Health, ProcessStatuses,
            Broadcasts, Listings, Results, OwedReplies, Protocol):
    """A whole backend (memory, SQLite, Redis): every concern above, the console's lists
    (``bot/store/listings.py``), and closing it."""

    async def close(self) -> None: ...
