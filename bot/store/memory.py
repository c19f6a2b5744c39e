"""A store in a dict: for tests and the simulator. Same contract as the real stores."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from bot.store.base import (
    PROCESS_STATUS_KEEP_SECONDS,
    CommitResult,
    KeyedLocks,
    ProcessStatus,
    Purged,
    Retention,
    Snapshot,
    StoreHealth,
)
from bot.types import ConsentChange, Conversation, OutboundMessage, Turn


class MemoryStore:
    def __init__(self, retention: Retention = Retention()) -> None:
        self.retention = retention
        self.conversations: dict[str, Conversation] = {}
        self.opted_out: set[str] = set()
        self.processed: dict[str, tuple[str, ...]] = {}
        self.processed_meta: dict[str, tuple[str, float]] = {}  # sid -> (sender, at)
        self.transcript: list[tuple[str, str, str, float]] = []  # sender, direction, body, at
        self._locks = KeyedLocks()
        self.outbox: dict[str, OutboundMessage] = {}
        self.deadlines: dict[str, float] = {}
        self.ledger: list[ConsentChange] = []  # append-only, but for the consent retention period
        self.statuses: dict[str, ProcessStatus] = {}

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
        return CommitResult.COMMITTED

    def lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(sender)

    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        return sorted(((s, at) for s, at in self.deadlines.items() if at <= now), key=lambda item: item[1])[:limit]

    async def drop_deadline(self, sender: str, at: float) -> None:
        if self.deadlines.get(sender) == at:
            del self.deadlines[sender]

    async def purge(self, sender: str) -> Purged:
        conversations = int(self.conversations.pop(sender, None) is not None)
        self.deadlines.pop(sender, None)
        kept = [line for line in self.transcript if line[0] != sender]
        lines, self.transcript = len(self.transcript) - len(kept), kept
        blanked = 0
        for sid, (owner, _) in self.processed_meta.items():
            if owner == sender:
                self.processed[sid] = ()
                blanked += 1
        return Purged(conversations, lines, blanked)

    async def sweep(self, now: float) -> Purged:
        stale = [sender for sender, c in self.conversations.items() if c.updated_at < now - self.retention.seconds]
        for sender in stale:
            del self.conversations[sender]
            self.deadlines.pop(sender, None)
        kept = [line for line in self.transcript if line[3] >= now - self.retention.seconds]
        lines, self.transcript = len(self.transcript) - len(kept), kept
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
        return Purged(len(stale), lines, consent_changes=changes)

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
        self.ledger.append(change)
        return True

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

    async def health(self) -> StoreHealth:
        return StoreHealth()  # a dict is always writable (and forgotten at exit, as tests want)

    async def close(self) -> None:
        return None
