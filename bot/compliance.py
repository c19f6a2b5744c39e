"""Where STOP, START and HELP are handled: before any flow, whatever state the sender is in.

Carriers and Twilio require these words to work everywhere, and an opted-out number to get
nothing. The pipeline reads each message once (:func:`read_consent`: which lane it takes), and
the engine asks :func:`consent_answer` first on every message; only when it answers
None does the message reach the flows — except a revocation in the person's own words
(:func:`revocation_answer`), which only a flow rule naming those very words outranks.
The words, in every language, are :class:`bot.consent.rules.ConsentRules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.consent.rules import ConsentRules, KeywordHit, Revocation
from bot.flows.program import ProgramTexts
from bot.text.wordsets import KeywordKind
from bot.types import ConsentDecision, ConsentMethod, Inbound


@dataclass(frozen=True, slots=True)
class ComplianceAnswer:
    rule: str  # for the trace: "compliance STOP", "Twilio OptOutType START", …
    reply: str | None  # what to text back (None: nothing)
    consent: ConsentDecision | None  # None: consent unchanged
    ends_conversation: bool = False
    answers_opted_out: bool = False  # HELP from an opted-out number: answered all the same


@dataclass(frozen=True, slots=True)
class ConsentReading:
    """What the consent rules make of one message's text: read once per message, since both the
    pipeline (which lane the turn takes) and the engine (what to answer) need it."""

    inbound: Inbound
    keyword: KeywordHit | None
    revocation: Revocation | None  # read only when the message is no keyword

    @property
    def answered_at_once(self) -> bool:
        """A message the compliance rules answer whatever else the sender's conversation is doing
        (a slow lookup, a timeout firing): it must not queue behind that turn. YES is left out: it
        re-subscribes only someone opted out (who has no turn in flight) and is otherwise a flow's
        answer. A clear revocation in the person's own words goes first too: STOP, said otherwise."""
        if self.inbound.opt_out_type:
            return True
        if self.keyword is not None:
            return self.keyword.kind is not KeywordKind.OPT_IN_WHILE_OPTED_OUT
        return self.revocation is not None and self.revocation.clear


def read_consent(inbound: Inbound, rules: ConsentRules) -> ConsentReading:
    keyword = rules.keyword(inbound.body)
    return ConsentReading(inbound, keyword, rules.revocation(inbound.body) if keyword is None else None)


def consent_answer(reading: ConsentReading, opted_out: bool, program: ProgramTexts, rules: ConsentRules,
                   flow_names_the_words: Callable[[], bool]) -> tuple[ComplianceAnswer | None, str | None]:
    """What consent makes of a message before flows see it: a keyword's answer, else a clear
    revocation's (unless a flow rule written with those very words takes the message: only that
    outranks it), else nothing — with the stop hint for a message that might be a revocation."""
    inbound = reading.inbound
    answer = compliance_answer(inbound, reading.keyword, opted_out, program, rules)
    if answer is not None:
        return answer, None
    revocation = reading.revocation
    if revocation is None:
        return None, None
    if not revocation.clear:
        return None, program.texts_in(revocation.language, rules.default_texts).stop_hint
    return (None if flow_names_the_words() else revocation_answer(inbound, revocation, program, rules)), None


def compliance_answer(inbound: Inbound, found: KeywordHit | None, opted_out: bool, program: ProgramTexts,
                      rules: ConsentRules) -> ComplianceAnswer | None:
    """The answer to a compliance keyword (in any language, in that language), to Twilio's own
    Advanced Opt-Out handling, or to anything from an opted-out number; None lets flows answer."""
    if inbound.opt_out_type:
        return _twilio_handled(inbound.opt_out_type.upper())
    if found is None:
        return ComplianceAnswer("opted out: silent", None, None) if opted_out else None
    kind, rule = found.kind, f"compliance {found.word.upper()}"
    texts = program.texts_in(found.language, rules.default_texts)  # only for a keyword: most messages are not
    if kind is KeywordKind.OPT_OUT:
        if opted_out:
            return ComplianceAnswer(f"{rule} (already opted out: silent)", None, None, ends_conversation=True)
        return ComplianceAnswer(rule, texts.opt_out, ConsentDecision(True, ConsentMethod.KEYWORD, inbound.body),
                                ends_conversation=True)
    if kind is KeywordKind.OPT_IN or (opted_out and kind is KeywordKind.OPT_IN_WHILE_OPTED_OUT):
        return ComplianceAnswer(rule, texts.opt_in, ConsentDecision(False, ConsentMethod.KEYWORD, inbound.body))
    if kind is KeywordKind.HELP and (not opted_out or program.help_when_opted_out):
        return ComplianceAnswer(rule, texts.help, None, answers_opted_out=opted_out)
    if opted_out:
        return ComplianceAnswer("opted out: silent", None, None)
    return None


def revocation_answer(inbound: Inbound, revocation: Revocation, program: ProgramTexts,
                      rules: ConsentRules) -> ComplianceAnswer:
    """A clear revocation in the person's own words, treated exactly like STOP; the trace names
    the phrase that matched, never the texted words (the ledger keeps those, as evidence)."""
    texts = program.texts_in(revocation.language, rules.default_texts)
    return ComplianceAnswer(f"revocation in own words ({revocation.language}: {revocation.phrase})",
                            texts.opt_out, ConsentDecision(True, ConsentMethod.PHRASE, inbound.body),
                            ends_conversation=True)


def _twilio_handled(kind: str) -> ComplianceAnswer:
    """Twilio Advanced Opt-Out already answered: record what it did, say nothing."""
    rule = f"Twilio OptOutType {kind}"
    if kind == "STOP":
        return ComplianceAnswer(rule, None, ConsentDecision(True, ConsentMethod.TWILIO_OPT_OUT_TYPE, kind),
                                ends_conversation=True)
    if kind == "START":
        return ComplianceAnswer(rule, None, ConsentDecision(False, ConsentMethod.TWILIO_OPT_OUT_TYPE, kind))
    return ComplianceAnswer(rule, None, None)
