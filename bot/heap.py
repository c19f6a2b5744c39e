"""Keep Python's cyclic garbage collector off the objects a server holds for its whole life.

Once started, a serving process (and a broadcast, for its run) holds about 100,000 objects that
live until it stops: the compiled flows and their ``transitions`` machines, the consent phrase
tables, the libraries' own data. CPython's full collection walks every one of them, and it runs
often under load: each middle collection moves the objects of the turns in flight into the oldest
generation, and once enough have moved a full collection follows (every ~1,500 messages at 50 at
once, ~55 ms each: about 36 µs a message, a fifth of a turn's CPU; ``python -m bench``).
``gc.freeze()`` moves the long-lived objects into a generation the collector never walks; what
turns allocate is collected as before.

Frozen objects are still freed by reference counting when nothing refers to them; only a frozen
*cycle* would never be freed. Start-up's own garbage is collected before the freeze. A hot
reload leaves the previous flows (they hold cycles) as garbage once the turns that began on them
have ended, so a reload thaws everything and the freeze is made again later, after collecting them.
That later freeze also freezes what the webhooks in flight hold at that moment; what of it becomes
cyclic garbage waits for the next reload's thaw: one moment's worth, never growing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: After a hot reload, how long before freezing again: turns that began on the previous flows
#: (a slow lookup is given up after 15 s) have ended, so those flows are garbage to collect first.
REFREEZE_AFTER_SECONDS = 60.0


class LongLivedObjects:
    """One process's frozen objects: frozen once serving starts, thawed and frozen again around a reload."""

    def __init__(self, refreeze_after: float | None = None) -> None:
        self.refreeze_after = REFREEZE_AFTER_SECONDS if refreeze_after is None else refreeze_after
        self._pending: asyncio.TimerHandle | None = None

    def freeze(self) -> None:
        """Collect what is garbage now, then freeze everything that remains."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        log.debug("%d long-lived objects frozen in %.0f ms", gc.get_freeze_count(),
                  (time.perf_counter() - started) * 1000)

    def thaw(self) -> None:
        """What was frozen may become garbage now (the flows were swapped): thaw it, and freeze
        again ``refreeze_after`` seconds later (at once when no event loop runs)."""
        gc.unfreeze()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.freeze()
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(self.refreeze_after, self.freeze)

    def release(self) -> None:
        """At shutdown: no freeze is pending, and nothing stays frozen (an app in a test process)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        gc.unfreeze()
