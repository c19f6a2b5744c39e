"""The planned render (bot/text/fast_templates.py) prints exactly what Liquid prints: generated
templates of text and outputs, rendered with generated values, by both."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from liquid import BoundTemplate

from bot.text.fast_templates import PlannedTemplate, plan_of
from bot.text.templates import ENVIRONMENT, parse

NAMES = ["order", "name", "a", "b", "size", "first", "message"]
TEXT = st.text(alphabet=st.sampled_from(list("ab {}-%|.\n\r\t\"'é😀0")), max_size=12)


def output(path: list[str], filters: str, trim: tuple[bool, bool]) -> str:
    dotted = path[0] + "".join(f".{name}" if name.isidentifier() else f"[{name!r}]" for name in path[1:])
    return "{{" + ("-" if trim[0] else "") + " " + dotted + filters + " " + ("-" if trim[1] else "") + "}}"


OUTPUTS = st.builds(output, st.lists(st.sampled_from([*NAMES, "with space"]), min_size=1, max_size=3),
                    st.sampled_from(["", "", " | upcase", " | default: 'x'", " | size"]),
                    st.tuples(st.booleans(), st.booleans()))
PIECES = st.one_of(TEXT, OUTPUTS, st.sampled_from(["{{ a[0] }}", "{% if a %}yes{% endif %}", "{{ 'lit' }}",
                                                   "{% raw %}{{ a }}{% endraw %}", "{{ a.size }}"]))
LEAVES = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False),
                   st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3))
VALUES = st.recursive(LEAVES, lambda inner: st.dictionaries(st.sampled_from(NAMES), inner, max_size=4), max_leaves=8)


def rendered(template: BoundTemplate, context: dict[str, Any]) -> tuple[str, str]:
    try:
        return "ok", template.render(**context)
    except Exception as error:  # noqa: BLE001 - both must fail alike
        return "error", type(error).__name__


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=6), st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6))
def test_the_planned_render_prints_what_liquid_prints(pieces: list[str], context: dict[str, Any]) -> None:
    source = "".join(pieces)
    try:
        planned = parse(source)
    except ValueError:
        return  # not a template (an unbalanced tag): refused at load, never rendered
    assert isinstance(planned, PlannedTemplate)
    liquid = BoundTemplate(ENVIRONMENT, planned.nodes, globals=planned.globals, matter=planned.matter)
    assert rendered(planned, context) == rendered(liquid, context)


def test_only_text_and_plain_path_outputs_get_a_plan() -> None:
    assert plan_of(parse("Order {{ order }} is {{ a.b }}").nodes) == ("Order ", ("order",), " is ", ("a", "b"))
    assert plan_of(parse("plain words").nodes) == ("plain words",)
    for source in ("{{ order | upcase }}", "{{ a[0] }}", "{% if a %}x{% endif %}", "{{ 'lit' }}"):
        assert plan_of(parse(source).nodes) is None, source


def test_values_that_are_not_plain_go_through_liquid() -> None:
    template = parse("[{{ a.b }}]")
    assert template.render(a={"b": "text"}) == "[text]"
    assert template.render(a={"b": 7}) == "[7]"
    assert template.render(a={"b": True}) == "[true]"  # Liquid's spelling, not Python's
    assert template.render(a={"b": None}) == "[]"
    assert template.render(a={"b": [1, "x"]}) == "[1x]"
    assert template.render(a={"b": 1.5}) == "[1.5]"
    assert template.render(a={}) == "[]"
    assert template.render() == "[]"
