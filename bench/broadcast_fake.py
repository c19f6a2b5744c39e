"""The fake Twilio API (``bot/fake_twilio``) as a process of its own, for ``python -m bench broadcast``.

    python -m bench.broadcast_fake --port PORT --out counts.json [--delay SECONDS]

A process of its own so that its CPU is not the broadcast's, pinned where the bench says. It keeps
no message (``keep_messages=False``) and counts the creates as they come (``take_attempts``), per
number in one byte each, so a million messages cost it about 10 MB; on SIGTERM it writes what it
saw to ``--out`` and exits: creates accepted and refused, numbers texted once, more than once
(``duplicates``: the bench fails on any), and the wall-clock times of the first and last accepted.
``--delay`` holds each answer back, as the real API's 100-300 ms would.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

from bot.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilio

BENCH_PREFIX = "+1555"  # the bench's numbers: +1 555 and seven digits (bench.broadcast_bench.recipient_number)


class Counts:
    """Accepted creates per number (+1 555 xxx xxxx: one byte each, capped at 255)."""

    def __init__(self) -> None:
        self.per_number = bytearray(10_000_000)
        self.accepted = self.refused = self.other = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def add(self, fake: FakeTwilio) -> None:
        attempts = fake.take_attempts()
        now = time.time()
        for attempt in attempts:
            if not attempt.accepted:
                self.refused += 1
                continue
            self.accepted += 1
            to = attempt.to or ""
            if to.startswith(BENCH_PREFIX) and len(to) == 12 and to[5:].isdigit():
                index = int(to[5:])
                self.per_number[index] = min(255, self.per_number[index] + 1)
            else:
                self.other += 1
        if any(attempt.accepted for attempt in attempts):
            self.first_at = self.first_at or now
            self.last_at = now

    def summary(self) -> dict[str, object]:
        once = more = 0
        for count in self.per_number:
            if count == 1:
                once += 1
            elif count > 1:
                more += 1
        return {"accepted": self.accepted, "refused": self.refused, "numbers_once": once, "duplicates": more,
                "other_numbers": self.other, "first_at": self.first_at, "last_at": self.last_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each answer is held back")
    args = parser.parse_args()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    fake = FakeTwilio(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, port=args.port, keep_messages=False)
    counts = Counts()
    with fake:
        fake.delay = args.delay
        while not stopping.wait(0.1):
            counts.add(fake)
    counts.add(fake)
    args.out.write_text(json.dumps(counts.summary()))


if __name__ == "__main__":
    main()
