"""A broadcast's CPU priority: bulk work yields the processor to the server's replies on the same machine.

A broadcast and the server usually share one machine. Both want the CPU in short bursts; when they
want it at once, the kernel decides who waits. A person who texted waits for the reply; a broadcast
recipient does not notice a few milliseconds. So a broadcast lowers its own priority (``nice``) as it
starts: the kernel then runs the server first whenever both are ready (its weight is about a tenth of
the server's at nice 10), while the broadcast still has all the CPU the server leaves idle. Courier
keeps interactive and bulk messages in separate lanes for the same reason.

On Linux a nice value belongs to a thread, and threads inherit the value of the thread that starts
them; ``lower_priority`` runs first thing in the command, before the store, the HTTP client or the
event loop start any thread, so every thread of the broadcast runs at that value. It never raises a
priority: a broadcast started under ``nice -n 15`` stays at 15.
"""

from __future__ import annotations

import os

# A tenth of the server's CPU weight when both want the CPU. Not lower: on SQLite the broadcast holds
# the store's write lock for its batch of records, and a broadcast slowed too far keeps the server's
# turns waiting for that lock (measured with bench/broadcast_replies.py, the broadcast on the server's
# core: the server's own turn p99 went from about 1 ms to 10-12 ms at nice 19, and to 40-1,000 ms under
# SCHED_IDLE), and a server busy to 100% would leave it almost nothing to send with.
DEFAULT_NICE = 10
MAX_NICE = 19


_yielding = False  # set by lower_priority: the broadcast's sends then let a waiting server run first


def yield_cpu() -> None:
    """Before each send's two big pieces of work (the flow's start, the API call), let a process
    waiting for this core run now (``sched_yield``: about a microsecond when nobody waits). Nice
    alone weighs the shares when both keep the CPU busy, but a server waking for a webhook still
    waited for the rest of the broadcast's time slice; this ends the slice at the next send."""
    if _yielding:
        os.sched_yield()


def parse_nice(raw: str) -> int:
    """``BROADCAST_NICE`` / ``--nice``: 0 (the priority it was started with) to 19 (the lowest)."""
    text = raw.strip()
    if not text.isdigit() or int(text) > MAX_NICE:
        raise ValueError(f"must be a whole number from 0 (leave the priority as it is) to {MAX_NICE} "
                         f"(the lowest) (got {raw!r})")
    return int(text)


def lower_priority(nice: int) -> str:
    """Lower this process's CPU priority to ``nice`` (never raise it); what it runs at now, for its output."""
    global _yielding
    current = os.getpriority(os.PRIO_PROCESS, 0)
    _yielding = nice > 0 and hasattr(os, "sched_yield")
    if nice <= 0:
        return f"CPU priority: nice {current}, as started (BROADCAST_NICE=0)"
    if current < nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as error:  # a sandbox that forbids it: send anyway, and say so
            return f"CPU priority: nice {current}; could not lower it to {nice} ({error.strerror})"
        current = nice
    return f"CPU priority: nice {current}, below the server's, so replies to texts go first"
