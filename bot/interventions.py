"""Turns no person caused: an operator ending a conversation (the console's reset), time
passing for one simulated sender (the console simulator's wait), and a tool choosing the language
a person is talked to in (``chat --language``, a conversation test's ``language:``).

All run through the one turn pipeline like any message (``Inbox.reset``, ``Inbox.elapse``): the
sender's lock, a fresh snapshot, a compare-and-set commit, so a message arriving at the same moment
is never lost or overwritten. Here is only what each does to the conversation, as the engine's
other handlers do for theirs: pure, nothing said, nothing sent.
"""

from __future__ import annotations

from bot.results import marks
from bot.types import ArmedTimeout, Conversation, Elapse, Outcome, Reset, RunOutcome, SetLanguage, TraceStep

RESET_RULE = "reset by an operator"


def intervene(event: Reset | Elapse | SetLanguage, outcome: Outcome, where: str) -> Outcome:
    """Apply ``event`` to ``outcome.conversation`` (at ``where``: "flow:state" or "idle")."""
    conversation = outcome.conversation
    armed = conversation.timeout
    if isinstance(event, Reset):
        _reset(conversation, outcome, where)
    elif isinstance(event, SetLanguage):
        _set_language(conversation, event.language, outcome, where)
    else:
        _elapse(conversation, event.seconds, outcome, where)
    outcome.deadline = conversation.timeout.at if conversation.timeout is not None else None
    outcome.deadline_changed = conversation.timeout != armed
    return outcome


def _reset(conversation: Conversation, outcome: Outcome, where: str) -> None:
    """End it as an expiry does: out of any flow, its timer disarmed, nothing said. Its
    ``updated_at`` (the person's last message) stays what it was: the operator wrote nothing."""
    outcome.conversation_changed = conversation.active or conversation.timeout is not None
    marks.end(outcome, RunOutcome.RESET)  # results count the runs it was in as reset (bot/results/)
    outcome.trace.append(TraceStep(RESET_RULE, where, "idle"))


def _elapse(conversation: Conversation, seconds: float, outcome: Outcome, where: str) -> None:
    """Move the conversation's clocks ``seconds`` back: its last message and its armed timer. Then
    the timer is due that much sooner and ``expires_after`` ends it that much sooner, exactly as if
    the time had passed for this sender alone; the store's deadline index follows."""
    conversation.updated_at -= seconds
    if conversation.timeout is not None:
        conversation.timeout = ArmedTimeout(conversation.timeout.at - seconds, conversation.timeout.state)
    outcome.trace.append(TraceStep(f"simulated wait of {seconds:g}s", where, where))


def _set_language(conversation: Conversation, language: str, outcome: Outcome, where: str) -> None:
    """Talk to the person in ``language`` from now on, as a reply's ``language:`` would: where they
    are, their timers and their last message stay as they were; the next text they get is in it."""
    outcome.conversation_changed = conversation.language != language
    conversation.language = language
    outcome.trace.append(TraceStep(f"language set to {language}", where, where))
