"""YAML reading for people: YAML 1.2 booleans, duplicate-key errors, and a line for every value.

PyYAML follows YAML 1.1, where an unquoted ``YES``, ``NO``, ``on`` or ``off`` is a boolean: an ops
person writing ``keywords: [YES, NO]`` would get ``[True, False]``. Here only ``true``/``false``
are booleans, as in YAML 1.2, so those words stay words; likewise only plain decimals are numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from bot.flows.problems import Path, Problem
from bot.flows.scalar_positions import Scalar
from bot.flows.yaml_hints import Explained, control_character, explain, unhashable_key


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core booleans."""


_REPLACED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Plain decimal numbers only: YAML 1.1 reads 010 as 8, 1:30 as 90 and 0x1F as 31, which turns a
# menu choice or a time into a different word. Those stay text here; leading zeros are kept.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


class YamlError(Exception):
    """Unreadable YAML, with the 1-based line and column of the mistake, and how to fix it."""

    def __init__(self, message: str, line: int, col: int, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.line, self.col, self.hint = message, line, col, hint

    @classmethod
    def explained(cls, explained: Explained) -> YamlError:
        return cls(explained.message, explained.line, explained.col, explained.hint)


@dataclass
class SourceMap:
    """Where each value of a YAML document sits, by its path of keys and indexes."""

    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    scalars: dict[Path, Scalar] = field(default_factory=dict)  # each text value as written

    def locate(self, path: Path, at: int | None = None) -> tuple[int, int]:
        """The 1-based (line, column) of the deepest part of ``path`` that exists in the file; with
        ``at``, of that character of the text value there (a place inside a template). A single
        text where a list is allowed (``say: Hi``) is that list's item 0."""
        for end in range(len(path), -1, -1):
            position = self.positions.get(tuple(path[:end]))
            if position is not None:
                scalar = self.scalars.get(tuple(path[:end]))
                if at is not None and scalar is not None and path[end:] in ((), (0,)):
                    return scalar.position_of(at)
                return position
        return (1, 1)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


#: Values a document may hold once its aliases are expanded: flows hold hundreds. An anchor repeated
#: inside others ("billion laughs") multiplies them, and every reader of the data walks each copy.
MAX_VALUES = 100_000


def _map_positions(node: yaml.Node, path: Path, source: SourceMap, text: str) -> None:
    if len(source.positions) > MAX_VALUES:
        raise YamlError(f"the file holds over {MAX_VALUES:,} values once its aliases (*name) are expanded",
                        *_mark(node), hint="an anchor (&name) used inside another that is used many times "
                                           "multiplies; write the values out instead")
    source.positions[path] = _mark(node)
    if isinstance(node, yaml.ScalarNode):
        source.scalars[path] = Scalar(text[node.start_mark.index:node.end_mark.index], *_mark(node), node.value)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # say: {{ name }} is {{name: null}: null}
                raise YamlError.explained(unhashable_key(*_mark(key_node), text))
            key = key_node.value
            if key in seen:
                line = seen[key].start_mark.line + 1
                raise YamlError(f"duplicate key {key!r} (first written on line {line})", *_mark(key_node),
                                hint="keep one of them, or give this one another name")
            seen[key] = key_node
            source.positions[(*path, key, "[key]")] = _mark(key_node)
            _map_positions(value_node, (*path, key), source, text)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_positions(item, (*path, index), source, text)


def read_yaml(text: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus the position of every value."""
    try:
        loader = _Loader(text)  # refuses control characters at once, before any parsing
    except yaml.reader.ReaderError as error:
        raise YamlError.explained(control_character(error, text)) from None
    try:
        node = loader.get_single_node()
        source = SourceMap()
        if node is None:
            return None, source
        _map_positions(node, (), source, text)
        return loader.construct_document(node), source
    except yaml.MarkedYAMLError as error:
        raise YamlError.explained(explain(error, text)) from None
    except yaml.YAMLError as error:
        raise YamlError(f"YAML: {error}", 1, 1) from None
    except RecursionError:  # PyYAML and the position map recurse once per level of nesting
        raise YamlError("YAML: the lists and mappings are nested too deeply to read", 1, 1,
                        hint="a flow needs a few levels; look for brackets opened many times over") from None
    finally:
        loader.dispose()


class UnreadableFile(Exception):
    """A file that cannot be read as YAML; ``problem`` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_yaml_file(path: FilePath) -> tuple[Any, SourceMap]:
    """Read a flow or conversation-test file; raises :class:`UnreadableFile` with its position."""
    file = str(path)
    try:
        return read_yaml(path.read_text(encoding="utf-8"))
    except YamlError as error:
        raise UnreadableFile(Problem(file, error.line, error.col, error.message, hint=error.hint)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFile(Problem(file, 1, 1, f"cannot read the file: {error}")) from None
