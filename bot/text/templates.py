"""Message templates: Liquid, as in Twilio Studio, parsed once at load and rendered per turn.

Liquid is made for untrusted templates (no code execution), and what people text is only
ever passed in as a value, never parsed as a template.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from liquid import BoundTemplate, Environment, Mode
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions.filtered import FilteredExpression
from liquid.builtin.expressions.path import Path as LiquidPath
from liquid.builtin.output import OutputNode
from liquid.exceptions import FilterError, LiquidError, UnknownFilterError

from bot.text.fast_templates import PlannedTemplate
from bot.variables import replace_at, value_at

log = logging.getLogger(__name__)


class _Bounded(Environment):
    """Liquid with a loop limit: a loop's length may come from what a person texted (``{% for i in
    (1..n) %}`` with n = 999999999), and rendering holds the event loop every conversation shares.
    Far beyond any text (one turn sends at most 10 SMS) or lookup a flow makes; a loop past it
    fails like any other part (:func:`render_text` leaves it empty). Liquid's output limit is not
    used: its buffer turns a texted "\\r" into "\\n", changing values (tests/test_taint.py)."""

    loop_iteration_limit = 10_000  # a loop inside a loop counts the two lengths multiplied
    template_class = PlannedTemplate  # text and plain {{ values }} without Liquid's render context


_ENVIRONMENT = _Bounded(autoescape=False)
#: The environment flows' templates are parsed in: its filters and tags are those lint accepts.
ENVIRONMENT = _ENVIRONMENT
#: Liquid's lax mode renders every part of a template it can and leaves a failing one (an output,
#: a tag) empty: what a text falls back to when the strict render fails (:func:`render_text`).
_LENIENT = _Bounded(autoescape=False, tolerance=Mode.LAX)


class _Contained:
    """A filter whose own errors become Liquid's, so lax mode leaves just its part empty:
    ``{{ message | base64_decode }}`` of a text that is not UTF-8 raises UnicodeDecodeError,
    which Liquid lets through."""

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name, self.function = name, function
        self.with_context = getattr(function, "with_context", False)
        self.with_environment = getattr(function, "with_environment", False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.function(*args, **kwargs)
        except LiquidError:
            raise
        except Exception as error:  # noqa: BLE001 - any error of a filter's own is one failing part
            raise FilterError(f"{self.name}: {type(error).__name__}", token=None) from None


_LENIENT.filters = {name: _Contained(name, function) for name, function in _ENVIRONMENT.filters.items()}


class TemplateSyntaxError(ValueError):
    """A template that does not parse; the message says where inside the template."""


def parse(source: str) -> BoundTemplate:
    try:
        return _ENVIRONMENT.from_string(source)
    except LiquidError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TemplateSyntaxError(f"template error in {source!r}: {first_line}") from None


def variables(template: BoundTemplate) -> set[str]:
    """The root names a template reads (``order`` for ``{{ order.status }}``)."""
    return set(template.variables())


def printed_list(template: BoundTemplate, context: Mapping[str, Any]) -> list[Any] | None:
    """The list ``template`` prints when it is nothing but one value (``{{ photos }}``, blanks
    around it aside, no filter) and that value is a list; else None. Liquid prints a list as its
    items run together, which is no use where each item is one thing: a picture's address."""
    parts = [node for node in template.nodes if not (isinstance(node, ContentNode) and not node.text.strip())]
    if len(parts) != 1 or not isinstance(parts[0], OutputNode):
        return None
    expression = parts[0].expression
    if not isinstance(expression, FilteredExpression) or expression.filters or \
            not isinstance(expression.left, LiquidPath):
        return None
    value: Any = context
    for segment in expression.left.path:  # names and numbers; a computed index ([i]) is not followed
        if isinstance(value, Mapping) and isinstance(segment, str):
            value = value.get(segment)
        elif isinstance(value, list) and isinstance(segment, int) and -len(value) <= segment < len(value):
            value = value[segment]
        else:
            return None
    return value if isinstance(value, list) else None


def public_environment(allowed: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What templates see as ``{{ env.NAME }}``: the variables named in ``allowed`` (the FLOW_ENV
    setting) that are set in ``environ`` (default: the process environment), and nothing else.

    An allow-list, because a list of secret-looking names is never complete (``MYSQL_PWD``,
    ``MONGODB_URI``, ``HTTPS_PROXY`` got through one); with no names given, templates see none.
    """
    source = os.environ if environ is None else environ
    return {name: source[name] for name in allowed if name in source}


def render(template: BoundTemplate, context: Mapping[str, Any]) -> str:
    return template.render(**context)


def render_text(template: BoundTemplate, context: Mapping[str, Any], where: str = "", *,
                partial: bool = True) -> str:
    """``template`` rendered for a person: a part that fails at run time (a filter given a value it
    cannot take, a typo lint reported) is left empty and the rest is said, so nobody gets silence
    because of a template; with ``partial=False`` (an address, where half a value is a wrong one)
    it gives nothing instead. Either way the failure is logged with ``where`` (flow:state) by its
    kind and place in the template, never its message, which may quote the person's text.

    The common case is one strict render, as fast as :func:`render`; only a failure renders again,
    in Liquid's lax mode.
    """
    try:
        return template.render(**context)
    except Exception as error:  # noqa: BLE001 - a filter's own error (not Liquid's) must not silence the bot
        left = "that part was left empty" if partial else "left out"
        log.error("template failed in %s: %s; %s", where or "a flow", describe_failure(error), left)
    if not partial:
        return ""
    lenient = _LENIENT.template_class(_LENIENT, template.nodes, name=template.name, path=template.path,
                                      globals=template.globals, matter=template.matter)
    try:
        return lenient.render(**context)
    except Exception:  # noqa: BLE001 - failed outside any one part (a resource limit): nothing is left to say
        return ""


def describe_failure(error: Exception) -> str:
    """A run-time template error for the log: its kind, and where it is in the template (the
    flow author's text). Not Liquid's message, which may quote a value: ``int('what they typed')``."""
    token = error.token if isinstance(error, LiquidError) else None
    if token is None or token.start_index < 0:
        return type(error).__name__
    what = str(error.message) if isinstance(error, UnknownFilterError) else f"{type(error).__name__} at {token.value!r}"
    before = token.source[:token.start_index]
    line, col = before.count("\n") + 1, token.start_index - (before.rfind("\n") + 1) + 1
    return f"{what} (line {line}, column {col} of {_shortened(token.source)!r})"


def _shortened(source: str, limit: int = 80) -> str:
    return source if len(source) <= limit else source[:limit - 1] + "…"


#: A JSON document to send: mappings and lists as the flow file wrote them, a template at each
#: string leaf, numbers, booleans and null as written.
JsonTemplate = BoundTemplate | dict[str, "JsonTemplate"] | list["JsonTemplate"] | str | int | float | bool | None


def render_json(document: JsonTemplate, context: Mapping[str, Any]) -> Any:
    """The document with each template rendered to ONE string value: the structure (fields,
    nesting, lists) is the flow file's, whatever the values hold; the fetcher serialises it."""
    if isinstance(document, BoundTemplate):
        return document.render(**context)
    if isinstance(document, dict):
        return {key: render_json(item, context) for key, item in document.items()}
    if isinstance(document, list):
        return [render_json(item, context) for item in document]
    return document


class UnsafeURL(ValueError):
    """A lookup address whose scheme or host would come from the conversation, not the flow file."""


def render_url(template: BoundTemplate, values: Mapping[str, Any], trusted: Mapping[str, Any],
               verbatim: Mapping[str, str] | None = None) -> str:
    """Render a URL template with every conversation value percent-encoded as one value.

    ``values`` are everything the conversation holds: saved answers, ``set`` values, ``flow.*``,
    lookups, ``message``, ``sender``. Any of them may hold what a person texted, directly or
    copied (a Studio ``flow.variables.order: '{{widgets.ask.inbound.Body}}'``), so a reply such as
    ``../admin?x=1#`` stays one path segment or query value instead of steering the request.
    Only ``trusted`` (``env``: the operator's environment) and ``verbatim`` (dotted paths whose
    current value the flow file itself wrote, from literal text and ``env``) are inserted as
    written, with the template's own text. Raises UnsafeURL when the address's scheme and host
    (or the leading ``/`` of the bot's own address) would not be the flow file's: an empty reply
    in front of ``/admin`` must not make the bot ask itself.
    """
    url = template.render(**_context(values, trusted, verbatim, _encode))
    marked = template.render(**_context(values, trusted, verbatim, _mark))
    if _MARK in _origin(marked):
        raise UnsafeURL("the address would take its host from a conversation value; "  # no value: the log
                        "start it with literal text or {{ env.NAME }}")
    return url


def written_by_flows(values: Mapping[str, Any], constant_sets: Iterable[tuple[str, BoundTemplate]],
                     trusted: Mapping[str, Any]) -> dict[str, str]:
    """The ``verbatim`` values of :func:`render_url`: those at a dotted path that hold exactly
    what a ``set`` there from literal text and ``trusted`` alone gives (``constant_sets``).

    Compared by value at each lookup rather than remembered, so a person's text saved or copied
    under the same name (or left there by an earlier version of the flows) is still encoded.
    """
    written: dict[str, str] = {}
    for path, template in constant_sets:
        current = value_at(values, path)
        if isinstance(current, str) and path not in written:
            try:
                if current == template.render(**trusted).strip():  # as ``set`` stores it
                    written[path] = current
            except LiquidError:
                continue
    return written


_MARK = "\ue000"  # stands for a conversation value when checking where the address points
_ORIGIN = re.compile(r"[^/?#]*(//[^/?#]*)?")  # "https://host:port", "//host", or what precedes a "/"


def _origin(url: str) -> str:
    """The part of an address that says where it goes: scheme and authority, or "/" for the bot."""
    if url.startswith("/") and not url.startswith("//"):
        return "/"
    match = _ORIGIN.match(url)
    return match.group(0) if match else url


def _context(values: Mapping[str, Any], trusted: Mapping[str, Any], verbatim: Mapping[str, str] | None,
             make_safe: Callable[[Any], Any]) -> dict[str, Any]:
    context: dict[str, Any] = {name: make_safe(value) for name, value in values.items()}
    for path, value in (verbatim or {}).items():
        replace_at(context, path, value)  # back as written, in the made-safe copy
    return {**context, **trusted}


class _SafeMapping(dict[str, Any]):
    """A mapping of made-safe values that also prints (``{{ result }}``) as one made-safe value."""

    def __init__(self, items: dict[str, Any], printed: str) -> None:
        super().__init__(items)
        self.printed = printed

    def __str__(self) -> str:
        return self.printed


def _encode(value: Any) -> Any:
    if isinstance(value, str):
        encoded = quote(value, safe="")
        # "." and ".." need no encoding, yet as a path segment they mean "here" and "up one".
        return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded
    if isinstance(value, Mapping):
        return _SafeMapping({key: _encode(item) for key, item in value.items()}, quote(str(value), safe=""))
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _mark(value: Any) -> Any:
    """Every leaf, numbers and empty ones too: a saved 5 must not become host 0.0.0.5 either."""
    if isinstance(value, Mapping):
        return _SafeMapping({key: _mark(item) for key, item in value.items()}, _MARK)
    if isinstance(value, list):
        return [_mark(item) for item in value] or _MARK
    return _MARK
