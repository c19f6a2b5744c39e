"""A turn's snapshot named before its lock is taken, so a store may read both in one trip.

The pipeline (``bot/inbox.py``) takes the sender's lock, then reads the turn's snapshot under it:
two trips to a networked store, the second only once the first has answered. Before taking the
lock it calls :func:`read_ahead` with the sender and MessageSid it will read. A store that can
(Redis: ``RedisStore.lock``, ``redis_lock.py``) sends the snapshot's reads in the same write as
the lock's ``SET NX``; Redis runs them in order, so they are read under the lock, and the turn's
first ``snapshot`` is answered from them. Any other store ignores it.

A context variable rather than an argument, so the ``Locks`` interface and the stores that read
nothing ahead stay as they are. :func:`take` clears it: it serves one lock, the next one in the
same task (the replies owed after a commit, say) reads as it always did.
"""

from __future__ import annotations

from contextvars import ContextVar

_AHEAD: ContextVar[tuple[str, str] | None] = ContextVar("textflow_read_ahead", default=None)


def read_ahead(sender: str, message_sid: str) -> None:
    """The next lock this task takes is for a turn that reads ``sender``'s snapshot for ``message_sid``."""
    _AHEAD.set((sender, message_sid))


def take() -> tuple[str, str] | None:
    """What the next lock may read ahead (sender, MessageSid), once; None when nothing was named."""
    ahead = _AHEAD.get()
    if ahead is not None:
        _AHEAD.set(None)
    return ahead
