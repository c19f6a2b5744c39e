"""A turn's reads and its one write on Redis: the snapshot (one trip) and the commit (one script).

Both go over the store's lean connection (``redis_wire.py``). The snapshot is read in the lock's
own trip when the pipeline named the turn before taking it (``read_ahead.py``), and the commit
ends the turn's hold on the sender's lock when nothing more is done under it
(``redis_lock.held_for_commit``), so a plain turn costs Redis two trips: the lock with the
snapshot, and the commit.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson

from bot.store.base import CommitResult, Retention, Snapshot
from bot.store.json_text import dumps_own, dumps_own_text, dumps_record
from bot.store.owed import CLAIM_SECONDS, owed_by
from bot.store.records import bookkeeping, conversation_from_record
from bot.store.redis_consent import entry
from bot.store.redis_keys import KeyBuilder
from bot.store.redis_lock import TurnLocks, held_for_commit, read_with_lock
from bot.store.redis_owed import RedisOwed
from bot.store.redis_results import RedisResults
from bot.store.redis_scripts import COMMIT
from bot.store.redis_wire import RedisWire, Script, Word
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
        self._prefix = f"{keys.prefix}:"  # keys the script builds (redis_scripts.COMMIT, redis_results.APPLY_RUNS)
        self._ledger = (keys.consent_ledger(), keys.consent_sequence(), keys.opt_outs())
        self._dedup_ms = int(retention.dedup_seconds * 1000)
        self._retention_ms = int(retention.seconds * 1000)

    def reads(self, sender: str, message_sid: str) -> tuple[tuple[Word, ...], ...]:
        """The snapshot's commands: the conversation, the opt-out, the MessageSid and its answer."""
        keys = self._keys
        return (("HMGET", keys.conversation(sender), "data", "version"), ("EXISTS", keys.opt_out(sender)),
                ("EXISTS", keys.message(message_sid)), ("GET", keys.reply(message_sid)))

    async def snapshot(self, sender: str, message_sid: str) -> Snapshot:
        # Read with the lock's SET NX when the pipeline named this turn before taking it (one trip).
        found = read_with_lock((sender, message_sid))
        if found is None:
            found = await self._wire.pipeline(*self.reads(sender, message_sid))
        stored, opted_out, processed, replies = found
        return Snapshot(_conversation(sender, stored), bool(opted_out), _recorded(processed, replies))

    async def commit(self, turn: Turn) -> CommitResult:
        conversation, inbound, keys = turn.conversation, turn.inbound, self._keys
        sender, sid = inbound.sender, inbound.message_sid
        changed = turn.conversation_changed
        state = dumps_record({"flow": conversation.flow, "state": conversation.state, "vars": conversation.vars,
                              "engine": bookkeeping(conversation), "updated_at": conversation.updated_at},
                             "vars") if changed else ""
        first: dict[str, object] = {"at": turn.at, "dir": "in", "body": inbound.body, "sid": sid}
        if turn.trace:
            first["trace"] = dumps_own_text([[step.rule, step.before, step.after] for step in turn.trace])
        lines = [dumps_own(first)]
        lines += [dumps_own({"at": turn.at, "dir": "out", "body": reply, "sid": sid,
                             **({"media": list(media_of(reply))} if media_of(reply) else {})})
                  for reply in turn.replies]
        deadline = "-" if not turn.deadline_changed else ("clear" if turn.deadline is None else repr(turn.deadline))
        # A turn that owes replies sends them under the lock, after the commit: it keeps its hold.
        hold = held_for_commit(keys.lock(sender)) if not turn.owed else None
        # Redis spends about a µs on each argument of a script (its parse, and a string for Lua):
        # what most turns do not write (consent, owed replies) is named only by the turns that do.
        script_keys = [keys.conversation(sender), keys.message(sid), keys.reply(sid), keys.transcript(sender),
                       keys.sender_messages(sender)]
        args: list[Word] = [
            self._prefix, sender, sid, turn.expected_version if changed else "-", state, conversation.flow or "",
            conversation.state or "", repr(conversation.updated_at), dumps_own([entry_of(r) for r in turn.replies]),
            self._dedup_ms, self._retention_ms, deadline]
        if hold is not None:
            script_keys.append(hold.key)
            args.append(hold.token)
        else:
            args.append("-")
        consent = turn.consent
        if consent is None:
            args.append("-")
        else:
            number = consent.number
            args += ("1" if consent.opted_out else "0", keys.opt_out(number), keys.consent_history(number),
                     *self._ledger, repr(consent.at), entry(consent))
        args.append(len(turn.runs))
        if turn.runs:
            args += self._results.arguments(turn.runs, sender)
        if turn.owed:
            args += (owed_by(turn).to_json(), repr(time.time() + CLAIM_SECONDS), self._owed.records, self._owed.claims)
        else:
            args.append("-")
        result = _RESULTS[await self._wire.evalsha(self._commit, script_keys, [*args, *lines])]
        if hold is not None and result is CommitResult.COMMITTED:
            self._locks.released(hold)
        return result


def _conversation(sender: str, stored: list[str | None]) -> Conversation:
    if stored[0] is None:
        return Conversation(sender)
    data = read_record(stored[0])
    return conversation_from_record(sender, data["flow"], data["state"], data["vars"], data.get("engine"),
                                    data["updated_at"], int(stored[1] or 0))


def read_record(text: str) -> Any:
    """A conversation's stored record, read as ``json.loads`` reads it: by orjson (1.5 µs, not 4)
    when orjson wrote it. ``json_text.dumps_record`` writes with orjson unless orjson would mean
    something else (an integer beyond 64 bits, a NaN, a lone surrogate: the only things the two
    readers read differently), and then with ``json.dumps``, as every release before it did; and
    ``json.dumps`` always writes a space after the first key (``{"flow": ``), orjson never does."""
    if text.startswith('{"flow":') and not text.startswith('{"flow": '):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # not ours after all: the careful reader says what it is
            pass
    return json.loads(text)


def _recorded(processed: int, replies: str | None) -> tuple[str, ...] | None:
    """None: never processed; () once retention (or a purge) removed the reply text."""
    if not processed:
        return None
    return load_replies(replies) if replies is not None else ()
