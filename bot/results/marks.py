"""How the engine notes that a run of a flow began or ended (``Outcome.run_marks``).

The engine only says what happened, and where in the trace; what results count is worked out
afterwards (``bot/results/tracking.py``), so the engine stays about conversations.
"""

from __future__ import annotations

from bot.types import Outcome, RunMark, RunOutcome


def begin(outcome: Outcome, flow: str) -> None:
    """A run of ``flow`` begins here (a trigger, a broadcast, an ``enter``)."""
    outcome.run_marks.append(RunMark(flow, len(outcome.trace)))


def finish(outcome: Outcome, flow: str, state: str | None) -> None:
    """The run of ``flow`` that the conversation entered with ``enter`` ended at ``state``; it carries
    on in the flow that entered it."""
    conversation = outcome.conversation
    outcome.run_marks.append(RunMark(flow, len(outcome.trace), RunOutcome.FINISHED, state, conversation.vars))


def end(outcome: Outcome, why: RunOutcome, at: float | None = None) -> None:
    """End the conversation, noting that every run it was in (the flow it is in and those that
    entered it, innermost first) ended ``why``, at ``at`` when that was not now. A flow that
    finished with the flow that entered it gone leaves that one reset."""
    conversation = outcome.conversation
    if conversation.active:
        step, variables = len(outcome.trace), conversation.vars
        outcome.run_marks.append(RunMark(conversation.flow or "", step, why, conversation.state, variables, at))
        outer = RunOutcome.RESET if why is RunOutcome.FINISHED else why
        outcome.run_marks.extend(RunMark(point.flow, step, outer, point.state, variables, at)
                                 for point in reversed(conversation.returns))
    conversation.end()
