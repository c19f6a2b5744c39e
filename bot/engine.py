"""The conversation engine: a conversation and an event in, the next state and the replies out.

Pure with respect to HTTP and storage: :meth:`Engine.step` gets a conversation, the event that
starts the turn (a message, a start, a timeout) and the sender's opt-out status, and returns an
:class:`Outcome`. Messages are routed in this order (DESIGN §1): compliance words
(``bot/compliance.py``), then flow triggers, then the current state's rules, then the fallback.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from liquid import BoundTemplate
from liquid.exceptions import LiquidError

from bot.actions import Fetcher, FetchFailed
from bot.compliance import ConsentReading, consent_answer, read_consent
from bot.flows.compile import (
    ENTER_EVENT,
    FETCH_FAILED_EVENT,
    NEXT_EVENT,
    OTHERWISE_EVENT,
    TIMEOUT_EVENT,
    CompiledBranch,
    CompiledFetch,
    CompiledFlow,
    CompiledNotify,
    CompiledState,
)
from bot.flows.loader import FlowSet
from bot.flows.schema import END
from bot.privacy import mask
from bot.text import templates
from bot.text.normalise import normalise
from bot.types import (
    ArmedTimeout,
    Conversation,
    Event,
    Inbound,
    Message,
    Outcome,
    ReturnPoint,
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


def where(conversation: Conversation) -> str:
    return f"{conversation.flow}:{conversation.state}" if conversation.active else "idle"


class Engine:
    def __init__(self, flows: FlowSet, fetcher: Fetcher, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """Run conversations on ``flows``.

        ``env`` is what templates see as ``{{ env.NAME }}`` (default: nothing; the app passes the
        variables FLOW_ENV allows, ``templates.public_environment(settings.flow_env)``); ``clock`` is
        injectable so tests can expire conversations.
        """
        self.flows = flows
        self.fetcher = fetcher
        self.env = dict(env) if env is not None else templates.public_environment()
        self.clock = clock

    async def step(self, conversation: Conversation, event: Event, opted_out: bool,
                   consent: ConsentReading | None = None) -> Outcome:
        """Move ``conversation`` on ``event``: the one entry for every kind of turn. ``consent`` is
        what the pipeline already read of a message (:func:`read_consent`); read here otherwise."""
        outcome = Outcome(conversation)
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
        if clock is not _Clock.UNTOUCHED:
            conversation.updated_at = self.clock()
        self._arm_timeout(outcome, armed_before, keep_clock=clock is not _Clock.RESTART)
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
            await self._route(word, inbound.body, outcome, inbound, hint)
            return _Clock.RESTART
        before = where(conversation)
        if answer.ends_conversation:
            conversation.end()
        outcome.conversation_changed = answer.ends_conversation
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
        await self._begin(flow, start.inbound, start.variables, f"started by broadcast of {flow.name}", outcome)
        if not outcome.replies:
            outcome.skipped = Skip.SILENT
        return _Clock.RESTART

    async def _on_timeout(self, due: TimeoutDue, outcome: Outcome) -> _Clock:
        """The waiting state's timeout fired: follow its timeout branch (Studio's ``timeout``).
        A stale index entry (answered meanwhile, or re-armed) changes nothing but the index."""
        conversation = outcome.conversation
        armed = conversation.timeout
        flow, state = self._position(conversation)
        if armed is None or armed.at != due.due_at or flow is None or state is None or state.timeout is None:
            return _Clock.UNTOUCHED
        self._fire(flow, TIMEOUT_EVENT, outcome, where(conversation))
        await self._run_states(flow, "", outcome)
        return _Clock.RESTART

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
        flow = self.flows.flows.get(conversation.flow or "") if conversation.active else None
        return flow, flow.states.get(conversation.state or "") if flow is not None else None

    def _arm_timeout(self, outcome: Outcome, before: ArmedTimeout | None, keep_clock: bool) -> None:
        """Arm the timeout of the state the conversation now waits in (if it has one), and say
        whether the store's deadline index must change."""
        conversation = outcome.conversation
        _, state = self._position(conversation)
        armed = None
        if state is not None and state.timeout is not None:
            armed = ArmedTimeout(self.clock() + state.timeout[0], state.name)
            if keep_clock and before is not None and before.state == state.name:
                armed = before  # HELP while waiting does not restart the clock
        conversation.timeout = armed
        outcome.deadline = armed.at if armed is not None else None
        outcome.deadline_changed = armed != before

    # -- flows ------------------------------------------------------------------------------

    async def _route(self, word: str, text: str, outcome: Outcome, inbound: Inbound, hint: str | None) -> None:
        """Hand a message to the flows. ``hint`` (how to stop) is added where no flow has an
        answer, for a message that might be a revocation."""
        conversation = outcome.conversation
        flow, was_reset = self._current_flow(conversation)
        started = self.flows.by_trigger.get(word)
        if started is None and flow is None and self.flows.catch_all is not None and not was_reset:
            started = self.flows.catch_all
        if started is not None:
            rule = f"trigger {word.upper()}" if word in started.triggers else f"any message starts {started.name}"
            await self._begin(started, inbound, {}, rule, outcome)
        elif flow is not None:
            await self._answer(flow, word, text, outcome, hint)
        elif was_reset:
            self._step(outcome, "reset: flow or state removed", "idle")
            outcome.replies.append(self.flows.program.reset)
        else:
            self._step(outcome, "fallback", "idle")
            outcome.replies.append(self.flows.program.fallback)
            if hint is not None:
                outcome.replies.append(hint)

    async def _begin(self, flow: CompiledFlow, inbound: Inbound, variables: Mapping[str, Any], rule: str,
                     outcome: Outcome) -> None:
        """Start ``flow`` from its first state, whatever the conversation was doing: the one way
        into a flow, for a trigger word, a catch-all flow and a start from outside."""
        conversation = outcome.conversation
        before = where(conversation)
        conversation.end()
        conversation.flow, conversation.state = flow.name, flow.machine.initial
        conversation.vars.update(_studio_context(inbound))
        conversation.vars.update(variables)
        self._step(outcome, rule, before)
        await self._run_states(flow, inbound.body, outcome)

    def _current_flow(self, conversation: Conversation) -> tuple[CompiledFlow | None, bool]:
        """The flow the sender is in, or None — ending conversations that expired or went stale.

        The flag says a conversation was reset because an update removed its flow or state.
        """
        if not conversation.active:
            return None, False
        flow = self.flows.flows.get(conversation.flow or "")
        if flow is None or conversation.state not in flow.states:
            log.warning("conversation of %s was at %s, which no longer exists; starting fresh",
                        mask(conversation.sender), where(conversation))
            conversation.end()
            return None, True
        if self.clock() - conversation.updated_at > flow.expires_after:
            log.info("conversation of %s at %s expired", mask(conversation.sender), where(conversation))
            conversation.end()
            return None, False
        return flow, False

    async def _answer(self, flow: CompiledFlow, word: str, text: str, outcome: Outcome, hint: str | None) -> None:
        conversation = outcome.conversation
        state = flow.states[conversation.state or ""]
        before = where(conversation)
        for rule in state.rules:
            value = rule.matches(word, text)
            if value is None:
                continue
            if rule.save is not None:
                store_at(conversation.vars, rule.save, value)
            outcome.replies.extend(self._render_all(rule.say, conversation, text))
            self._fire(flow, rule.event, outcome, before)
            if rule.go is not None:
                await self._run_states(flow, text, outcome)
            return
        self._fire(flow, OTHERWISE_EVENT, outcome, before)
        outcome.replies.extend(self._render_all(state.otherwise or state.say, conversation, text))
        if hint is not None:
            outcome.replies.append(hint)

    async def _run_states(self, flow: CompiledFlow, text: str, outcome: Outcome) -> None:
        """Enter the conversation's current state and keep going until one waits or the flow ends
        (a flow entered with ``enter`` returns to the one that entered it)."""
        conversation = outcome.conversation
        for _ in range(MAX_STEPS_PER_TURN):
            name = conversation.state or END
            if name != END or END in flow.states:
                state = flow.states[name]
                before = where(conversation)
                for path, template in state.set:
                    store_at(conversation.vars, path, "".join(self._render_all((template,), conversation, text)))
                if state.fetch is not None:
                    try:
                        found = await self._fetch(state.fetch, conversation, text)
                    except FetchFailed as error:
                        log.warning("fetch in %s failed: %s", before, error)
                        apology = state.fetch.not_found if error.not_found and state.fetch.not_found else \
                            state.fetch.fallback
                        outcome.replies.extend(self._render_all((apology,), conversation, text))
                        self._fire(flow, FETCH_FAILED_EVENT, outcome, before)
                        continue
                    store_at(conversation.vars, state.fetch.save, found)
                outcome.replies.extend(self._render_all(state.say, conversation, text))
                if state.notify is not None:
                    self._notify(state.notify, conversation, text, outcome)
                if state.waits:
                    return
                if state.branch is not None:
                    self._fire(flow, self._choose(state.branch, conversation, text), outcome, before)
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
        conversation.end()

    def _enter(self, parent: CompiledFlow, state: CompiledState, conversation: Conversation,
               outcome: Outcome) -> CompiledFlow:
        """Hand over to another flow; remember where to come back to."""
        assert state.enter is not None
        child = self.flows.flows[state.enter[0]]
        before = where(conversation)
        conversation.returns.append(ReturnPoint(parent.name, state.name))
        conversation.flow, conversation.state = child.name, child.machine.initial
        self._step(outcome, f"enter flow {child.name}", before)
        return child

    def _leave(self, flow: CompiledFlow, conversation: Conversation, outcome: Outcome) -> CompiledFlow | None:
        """A flow ended: back to the flow that entered it (at its ``then`` state), or the end."""
        stack = conversation.returns
        parent = self.flows.flows.get(stack[-1].flow) if stack else None
        if parent is None or stack[-1].state not in parent.states:
            conversation.end()
            return None
        back = stack.pop()
        before = where(conversation)
        conversation.flow, conversation.state = back.flow, back.state
        enter = parent.states[back.state].enter
        assert enter is not None
        self._fire(parent, f"{ENTER_EVENT} {enter[0]}", outcome, before)
        return parent

    async def _fetch(self, fetch: CompiledFetch, conversation: Conversation, text: str) -> Any:
        """Ask the state's web service. Every conversation value (a reply, a ``set`` copying one,
        ``flow.*``, a lookup's answer) is only ever one value of the request: percent-encoded in
        the URL, one query or form field, one JSON string. A failure to build it fails the lookup."""
        values = self._user_values(conversation, text)
        context = {**values, "env": self.env}
        try:
            written = templates.written_by_flows(values, self._constant_sets, {"env": self.env})
            url = templates.render_url(fetch.url, values, {"env": self.env}, written)
            params = {key: templates.render(template, context) for key, template in fetch.params}
            form = {key: templates.render(template, context) for key, template in fetch.form} \
                if fetch.form is not None else None
            json_body = templates.render_json(fetch.json_body, context) if fetch.json_body is not None else None
        except (templates.UnsafeURL, LiquidError) as error:
            # Its kind only: the message quotes the address, and so what the person typed (it is logged).
            raise FetchFailed(f"the request cannot be made: {type(error).__name__}") from None
        if fetch.method == "GET" and not fetch.params:
            return await self.fetcher.get_json(url, fetch.timeout)
        return await self.fetcher.get_json(url, fetch.timeout, method=fetch.method, params=params,
                                           json_body=json_body, form=form)

    @functools.cached_property
    def _constant_sets(self) -> tuple[tuple[str, BoundTemplate], ...]:
        """Every ``set`` in the loaded flows whose template reads nothing but ``env``: the values a
        URL may use as written when a conversation holds exactly what they give (a base URL
        Studio keeps in ``flow.variables``)."""
        return tuple((path, template) for flow in self.flows.flows.values() for state in flow.states.values()
                     for path, template in state.set if templates.variables(template) <= {"env"})

    def _choose(self, branch: CompiledBranch, conversation: Conversation, text: str) -> str:
        """The event of the first case that holds for the branch's value, else ``otherwise``."""
        context = {**self._user_values(conversation, text), "env": self.env}
        value = templates.render(branch.value, context)
        for case in branch.cases:
            argument = templates.render(case.argument, context) if case.argument is not None else ""
            if case.holds(value, argument):
                return case.event
        return OTHERWISE_EVENT

    def _notify(self, notify: CompiledNotify, conversation: Conversation, text: str, outcome: Outcome) -> None:
        to = "".join(self._render_all((notify.to,), conversation, text)).replace(" ", "")
        body = "\n".join(self._render_all(notify.say, conversation, text))
        if to and body:
            outcome.notifications.append((to, body))
        else:
            log.error("notify in %s has no number or no text; skipped", where(conversation))

    def _fire(self, flow: CompiledFlow, event: str, outcome: Outcome, before: str) -> None:
        flow.machine.events[event].trigger(outcome.conversation)
        self._step(outcome, event, before)

    @staticmethod
    def _step(outcome: Outcome, rule: str, before: str) -> None:
        outcome.trace.append(TraceStep(rule, before, where(outcome.conversation)))

    # -- templates --------------------------------------------------------------------------

    @staticmethod
    def _user_values(conversation: Conversation, text: str) -> dict[str, Any]:
        return {**conversation.vars, "sender": conversation.sender, "message": text,
                "contact": {"channel": {"address": conversation.sender}}}

    def _render_all(self, sources: tuple[BoundTemplate, ...], conversation: Conversation,
                    text: str) -> list[str]:
        context = {**self._user_values(conversation, text), "env": self.env}
        rendered = []
        for template in sources:
            try:
                message = templates.render(template, context).strip()
            except LiquidError as error:
                log.error("template failed in %s: %s", where(conversation), error)
                continue
            if message:
                rendered.append(message)
        return rendered

