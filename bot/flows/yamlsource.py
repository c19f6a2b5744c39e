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
    """Unreadable YAML, with the 1-based line and column where reading stopped."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


@dataclass
class SourceMap:
    """Where each value of a YAML document sits, by its path of keys and indexes."""

    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path) -> tuple[int, int]:
        """The 1-based (line, column) of the deepest part of ``path`` that exists in the file."""
        for end in range(len(path), -1, -1):
            position = self.positions.get(tuple(path[:end]))
            if position is not None:
                return position
        return (1, 1)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _map_positions(node: yaml.Node, path: Path, source: SourceMap) -> None:
    source.positions[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                line = seen[key].start_mark.line + 1
                raise YamlError(f"duplicate key {key!r} (first written on line {line})", *_mark(key_node))
            seen[key] = key_node
            source.positions[(*path, key, "[key]")] = _mark(key_node)
            _map_positions(value_node, (*path, key), source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_positions(item, (*path, index), source)


def read_yaml(text: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus the position of every value."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        source = SourceMap()
        if node is None:
            return None, source
        _map_positions(node, (), source)
        return loader.construct_document(node), source
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error) from None
    except yaml.YAMLError as error:
        raise YamlError(f"YAML: {error}", 1, 1) from None
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
        raise UnreadableFile(Problem(file, error.line, error.col, error.message)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFile(Problem(file, 1, 1, f"cannot read the file: {error}")) from None


def _syntax_error(error: yaml.MarkedYAMLError) -> YamlError:
    """Point at the cause: an unclosed ``[`` or ``{`` is where it opened, not where YAML gave up."""
    context, problem = error.context_mark, error.problem_mark
    opened = error.context and error.context.startswith("while parsing a flow") and context is not None
    mark = context if opened else (problem or context)
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if opened and problem is not None and context is not None:
        closer = "]" if "sequence" in (error.context or "") else "}"
        message = (f"YAML syntax: this {error.context.removeprefix('while parsing a ')} is never closed "
                   f"with {closer!r} ({error.problem} on line {problem.line + 1})")
    else:
        message = "YAML syntax: " + " ".join(part for part in (error.context, error.problem) if part)
    return YamlError(message, line, col)
