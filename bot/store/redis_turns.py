"""A turn's reads and its one write on Redis: the snapshot (one trip) and the commit (one script).

Both go over the store's lean connection (``redis_wire.py``). The commit also ends the turn's hold
on the sender's lock when nothing more is done under it (``redis_lock.held_for_commit``), so a
plain turn costs Redis three trips: the lock, the snapshot, the commit.
"""

from __future__ import annotations

import json
import time

from bot.store.base import CommitResult, Retention, Snapshot
from bot.store.json_text import dumps_own, dumps_record
from bot.store.owed import CLAIM_SECONDS, owed_by
from bot.store.records import bookkeeping, conversation_from_record
from bot.store.redis_consent import entry
from bot.store.redis_keys import KeyBuilder
from bot.store.redis_lock import TurnLocks, held_for_commit
from bot.store.redis_owed import RedisOwed
from bot.store.redis_results import RedisResults
from bot.store.redis_scripts import COMMIT
from bot.store.redis_wire import RedisWire, Script
from bot.store.replies import entry as entry_of
from bot.store.replies import load_replies
from bot.types import Conversation, Turn, media_of

_RESULTS = {result.value: result for result in CommitResult}


class RedisTurns:
    def __init__(self, wire: RedisWire, keys: KeyBuilder, retention: Retention, locks: TurnLocks,
                 results: RedisResults, owed: RedisOwed) -> None:
        self._wire = wire
        self._keys = keys
        self._locks = locks
        self._results = results
        self._owed = owed
        self._commit = wire.register(Script(COMMIT))
        # Keys every turn names, made once.
        self._deadlines, self._counted_flows = keys.deadlines(), keys.counted_flows()
        self._shared = (keys.consent_ledger(), keys.consent_sequence(), keys.opt_outs(), owed.records, owed.claims)
        self._no_lock = keys.lock("")  # named by a turn that keeps its lock (the script leaves it alone)
        self._dedup_ms = int(retention.dedup_seconds * 1000)
        self._retention_ms = int(retention.seconds * 1000)

    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        keys = self._keys
        stored, opted_out, processed, replies = await self._wire.pipeline(
            ("HMGET", keys.conversation(sender), "data", "version"), ("EXISTS", keys.opt_out(sender)),
            ("EXISTS", keys.message(message_sid)), ("GET", keys.reply(message_sid)))
        return Snapshot(_conversation(sender, stored), bool(opted_out), _recorded(processed, replies))

    async def commit(self, turn: Turn) -> CommitResult:
        conversation, inbound, keys = turn.conversation, turn.inbound, self._keys
        sender, sid = inbound.sender, inbound.message_sid
        state = dumps_record({"flow": conversation.flow, "state": conversation.state, "vars": conversation.vars,
                              "engine": bookkeeping(conversation), "updated_at": conversation.updated_at}, "vars")
        first: dict[str, object] = {"at": turn.at, "dir": "in", "body": inbound.body, "sid": sid}
        if turn.trace:
            first["trace"] = _text(dumps_own([[step.rule, step.before, step.after] for step in turn.trace]))
        replies = dumps_own([entry_of(reply) for reply in turn.replies])
        lines = [dumps_own(first)]
        lines += [dumps_own({"at": turn.at, "dir": "out", "body": reply, "sid": sid,
                         **({"media": list(media_of(reply))} if media_of(reply) else {})})
                  for reply in turn.replies]
        consent = turn.consent
        number = consent.number if consent is not None else sender
        deadline = "-" if not turn.deadline_changed else ("clear" if turn.deadline is None else repr(turn.deadline))
        flow, at_state = conversation.flow or "", conversation.state or ""
        position = keys.at_state(flow, at_state) if flow and at_state else ""
        # A turn that owes replies sends them under the lock, after the commit: it keeps its hold.
        hold = held_for_commit(keys.lock(sender)) if not turn.owed else None
        result = _RESULTS[await self._wire.evalsha(
            self._commit,
            [keys.conversation(sender), keys.message(sid), keys.opt_out(number), keys.transcript(sender),
             keys.sender_messages(sender), keys.reply(sid), self._deadlines, sender, keys.consent_history(number),
             *self._shared, hold.key if hold is not None else self._no_lock],
            [turn.expected_version if turn.conversation_changed else "-", state, replies,
             self._dedup_ms, "-" if consent is None else ("1" if consent.opted_out else "0"), self._retention_ms,
             repr(turn.at), sid, deadline, repr(consent.at) if consent is not None else "-",
             entry(consent) if consent is not None else "-", position, keys.states_of(flow), at_state,
             self._counted_flows, flow, repr(conversation.updated_at), self._results.argument(turn.runs),
             *((owed_by(turn).to_json(), repr(time.time() + CLAIM_SECONDS)) if turn.owed else ("-", "-")),
             hold.token if hold is not None else "-", *lines])]
        if hold is not None and result is CommitResult.COMMITTED:
            self._locks.released(hold)
        return result


def _text(json_text: bytes | str) -> str:
    return json_text.decode() if isinstance(json_text, bytes) else json_text


def _conversation(sender: str, stored: list[str | None]) -> Conversation:
    if stored[0] is None:
        return Conversation(sender)
    data = json.loads(stored[0])
    return conversation_from_record(sender, data["flow"], data["state"], data["vars"], data.get("engine"),
                                    data["updated_at"], int(stored[1] or 0))


def _recorded(processed: int, replies: str | None) -> tuple[str, ...] | None:
    """None: never processed; () once retention (or a purge) removed the reply text."""
    if not processed:
        return None
    return load_replies(replies) if replies is not None else ()
