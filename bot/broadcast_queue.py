"""Who a broadcast still has to text, and in which order, in a few bytes a recipient.

The order is the one quiet hours ask for (``bot/quiet_hours.py``): by when each recipient's sending
hours open, then by their place in the CSV. Recipients who share sending hours (a ``SendWindow``:
there are a handful in a CSV, however long) form a *cohort* that moves as one: they open together,
and when their hours close they all wait for the same next opening. So the queue is a heap of
cohorts (one entry per window, never one per row) over per-row arrays: each row's number as an
integer and the next row of its cohort. A million recipients take 12 MB here, where a heap of
tuples took hundreds.

``NumberSet`` finds duplicate rows in the same spirit: the numbers seen, as integers in one flat
open-addressing table (16 MB for a million, where a set of strings takes over 100).
"""

from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass

from bot.quiet_hours import SendWindow
from bot.types import WHATSAPP

_WHATSAPP_BIT = 1 << 53  # E.164 numbers have at most 15 digits: below 2**50
_DIGITS = _WHATSAPP_BIT - 1
_SPREAD = 0x9E3779B97F4A7C15  # Fibonacci hashing: consecutive numbers land far apart


def number_key(phone: str) -> int:
    """An E.164 number (``whatsapp:`` or not) as a positive integer; ``phone_of`` gives it back."""
    bare = phone.removeprefix(WHATSAPP)
    return int(bare[1:]) | (_WHATSAPP_BIT if len(bare) != len(phone) else 0)


def phone_of(key: int) -> str:
    return f"{WHATSAPP if key & _WHATSAPP_BIT else ''}+{key & _DIGITS}"


class NumberSet:
    """The numbers (``number_key``) seen so far, in an open-addressing table of 64-bit slots."""

    def __init__(self, expected: int = 0) -> None:
        size = 1024
        while size < 2 * expected:
            size *= 2
        self._slots = array("q", bytes(8 * size))  # 0: an empty slot (no number's key is 0)
        self._count = 0

    def add(self, key: int) -> bool:
        """Note ``key``; False when it was noted already."""
        slots = self._slots
        mask = len(slots) - 1
        index = ((key * _SPREAD) >> 17) & mask
        while (found := slots[index]) != 0:
            if found == key:
                return False
            index = (index + 1) & mask
        slots[index] = key
        self._count += 1
        if 2 * self._count > len(slots):
            self._grow()
        return True

    def _grow(self) -> None:
        kept = [key for key in self._slots if key]
        self._slots = array("q", bytes(16 * len(self._slots)))
        self._count = 0
        for key in kept:
            self.add(key)


@dataclass(frozen=True)
class Due:
    """The next recipient: the row at ``position``, whose hours (``window``) open at ``opens``."""

    opens: float
    position: int
    cohort: int  # the index of its window in the queue


class SendQueue:
    """The rows of a CSV still to text, by when their hours open, then by their place in the CSV.

    Filled in the CSV's order by ``add`` (a row to text) and ``skip`` (a row settled without
    texting); then ``pop`` gives the next ``Due``, which goes back with ``put_back`` (not now:
    its hours open later, or closed meanwhile, and the rest of its cohort waits with it) or is
    taken with ``take`` (sent or settled: its cohort goes on with its next row)."""

    def __init__(self) -> None:
        self._keys = array("q")  # per row: its number (number_key), 0 for a row settled at once
        self._next = array("i")  # per row: the next row in its cohort, -1 for none
        self._cohorts: dict[SendWindow | None, int] = {}
        self._windows: list[SendWindow | None] = []
        self._tails: list[int] = []  # per cohort: its last row so far
        self._heap: list[tuple[float, int, int]] = []  # (opens, position, cohort): one entry per cohort
        self._waiting = 0

    def __len__(self) -> int:
        """How many rows wait to be texted (``pop`` then ``put_back`` leaves them waiting)."""
        return self._waiting

    def skip(self) -> None:
        self._keys.append(0)
        self._next.append(-1)

    def add(self, phone: str, window: SendWindow | None, opens: float) -> None:
        position = len(self._keys)
        self._keys.append(number_key(phone))
        self._next.append(-1)
        cohort = self._cohorts.get(window)
        if cohort is None:
            cohort = self._cohorts[window] = len(self._windows)
            self._windows.append(window)
            self._tails.append(position)
            heapq.heappush(self._heap, (opens, position, cohort))
        else:
            self._next[self._tails[cohort]] = position
            self._tails[cohort] = position
        self._waiting += 1

    def phone(self, due: Due) -> str:
        return phone_of(self._keys[due.position])

    def window(self, due: Due) -> SendWindow | None:
        return self._windows[due.cohort]

    def pop(self) -> Due | None:
        if not self._heap:
            return None
        opens, position, cohort = heapq.heappop(self._heap)
        return Due(opens, position, cohort)

    def put_back(self, due: Due, opens: float | None = None) -> None:
        """``due`` is not texted now: it and the rest of its cohort wait for ``opens`` (by default,
        as they were)."""
        heapq.heappush(self._heap, (due.opens if opens is None else opens, due.position, due.cohort))

    def take(self, due: Due) -> None:
        """``due`` is handled (sent, or settled): its cohort goes on with its next row."""
        self._waiting -= 1
        following = self._next[due.position]
        if following != -1:
            heapq.heappush(self._heap, (due.opens, following, due.cohort))
