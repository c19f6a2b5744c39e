"""Typo-tolerant triggers, the engine's side: "Did you mean STATUS? Reply YES" where the fallback
would answer, and that flow started when the next message says yes.

Which trigger a message is a slip of is :class:`bot.text.trigger_typos.TriggerTypos`, built with
the flows. The offer is kept in the conversation (``Conversation.suggested``), since the answer
comes as a webhook of its own, maybe to another worker. It holds for the very next message that
reaches the flows, and no longer than the offered flow's ``expires_after``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.flows.compile import CompiledFlow
from bot.flows.loader import FlowSet
from bot.text import templates
from bot.text.matching import answer_matcher
from bot.types import Conversation

_YES = answer_matcher("yes")


@dataclass(frozen=True, slots=True)
class Offer:
    trigger: str  # normalised, as the flows compile it
    text: str  # the program's did_you_mean text, naming it


class TriggerOffers:
    def __init__(self, flows: FlowSet, *, enabled: bool = True) -> None:
        """Suggest ``flows``' triggers; ``enabled`` is the SUGGEST_TRIGGERS setting. A yes to an
        offer made before suggestions were turned off still starts its flow: it was asked."""
        self.flows = flows
        self.enabled = enabled
        self._text = templates.parse(flows.program.did_you_mean)

    def taken_up(self, conversation: Conversation, normalised: str, text: str,
                 now: float) -> tuple[str, CompiledFlow] | None:
        """The trigger and flow that this message, a yes to the pending offer, starts. The offer is
        withdrawn whatever the message says: anything but a yes is routed as if none was made."""
        offered, conversation.suggested = conversation.suggested, None
        if offered is None or _YES(normalised, text) is None:
            return None
        flow = self.flows.by_trigger.get(offered)
        if flow is None or now - conversation.updated_at > flow.expires_after:
            return None  # the flow is gone since, or the offer is as old as a forgotten conversation
        return offered, flow

    def offer(self, conversation: Conversation, normalised: str,
              wording: Callable[[str], str] | None = None) -> Offer | None:
        """The offer for a message only the fallback would answer, kept in the conversation; None
        when suggestions are off or no single trigger is a slip away (then the fallback answers).
        ``wording(trigger)``: the did-you-mean text to use (in the trigger's language: ESTADO is
        offered in Spanish), when not the program's own."""
        trigger = self.flows.trigger_typos.suggest(normalised) if self.enabled else None
        if trigger is None:
            return None
        conversation.suggested = trigger
        text = wording(trigger) if wording is not None else self.flows.program.did_you_mean
        template = self._text if text == self.flows.program.did_you_mean else templates.parse(text)
        return Offer(trigger, templates.render_text(template, {"trigger": trigger.upper()}, "the did-you-mean text"))
