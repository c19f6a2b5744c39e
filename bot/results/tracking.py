"""What a turn changes of flow runs, worked out between the engine's step and the commit.

The engine notes where runs begin and end (``Outcome.run_marks``) and the trace says which states
were entered; from those and the runs the conversation was in before the turn
(``Conversation.runs``), :func:`track` makes the turn's ``RunUpdate``s — written by the store in
the turn's own transaction — and the conversation's runs after it. Pure: no store, no clock.
It runs on every message's path, so the common turn (no run begins or ends) takes a short way.

A conversation that was in a flow before results were kept has no runs: it is not counted until
it starts a flow again. A run that leaves the conversation without a mark (an operator's reset,
anything else that ends a conversation) ends ``reset``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from bot.flows.compile import CompiledFlow
from bot.types import Conversation, OpenRun, Outcome, RunMark, RunOutcome, RunUpdate

#: What the engine itself puts in every conversation's variables (Studio's ``trigger`` and
#: ``flow.channel``, bot/engine.py ``_studio_context``): context, not answers, and it holds the
#: person's full number.
CONTEXT = "trigger"
Flows = Mapping[str, CompiledFlow]


class Opening(NamedTuple):
    """The runs a conversation was in before its turn, and its state and variables then (read
    before the engine changes the conversation in place)."""

    runs: tuple[OpenRun, ...]
    state: str | None
    vars: dict[str, Any]


def opening(conversation: Conversation) -> Opening:
    """The runs ``conversation`` is in, as far as its bookkeeping matches the flows it is in (the
    innermost ones: an outer flow entered before results were kept is not followed)."""
    runs = conversation.runs
    return Opening(tuple(runs) if runs and _aligned(runs, conversation) else (), conversation.state, conversation.vars)


def track(before: Opening, outcome: Outcome, turn_id: str, at: float, flows: Flows) -> tuple[RunUpdate, ...]:
    """The turn's run updates (``turn_id``: its MessageSid, which names the runs it begins), and
    ``outcome.conversation.runs`` set to the runs it is in after the turn."""
    if not outcome.conversation_changed or not (before.runs or outcome.run_marks):
        return ()
    if not outcome.run_marks and _aligned(before.runs, outcome.conversation):
        return _carried_on(before.runs, outcome, flows)
    return _worked_out(before, outcome, turn_id, at, flows)


class _OfAFlow(Protocol):
    @property
    def flow(self) -> str: ...


def _aligned(runs: Sequence[_OfAFlow], conversation: Conversation) -> bool:
    """Whether ``runs`` are the innermost of the flows the conversation is in, in order."""
    if not conversation.active or runs[-1].flow != conversation.flow:
        return False
    outer, returns = len(runs) - 1, conversation.returns
    return outer == 0 or (outer <= len(returns) and all(
        run.flow == point.flow for run, point in zip(runs[:-1], returns[len(returns) - outer:], strict=True)))


def _carried_on(runs: tuple[OpenRun, ...], outcome: Outcome, flows: Flows) -> tuple[RunUpdate, ...]:
    """The common turn: no run began or ended; the innermost may have reached new states."""
    conversation, current = outcome.conversation, runs[-1]
    compiled = flows.get(current.flow)
    new = _reached(current.flow, current.reached, outcome.trace, 0, None, compiled)
    if new:
        conversation.runs = [*runs[:-1], OpenRun(current.id, current.flow, current.started_at, current.reached + new)]
    expires_at = conversation.updated_at + (compiled.expires_after if compiled is not None else 0.0)
    saved = saved_variables(conversation.vars)
    if len(runs) == 1:
        return (RunUpdate(current.id, current.flow, current.started_at, conversation.state, saved, expires_at,
                          reached=new),)
    states = _states(conversation, len(runs))
    return tuple(RunUpdate(run.id, run.flow, run.started_at, state, saved, expires_at,
                           reached=new if run is current else ()) for run, state in zip(runs, states, strict=True))


def _reached(flow: str, known: tuple[str, ...], trace: Sequence[Any], start: int, end: int | None = None,
             compiled: CompiledFlow | None = None) -> tuple[str, ...]:
    """States of ``flow`` entered in ``trace[start:end]`` that are not in ``known`` (once each)."""
    if compiled is None:
        return ()
    prefix = flow + ":"
    new: tuple[str, ...] = ()
    for step in trace[start:end]:
        after = step.after
        if after.startswith(prefix):
            state = after[len(prefix):]
            if state not in known and state not in new and state in compiled.states:
                new += (state,)
    return new


class _Run:
    """One run while a turn with marks is worked out."""

    __slots__ = ("id", "flow", "started_at", "reached", "new", "began", "ended")

    def __init__(self, run_id: str, flow: str, started_at: float, reached: tuple[str, ...], began: bool) -> None:
        self.id, self.flow, self.started_at, self.reached, self.began = run_id, flow, started_at, reached, began
        self.new: tuple[str, ...] = ()
        self.ended: RunUpdate | None = None


def _worked_out(before: Opening, outcome: Outcome, turn_id: str, at: float, flows: Flows) -> tuple[RunUpdate, ...]:
    """A turn where runs began or ended: the marks and the trace steps, in their order."""
    conversation, trace, marks = outcome.conversation, outcome.trace, outcome.run_marks
    stack = [_Run(run.id, run.flow, run.started_at, run.reached, False) for run in before.runs]
    ended: list[_Run] = []
    done = 0
    for index in range(len(marks) + 1):  # the steps before each mark, then the mark
        upto = marks[index].step if index < len(marks) else None
        if stack:
            current = stack[-1]
            new = _reached(current.flow, current.reached + current.new, trace, done, upto, flows.get(current.flow))
            current.new += new
        done = upto if upto is not None else len(trace)
        if index < len(marks):
            _apply(marks[index], stack, ended, f"{turn_id}/{len(ended) + len(stack)}", at)
    keep = len(stack)
    while keep and not _aligned(stack[:keep], conversation):
        keep -= 1
    for run in reversed(stack[keep:]):  # left the conversation without a mark: reset
        run.ended = RunUpdate(run.id, run.flow, run.started_at, before.state, saved_variables(before.vars), at,
                              outcome=RunOutcome.RESET, ended_at=at)
        ended.append(run)
    stack = stack[:keep]
    conversation.runs = [OpenRun(run.id, run.flow, run.started_at, run.reached + run.new) for run in stack]
    updates = []
    for run in ended:
        assert run.ended is not None
        run.ended.began, run.ended.reached = run.began, run.new
        updates.append(run.ended)
    if stack:
        compiled = flows.get(conversation.flow or "")
        expires_at = conversation.updated_at + (compiled.expires_after if compiled is not None else 0.0)
        saved = saved_variables(conversation.vars)
        updates += [RunUpdate(run.id, run.flow, run.started_at, state, saved, expires_at, run.began, run.new)
                    for run, state in zip(stack, _states(conversation, len(stack)), strict=True)]
    return tuple(updates)


def _apply(mark: RunMark, stack: list[_Run], ended: list[_Run], new_id: str, at: float) -> None:
    if mark.ended is None:
        stack.append(_Run(new_id, mark.flow, at, (), True))
        return
    for position in range(len(stack) - 1, -1, -1):  # the innermost run of that flow
        if stack[position].flow == mark.flow:
            run = stack.pop(position)
            ended_at = max(mark.at, run.started_at) if mark.at is not None else at
            run.ended = RunUpdate(run.id, run.flow, run.started_at, mark.state, saved_variables(mark.vars), ended_at,
                                  outcome=mark.ended, ended_at=ended_at)
            ended.append(run)
            return
    # a run begun before results were kept: not followed


def _states(conversation: Conversation, count: int) -> list[str | None]:
    """Where each of the innermost ``count`` flows the conversation is in stands, outermost first."""
    states: list[str | None] = [point.state for point in conversation.returns[len(conversation.returns) - count + 1:]]
    states.append(conversation.state)
    return states


def saved_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """What the flow saved, without the context the engine adds to every conversation."""
    saved = dict(variables)
    saved.pop(CONTEXT, None)
    studio = saved.get("flow")
    if isinstance(studio, dict):
        kept = {name: value for name, value in studio.items() if name != "channel" and (name != "variables" or value)}
        if kept:
            saved["flow"] = kept
        else:
            del saved["flow"]
    return saved
