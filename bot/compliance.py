"""Where STOP, START and HELP are handled: before any flow, whatever state the sender is in.

Carriers and Twilio require these words to work everywhere, and an opted-out number to get
nothing. The engine asks :func:`compliance_answer` first on every message; only when it answers
None does the message reach the flows.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.flows.schema import ProgramTexts
from bot.text.normalise import normalise
from bot.text.wordsets import COMPLIANCE_WORDS, HELP_WORDS, OPT_IN_WHILE_OPTED_OUT, OPT_IN_WORDS, OPT_OUT_WORDS
from bot.types import ConsentMethod, Inbound


@dataclass(frozen=True, slots=True)
class ComplianceAnswer:
    rule: str  # for the trace: "compliance STOP", "Twilio OptOutType START", …
    reply: str | None  # what to text back (None: nothing)
    opt_out: bool | None  # True: opt out; False: opt back in; None: unchanged
    ends_conversation: bool = False
    answers_opted_out: bool = False  # HELP from an opted-out number: answered all the same
    how: ConsentMethod | None = None  # how the consent changed (when ``opt_out`` is not None)
    detail: str = ""  # what triggered it, for the consent ledger


def answered_at_once(inbound: Inbound) -> bool:
    """A message the compliance rules answer whatever else the sender's conversation is doing
    (a slow lookup, a timeout firing): it must not queue behind that turn. YES is left out: it
    re-subscribes only someone opted out (who has no turn in flight) and is otherwise a flow's answer."""
    return bool(inbound.opt_out_type) or normalise(inbound.body) in COMPLIANCE_WORDS


def compliance_answer(inbound: Inbound, word: str, opted_out: bool,
                      program: ProgramTexts) -> ComplianceAnswer | None:
    """The answer to a compliance word (``word`` is the normalised message), to Twilio's own
    Advanced Opt-Out handling, or to anything from an opted-out number; None lets flows answer."""
    if inbound.opt_out_type:
        return _twilio_handled(inbound.opt_out_type.upper())
    if word in OPT_OUT_WORDS:
        if opted_out:
            return ComplianceAnswer(f"compliance {word.upper()} (already opted out: silent)", None, None,
                                    ends_conversation=True)
        return ComplianceAnswer(f"compliance {word.upper()}", program.opt_out, True, ends_conversation=True,
                                how=ConsentMethod.KEYWORD, detail=inbound.body)
    if word in OPT_IN_WORDS or (opted_out and word in OPT_IN_WHILE_OPTED_OUT):
        return ComplianceAnswer(f"compliance {word.upper()}", program.opt_in, False,
                                how=ConsentMethod.KEYWORD, detail=inbound.body)
    if word in HELP_WORDS and (not opted_out or program.help_when_opted_out):
        return ComplianceAnswer(f"compliance {word.upper()}", program.help, None,
                                answers_opted_out=opted_out)
    if opted_out:
        return ComplianceAnswer("opted out: silent", None, None)
    return None


def _twilio_handled(kind: str) -> ComplianceAnswer:
    """Twilio Advanced Opt-Out already answered: record what it did, say nothing."""
    rule = f"Twilio OptOutType {kind}"
    if kind == "STOP":
        return ComplianceAnswer(rule, None, True, ends_conversation=True,
                                how=ConsentMethod.TWILIO_OPT_OUT_TYPE, detail=kind)
    if kind == "START":
        return ComplianceAnswer(rule, None, False, how=ConsentMethod.TWILIO_OPT_OUT_TYPE, detail=kind)
    return ComplianceAnswer(rule, None, None)
