"""Draw a flow as a Mermaid ``stateDiagram-v2``, through ``transitions``' own diagram support.

The mermaid engine needs no graphviz binary, and GitHub renders the result in Markdown. States
get an id prefix so names such as ``end`` or ``state`` cannot clash with Mermaid keywords; their
labels stay the names ops staff wrote.
"""

from __future__ import annotations

from typing import Any

from transitions.extensions import GraphMachine

from bot.flows.compile import CompiledFlow
from bot.flows.schema import END

_ID_PREFIX = "n_"  # not "s_": transitions names its classDefs s_default, s_active…


class _LabeledState(GraphMachine.state_cls):  # type: ignore[misc, name-defined, valid-type]
    """A state with a display label, which the diagram backends already know how to draw."""

    def __init__(self, *args: Any, label: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label


class _FlowGraphMachine(GraphMachine):
    state_cls = _LabeledState


class _Model:
    """GraphMachine draws the diagram of a model; this one exists only to be drawn."""


def mermaid(flow: CompiledFlow, title: str | None = None) -> str:
    """The flow's diagram as Mermaid source (without a Markdown fence), titled with its name or
    ``title`` (a language's version: "order_status (es)")."""
    title = title or flow.name
    names = list(flow.states) + ([END] if END not in flow.states else [])
    finals = {name for name in names if name == END or not (
        flow.states[name].waits or flow.states[name].go or flow.states[name].branch or flow.states[name].enter)}
    states = [{"name": _ID_PREFIX + name, "label": name, "final": name in finals} for name in names]
    transitions = [{**spec, "trigger": _text(spec["trigger"]), "source": _ID_PREFIX + spec["source"],
                    "dest": None if spec["dest"] is None else _ID_PREFIX + spec["dest"]}
                   for spec in flow.transitions]
    machine = _FlowGraphMachine(model=_Model(), states=states, transitions=transitions,
                                initial=_ID_PREFIX + flow.start, auto_transitions=False,
                                graph_engine="mermaid", title=title, show_state_attributes=False)
    source = machine.models[0].get_graph().draw(None)
    assert isinstance(source, str)  # the mermaid backend returns its text when given no file
    # transitions writes the title as bare front matter; Mermaid reads a title only as `title: …`.
    bare_title = f"---\n{title}\n---\n"
    if source.startswith(bare_title):
        source = f"---\ntitle: {title}\n---\n" + source[len(bare_title):]
    # transitions marks the model's current state (the start) as active; mark where flows finish too.
    ends = "".join(f"  {_ID_PREFIX}{name} --> [*]\n" for name in names if name in finals)
    return source.rstrip("\n") + "\n" + ends


#: Mermaid draws a label as HTML (sanitised) after reading it as Markdown: a keyword such as "<b>"
#: would be markup, "#…;" an entity, and a pattern's "a*b*" italics. Its own entity codes keep them
#: the characters the author wrote.
_ENTITIES = str.maketrans({"#": "#35;", "&": "#amp;", "<": "#lt;", ">": "#gt;", '"': "#quot;", ";": "#59;",
                           "*": "#42;", "_": "#95;", "~": "#126;", "`": "#96;"})


def _text(label: str) -> str:
    """``label`` as Mermaid source that draws exactly those characters ("$$" would start maths),
    on one line: a line break (in a keyword or pattern) would end the transition's line early and
    leave the rest as a syntax error, so the page could not draw the diagram at all."""
    one_line = " ".join(label.splitlines())
    return one_line.translate(_ENTITIES).replace("$$", "#36;#36;")


def markdown(flow: CompiledFlow, title: str | None = None) -> str:
    """The diagram in a fenced block, ready for a ``.md`` file that GitHub renders."""
    return f"```mermaid\n{mermaid(flow, title)}```\n"
