"""The common template, rendered without Liquid's machinery: text and plain ``{{ name.path }}`` outputs.

Nearly every text a flow says is either plain words or words with a saved value in them ("Order
{{ order }} is on its way"). Liquid renders each by building a render context (chained scopes, a
buffer, a node walk): most of a turn's template time, for what is a string join. A template made
only of text and unfiltered outputs of a dotted path gets a plan at parse time, and its values are
looked up directly — only when each is a plain ``str`` or ``int`` reached through plain dicts. Any
other value (a list, a float, None, a missing name, a list index) renders through Liquid as before,
so Liquid stays the one definition of what a template prints; tests/test_fast_templates.py checks
the two agree on generated templates and values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from liquid import BoundTemplate
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions.filtered import FilteredExpression
from liquid.builtin.expressions.path import Path as LiquidPath
from liquid.builtin.output import OutputNode

#: A plan: text as it is, and a tuple of names for each value to look up.
Plan = tuple[str | tuple[str, ...], ...]
_NOT_PLAIN = object()


def plan_of(nodes: list[Any]) -> Plan | None:
    """The plan for ``nodes``, or None when any node is more than text or a plain path output."""
    plan: list[str | tuple[str, ...]] = []
    for node in nodes:
        if type(node) is ContentNode:
            plan.append(node.text)
            continue
        if type(node) is not OutputNode:
            return None
        expression = node.expression
        if type(expression) is not FilteredExpression or expression.filters or type(expression.left) is not LiquidPath:
            return None
        path = expression.left.path
        if not path or not all(type(segment) is str for segment in path):
            return None
        plan.append(tuple(str(segment) for segment in path))
    return tuple(plan)


class PlannedTemplate(BoundTemplate):
    """Liquid's template, rendered from its plan when it has one and every value is plain."""

    _planned = False  # the plan is worked out on the first render
    _plan: Plan | None = None

    def render(self, *args: Any, **kwargs: Any) -> str:
        if not self._planned:
            self._plan, self._planned = plan_of(self.nodes), True
        plan = self._plan
        if plan is None or args:
            return super().render(*args, **kwargs)
        parts: list[str] = []
        for part in plan:
            if type(part) is str:
                parts.append(part)
                continue
            value = self._plain_value(part, kwargs)  # type: ignore[arg-type]
            if value is _NOT_PLAIN:
                return super().render(**kwargs)
            parts.append(value)  # type: ignore[arg-type]
        return "".join(parts)

    def _plain_value(self, path: tuple[str, ...], arguments: Mapping[str, Any]) -> object:
        root = path[0]
        # Liquid's order: the render arguments, then the template's front matter, then its globals.
        for scope in (arguments, self.matter, self.globals):
            if root in scope:
                value = scope[root]
                break
        else:
            return _NOT_PLAIN
        for name in path[1:]:
            if type(value) is not dict or name not in value:
                return _NOT_PLAIN
            value = value[name]
        if type(value) is str:
            return value
        if type(value) is int:
            return str(value)
        return _NOT_PLAIN
