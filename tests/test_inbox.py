"""The one turn pipeline (``Inbox._turn``): messages, starts and timeouts through the same steps.

The first group came from a review of the refactor that merged three copies of the turn sequence
into one, each reproducing something that went wrong on the way (now fixed); the second pins paths
of the pipeline nothing else exercised in-process: deferred answers, stale, duplicate and
opted-out timeouts, dry runs, start retries, and data written by older versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.engine import Engine
from bot.flows.loader import FlowSet, load_flows
from bot.inbox import MAX_ATTEMPTS, Inbox, Patience
from bot.logs import SERVER_FORMAT
from bot.store import CommitResult, Store, StoreBusy, open_store
from bot.text.normalise import trim
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Inbound, Skip, Turn
from tests.conftest import SURVEY_WITH_NUDGE, write_flows
from tests.test_store import load, recorded

# -- flows -----------------------------------------------------------------------------------------

SURVEY = SURVEY_WITH_NUDGE

# A broadcast-style flow whose opening state tells staff (notify) and waits with a timeout.
REMIND = """\
flow: remind
start: hello
states:
  hello:
    say: "Hi {{ name }}, reply YES to confirm."
    notify: {to: "+15550000000", say: "reminded {{ sender }}"}
    replies:
      - keywords: ["yes"]
        say: "Confirmed."
        go: end
    otherwise: "Reply YES to confirm."
"""

SLOW = """\
flow: slow
triggers: [SLOW]
start: lookup
states:
  lookup:
    fetch: {url: "/slow", save: result, timeout: 10s}
    say: "The answer is {{ result.value }}."
"""

MAIN = """\
flow: main
triggers: [MAIN]
start: go_inner
states:
  go_inner:
    enter: {flow: inner, then: back}
  back:
    say: "Back in main; you said {{ answer }}."
"""

INNER = """\
flow: inner
start: ask_more
states:
  ask_more:
    say: "And?"
    replies:
      - pattern: '(?s).*'
        save: answer
        go: end
    otherwise: "?"
"""

PROGRAM_FALLBACK = "Sorry, I didn't get that. Text HELP for help."

#: The schema exactly as the code before the refactor (e5ad048, bot/store/sqlite.py) created it.
OLD_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    sender TEXT PRIMARY KEY,
    flow TEXT,
    state TEXT,
    vars TEXT NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS processed (
    message_sid TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    replies TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS opt_outs (
    sender TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deadlines (
    sender TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deadlines_by_time ON deadlines (at);
CREATE TABLE IF NOT EXISTS outbound (
    id TEXT PRIMARY KEY,
    sid TEXT,
    broadcast TEXT,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbound_by_sid ON outbound (sid);
CREATE INDEX IF NOT EXISTS outbound_by_broadcast ON outbound (broadcast);
CREATE VIEW IF NOT EXISTS transcript (id, sender, direction, body, message_sid, at) AS
    SELECT rowid * 1000, sender, 'in', body, message_sid, at FROM processed
    UNION ALL
    SELECT p.rowid * 1000 + 1 + r.key, p.sender, 'out', r.value, p.message_sid, p.at
    FROM processed AS p, json_each(p.replies) AS r;
"""


def studio_vars(body: str, to: str, sender: str) -> dict[str, Any]:
    """What the old engine kept in the variables on a trigger (``_studio_context``)."""
    return {"trigger": {"message": {"Body": body, "From": sender, "To": to}},
            "flow": {"channel": {"address": to}, "variables": {}}}


# -- helpers ---------------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CannedFetcher:
    """Answers every fetch with ``answer``, after ``gate`` is set (when one is given)."""

    def __init__(self, answer: Any = None, gate: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.gate = gate
        self.urls: list[str] = []

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        self.urls.append(url)
        if self.gate is not None:
            await self.gate.wait()
        return self.answer


class Deliveries:
    """A ``Deliver``: records (the record's ``to``, its message sid, replies) in order."""

    def __init__(self, events: list[str] | None = None) -> None:
        self.sent: list[tuple[str, str, tuple[str, ...]]] = []
        self.events = events if events is not None else []

    async def __call__(self, record: Inbound, replies: tuple[str, ...]) -> None:
        self.events.append(f"deliver {record.message_sid}")
        self.sent.append((record.to, record.message_sid, replies))


def flows_in(tmp_path: Path, **files: str) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", {f"{name}.yaml": text for name, text in files.items()}))


def store_url(kind: str, tmp_path: Path) -> str:
    return "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(store_url(request.param, tmp_path))
    yield opened
    await opened.close()


class OtherProcess:
    """The same store as another process sees it: its per-sender lock is that process's own
    (SQLite's locks are per process), so it does not wait for ours."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def lock(self, sender: str) -> Any:
        return contextlib.nullcontext()


class Interfering:
    """A store whose commits another process races: ``before_commit`` runs against the real store
    just before each of the first ``times`` commits (it may commit a twin or bump the version)."""

    def __init__(self, inner: Store, before_commit: Any, times: int = 1) -> None:
        self.inner = inner
        self.before_commit = before_commit
        self.times = times
        self.results: list[CommitResult] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, turn: Turn) -> CommitResult:
        if self.times > 0:
            self.times -= 1
            await self.before_commit(turn)
        result = await self.inner.commit(turn)
        self.results.append(result)
        return result


# -- found in review ---------------------------------------------------------------------------------

async def test_a_broadcast_started_conversation_times_out_from_the_broadcasts_number(
        store: Store, tmp_path: Path) -> None:
    """Before: a flow started for someone (a broadcast) sent its timeout follow-up from the default
    sender (TWILIO_FROM / the messaging service), the number its opening message came from
    (``to=""``: the old time_out read ``flow.channel.address``, which a start sets to "").
    Now ``Conversation.channel`` survives ``end()`` and a Start does not reset it, so the nudge goes
    out from whatever number the person texted last, weeks ago, in another thread on their phone."""
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    # Long before: they texted our other number, and stopped and came back (the conversation ended).
    await inbox.receive(Inbound("SM1", "+1", to="+15550001111", body="hello"))
    await inbox.receive(Inbound("SM2", "+1", to="+15550001111", body="STOP"))
    await inbox.receive(Inbound("SM3", "+1", to="+15550001111", body="START"))
    started = await inbox.start("+1", "survey", {}, "broadcast:b|+1")
    assert started.replies == ("Rate us 1-5.",)  # the broadcast sends this from the default sender

    deliver = Deliveries()
    clock.now = 1_601.0
    [(sender, due_at)] = await store.due(clock.now)
    await inbox.time_out(sender, due_at, deliver)
    assert deliver.sent == [("", f"timeout:+1:{due_at!r}", ("Still there? Rate us 1-5.",))]


def test_two_workers_opening_an_old_sqlite_database_at_once(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``WORKERS=4`` on a database from before the ``engine`` column: every worker opens the store at
    start-up. Before schema versions, each worker read ``PRAGMA table_info`` and then ran ``ALTER
    TABLE`` outside any transaction, so a worker that read the columns before another's ALTER died
    with "duplicate column name: engine" (seen 1 run in ~30 with 4 real processes). Now the
    migration runs under the write lock: a second worker opening the file while the first is half
    way through waits, then finds it migrated. Made deterministic by starting the second worker
    (in a thread, as another process would) while the first is stopped inside its migration."""
    import threading

    import bot.store.sqlite as sqlite_module
    from bot.store.sqlite_schema import LATEST, history, version_of

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(OLD_SQLITE_SCHEMA)
    db.close()

    real_connect = sqlite_module._connect
    stores: list[sqlite_module.SqliteStore] = []
    second_done = threading.Event()
    seen_waiting: list[bool] = []

    def second_worker() -> None:
        stores.append(sqlite_module.SqliteStore(path))
        second_done.set()

    class FirstWorkersConnection:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __getattr__(self, name: str) -> Any:
            return getattr(self.db, name)

        def execute(self, sql: str, *args: Any) -> Any:
            cursor = self.db.execute(sql, *args)
            if sql.startswith("PRAGMA table_info") and not seen_waiting:
                rows = cursor.fetchall()
                threading.Thread(target=second_worker, daemon=True).start()  # the second worker starts meanwhile
                seen_waiting.append(not second_done.wait(0.5))  # ... and waits for our migration
                return iter(rows)
            return cursor

    calls = iter([True])

    def connect(db_path: str, busy_timeout_ms: int = 5000, *, create: bool = False) -> Any:
        db = real_connect(db_path, busy_timeout_ms, create=create)
        return FirstWorkersConnection(db) if next(calls, False) else db

    monkeypatch.setattr(sqlite_module, "_connect", connect)
    stores.append(sqlite_module.SqliteStore(path))  # the first worker
    assert second_done.wait(10) and seen_waiting == [True]
    assert len(stores) == 2
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert version_of(db) == LATEST
        assert [version for version, *_ in history(db)] == list(range(1, LATEST + 1))
        assert [name for _, name, *_ in db.execute("PRAGMA table_info(conversations)")].count("engine") == 1
    for store in stores:
        asyncio.run(store.close())


async def test_a_broadcast_does_not_log_that_outbound_is_not_configured(
        tmp_path: Path, fake_twilio: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a start never ran ``notify`` (old ``Inbox.start`` ignored ``outcome.notifications``).
    Now every turn kind notifies, but ``Broadcast`` builds its ``Inbox`` without a notifier, so a
    broadcast of a flow whose opening state notifies logs, for every recipient, an ERROR that
    outbound messages are not configured — while it is sending through them — and notifies nobody."""
    from bot.broadcast import Broadcast, Recipient
    from bot.outbound import Outbox
    from bot.quiet_hours import QuietHours

    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    engine = Engine(flows_in(tmp_path, remind=REMIND), CannedFetcher(), env={})

    async def no_sleep(seconds: float) -> None:
        return None

    try:
        with caplog.at_level(logging.ERROR):
            report = await Broadcast("b", "remind", store, engine, outbox, rate=1000.0, sleep=no_sleep,
                                     hours=QuietHours(any_time=True)).run(  # a real clock: no quiet hours
                [Recipient(2, "+15551230001", {"name": "Ada"}), Recipient(3, "+15551230002", {"name": "Bo"})])
    finally:
        await outbox.close()
        await store.close()
    assert report.sent == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    staff = [attempt.body for attempt in fake_twilio.created if attempt.to == "+15550000000"]
    assert staff == ["reminded +15551230001", "reminded +15551230002"]  # each start told staff, once


async def test_a_start_notifies_like_any_turn(store: Store, tmp_path: Path) -> None:
    """``notify`` runs each time a conversation enters the state, whatever turn brought it there:
    before the one pipeline, a start (and a timeout) dropped its notifications silently."""
    notified: list[tuple[str, list[tuple[str, str]]]] = []
    inbox = Inbox(store, Engine(flows_in(tmp_path, remind=REMIND), CannedFetcher(), env={}),
                  lambda record, notes: notified.append((record.message_sid, notes)))
    started = await inbox.start("+1", "remind", {"name": "Ada"}, "broadcast:b|+1")
    assert started.replies == ("Hi Ada, reply YES to confirm.",)
    assert notified == [("broadcast:b|+1", [("+15550000000", "reminded +1")])]


def test_the_benchmark_still_recognises_duplicate_answers(tmp_path: Path) -> None:
    """The bench's guard against a load that repeats MessageSids (it would flatter the numbers)
    parses the bot's route log: ``bench/servers.py`` looks for "duplicate MessageSid", but
    ``bot/inbox.py:_logged`` now writes "duplicate: recorded reply", so duplicates are counted under
    an unknown rule and neither ``rules["duplicate"]`` nor ``off_script`` ever fires."""
    from bench.servers import route_counts

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter(SERVER_FORMAT))
    route_log = logging.getLogger("bot.route")
    route_log.addHandler(handler)
    level = route_log.level
    route_log.setLevel(logging.INFO)

    async def twice() -> None:
        store = open_store("memory://")
        inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}))
        await inbox.receive(Inbound("SM1", "+15551234567", body="survey"))
        await inbox.receive(Inbound("SM1", "+15551234567", body="survey"))  # a repeated MessageSid
        await store.close()

    try:
        asyncio.run(twice())
    finally:
        route_log.removeHandler(handler)
        route_log.setLevel(level)
    counts = route_counts("\n".join(lines).encode())
    assert counts.messages == 2
    assert counts.rules["duplicate"] == 1


async def test_a_stale_timeout_does_not_touch_updated_at(store: Store, tmp_path: Path) -> None:
    """Before: a stale deadline-index entry (the person answered between the timer's ``due()`` and
    the firing) rewrote the index and left the conversation as it was. Now ``Engine.step`` stamps
    ``updated_at`` at the end of every turn, stale timeouts included (low impact: it extends the
    conversation's ``expires_after`` and retention clock)."""
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    clock.now = 1_300.0
    await inbox.receive(Inbound("SM2", "+1", body="9"))  # answered (otherwise): re-armed at 1_900
    before = await load(store, "+1")
    clock.now = 1_650.0
    fired = await inbox.time_out("+1", 1_600.0, Deliveries())  # the entry the timer read before SM2
    assert fired.replies == ()
    assert (await load(store, "+1")).updated_at == before.updated_at


async def test_a_purged_person_is_not_brought_back_by_their_timeout(
        store: Store, tmp_path: Path) -> None:
    """PRE-EXISTING (same at e5ad048), found while reviewing timeouts: ``purge`` (and the retention
    sweep, and Redis TTLs) delete the conversation but not its deadline-index entry; when it comes
    due, the (stale) timeout turn commits a brand-new conversation row and a turn row for the number
    that asked to be forgotten."""
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    await store.purge("+1")
    clock.now = 1_601.0
    for sender, due_at in await store.due(clock.now):  # what the app's timer loop does
        await inbox.time_out(sender, due_at, Deliveries())
    assert (await load(store, "+1")).version == 0  # nothing stored for them


# -- paths nothing else covered --------------------------------------------------------------------

async def test_a_deferred_answer_is_recorded_delivered_once_and_in_order(store: Store,
                                                                                  tmp_path: Path) -> None:
    """In-process (the suite had only the end-to-end version): the webhook answers the interim at
    once; the interim is what is recorded (a Twilio retry gets it again, nothing re-sent); the real
    replies go through ``deliver`` with the turn's record (from the number texted) before the
    sender's next message is handled."""
    gate = asyncio.Event()
    events: list[str] = []
    deliver = Deliveries(events)
    inbox = Inbox(store, Engine(flows_in(tmp_path, slow=SLOW), CannedFetcher({"value": 42}, gate), env={}))
    patience = Patience(0.05, "One moment…", deliver)

    first = await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="slow"), patience)
    assert (first.replies, first.deferred) == (("One moment…",), True)
    assert len(inbox.pending()) == 1

    async def next_message() -> Any:
        received = await inbox.receive(Inbound("SM2", "+1", to="+15550009999", body="hello"), patience)
        events.append("SM2 answered")
        return received

    follow_up = asyncio.create_task(next_message())
    await asyncio.sleep(0.2)
    assert events == []  # the next message waits for the deferred one
    gate.set()
    second = await follow_up
    assert second.replies == (PROGRAM_FALLBACK,) and not second.deferred
    assert events == ["deliver SM1", "SM2 answered"]
    assert deliver.sent == [("+15550009999", "SM1", ("The answer is 42.",))]
    assert await recorded(store, "SM1") == ("One moment…",)

    retry = await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="slow"), patience)
    assert (retry.replies, retry.duplicate) == (("One moment…",), True)
    assert len(deliver.sent) == 1
    assert inbox.pending() == set()


async def test_a_deferred_turn_for_an_opted_out_sender_delivers_nothing(store: Store,
                                                                                 tmp_path: Path) -> None:
    gate = asyncio.Event()
    deliver = Deliveries()
    inbox = Inbox(store, Engine(flows_in(tmp_path, slow=SLOW), CannedFetcher({"value": 42}, gate), env={}))
    await inbox.receive(Inbound("SM0", "+1", body="hi"))
    await store.set_consent(ConsentChange("+1", ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR))
    # Opted out, a message is answered by compliance at once (silently), never deferred.
    quiet = await inbox.receive(Inbound("SM1", "+1", body="slow"), Patience(0.05, "One moment…", deliver))
    assert (quiet.replies, quiet.deferred) == ((), False)
    assert deliver.sent == []


async def test_timeouts_for_an_opted_out_sender_move_on_silently(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    # learnt from Twilio (21610): the conversation stays where it was
    await store.set_consent(ConsentChange("+1", ConsentStatus.OPTED_OUT, ConsentMethod.DELIVERY_ERROR, "21610"))
    deliver = Deliveries()
    clock.now = 1_601.0
    fired = await inbox.time_out("+1", 1_600.0, deliver)
    assert fired.replies == () and deliver.sent == []
    assert (await load(store, "+1")).state == "nudge"
    assert await store.due(10_000.0) == []
    assert await recorded(store, "timeout:+1:1600.0") == ()


async def test_a_stale_timeout_only_rewrites_the_index(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    clock.now = 1_300.0
    await inbox.receive(Inbound("SM2", "+1", body="9"))  # re-armed at 1_900
    deliver = Deliveries()
    clock.now = 1_650.0
    assert (await inbox.time_out("+1", 1_600.0, deliver)).replies == ()
    assert deliver.sent == []
    assert (await load(store, "+1")).state == "ask"
    assert await store.due(10_000.0) == [("+1", 1_900.0)]
    # The real deadline still fires, once.
    clock.now = 1_901.0
    assert (await inbox.time_out("+1", 1_900.0, deliver)).replies == ("Still there? Rate us 1-5.",)
    assert (await inbox.time_out("+1", 1_900.0, deliver)).duplicate
    assert len(deliver.sent) == 1


async def test_a_timeout_after_the_conversation_ended_says_nothing(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    await inbox.receive(Inbound("SM2", "+1", body="4"))  # done: the index entry is cleared…
    assert await store.due(10_000.0) == []
    deliver = Deliveries()
    clock.now = 1_601.0
    fired = await inbox.time_out("+1", 1_600.0, deliver)  # …and a late firing of it changes nothing
    assert fired.replies == () and deliver.sent == []
    assert not (await load(store, "+1")).active


async def test_help_while_waiting_keeps_the_clock_and_stop_clears_it(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    clock.now = 1_300.0
    await inbox.receive(Inbound("SM2", "+1", body="HELP"))
    assert (await load(store, "+1")).timeout is not None
    assert await store.due(10_000.0) == [("+1", 1_600.0)]
    await inbox.receive(Inbound("SM3", "+1", body="STOP"))
    stopped = await load(store, "+1")
    assert (stopped.active, stopped.timeout, stopped.returns, stopped.channel) == (False, None, [], "+15550009999")
    assert await store.due(10_000.0) == []


async def test_a_twin_timeout_is_not_delivered_twice(store: Store, tmp_path: Path) -> None:
    """Another process fires the same deadline between our snapshot and our commit: DUPLICATE,
    then the next snapshot answers the twin's record; nothing is delivered by us."""
    clock = Clock()
    engine = Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock)
    await Inbox(store, engine).receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    clock.now = 1_601.0
    twin_deliver = Deliveries()

    async def twin_fires(turn: Turn) -> None:
        await Inbox(OtherProcess(store), engine).time_out("+1", 1_600.0, twin_deliver)  # type: ignore[arg-type]

    racing = Interfering(store, twin_fires)
    deliver = Deliveries()
    fired = await Inbox(racing, engine).time_out("+1", 1_600.0, deliver)  # type: ignore[arg-type]
    assert racing.results == [CommitResult.DUPLICATE]
    assert (fired.duplicate, fired.replies) == (True, ("Still there? Rate us 1-5.",))
    assert deliver.sent == [] and len(twin_deliver.sent) == 1


async def test_a_start_that_conflicts_retries_then_gives_up(store: Store, tmp_path: Path) -> None:
    engine = Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={})
    sids = iter(range(100))

    async def they_text(turn: Turn) -> None:
        other = Inbox(OtherProcess(store), engine)  # type: ignore[arg-type]
        await other.receive(Inbound(f"SMr{next(sids)}", "+1", to="+15550009999", body="hello"))

    racing = Interfering(store, they_text, times=1)
    started = await Inbox(racing, engine).start("+1", "survey", {}, "broadcast:b|+1")  # type: ignore[arg-type]
    assert racing.results == [CommitResult.CONFLICT, CommitResult.COMMITTED]
    assert started.replies == ("Rate us 1-5.",)
    assert (await load(store, "+1")).state == "ask"

    always = Interfering(store, they_text, times=MAX_ATTEMPTS)
    with pytest.raises(StoreBusy):
        await Inbox(always, engine).start("+1", "survey", {}, "broadcast:b2|+1")  # type: ignore[arg-type]
    assert await recorded(store, "broadcast:b2|+1") is None


async def test_a_dry_run_for_someone_mid_conversation_changes_nothing(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    notified: list[Any] = []
    engine = Engine(flows_in(tmp_path, survey=SURVEY, remind=REMIND), CannedFetcher(), env={}, clock=clock)
    inbox = Inbox(store, engine, lambda record, notes: notified.append(notes))
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="survey"))
    before = await load(store, "+1")
    due_before = await store.due(10_000.0)
    clock.now = 1_100.0
    shown = await inbox.start("+1", "remind", {"name": "Ada"}, "broadcast:b|+1", dry_run=True)
    assert (shown.replies, shown.duplicate, shown.skipped) == (("Hi Ada, reply YES to confirm.",), False, None)
    assert await load(store, "+1") == before
    assert await store.due(10_000.0) == due_before
    assert await recorded(store, "broadcast:b|+1") is None
    assert notified == []
    # Same opener as for a stranger; opted-out people are skipped in a dry run too.
    stranger = await inbox.start("+2", "remind", {"name": "Ada"}, "broadcast:b|+2", dry_run=True)
    assert stranger.replies == shown.replies
    await store.set_consent(ConsentChange("+3", ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR))
    assert (await inbox.start("+3", "remind", {}, "broadcast:b|+3", dry_run=True)).skipped is Skip.OPTED_OUT


async def test_texted_oddities_stay_values(store: Store, tmp_path: Path) -> None:
    """2,000 characters with ``../``, quotes, newlines and template syntax: saved, echoed as text,
    never rendered; an author saving under ``_timeout``/``channel``/``flow.channel.address`` does not
    move the engine's bookkeeping (the old time_out sent from ``flow.channel.address``)."""
    echo = """\
flow: echo
triggers: [ECHO]
start: ask
states:
  ask:
    say: "Say something."
    replies:
      - pattern: '(?s).*'
        save: _timeout
        go: keep
    otherwise: "?"
  keep:
    set: {channel: "{{ _timeout }}", flow.channel.address: "{{ _timeout }}"}
    say: "You said: {{ _timeout }}"
    replies:
      - keywords: [again]
        go: ask
    otherwise: "again?"
    timeout: {after: 10m, go: end}
"""
    clock = Clock()
    inbox = Inbox(store, Engine(flows_in(tmp_path, echo=echo), CannedFetcher(), env={"SECRET": "s3cret"},
                                clock=clock))
    body = "../../etc/passwd \"quoted\" 'single'\nline two {{ env.SECRET }} {% raw %}" + "x" * 2_000
    await inbox.receive(Inbound("SM1", "+1", to="+15550009999", body="echo"))
    said = await inbox.receive(Inbound("SM2", "+1", to="+15550009999", body=body))
    saved = trim(body)  # what a pattern sees and saves: whitespace runs collapsed (as before)
    assert "{{ env.SECRET }}" in saved and "\"quoted\"" in saved
    assert said.replies == (f"You said: {saved}",)
    kept = await load(store, "+1")
    assert kept.vars["_timeout"] == saved and kept.vars["channel"] == saved
    assert kept.vars["flow"]["channel"]["address"] == saved
    assert (kept.channel, kept.timeout is not None) == ("+15550009999", True)
    deliver = Deliveries()
    clock.now = 1_601.0
    [(sender, due_at)] = await store.due(clock.now)
    await inbox.time_out(sender, due_at, deliver)
    assert [to for to, _, _ in deliver.sent] == []  # end says nothing…
    assert not (await load(store, "+1")).active  # …and the conversation ended


async def test_an_old_sqlite_database_keeps_working(tmp_path: Path) -> None:
    """A database exactly as e5ad048 created and filled it: a waiting conversation with its
    ``_timeout`` and deadline row, one inside an entered flow (``_return``), a processed MessageSid.
    The new code migrates the schema, fires the old deadline from the old channel, returns to the
    entering flow, and answers the old MessageSid's retry from its record."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(OLD_SQLITE_SCHEMA)
        waiting = {**studio_vars("survey", "+15550009999", "+1"), "_timeout": {"at": 1_600.0, "state": "ask"}}
        entered = {**studio_vars("main", "+15550008888", "+2"), "_return": [["main", "go_inner"]]}
        db.executemany("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
                       [("+1", "survey", "ask", json.dumps(waiting), 1_000.0, 1),
                        ("+2", "inner", "ask_more", json.dumps(entered), 1_000.0, 1)])
        db.execute("INSERT INTO deadlines VALUES (?, ?)", ("+1", 1_600.0))
        db.execute("INSERT INTO processed VALUES (?, ?, ?, ?, ?)",
                   ("SMold", "+1", "survey", json.dumps(["Rate us 1-5."]), 1_000.0))
    db.close()

    clock = Clock(1_601.0)
    store = open_store(f"sqlite:///{path}")
    try:
        inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY, main=MAIN, inner=INNER), CannedFetcher(),
                                    env={}, clock=clock))
        retry = await inbox.receive(Inbound("SMold", "+1", to="+15550009999", body="survey"))
        assert (retry.duplicate, retry.replies) == (True, ("Rate us 1-5.",))
        deliver = Deliveries()
        for sender, due_at in await store.due(clock.now):
            await inbox.time_out(sender, due_at, deliver)
        assert deliver.sent == [("+15550009999", "timeout:+1:1600.0", ("Still there? Rate us 1-5.",))]
        migrated = await load(store, "+1")
        assert (migrated.state, "_timeout" in migrated.vars, migrated.channel) == ("nudge", False, "+15550009999")
        back = await inbox.receive(Inbound("SM2", "+2", to="+15550008888", body="blue"))
        assert back.replies == ("Back in main; you said blue.",)
        assert not (await load(store, "+2")).active
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT sender, engine FROM conversations").fetchall())
    db.close()
    assert json.loads(rows["+1"])["channel"] == "+15550009999"


async def test_old_redis_data_keeps_working(redis_url: str, tmp_path: Path) -> None:
    """A conversation as e5ad048 wrote it to Redis (no ``engine`` field, ``_timeout`` in the vars)
    and its deadline: the new code fires it once, from the old channel, and saves the new shape."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    waiting = {**studio_vars("survey", "+15550009999", "+1"), "_timeout": {"at": 1_600.0, "state": "ask"}}
    await client.hset("textflow:conv:+1", mapping={"version": 1, "data": json.dumps(
        {"flow": "survey", "state": "ask", "vars": waiting, "updated_at": 1_000.0})})
    await client.zadd("textflow:deadlines", {"+1": 1_600.0})
    store = open_store(redis_url)
    clock = Clock(1_601.0)
    try:
        inbox = Inbox(store, Engine(flows_in(tmp_path, survey=SURVEY), CannedFetcher(), env={}, clock=clock))
        deliver = Deliveries()
        for sender, due_at in await store.due(clock.now):
            await inbox.time_out(sender, due_at, deliver)
        assert (await inbox.time_out("+1", 1_600.0, deliver)).duplicate
        assert deliver.sent == [("+15550009999", "timeout:+1:1600.0", ("Still there? Rate us 1-5.",))]
        data = json.loads(await client.hget("textflow:conv:+1", "data") or "{}")
        assert "_timeout" not in data["vars"] and data["engine"]["channel"] == "+15550009999"
        assert await store.due(10_000.0) == []
    finally:
        await store.close()
        await client.aclose()


async def test_a_turns_consent_change_is_recorded_with_how_what_and_its_message_sid(
        store: Store, tmp_path: Path) -> None:
    """The engine decides how consent changed together with the change itself
    (``ConsentDecision``), so the ledger's ``how`` can never be missing."""
    engine = Engine(flows_in(tmp_path, survey=SURVEY_WITH_NUDGE), CannedFetcher(), env={})
    await Inbox(store, engine).receive(Inbound("SM1", "+1", body="STOP"))
    assert await store.is_opted_out("+1")
    [change] = await store.consent_history("+1")
    assert (change.status, change.how, change.detail, change.message_sid) == (
        ConsentStatus.OPTED_OUT, ConsentMethod.KEYWORD, "STOP", "SM1")
