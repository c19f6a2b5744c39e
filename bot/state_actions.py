"""What a state does besides routing: its texts rendered in the conversation's context (with a
menu listed and pictures attached), the web request of a ``fetch``, the value a ``branch`` tests,
the path a ``split`` takes, and the text a ``notify`` sends.

Kept apart from :mod:`bot.engine`, which decides *where* a conversation goes; this decides *what
is said and asked* once it is there. What the person texted (:class:`Said`) is only ever a value
in a template's context.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liquid import BoundTemplate
from liquid.exceptions import LiquidError

from bot.actions import Fetcher, FetchFailed
from bot.flows.compile import OTHERWISE_EVENT, CompiledBranch, CompiledFetch, CompiledNotify, CompiledSplitPath
from bot.flows.loader import FlowSet
from bot.text import templates
from bot.types import Conversation, MediaText

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Said:
    """What the person sent in this turn, as templates (``message``, ``media``) and rules see it;
    empty for a turn the bot started (a timeout, a broadcast's start)."""

    text: str = ""
    media: tuple[str, ...] = ()


NOTHING_SAID = Said()


class StateActions:
    def __init__(self, flows: FlowSet, fetcher: Fetcher, env: Mapping[str, str]) -> None:
        self.flows = flows
        self.fetcher = fetcher
        self.env = env

    # -- texts ------------------------------------------------------------------------------

    def values(self, conversation: Conversation, said: Said) -> dict[str, Any]:
        """What templates read about the person and this turn (``env`` aside)."""
        return {**conversation.vars, "sender": conversation.sender, "message": said.text,
                "media": list(said.media), "contact": {"channel": {"address": conversation.sender}}}

    def render_all(self, sources: Sequence[BoundTemplate], conversation: Conversation, said: Said, *,
                   whole: bool = False) -> list[str]:
        """Each template's text, stripped; one that renders empty says nothing. A part that fails
        is left empty and the rest is said (and logged): nobody gets silence because of a template.
        ``whole``: addresses (a number, a picture's URL), where a template that fails gives nothing."""
        if not sources:
            return []  # most states attach no pictures: no context to build (the engine's hot path)
        context = {**self.values(conversation, said), "env": self.env}
        where = _where(conversation)
        rendered = []
        for template in sources:
            message = templates.render_text(template, context, where, partial=not whole).strip()
            if message:
                rendered.append(message)
        return rendered

    def speak(self, sources: Sequence[BoundTemplate], conversation: Conversation, said: Said, *,
              menu: str = "", media: tuple[BoundTemplate, ...] = ()) -> list[str]:
        """A state's messages: its texts, the menu listed under the last of them, and the pictures
        attached to that last message (a picture with no text is a message of its own)."""
        messages = self.render_all(sources, conversation, said)
        if menu:
            messages[-1:] = [f"{messages[-1]}\n{menu}" if messages else menu]
        urls = self.pictures(media, conversation, said)
        if urls:
            messages[-1:] = [MediaText(messages[-1] if messages else "", urls)]
        return messages

    def pictures(self, sources: Sequence[BoundTemplate], conversation: Conversation, said: Said) -> tuple[str, ...]:
        """The addresses of the pictures to attach, spaces removed (an address has none). A template
        that prints a list (``{{ photos }}``: every picture a person sent) gives each of its items,
        where Liquid would print them run together as one address Twilio cannot fetch."""
        if not sources:
            return ()  # most states attach no pictures: no context to build (the engine's hot path)
        context = {**self.values(conversation, said), "env": self.env}
        urls: list[str] = []
        for template in sources:
            listed = templates.printed_list(template, context)
            if listed is None:
                listed = [templates.render_text(template, context, _where(conversation), partial=False)]
            urls += [url.strip().replace(" ", "") for url in listed if isinstance(url, str) and url.strip()]
        return tuple(urls)

    def one(self, template: BoundTemplate, conversation: Conversation, said: Said, *, whole: bool = False) -> str:
        return "".join(self.render_all((template,), conversation, said, whole=whole))

    # -- moving on --------------------------------------------------------------------------

    def choose(self, branch: CompiledBranch, conversation: Conversation, said: Said) -> str:
        """The event of the first case that holds for the branch's value, else ``otherwise``."""
        context = {**self.values(conversation, said), "env": self.env}
        where = _where(conversation)
        value = templates.render_text(branch.value, context, where)
        for case in branch.cases:
            argument = templates.render_text(case.argument, context, where) if case.argument is not None else ""
            if case.holds(value, argument):
                return case.event
        return OTHERWISE_EVENT

    @staticmethod
    def split(paths: tuple[CompiledSplitPath, ...], conversation: Conversation) -> str:
        """The event of the path this sender takes: a draw in [0, 1) from a hash of the flow, the
        state and the number, so one person always takes the same path (on every worker, after
        every restart) and the paths fill by their weights."""
        key = f"{conversation.flow}\0{conversation.state}\0{conversation.sender}".encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        return next(path.event for path in paths if draw < path.upto)

    # -- effects ----------------------------------------------------------------------------

    def notification(self, notify: CompiledNotify, conversation: Conversation, said: Said) -> tuple[str, str] | None:
        """(to, text) for a ``notify``, or None (logged) when it renders no number or no text."""
        to = self.one(notify.to, conversation, said, whole=True).replace(" ", "")
        body = "\n".join(self.render_all(notify.say, conversation, said))
        urls = self.pictures(notify.media, conversation, said)
        if to and body:
            return to, MediaText(body, urls) if urls else body
        log.error("notify in %s has no number or no text; skipped", _where(conversation))
        return None

    async def fetch(self, fetch: CompiledFetch, conversation: Conversation, said: Said) -> Any:
        """Ask the state's web service. Every conversation value (a reply, a ``set`` copying one,
        ``flow.*``, a lookup's answer) is only ever one value of the request: percent-encoded in
        the URL, one query or form field, one JSON string. A failure to build it fails the lookup."""
        values = self.values(conversation, said)
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


def _where(conversation: Conversation) -> str:
    return f"{conversation.flow}:{conversation.state}" if conversation.active else "idle"
