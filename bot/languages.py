"""Which language a person is talked to in, and the flows and program texts in it.

The person's language (``Conversation.language``) is theirs once known — set by the engine from a
trigger only one language has (ESTADO), a consent word in another language (AYUDA), a reply or
menu choice's ``language:``, a broadcast row — else the default of the number they texted
(``numbers:`` in program.yaml), else the flows' own. Everything the engine says or listens for goes
through here, so one rule decides it: the flow's variant in that language
(``CompiledFlow.in_language``), the program's texts in it (``FlowSet.texts_for``).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.flows.compile import CompiledFlow
from bot.flows.loader import FlowSet
from bot.flows.program import ProgramTexts
from bot.types import Conversation


class Languages:
    def __init__(self, flows: FlowSet) -> None:
        self.flows = flows

    def spoken(self, conversation: Conversation) -> str | None:
        """The person's language: theirs once known, else the default of the number they texted."""
        return conversation.language or self.flows.program.numbers.get(conversation.channel)

    def flow(self, name: str | None, conversation: Conversation) -> CompiledFlow | None:
        """The flow called ``name`` as loaded now, in the language the person is talked to in."""
        flow = self.flows.flows.get(name or "")
        return flow.in_language(self.spoken(conversation)) if flow is not None else None

    def texts(self, conversation: Conversation) -> ProgramTexts:
        """The program's texts in the language the person is talked to in."""
        return self.flows.texts_for(self.spoken(conversation))

    def offer_wording(self, conversation: Conversation) -> Callable[[str], str]:
        """"Did you mean …?" in the language of the trigger offered (ESTADO: Spanish), else the person's."""
        def wording(trigger: str) -> str:
            flow = self.flows.by_trigger.get(trigger)
            language = flow.trigger_languages.get(trigger) if flow is not None else None
            return self.flows.texts_for(language or self.spoken(conversation)).did_you_mean
        return wording
