"""The conversation engine: a conversation and an event in, the next state and the replies out.

Pure with respect to HTTP and storage: :meth:`Engine.step` gets a conversation, the event that
starts the turn (a message, a start, a timeout) and the sender's opt-out status, and returns an
:class:`Outcome`. Messages are routed in this order (DESIGN §1): compliance words
(``bot/compliance.py``), then flow triggers, then the current state's rules, then the fallback.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from liquid import BoundTemplate

from bot.actions import Fetcher, FetchFailed
from bot.compliance import ConsentReading, consent_answer, read_consent
from bot.flows.compile import (
    ENTER_EVENT,
    FETCH_FAILED_EVENT,
    NEXT_EVENT,
    OTHERWISE_EVENT,
    REMIND_EVENT,
    TIMEOUT_EVENT,
    TOO_MANY_EVENT,
    CompiledFlow,
    CompiledState,
)
from bot.flows.loader import FlowSet
from bot.flows.program import DEFAULT_LANGUAGE
from bot.flows.schema import END
from bot.interventions import intervene
from bot.languages import Languages
from bot.privacy import mask
from bot.results import marks
from bot.state_actions import NOTHING_SAID, Said, StateActions
from bot.text import templates
from bot.text.normalise import normalise
from bot.trigger_offers import TriggerOffers
from bot.types import (
    ArmedTimeout,
    Conversation,
    Elapse,
    Event,
    Inbound,
    Message,
    Outcome,
    Reset,
    ReturnPoint,
    RunOutcome,
    SetLanguage,
    Skip,
    Start,
    TimeoutDue,
    TraceStep,
)
from bot.variables import store_at

log = logging.getLogger(__name__)

MAX_STEPS_PER_TURN = 25  # states entered in one turn; more means a loop of states that never wait
MAX_REPLIES_PER_TURN = 10


def _studio_context(inbound: Inbound) -> dict[str, Any]:
    """What Studio's templates read about how the flow started (``trigger.message.Body``,
    ``flow.channel.address``), kept with the conversation."""
    return {"trigger": {"message": {"Body": inbound.body, "From": inbound.sender, "To": inbound.to}},
            "flow": {"channel": {"address": inbound.to}, "variables": {}}}


class _Clock(enum.Enum):
    """What a turn does to the conversation's clocks (``updated_at`` and the waiting state's timeout)."""

    RESTART = "restart"  # it moved on or was answered: stamp it, arm the state's timeout afresh
    KEEP = "keep"  # a compliance word: stamp it, but the waiting state's timeout keeps running
    UNTOUCHED = "untouched"  # nothing happened (a stale timeout, a skipped start): leave both
    TIMER = "timer"  # the bot's own timer: arm the next one, but the person's clock (expiry) runs on


def where(conversation: Conversation) -> str:
    return f"{conversation.flow}:{conversation.state}" if conversation.active else "idle"


class Engine:
    def __init__(self, flows: FlowSet, fetcher: Fetcher, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time, suggest_triggers: bool = True) -> None:
        """Run conversations on ``flows``.

        ``env`` is what templates see as ``{{ env.NAME }}`` (default: nothing; the app passes the
        variables FLOW_ENV allows, ``templates.public_environment(settings.flow_env)``); ``clock`` is
        injectable so tests can expire conversations; ``suggest_triggers`` (SUGGEST_TRIGGERS) offers
        "Did you mean STATUS?" for a mistyped trigger instead of the fallback.
        """
        self.flows = flows
        self.languages = Languages(flows)  # which language each person is talked to in (bot/languages.py)
        self.clock = clock
        self.offers = TriggerOffers(flows, enabled=suggest_triggers)
        self.actions = StateActions(flows, fetcher, dict(env) if env is not None else templates.public_environment())

    @property
    def fetcher(self) -> Fetcher:
        return self.actions.fetcher

    @fetcher.setter
    def fetcher(self, fetcher: Fetcher) -> None:
        """The simulator answers some URLs from a table (conversation tests' ``fetch:``)."""
        self.actions.fetcher = fetcher

    @property
    def env(self) -> Mapping[str, str]:
        return self.actions.env

    async def step(self, conversation: Conversation, event: Event, opted_out: bool,
                   consent: ConsentReading | None = None) -> Outcome:
        """Move ``conversation`` on ``event``: the one entry for every kind of turn. ``consent`` is
        what the pipeline already read of a message (:func:`read_consent`); read here otherwise."""
        outcome = Outcome(conversation)
        if isinstance(event, Reset | Elapse | SetLanguage):  # not a person's turn: bot/interventions.py
            return intervene(event, outcome, where(conversation))
        armed_before = conversation.timeout
        if isinstance(event, Message):
            reading = consent if consent is not None and consent.inbound is event.inbound else \
                read_consent(event.inbound, self.flows.consent)
            clock = await self._on_message(reading, outcome, opted_out)
        elif isinstance(event, Start):
            clock = await self._on_start(event, outcome, opted_out)
        else:
            clock = await self._on_timeout(event, outcome)
        # The end of every turn: stamp it, arm the timeout of the state it now waits in, cap replies.
        if clock in (_Clock.RESTART, _Clock.KEEP):
            conversation.updated_at = self.clock()
        if clock is _Clock.UNTOUCHED:
            outcome.deadline = armed_before.at if armed_before is not None else None
        else:
            self._arm_timeout(outcome, armed_before, clock)
        if isinstance(event, TimeoutDue):
            outcome.deadline_changed = True  # the index pointed here: rewrite it even when stale
        del outcome.replies[MAX_REPLIES_PER_TURN:]
        return outcome

    async def _on_message(self, reading: ConsentReading, outcome: Outcome, opted_out: bool) -> _Clock:
        """Answer a text; compliance words keep the waiting state's clock running."""
        inbound, conversation = reading.inbound, outcome.conversation
        if inbound.to:
            conversation.channel = inbound.to
        word = normalise(inbound.body)
        answer, hint = consent_answer(reading, opted_out, self.flows.program, self.flows.consent,
                                      lambda: self._names_the_words(conversation, word, inbound.body))
        if answer is None:
            conversation.reminders = 0  # they wrote: reminders count again from now
            await self._route(word, Said(inbound.body, inbound.media), outcome, inbound, hint)
            return _Clock.RESTART
        before = where(conversation)
        spoken = reading.keyword.language if reading.keyword is not None else DEFAULT_LANGUAGE
        switched = spoken != DEFAULT_LANGUAGE and spoken != conversation.language
        if switched:
            conversation.language = spoken  # AYUDA, ALTO: they speak Spanish
        if answer.ends_conversation:
            self._end(outcome, RunOutcome.OPTED_OUT)
        outcome.conversation_changed = answer.ends_conversation or switched
        outcome.answers_opted_out = answer.answers_opted_out
        outcome.consent = answer.consent
        self._step(outcome, answer.rule, before)
        if answer.reply is not None:
            outcome.replies.append(answer.reply)
        return _Clock.KEEP

    async def _on_start(self, start: Start, outcome: Outcome, opted_out: bool) -> _Clock:
        """Start a flow for someone who did not text first: its opening messages are the replies,
        sent through the REST API. Opted-out people are never started."""
        conversation = outcome.conversation
        before = where(conversation)
        if opted_out:
            outcome.skipped = Skip.OPTED_OUT
            self._step(outcome, f"start of {start.flow} skipped: opted out", before)
            return _Clock.UNTOUCHED
        # Its messages go out from the default sender, not from a number they texted some time ago.
        conversation.channel = start.inbound.to
        flow = self.flows.flows[start.flow]
        language = str(start.variables.get("language") or "")  # a broadcast's CSV may say (a language column)
        if language in flow.variants or language == flow.language:
            conversation.language = language
        flow = flow.in_language(self.languages.spoken(conversation))
        await self._begin(flow, start.inbound, start.variables, f"started by broadcast of {flow.name}", outcome)
        if not outcome.replies:
            outcome.skipped = Skip.SILENT
        return _Clock.RESTART

    async def _on_timeout(self, due: TimeoutDue, outcome: Outcome) -> _Clock:
        """A waiting state's timer fired: send its next reminder and stay, or follow its timeout
        branch (Studio's ``timeout``). A stale index entry (answered meanwhile, or re-armed)
        changes nothing but the index."""
        conversation = outcome.conversation
        armed = conversation.timeout
        flow, state = self._position(conversation)
        if armed is None or armed.at != due.due_at or flow is None or state is None or \
                state.next_timer(conversation.reminders) is None:
            return _Clock.UNTOUCHED
        before = where(conversation)
        if state.remind is not None and conversation.reminders < state.remind.times:
            conversation.reminders += 1
            self._fire(flow, REMIND_EVENT, outcome, before)
            outcome.replies.extend(self.actions.speak(state.remind.say, conversation, NOTHING_SAID, menu=state.menu))
        else:
            self._fire(flow, TIMEOUT_EVENT, outcome, before)
            await self._run_states(flow, NOTHING_SAID, outcome)
        return _Clock.TIMER

    def _names_the_words(self, conversation: Conversation, word: str, text: str) -> bool:
        """Whether a flow rule written with these very words (a trigger, ``keywords``, ``any_of``)
        takes the message: only that outranks a revocation in the person's own words. Patterns,
        ``save`` of any answer and ``otherwise`` never do (FCC: any reasonable means)."""
        if word in self.flows.by_trigger:
            return True
        flow, state = self._position(conversation)
        if flow is None or state is None or self.clock() - conversation.updated_at > flow.expires_after:
            return False
        return any(rule.names_words and rule.matches(word, text) is not None for rule in state.rules)

    def _position(self, conversation: Conversation) -> tuple[CompiledFlow | None, CompiledState | None]:
        """The flow and state the conversation is at, as loaded now (None where they are gone)."""
        flow = self.languages.flow(conversation.flow, conversation) if conversation.active else None
        return flow, flow.states.get(conversation.state or "") if flow is not None else None

    def _arm_timeout(self, outcome: Outcome, before: ArmedTimeout | None, clock: _Clock) -> None:
        """Arm the next timer of the state the conversation now waits in (a reminder, else its
        timeout), and say whether the store's deadline index must change. No timer is armed past
        the conversation's expiry: ``expires_after`` counts from the person's last message and
        ends every timer, so a cycle of timeouts cannot text someone forever."""
        conversation = outcome.conversation
        flow, state = self._position(conversation)
        armed = None
        if flow is not None and state is not None:
            delay = state.next_timer(conversation.reminders)
            if clock is _Clock.KEEP and before is not None and before.state == state.name:
                armed = before  # HELP while waiting does not restart the clock
            elif delay is not None:
                armed = ArmedTimeout(self.clock() + delay, state.name)
            if armed is not None and armed.at > conversation.updated_at + flow.expires_after:
                armed = None
        conversation.timeout = armed
        outcome.deadline = armed.at if armed is not None else None
        outcome.deadline_changed = armed != before

    # -- flows ------------------------------------------------------------------------------

    async def _route(self, word: str, said: Said, outcome: Outcome, inbound: Inbound, hint: str | None) -> None:
        """Hand a message to the flows. ``hint`` (how to stop) is added where no flow has an
        answer, for a message that might be a revocation."""
        conversation = outcome.conversation
        taken = self.offers.taken_up(conversation, word, said.text, self.clock())
        if taken is not None:  # YES to "Did you mean STATUS?"
            conversation.language = taken[1].trigger_languages.get(taken[0], conversation.language)
            await self._begin(taken[1].in_language(self.languages.spoken(conversation)), inbound, {},
                              f"did you mean {taken[0].upper()}: yes", outcome)
            return
        flow, was_reset = self._current_flow(outcome)
        started = self.flows.by_trigger.get(word)
        if started is not None and word in started.trigger_languages:  # ESTADO: they speak Spanish
            conversation.language = started.trigger_languages[word]
        if started is None and flow is None and self.flows.catch_all is not None and not was_reset:
            started = self.flows.catch_all
        if started is not None:
            started = started.in_language(self.languages.spoken(conversation))
            rule = f"trigger {word.upper()}" if word in started.triggers else f"any message starts {started.name}"
            await self._begin(started, inbound, {}, rule, outcome)
        elif flow is not None:
            await self._answer(flow, word, said, outcome, hint)
        elif was_reset:
            self._step(outcome, "reset: flow or state removed", "idle")
            outcome.replies.append(self.languages.texts(conversation).reset)
        elif hint is None and (offer := self.offers.offer(conversation, word,
                                                          self.languages.offer_wording(conversation))):
            self._step(outcome, f"did you mean {offer.trigger.upper()}?", "idle")
            outcome.replies.append(offer.text)
        else:
            self._step(outcome, "fallback", "idle")
            outcome.replies.append(self.languages.texts(conversation).fallback)
            if hint is not None:
                outcome.replies.append(hint)

    async def _begin(self, flow: CompiledFlow, inbound: Inbound, variables: Mapping[str, Any], rule: str,
                     outcome: Outcome) -> None:
        """Start ``flow`` from its first state, whatever the conversation was doing: the one way
        into a flow, for a trigger word, a catch-all flow and a start from outside."""
        conversation = outcome.conversation
        before = where(conversation)
        self._end(outcome, RunOutcome.LEFT)
        conversation.flow, conversation.state = flow.name, flow.machine.initial
        marks.begin(outcome, flow.name)
        conversation.vars.update(_studio_context(inbound))
        conversation.vars.update(variables)
        self._step(outcome, rule, before)
        await self._run_states(flow, Said(inbound.body, inbound.media), outcome)

    def _current_flow(self, outcome: Outcome) -> tuple[CompiledFlow | None, bool]:
        """The flow the sender is in, or None — ending conversations that expired or went stale.

        The flag says a conversation was reset because an update removed its flow or state.
        """
        conversation = outcome.conversation
        if not conversation.active:
            return None, False
        flow = self.languages.flow(conversation.flow, conversation)
        if flow is None or conversation.state not in flow.states:
            log.warning("conversation of %s was at %s, which no longer exists; starting fresh",
                        mask(conversation.sender), where(conversation))
            marks.end(outcome, RunOutcome.RESET)
            return None, True
        if self.clock() - conversation.updated_at > flow.expires_after:
            log.info("conversation of %s at %s expired", mask(conversation.sender), where(conversation))
            marks.end(outcome, RunOutcome.EXPIRED, conversation.updated_at + flow.expires_after)
            return None, False
        return flow, False

    def _end(self, outcome: Outcome, why: RunOutcome) -> None:
        """End the conversation for ``why`` — or, for results, as expired when it had already
        lapsed before this turn (``expires_after`` since the person's last message)."""
        conversation = outcome.conversation
        flow = self.flows.flows.get(conversation.flow or "") if conversation.active else None
        if flow is not None and self.clock() - conversation.updated_at > flow.expires_after:
            marks.end(outcome, RunOutcome.EXPIRED, conversation.updated_at + flow.expires_after)
        else:
            marks.end(outcome, why)

    async def _answer(self, flow: CompiledFlow, word: str, said: Said, outcome: Outcome, hint: str | None) -> None:
        """The waiting state's reply to a message: the first rule that takes it (the flow's
        ``anywhere`` rules, the menu, then the state's own), else a re-ask — or, after the last
        of its ``attempts``, the way out they name."""
        conversation = outcome.conversation
        state = flow.states[conversation.state or ""]
        before = where(conversation)
        for rule in state.rules:
            value = (list(said.media) or None) if rule.media else rule.matches(word, said.text)
            if value is None:
                continue
            if rule.save is not None:
                store_at(conversation.vars, rule.save, value)
            outcome.replies.extend(self.actions.render_all(rule.say, conversation, said))
            self._fire(flow, rule.event, outcome, before)
            if rule.language is not None:  # "2) Español": from now on, in Spanish
                conversation.language = rule.language
                flow = self.languages.flow(flow.name, conversation) or flow
            if rule.go is not None:
                await self._run_states(flow, said, outcome)
            return
        conversation.misses += 1
        attempts = state.attempts
        if attempts is not None and conversation.misses >= attempts.max:
            self._fire(flow, TOO_MANY_EVENT, outcome, before)
            await self._run_states(flow, said, outcome)
            if hint is not None:  # no rule took it, on the last try as on the others
                outcome.replies.append(hint)
            return
        self._fire(flow, OTHERWISE_EVENT, outcome, before)
        if attempts is not None and attempts.reask:
            reask: tuple[BoundTemplate, ...] = (attempts.reask[min(conversation.misses, len(attempts.reask)) - 1],)
        else:
            reask = state.otherwise or state.say
        outcome.replies.extend(self.actions.speak(reask, conversation, said, menu=state.menu))
        if hint is not None:
            outcome.replies.append(hint)

    async def _run_states(self, flow: CompiledFlow, said: Said, outcome: Outcome) -> None:
        """Enter the conversation's current state and keep going until one waits or the flow ends
        (a flow entered with ``enter`` returns to the one that entered it)."""
        conversation = outcome.conversation
        actions = self.actions
        for _ in range(MAX_STEPS_PER_TURN):
            name = conversation.state or END
            if name != END or END in flow.states:
                state = flow.states[name]
                before = where(conversation)
                conversation.misses = conversation.reminders = 0  # counted per visit of a state
                for path, template in state.set:
                    store_at(conversation.vars, path, actions.one(template, conversation, said))
                if state.fetch is not None:
                    try:
                        found = await actions.fetch(state.fetch, conversation, said)
                    except FetchFailed as error:
                        log.warning("fetch in %s failed: %s", before, error)
                        apology = state.fetch.not_found if error.not_found and state.fetch.not_found else \
                            state.fetch.fallback
                        outcome.replies.extend(actions.render_all((apology,), conversation, said))
                        self._fire(flow, FETCH_FAILED_EVENT, outcome, before)
                        continue
                    store_at(conversation.vars, state.fetch.save, found)
                outcome.replies.extend(actions.speak(state.say, conversation, said, menu=state.menu,
                                                     media=state.media))
                if state.notify is not None:
                    notification = actions.notification(state.notify, conversation, said)
                    if notification is not None:
                        outcome.notifications.append(notification)
                if state.waits:
                    return
                if state.branch is not None:
                    self._fire(flow, actions.choose(state.branch, conversation, said), outcome, before)
                    continue
                if state.split:
                    self._fire(flow, actions.split(state.split, conversation), outcome, before)
                    continue
                if state.enter is not None:
                    flow = self._enter(flow, state, conversation, outcome)
                    continue
                if state.go is not None:
                    self._fire(flow, NEXT_EVENT, outcome, before)
                    continue
            # This flow is done (at ``end``, or a final state): back to the flow that entered it.
            parent = self._leave(flow, conversation, outcome)
            if parent is None:
                return
            flow = parent
        log.error("flow %s moved through %d states in one turn without waiting; ending it",
                  flow.name, MAX_STEPS_PER_TURN)
        marks.end(outcome, RunOutcome.RESET)

    def _enter(self, parent: CompiledFlow, state: CompiledState, conversation: Conversation,
               outcome: Outcome) -> CompiledFlow:
        """Hand over to another flow; remember where to come back to."""
        assert state.enter is not None
        child = self.flows.flows[state.enter[0]].in_language(self.languages.spoken(conversation))
        before = where(conversation)
        conversation.returns.append(ReturnPoint(parent.name, state.name))
        conversation.flow, conversation.state = child.name, child.machine.initial
        marks.begin(outcome, child.name)
        self._step(outcome, f"enter flow {child.name}", before)
        return child

    def _leave(self, flow: CompiledFlow, conversation: Conversation, outcome: Outcome) -> CompiledFlow | None:
        """A flow ended: back to the flow that entered it (at its ``then`` state), or the end."""
        stack = conversation.returns
        parent = self.languages.flow(stack[-1].flow, conversation) if stack else None
        if parent is None or stack[-1].state not in parent.states:
            marks.end(outcome, RunOutcome.FINISHED)
            return None
        marks.finish(outcome, flow.name, conversation.state)
        back = stack.pop()
        before = where(conversation)
        conversation.flow, conversation.state = back.flow, back.state
        enter = parent.states[back.state].enter
        assert enter is not None
        self._fire(parent, f"{ENTER_EVENT} {enter[0]}", outcome, before)
        return parent

    def _fire(self, flow: CompiledFlow, event: str, outcome: Outcome, before: str) -> None:
        flow.machine.events[event].trigger(outcome.conversation)
        self._step(outcome, event, before)

    @staticmethod
    def _step(outcome: Outcome, rule: str, before: str) -> None:
        outcome.trace.append(TraceStep(rule, before, where(outcome.conversation)))
