"""Results in dicts, for tests and the simulator: the same contract as the real stores
(``Results`` in ``bot/store/base.py``), kept the way they keep it."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import date

from bot.store.base import FlowResults, RunKey, RunRow, epoch_day, period_days
from bot.types import RunOutcome, RunUpdate


class MemoryResults:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], Counter[str]] = {}  # (flow, day) -> "started" / "state:…" / outcome
        self.rows: dict[str, RunRow] = {}

    def apply(self, sender: str, updates: Iterable[RunUpdate]) -> None:
        """A committed turn's run updates: a run closed meanwhile (by the sweep) is left alone."""
        for update in updates:
            row = self.rows.get(update.id)
            if not update.began and (row is None or row.outcome is not None):
                continue
            counts = self.counts.setdefault((update.flow, epoch_day(update.started_at)), Counter())
            if update.began:
                counts["started"] += 1
            counts.update(f"state:{state}" for state in update.reached)
            if update.outcome is not None:
                counts[update.outcome] += 1
            self.rows[update.id] = RunRow(update.id, update.flow, sender, update.started_at, update.state,
                                          copy.deepcopy(dict(update.vars)), update.expires_at, update.outcome,
                                          update.ended_at)

    def close_lapsed(self, now: float) -> None:
        for row in list(self.rows.values()):
            if row.outcome is None and row.expires_at < now:
                self._close(row, RunOutcome.EXPIRED, row.expires_at)

    def forget(self, sender: str, now: float) -> None:
        """A purge: the number's open runs end reset (the counts stay true); its records go."""
        for row in [row for row in self.rows.values() if row.sender == sender]:
            if row.outcome is None:
                self._close(row, RunOutcome.RESET, now)
            del self.rows[row.id]

    def drop_ended_before(self, cutoff: float) -> None:
        self.rows = {key: row for key, row in self.rows.items() if row.ended_at is None or row.ended_at >= cutoff}

    def _close(self, row: RunRow, outcome: RunOutcome, at: float) -> None:
        self.counts.setdefault((row.flow, epoch_day(row.started_at)), Counter())[outcome] += 1
        self.rows[row.id] = dataclasses.replace(row, outcome=outcome, ended_at=at)

    async def flow_results(self, flow: str, since: date | None = None, until: date | None = None,
                           now: float | None = None) -> FlowResults:
        first, last = period_days(since, until)
        total: Counter[str] = Counter()
        for (name, day), counts in self.counts.items():
            if name == flow and first <= day <= last:
                total.update(counts)
        now = time.time() if now is None else now
        total[RunOutcome.EXPIRED] += sum(1 for row in self.rows.values() if row.flow == flow and row.outcome is None
                                         and row.expires_at < now and first <= epoch_day(row.started_at) <= last)
        return FlowResults.of(flow, total)

    async def runs(self, flow: str, since: date | None = None, until: date | None = None, *,
                   after: RunKey | None = None, limit: int | None = None,
                   now: float | None = None) -> AsyncIterator[RunRow]:
        first, last = period_days(since, until)
        now = time.time() if now is None else now
        chosen = sorted((row for row in self.rows.values()
                         if row.flow == flow and first <= epoch_day(row.started_at) <= last
                         and (after is None or (row.started_at, row.id) > after)),
                        key=lambda row: (row.started_at, row.id))
        for row in chosen[:limit]:
            yield copy.deepcopy(row.as_of(now))

