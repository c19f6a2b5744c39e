"""The conversation engine: one message in, the next state and the replies out.

Pure with respect to HTTP and storage: it gets a conversation and the sender's opt-out status,
and returns an :class:`Outcome`. Routing order (DESIGN §1): compliance words, then flow triggers,
then the current state's replies, then the fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from liquid import BoundTemplate
from liquid.exceptions import LiquidError

from bot import templates
from bot.actions import Fetcher, FetchFailed
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
from bot.keywords import HELP_WORDS, OPT_IN_WHILE_OPTED_OUT, OPT_IN_WORDS, OPT_OUT_WORDS, normalise
from bot.privacy import mask
from bot.types import Conversation, Inbound, Outcome, TraceStep

log = logging.getLogger(__name__)

MAX_STEPS_PER_TURN = 25  # states entered in one turn; more means a loop of states that never wait
MAX_REPLIES_PER_TURN = 10
RETURN_KEY = "_return"  # where flows entered with ``enter`` come back to (a stack, kept in vars)
TIMEOUT_KEY = "_timeout"  # the armed timeout of the state the conversation waits in: {at, state}


def store_at(variables: dict[str, Any], path: str, value: Any) -> None:
    """Save ``value`` under a name or a dotted path (``widgets.ask.inbound.Body``), nested."""
    *parents, last = path.split(".")
    for part in parents:
        child = variables.get(part)
        if not isinstance(child, dict):
            child = variables[part] = {}
        variables = child
    variables[last] = value


def _studio_context(inbound: Inbound) -> dict[str, Any]:
    """What Studio's templates read about how the flow started (``trigger.message.Body``,
    ``flow.channel.address``), kept with the conversation."""
    return {"trigger": {"message": {"Body": inbound.body, "From": inbound.sender, "To": inbound.to}},
            "flow": {"channel": {"address": inbound.to}, "variables": {}}}


def where(conversation: Conversation) -> str:
    return f"{conversation.flow}:{conversation.state}" if conversation.active else "idle"


class Engine:
    def __init__(self, flows: FlowSet, fetcher: Fetcher, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """Run conversations on ``flows``.

        ``env`` is what templates see as ``{{ env.NAME }}`` (default: the process environment
        minus anything that looks secret); ``clock`` is injectable so tests can expire conversations.
        """
        self.flows = flows
        self.fetcher = fetcher
        self.env = dict(env) if env is not None else templates.public_environment()
        self.clock = clock

    async def handle(self, inbound: Inbound, conversation: Conversation, opted_out: bool) -> Outcome:
        outcome = Outcome(conversation)
        pending = conversation.vars.get(TIMEOUT_KEY)
        text = inbound.body
        word = normalise(text)
        if inbound.opt_out_type:
            self._twilio_handled_compliance(inbound.opt_out_type.upper(), outcome)
        elif word in OPT_OUT_WORDS:
            self._opt_out(opted_out, word, outcome)
        elif word in OPT_IN_WORDS or (opted_out and word in OPT_IN_WHILE_OPTED_OUT):
            outcome.opt_out = False
            self._step(outcome, f"compliance {word.upper()}", where(conversation))
            outcome.replies.append(self.flows.program.opt_in)
        elif opted_out:
            self._step(outcome, "opted out: silent", where(conversation))
        elif word in HELP_WORDS:
            self._step(outcome, f"compliance {word.upper()}", where(conversation))
            outcome.replies.append(self.flows.program.help)
        else:
            await self._route(word, text, outcome, inbound)
        conversation.updated_at = self.clock()
        self._schedule(outcome, pending)
        del outcome.replies[MAX_REPLIES_PER_TURN:]
        return outcome

    def _schedule(self, outcome: Outcome, pending: Any) -> None:
        """Arm the timeout of the state the conversation now waits in (if it has one), and say
        whether the store's deadline index must change."""
        conversation = outcome.conversation
        conversation.vars.pop(TIMEOUT_KEY, None)
        flow = self.flows.flows.get(conversation.flow or "") if conversation.active else None
        state = flow.states.get(conversation.state or "") if flow is not None else None
        if state is not None and state.timeout is not None:
            armed: dict[str, Any] = {"at": self.clock() + state.timeout[0], "state": state.name}
            if isinstance(pending, dict) and pending.get("state") == state.name and outcome.trace and \
                    outcome.trace[-1].rule.startswith("compliance"):
                armed = pending  # HELP while waiting does not restart the clock
            conversation.vars[TIMEOUT_KEY] = armed
            outcome.deadline, outcome.deadline_changed = float(armed["at"]), armed != pending
        else:
            outcome.deadline, outcome.deadline_changed = None, pending is not None

    async def time_out(self, conversation: Conversation) -> Outcome:
        """The waiting state's timeout fired: follow its timeout branch (Studio's ``timeout``)."""
        outcome = Outcome(conversation)
        pending = conversation.vars.get(TIMEOUT_KEY)
        flow = self.flows.flows.get(conversation.flow or "")
        state = flow.states.get(conversation.state or "") if flow is not None else None
        if flow is not None and state is not None and state.timeout is not None:
            self._fire(flow, TIMEOUT_EVENT, outcome, where(conversation))
            await self._run_states(flow, "", outcome)
        conversation.updated_at = self.clock()
        self._schedule(outcome, pending)
        return outcome

    # -- compliance -------------------------------------------------------------------------

    def _twilio_handled_compliance(self, kind: str, outcome: Outcome) -> None:
        """Twilio Advanced Opt-Out already answered: record what it did, say nothing."""
        before = where(outcome.conversation)
        if kind == "STOP":
            outcome.opt_out = True
            outcome.conversation.end()
        elif kind == "START":
            outcome.opt_out = False
        self._step(outcome, f"Twilio OptOutType {kind}", before)

    def _opt_out(self, already: bool, word: str, outcome: Outcome) -> None:
        before = where(outcome.conversation)
        outcome.conversation.end()
        if already:
            self._step(outcome, f"compliance {word.upper()} (already opted out: silent)", before)
            return
        outcome.opt_out = True
        self._step(outcome, f"compliance {word.upper()}", before)
        outcome.replies.append(self.flows.program.opt_out)

    # -- flows ------------------------------------------------------------------------------

    async def _route(self, word: str, text: str, outcome: Outcome, inbound: Inbound) -> None:
        conversation = outcome.conversation
        flow, was_reset = self._current_flow(conversation)
        started = self.flows.by_trigger.get(word)
        if started is None and flow is None and self.flows.catch_all is not None and not was_reset:
            started = self.flows.catch_all
        if started is not None:
            before = where(conversation)
            conversation.end()
            conversation.flow, conversation.state = started.name, started.machine.initial
            conversation.vars.update(_studio_context(inbound))
            rule = f"trigger {word.upper()}" if word in started.triggers else f"any message starts {started.name}"
            self._step(outcome, rule, before)
            await self._run_states(started, text, outcome)
        elif flow is not None:
            await self._answer(flow, word, text, outcome)
        elif was_reset:
            self._step(outcome, "reset: flow or state removed", "idle")
            outcome.replies.append(self.flows.program.reset)
        else:
            self._step(outcome, "fallback", "idle")
            outcome.replies.append(self.flows.program.fallback)

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

    async def _answer(self, flow: CompiledFlow, word: str, text: str, outcome: Outcome) -> None:
        conversation = outcome.conversation
        state = flow.states[conversation.state or ""]
        before = where(conversation)
        for rule in state.replies:
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

    async def _run_states(self, flow: CompiledFlow, text: str, outcome: Outcome) -> None:
        """Enter the conversation's current state and keep going until one waits or the flow ends
        (a flow entered with ``enter`` returns to the one that entered it)."""
        conversation = outcome.conversation
        for _ in range(MAX_STEPS_PER_TURN):
            name = conversation.state or END
            if name == END and END not in flow.states:
                parent = self._leave(flow, conversation, outcome)
                if parent is None:
                    return
                flow = parent
                continue
            state = flow.states[name]
            before = where(conversation)
            for path, template in state.set:
                store_at(conversation.vars, path, "".join(self._render_all((template,), conversation, text)))
            if state.fetch is not None:
                try:
                    store_at(conversation.vars, state.fetch.save, await self._fetch(state.fetch, conversation, text))
                except FetchFailed as error:
                    log.warning("fetch in %s failed: %s", before, error)
                    apology = state.fetch.not_found if error.not_found and state.fetch.not_found else \
                        state.fetch.fallback
                    outcome.replies.extend(self._render_all((apology,), conversation, text))
                    self._fire(flow, FETCH_FAILED_EVENT, outcome, before)
                    continue
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
            if state.go is None:  # a final state: this flow is done
                parent = self._leave(flow, conversation, outcome)
                if parent is None:
                    return
                flow = parent
                continue
            self._fire(flow, NEXT_EVENT, outcome, before)
        log.error("flow %s moved through %d states in one turn without waiting; ending it",
                  flow.name, MAX_STEPS_PER_TURN)
        conversation.end()

    def _enter(self, parent: CompiledFlow, state: CompiledState, conversation: Conversation,
               outcome: Outcome) -> CompiledFlow:
        """Hand over to another flow; remember where to come back to."""
        assert state.enter is not None
        child = self.flows.flows[state.enter[0]]
        before = where(conversation)
        conversation.vars.setdefault(RETURN_KEY, []).append([parent.name, state.name])
        conversation.flow, conversation.state = child.name, child.machine.initial
        self._step(outcome, f"enter flow {child.name}", before)
        return child

    def _leave(self, flow: CompiledFlow, conversation: Conversation, outcome: Outcome) -> CompiledFlow | None:
        """A flow ended: back to the flow that entered it (at its ``then`` state), or the end."""
        stack = conversation.vars.get(RETURN_KEY) or []
        parent = self.flows.flows.get(stack[-1][0]) if stack else None
        if parent is None or stack[-1][1] not in parent.states:
            conversation.end()
            return None
        parent_name, entered_at = stack.pop()
        before = where(conversation)
        conversation.flow, conversation.state = parent_name, entered_at
        enter = parent.states[entered_at].enter
        assert enter is not None
        self._fire(parent, f"{ENTER_EVENT} {enter[0]}", outcome, before)
        return parent

    async def _fetch(self, fetch: CompiledFetch, conversation: Conversation, text: str) -> Any:
        values = self._user_values(conversation, text)
        # flow.* holds what the flow's author set (Studio's flow.variables, the channel): a base URL
        # kept there must stay a URL; everything else people may have typed is percent-encoded.
        url = templates.render_url(fetch.url, {k: v for k, v in values.items() if k != "flow"},
                                   {"env": self.env, "flow": values.get("flow", {})})
        if fetch.method == "GET" and not fetch.params:
            return await self.fetcher.get_json(url, fetch.timeout)
        context = {**values, "env": self.env}
        params = {key: templates.render(template, context) for key, template in fetch.params}
        form = {key: templates.render(template, context) for key, template in fetch.form} \
            if fetch.form is not None else None
        json_body = templates.render(fetch.json_body, context) if fetch.json_body is not None else None
        return await self.fetcher.get_json(url, fetch.timeout, method=fetch.method, params=params,
                                           json_body=json_body, form=form)

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

    async def start(self, conversation: Conversation, flow_name: str, variables: dict[str, Any]) -> Outcome:
        """Start a flow for someone who did not text first (a broadcast): its opening messages
        are the outcome's replies, to be sent through the REST API."""
        flow = self.flows.flows[flow_name]
        outcome = Outcome(conversation)
        before = where(conversation)
        pending = conversation.vars.get(TIMEOUT_KEY)
        conversation.end()
        conversation.flow, conversation.state = flow.name, flow.machine.initial
        conversation.vars.update(_studio_context(Inbound("", conversation.sender)))
        conversation.vars.update(variables)
        self._step(outcome, f"started by broadcast of {flow.name}", before)
        await self._run_states(flow, "", outcome)
        conversation.updated_at = self.clock()
        self._schedule(outcome, pending)  # the start state may wait with a timeout
        return outcome

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

