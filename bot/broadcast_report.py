"""What a broadcast run did, counted as it goes and summed up at the end (``Report.summary``).

Everything here stays small however long the CSV: counts by reason, the first and last opening
of those who waited for their hours (not one entry per recipient), the first ``REFUSALS_KEPT``
refused rows. Only the numbers in doubt are listed one by one: an operator has to look each up,
and a run leaves at most as many as it had messages in flight when it stopped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bot.types import OutboundMessage, OutboundState

REFUSALS_KEPT = 100  # refused rows listed in the summary; the others are counted


@dataclass
class Waits:
    """Those texted later than the run began, because of their sending hours: how many, and the
    earliest and latest opening they waited for, each as (instant, as the recipient reads it)."""

    count: int = 0
    first: tuple[float, str] | None = None
    last: tuple[float, str] | None = None

    def add(self, when: float, text: str) -> None:
        self.count += 1
        if self.first is None or (when, text) < self.first:
            self.first = (when, text)
        if self.last is None or (when, text) > self.last:
            self.last = (when, text)

    def __len__(self) -> int:
        return self.count


@dataclass
class Report:
    requested: int = 0
    stopped: str = ""  # why the run stopped early (the Twilio API unreachable); run again to resume
    sent: int = 0
    sent_before: int = 0  # accepted by Twilio in an earlier run: not sent again
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    in_doubt: list[str] = field(default_factory=list)
    not_in_use: int = 0  # possible numbers no one has (555 numbers): sent, but worth a look
    waits: Waits = field(default_factory=Waits)  # texted when their hours opened, after the run began
    refused: list[str] = field(default_factory=list)  # rows refused, each with its line and why (the first ones)
    refused_more: int = 0  # refused rows beyond REFUSALS_KEPT

    def refuse(self, why: str) -> None:
        if len(self.refused) < REFUSALS_KEPT:
            self.refused.append(why)
        else:
            self.refused_more += 1

    def count_earlier(self, earlier: OutboundMessage) -> None:
        """Count a message an earlier run settled (sent, in doubt, skipped or failed): never sent again."""
        if earlier.state == OutboundState.ACCEPTED:
            self.sent_before += 1
        elif earlier.state == OutboundState.SENDING:
            self.in_doubt.append(earlier.to)
        elif earlier.state == OutboundState.SKIPPED:
            self.skipped[earlier.reason] += 1
        else:
            self.failed[earlier.reason] += 1

    def count_sent(self, result: OutboundMessage) -> None:
        """Count what ``Outbox.send`` made of a message."""
        if result.state == OutboundState.ACCEPTED:
            self.sent += 1
        elif result.state == OutboundState.SKIPPED:
            self.skipped[result.reason] += 1
        else:
            self.failed[result.reason] += 1

    def summary(self) -> str:
        lines = [f"requested {self.requested}: sent {self.sent}"
                 + (f" (+{self.sent_before} sent by an earlier run)" if self.sent_before else "")
                 + f", skipped {sum(self.skipped.values())}, failed {sum(self.failed.values())}, "
                   f"in doubt {len(self.in_doubt)}"]
        lines += [f"  skipped, {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        lines += [f"  refused {reason}" for reason in self.refused]
        if self.refused_more:
            lines.append(f"  refused {self.refused_more} more row(s) for the same kind of reason (not listed)")
        lines += [f"  failed, {reason}: {count}" for reason, count in sorted(self.failed.items())]
        if self.waits.first is not None and self.waits.last is not None:
            (first, first_text), (last, last_text) = self.waits.first, self.waits.last
            until = first_text if first == last else f"{first_text} (the first) to {last_text} (the last)"
            lines.append(f"  waited for their sending hours (quiet hours): {self.waits.count}, until {until}")
        if self.not_in_use:
            lines.append(f"  warning: {self.not_in_use} number(s) could be numbers but are not in use "
                         "anywhere (such as 555 numbers); sent anyway")
        if self.stopped:
            lines.append(f"  STOPPED EARLY: {self.stopped}. Run the same command again to resume.")
        if self.in_doubt:
            lines.append("  in doubt (the run stopped after Twilio was asked and before its answer was "
                         "recorded; not re-sent, check the Twilio console): " + ", ".join(self.in_doubt))
        return "\n".join(lines)
