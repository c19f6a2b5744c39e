"""A store in a dict: for tests and the simulator. Same contract as the real stores."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from datetime import date

from bot.store.base import (
    BROADCAST_KEEP_SECONDS,
    PROCESS_STATUS_KEEP_SECONDS,
    BroadcastProgress,
    CommitResult,
    FlowResults,
    KeyedLocks,
    ProcessStatus,
    Purged,
    Retention,
    RunKey,
    RunRow,
    Snapshot,
    StoreHealth,
)
from bot.store.listings import ConversationSummary, Cursor, Item, OptOut, Page, TurnRecord, page_size
from bot.store.memory_results import MemoryResults
from bot.store.owed import CLAIM_SECONDS, Owed, owed_by
from bot.store.schema_versions import SchemaState
from bot.types import ConsentChange, Conversation, OutboundMessage, Turn


class MemoryStore:
    def __init__(self, retention: Retention = Retention()) -> None:
        self.retention = retention
        self.conversations: dict[str, Conversation] = {}
        self.opted_out: set[str] = set()
        self.processed: dict[str, tuple[str, ...]] = {}
        self.processed_meta: dict[str, tuple[str, float]] = {}  # sid -> (sender, at)
        self.transcript: list[tuple[str, str, str, float]] = []  # sender, direction, body, at
        self._turn_log: list[tuple[str, TurnRecord]] = []  # (sender, turn): the console's transcript
        self.opted_out_at: dict[str, float] = {}
        self._locks = KeyedLocks()
        self.outbox: dict[str, OutboundMessage] = {}
        self.deadlines: dict[str, float] = {}
        self.ledger: list[ConsentChange] = []  # append-only, but for the consent retention period
        self.statuses: dict[str, ProcessStatus] = {}
        self.broadcast_progress: dict[str, BroadcastProgress] = {}
        self.results = MemoryResults()
        self.owed: dict[str, tuple[Owed, float]] = {}  # sid -> (what is owed, claimed until)

    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        stored = self.conversations.get(sender)
        conversation = copy.deepcopy(stored) if stored is not None else Conversation(sender)
        return Snapshot(conversation, sender in self.opted_out, self.processed.get(message_sid))

    async def is_opted_out(self, sender: str) -> bool:
        return sender in self.opted_out

    async def commit(self, turn: Turn) -> CommitResult:
        sender = turn.inbound.sender
        if turn.inbound.message_sid in self.processed:
            return CommitResult.DUPLICATE
        if turn.conversation_changed:
            stored = self.conversations.get(sender)
            if (stored.version if stored else 0) != turn.expected_version:
                return CommitResult.CONFLICT
            saved = copy.deepcopy(turn.conversation)
            saved.version = turn.expected_version + 1
            self.conversations[sender] = saved
        if turn.consent is not None:
            self._change_consent(turn.consent)
        if turn.deadline_changed:
            if turn.deadline is None:
                self.deadlines.pop(sender, None)
            else:
                self.deadlines[sender] = turn.deadline
        self.processed[turn.inbound.message_sid] = turn.replies
        self.processed_meta[turn.inbound.message_sid] = (sender, turn.at)
        self.transcript.append((sender, "in", turn.inbound.body, turn.at))
        self.transcript.extend((sender, "out", reply, turn.at) for reply in turn.replies)
        self._turn_log.append((sender, TurnRecord(turn.inbound.message_sid, turn.at, turn.inbound.body, turn.replies,
                                                 turn.trace)))
        self.results.apply(sender, turn.runs)
        if turn.owed:
            self.owed[turn.inbound.message_sid] = (owed_by(turn), time.time() + CLAIM_SECONDS)
        return CommitResult.COMMITTED

    async def schema_state(self) -> SchemaState:
        return SchemaState(0, 0)  # nothing outlives the process: no schema to keep

    async def claim_owed(self, now: float, until: float, limit: int = 20) -> list[Owed]:
        lapsed = sorted(((claimed, sid) for sid, (_, claimed) in self.owed.items() if claimed <= now))[:limit]
        for _, sid in lapsed:
            self.owed[sid] = (self.owed[sid][0], until)
        return [self.owed[sid][0] for _, sid in lapsed]

    async def settle_owed(self, message_sid: str) -> None:
        self.owed.pop(message_sid, None)

    async def release_owed(self, message_sids: Collection[str], at: float | None = None) -> None:
        for sid in message_sids:
            if sid in self.owed:
                self.owed[sid] = (self.owed[sid][0], time.time() if at is None else at)

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(sender)

    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        return sorted(((s, at) for s, at in self.deadlines.items() if at <= now), key=lambda item: item[1])[:limit]

    async def drop_deadline(self, sender: str, at: float) -> None:
        if self.deadlines.get(sender) == at:
            del self.deadlines[sender]

    async def state_counts(self, flow: str, since: float = 0.0) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conversation in self.conversations.values():
            if conversation.flow == flow and conversation.state is not None and conversation.updated_at >= since:
                counts[conversation.state] = counts.get(conversation.state, 0) + 1
        return counts

    async def purge(self, sender: str) -> Purged:
        conversations = int(self.conversations.pop(sender, None) is not None)
        self.deadlines.pop(sender, None)
        self.owed = {sid: item for sid, item in self.owed.items() if item[0].record.sender != sender}
        kept = [line for line in self.transcript if line[0] != sender]
        lines, self.transcript = len(self.transcript) - len(kept), kept
        self._turn_log = [(owner, record) for owner, record in self._turn_log if owner != sender]
        blanked = 0
        for sid, (owner, _) in self.processed_meta.items():
            if owner == sender:
                self.processed[sid] = ()
                blanked += 1
        self.results.forget(sender, time.time())
        return Purged(conversations, lines, blanked)

    async def sweep(self, now: float) -> Purged:
        stale = [sender for sender, c in self.conversations.items() if c.updated_at < now - self.retention.seconds]
        for sender in stale:
            del self.conversations[sender]
            self.deadlines.pop(sender, None)
        kept = [line for line in self.transcript if line[3] >= now - self.retention.seconds]
        lines, self.transcript = len(self.transcript) - len(kept), kept
        self._turn_log = [(owner, record) for owner, record in self._turn_log
                         if record.at >= now - self.retention.seconds]
        for sid, (_, at) in list(self.processed_meta.items()):
            if at < now - self.retention.dedup_seconds:
                del self.processed[sid], self.processed_meta[sid]
            elif at < now - self.retention.seconds:
                self.processed[sid] = ()  # still recognised as processed; the text is gone
        for message_id, message in list(self.outbox.items()):
            if message.updated_at < now - self.retention.dedup_seconds:
                del self.outbox[message_id]
        ledger = [change for change in self.ledger if change.at >= now - self.retention.consent_seconds]
        changes, self.ledger = len(self.ledger) - len(ledger), ledger
        self.results.close_lapsed(now)
        self.owed = {sid: item for sid, item in self.owed.items() if item[1] >= now - self.retention.seconds}
        self.results.drop_ended_before(now - self.retention.seconds)
        return Purged(len(stale), lines, consent_changes=changes)

    async def flow_results(self, flow: str, since: date | None = None, until: date | None = None,
                           now: float | None = None) -> FlowResults:
        return await self.results.flow_results(flow, since, until, now)

    def runs(self, flow: str, since: date | None = None, until: date | None = None, *, after: RunKey | None = None,
             limit: int | None = None, now: float | None = None) -> AsyncIterator[RunRow]:
        return self.results.runs(flow, since, until, after=after, limit=limit, now=now)

    async def save_outbound(self, message: OutboundMessage) -> None:
        self.outbox[message.id] = copy.copy(message)

    async def outbound(self, message_id: str) -> OutboundMessage | None:
        found = self.outbox.get(message_id)
        return copy.copy(found) if found else None

    async def outbound_by_sid(self, sid: str) -> OutboundMessage | None:
        return next((copy.copy(m) for m in self.outbox.values() if m.sid == sid), None)

    async def broadcast_messages(self, broadcast: str) -> list[OutboundMessage]:
        return [copy.copy(m) for m in self.outbox.values() if m.broadcast == broadcast]

    async def set_consent(self, change: ConsentChange) -> bool:
        return self._change_consent(change)

    def _change_consent(self, change: ConsentChange) -> bool:
        if change.opted_out == (change.number in self.opted_out):
            return False  # STOP from someone opted out, START from someone subscribed: no change
        (self.opted_out.add if change.opted_out else self.opted_out.discard)(change.number)
        if change.opted_out:
            self.opted_out_at[change.number] = change.at
        else:
            self.opted_out_at.pop(change.number, None)
        self.ledger.append(change)
        return True

    async def active_conversations(self, flow: str | None = None, state: str | None = None, limit: int = 50,
                                   cursor: str | None = None) -> Page[ConversationSummary]:
        found = [ConversationSummary(c.sender, c.flow, c.state, c.updated_at) for c in self.conversations.values()
                 if c.flow is not None and c.state is not None and flow in (None, c.flow) and state in (None, c.state)]
        return _page(found, lambda item: (item.updated_at, item.sender), limit, cursor)

    async def recent_turns(self, sender: str, limit: int = 100) -> list[TurnRecord]:
        return [record for owner, record in self._turn_log if owner == sender][-page_size(limit):]

    async def opt_outs(self, limit: int = 100, cursor: str | None = None) -> Page[OptOut]:
        found = [OptOut(number, self.opted_out_at.get(number, 0.0)) for number in self.opted_out]
        return _page(found, lambda item: (item.at, item.number), limit, cursor)

    async def consent_history(self, number: str) -> list[ConsentChange]:
        return sorted((change for change in self.ledger if change.number == number), key=lambda change: change.at)

    async def consent_changes(self, since: float | None = None) -> AsyncIterator[ConsentChange]:
        for change in sorted(self.ledger, key=lambda change: change.at):
            if since is None or change.at >= since:
                yield change

    async def record_status(self, status: ProcessStatus) -> None:
        self.statuses[status.process] = status
        cutoff = status.written_at - PROCESS_STATUS_KEEP_SECONDS
        self.statuses = {process: kept for process, kept in self.statuses.items() if kept.written_at >= cutoff}

    async def process_statuses(self) -> list[ProcessStatus]:
        return sorted(self.statuses.values(), key=lambda status: status.written_at, reverse=True)

    async def record_broadcast_progress(self, progress: BroadcastProgress) -> None:
        self.broadcast_progress[progress.name] = progress
        cutoff = progress.written_at - BROADCAST_KEEP_SECONDS
        self.broadcast_progress = {name: kept for name, kept in self.broadcast_progress.items()
                                   if kept.written_at >= cutoff}

    async def broadcasts(self, active_within: float, now: float | None = None) -> list[BroadcastProgress]:
        since = (time.time() if now is None else now) - active_within
        found = [progress for progress in self.broadcast_progress.values() if progress.written_at >= since]
        return sorted(found, key=lambda progress: (-progress.written_at, progress.name))

    async def health(self) -> StoreHealth:
        return StoreHealth()  # a dict is always writable (and forgotten at exit, as tests want)

    async def close(self) -> None:
        return None


def _page(items: list[Item], key: Callable[[Item], tuple[float, str]], limit: int, cursor: str | None) -> Page[Item]:
    """The page of ``items`` after ``cursor``, ordered newest first (then by the text, descending)."""
    after = Cursor.read(cursor)
    ordered = sorted(items, key=key, reverse=True)
    if after is not None:
        ordered = [item for item in ordered if key(item)[0] <= after.at]
        ordered = ordered[after.skip:]  # those at exactly ``after.at`` come first: the read ones
    size = page_size(limit)
    chosen = ordered[:size]
    more = len(ordered) > size
    return Page(chosen, str(Cursor.after([key(item)[0] for item in chosen], after)) if more else None)

