"""Templates checked at lint time by Liquid itself: its parser and its static analysis (the names,
filters and tags a template uses, each with its place), never by patterns over the text.

What a typo costs at run time is a part of a text left empty (:func:`bot.text.templates.render_text`);
here it is found first: an unknown filter or tag, a syntax error (errors), a name nothing saves or
an ``env`` name FLOW_ENV does not allow (warnings), each at its own line and column inside the
template and with a "did you mean" where one is close.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from liquid import BoundTemplate, RenderContext
from liquid.ast import Node
from liquid.builtin.expressions import FilteredExpression
from liquid.builtin.expressions import Path as LiquidPath
from liquid.builtin.output import OutputNode
from liquid.exceptions import LiquidError
from liquid.expression import Expression
from liquid.static_analysis import Segments
from liquid.token import TOKEN_CONTENT, TOKEN_OUTPUT, TOKEN_TAG, Token

from bot.flows.problems import Finding, Path
from bot.flows.suggest import closest, did_you_mean
from bot.text.templates import ENVIRONMENT

_INTERNAL_TAGS = frozenset({"content", "output", "illegal"})  # Liquid's own node kinds, not tags one writes
_INNER_TAGS = frozenset({"else", "elsif", "when"})
#: Every tag name a template may contain: the registered tags, their inner and closing tags.
WRITABLE_TAGS = frozenset((set(ENVIRONMENT.tags) - _INTERNAL_TAGS) | _INNER_TAGS
                          | {tag.end for tag in ENVIRONMENT.tags.values() if getattr(tag, "end", "")})
#: Tags that read other template files, which flows do not have: they could only fail.
_FILE_TAGS = frozenset({"include", "render"})
#: Names other template languages (Jinja, Python, spreadsheets) give Liquid's filters and tags.
_FILTER_SYNONYMS = {"upper": "upcase", "uppercase": "upcase", "lower": "downcase", "lowercase": "downcase",
                    "title": "capitalize", "capitalise": "capitalize", "trim": "strip", "ltrim": "lstrip",
                    "rtrim": "rstrip", "length": "size", "len": "size", "count": "size", "substr": "slice",
                    "substring": "slice", "add": "plus", "subtract": "minus", "multiply": "times",
                    "divide": "divided_by", "format_date": "date", "strftime": "date", "urlencode": "url_encode"}
_TAG_SYNONYMS = {"elif": "elsif", "elseif": "elsif", "else_if": "elsif", "set": "assign", "let": "assign",
                 "foreach": "for", "switch": "case", "endswitch": "endcase", "fi": "endif"}
_SYNTAX_HINT = "close each {{ with }} and each {% with %}; text meant as written goes in {% raw %}…{% endraw %}"


@dataclass(frozen=True, slots=True)
class Names:
    """What a template may read where it is used."""

    state: str  # the state it belongs to; "" for the flow's ``anywhere`` replies
    available: frozenset[str]  # saved or set on some path to it, or filled in by the bot
    saved: frozenset[str]  # every name the flow saves or sets anywhere: what a typo may have meant
    allowed_env: frozenset[str] | None  # FLOW_ENV; None when not known (the loader on its own)


def template_findings(path: Path, source: str, names: Names) -> list[Finding]:
    """Everything wrong with one template, in the order it is written."""
    try:
        template = ENVIRONMENT.from_string(source)
    except LiquidError as error:
        return _syntax_findings(path, source, error)
    analysis = template.analyze(include_partials=False)
    findings: list[Finding] = []
    for tag in sorted(_FILE_TAGS & set(analysis.tags)):
        findings.append(Finding(path, f"{{% {tag} %}} reads another template file, and flows have none",
                                hint="write the text here instead", at=analysis.tags[tag][0].index))
    for name, spans in analysis.filters.items():
        if name not in ENVIRONMENT.filters:
            findings.append(Finding(path, f"unknown filter {name!r}", hint=_filter_hint(name), at=spans[0].index))
    defaulted = _defaulted(template)
    for root, variables in analysis.globals.items():
        if root == "env":
            findings.extend(_env_findings(path, [(variable.segments, variable.span.index) for variable in variables],
                                          names.allowed_env))
            continue
        unset = [variable.span.index for variable in variables if variable.span.index not in defaulted]
        if root not in names.available and unset:
            findings.append(_never_saved(path, root, names, unset[0]))
    return sorted(findings, key=lambda finding: finding.at or 0)


def _syntax_findings(path: Path, source: str, error: LiquidError) -> list[Finding]:
    """An unknown tag (each, by name) when that is what stopped Liquid, else its syntax error."""
    unknown: dict[str, int] = {}
    stopped_at = [error.token] if error.token is not None and error.token.kind == TOKEN_TAG else []
    for token in [*_tag_tokens(source), *stopped_at]:  # the latter: a line of a {% liquid %} tag
        if token.value and token.value not in WRITABLE_TAGS:
            unknown.setdefault(token.value, token.start_index)
    if unknown:
        return [Finding(path, f"unknown tag {name!r}", hint=_tag_hint(name), at=at) for name, at in unknown.items()]
    at = error.token.start_index if error.token is not None and error.token.start_index >= 0 else None
    return [Finding(path, f"template error: {error.message}", hint=_SYNTAX_HINT, at=at)]


def _tag_tokens(source: str) -> list[Token]:
    try:
        return [token for token in ENVIRONMENT.tokenizer()(source) if token.kind == TOKEN_TAG]
    except LiquidError:  # a {{ or {% never closed: the syntax error says where
        return []


def _filter_hint(name: str) -> str:
    meant = closest(name, ENVIRONMENT.filters, _FILTER_SYNONYMS)
    if meant is not None:
        return did_you_mean(meant)
    return "Liquid's filters include upcase, downcase, capitalize, default, truncate, plus, minus and date"


def _tag_hint(name: str) -> str:
    meant = closest(name, WRITABLE_TAGS - {"#"}, _TAG_SYNONYMS)
    if meant is not None:
        return did_you_mean(meant)
    return "Liquid's tags include if, unless, case, for, assign and capture"


def _never_saved(path: Path, root: str, names: Names, at: int) -> Finding:
    where = f"on any path to state {names.state!r}" if names.state else "in this flow"
    meant = closest(root, (names.available | names.saved) - {root})
    advice = f"save: {root} in an earlier reply or fetch, or give it a default"
    return Finding(path, f"{{{{ {root} }}}} is never saved {where}", severity="warning",
                   hint=f"{did_you_mean(meant)} {advice}" if meant is not None else advice, at=at)


def _env_findings(path: Path, uses: list[tuple[Segments, int]], allowed: frozenset[str] | None) -> Iterator[Finding]:
    """``{{ env.NAME }}`` of a name FLOW_ENV does not allow: always empty (a computed ``env[name]``
    cannot be known, and is not reported)."""
    if allowed is None:
        return
    reported: set[str] = set()
    for segments, at in uses:
        name = segments[1] if len(segments) > 1 else None
        if not isinstance(name, str) or name in allowed or name in reported:
            continue
        reported.add(name)
        meant = closest(name, allowed)
        advice = (f"if flows may read it, add {name} to FLOW_ENV (names separated by commas, in .env or "
                  "the environment)")
        yield Finding(path, f"{{{{ env.{name} }}}} is not in FLOW_ENV, so flows cannot read it: it is always empty",
                      severity="warning", hint=f"{did_you_mean(meant)} {advice}" if meant is not None else advice,
                      at=at)


def _defaulted(template: BoundTemplate) -> set[int]:
    """Where a name is read with a fallback (``{{ name | default: "friend" }}``): unset is fine there."""
    return {expression.left.token.start_index for expression in _expressions(template)
            if isinstance(expression, FilteredExpression) and isinstance(expression.left, LiquidPath)
            and any(applied.name == "default" for applied in expression.filters or ())}


def _nodes(template: BoundTemplate) -> Iterator[Node]:
    context = RenderContext(template)
    pending = list(template.nodes)
    while pending:
        node = pending.pop()
        yield node
        pending.extend(node.children(context, include_partials=False))


def _expressions(template: BoundTemplate) -> Iterator[Expression]:
    for node in _nodes(template):
        pending = list(node.expressions())
        while pending:
            expression = pending.pop()
            yield expression
            pending.extend(expression.children())


# -- what a text prints, for the checks of its length ---------------------------------------------

@dataclass(frozen=True, slots=True)
class Printed:
    """One value a text prints: ``{{ result.status | truncate: 30 }}``."""

    path: str  # "result.status"
    filters: frozenset[str]
    at: int  # where it is in the template


def printed_values(source: str) -> list[Printed]:
    """Each variable a template prints (``{{ … }}`` or ``{% echo %}``, in blocks too), in order;
    nothing for a template that does not parse (that is reported on its own)."""
    try:
        template = ENVIRONMENT.from_string(source)
    except LiquidError:
        return []
    printed = []
    for node in _nodes(template):
        expression = node.expression if isinstance(node, OutputNode) else None
        if isinstance(expression, FilteredExpression) and isinstance(expression.left, LiquidPath):
            filters = frozenset(applied.name for applied in expression.filters or ())
            printed.append(Printed(str(expression.left), filters, expression.left.token.start_index))
    return sorted(printed, key=lambda value: value.at)


def measured_text(source: str, placeholder: str) -> str:
    """The text with each ``{{ … }}`` and ``{% … %}`` standing as ``placeholder``: how long it is
    before its values are known (whitespace control and ``{% raw %}`` as Liquid reads them)."""
    try:
        tokens: Iterable[Token] = list(ENVIRONMENT.tokenizer()(source))
    except LiquidError:
        return source
    return "".join(token.value if token.kind == TOKEN_CONTENT else placeholder
                   for token in tokens if token.kind in (TOKEN_CONTENT, TOKEN_OUTPUT, TOKEN_TAG))


def literal_findings(path: Path, text: str, what: str) -> list[Finding]:
    """A text the bot shows as written (a menu label) that looks like a template."""
    at = min((index for index in (text.find("{{"), text.find("{%")) if index >= 0), default=None)
    if at is None:
        return []
    return [Finding(path, f"{what} is shown as written: {{{{ … }}}} and {{% … %}} are not filled in here",
                    severity="warning", hint="write it as plain text", at=at)]
