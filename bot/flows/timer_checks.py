"""Timers that could text someone forever: a cycle of ``timeout`` branches no one answers.

A waiting state's timeout that leads, through states that move on by themselves, back to a
waiting state on the same cycle re-arms itself each time round: nobody answers, and the bot keeps
sending. ``remind: {times: N}`` is the bounded way to nudge. ``expires_after`` ends every timer
(it counts from the person's last message), so it bounds such a cycle: that is a warning, with
the number of messages it allows. A cycle through a ``branch`` may be bounded by a counter the
flow keeps (``set`` + ``greater_than``); lint cannot decide it, so it says nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from bot.flows.problems import Finding
from bot.flows.schema import END, Flow, State


def timer_cycle_findings(flow: Flow) -> Iterator[Finding]:
    """One finding per waiting state whose timeout can come back round to it unanswered."""
    for name, state in flow.states.items():
        if state.timeout is None:
            continue
        cycle = _cycle_back(flow, name)
        if cycle is None:
            continue
        route = " → ".join([name, *cycle])
        seconds = _cycle_seconds(flow, [name, *cycle[:-1]])
        path = ("states", name, "timeout", "go")
        if "expires_after" in flow.model_fields_set:
            most = math.floor(flow.expires_after / seconds) if seconds > 0 else "unbounded"
            yield Finding(path, f"the timeout of {name!r} comes back round to it ({route}) with no one answering: "
                                f"it repeats until expires_after ends it (up to {most} times)",
                          severity="warning",
                          hint="to nudge a fixed number of times, use remind: {after: 1h, say: ..., times: 1} "
                               "in the waiting state and let the timeout go elsewhere")
        else:
            yield Finding(path, f"the timeout of {name!r} comes back round to it ({route}) with no one answering, "
                                "and nothing stops it: the bot would text this person again and again",
                          hint="use remind: {after: 1h, say: ..., times: 1} in the waiting state for a bounded "
                               "nudge, let the timeout go to a state that ends, or set expires_after on the flow")


def _cycle_back(flow: Flow, start: str) -> list[str] | None:
    """The states from ``start``'s timeout back to ``start`` through timeouts and states that move
    on by themselves (no branch), or None when there is no such way back."""
    timeout = flow.states[start].timeout
    assert timeout is not None
    seen: set[str] = set()
    pending: list[tuple[str, list[str]]] = [(timeout.go, [])]
    while pending:
        name, route = pending.pop()
        route = [*route, name]
        if name == start:
            return route
        if name in seen or name == END or name not in flow.states:
            continue
        seen.add(name)
        pending.extend((target, route) for target in _unanswered_moves(flow.states[name]))
    return None


def _unanswered_moves(state: State) -> Iterator[str]:
    """Where a state can lead with nobody answering. A branch stops the walk (undecidable). A
    failed lookup moves on before the state speaks, waiting state or not."""
    if state.fetch is not None and state.fetch.on_error is not None:
        yield state.fetch.on_error
    if state.branch is not None or state.enter is not None:
        return
    if state.waits:
        if state.timeout is not None:
            yield state.timeout.go
        return
    if state.go is not None:
        yield state.go
    for path in state.split or ():
        yield path.go


def _cycle_seconds(flow: Flow, names: list[str]) -> float:
    """How long one round takes: the timeouts (and reminders) of the waiting states on it."""
    total = 0.0
    for name in names:
        state = flow.states.get(name)
        if state is not None and state.timeout is not None:
            total += state.timeout.after
            if state.remind is not None:
                total += state.remind.after * state.remind.times
    return total
