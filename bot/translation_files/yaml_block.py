"""The ``translations:`` table written back into its flow file, the rest of the file kept byte for byte.

A flow file is written by people: its comments, quoting and order matter, and a YAML round trip
would lose them. So only the table's text is edited. By convention the table is the file's last
top-level key (the shipped flows have it so), but it is found wherever it is: a row that did not
change keeps its text (and the comments between rows), a changed row has only the one language's
value written anew (or added on a line of its own), new rows follow the last. Where the table is
not a plain list of rows (``translations: []``, a row not on lines of its own) a changed row, or
the whole table, is written anew instead: :func:`rewritten` offers these ways best first, and the
caller keeps the first that reads back as intended. A file without a table gets one at its end.

Rows are written with PyYAML, non-ASCII kept as it is (``allow_unicode``), texts in double quotes
(as the shipped flows write sentences), words plain where the bot's own YAML reading gives them
back as the same text (``NO`` and ``010`` are quoted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

from bot.flows.yamlsource import YamlError, read_yaml

Row = Mapping[str, str | Sequence[str]]
KEY = "translations"
DEFAULT_INDENT = 2
_NO_WRAPPING = 1 << 30


class _Dumper(yaml.SafeDumper):
    """Rows as people write them: texts double-quoted, words plain when they read back as text."""


class _Text(str):
    """A translated text: always written in double quotes."""


_STR = "tag:yaml.org,2002:str"


def _text(dumper: yaml.SafeDumper, data: _Text) -> yaml.ScalarNode:
    return dumper.represent_scalar(_STR, str(data), style='"')


def _word(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    try:  # as the bot reads flows (YAML 1.2 booleans, decimals) and as YAML 1.1 would (NO, 010)
        plain = read_yaml(data)[0] == data and dumper.resolve(yaml.ScalarNode, data, (True, False)) == _STR
    except YamlError:
        plain = False
    return dumper.represent_scalar(_STR, data, style=None if plain else '"')


class _Words(list[str]):
    """A list of words: always on one line, ``[ESTADO, PEDIDO]``."""


def _words(dumper: yaml.SafeDumper, data: _Words) -> yaml.SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True)


_Dumper.add_representer(_Text, _text)
_Dumper.add_representer(str, _word)
_Dumper.add_representer(_Words, _words)


def rendered_row(row: Row, indent: int, newline: str = "\n") -> str:
    """One row as a list item (``- en: …``), its dash at column ``indent``."""
    data = {code: _Words(value) if not isinstance(value, str) else _Text(value) for code, value in row.items()}
    text = yaml.dump([data], Dumper=_Dumper, allow_unicode=True, default_flow_style=None, sort_keys=False,
                     width=_NO_WRAPPING)
    return "".join(" " * indent + line + newline for line in text.splitlines())


def rendered_value(value: str | Sequence[str]) -> str:
    """A row's value as written after its key: ``"¿Cuál…?"`` or ``[ESTADO, PEDIDO]``, on one line."""
    line = rendered_row({"k": value}, 0)
    return line[len("- k: "):].rstrip("\n")


@dataclass(frozen=True)
class _Span:
    """One row of the table: its whole lines, and its node."""

    start: int
    end: int
    node: yaml.Node


@dataclass(frozen=True)
class _Table:
    """Where the table is in the file, by character offsets."""

    start: int  # the start of the line of ``translations:``
    end: int  # just after the table's last value (and the rest of its line)
    rows: list[_Span] | None  # each row, when every row has lines of its own
    dash: int  # the column of the rows' dash


def rewritten(text: str, rows: Sequence[Row], changed: dict[int, str], existing: int) -> list[str]:
    """The file with its table holding ``rows``, in the ways worth trying, best first: only the
    changed values edited, then the changed rows written anew, then the whole table. ``existing``:
    how many of ``rows`` the file's table has now (the others are new); ``changed``: which of those
    differ from the file's, and in which language."""
    newline = "\r\n" if "\r\n" in text else "\n"
    table = _find(text)
    if table is None:  # a table of its own at the end, after a blank line
        ending = "" if text.endswith(("\n\n", "\r\n\r\n")) or not text else \
            newline if text.endswith("\n") else newline * 2
        return [text + ending + _whole(rows, DEFAULT_INDENT, newline)]
    whole = text[:table.start] + _whole(rows, table.dash, newline) + text[table.end:]
    if table.rows is None or len(table.rows) != existing:
        return [whole]
    ways = []
    for edit_values in (True, False):
        parts = [text[:table.rows[0].start]]
        for number, span in enumerate(table.rows):
            row_text = text[span.start:span.end]
            if number in changed:
                edited = _value_edited(text, span, rows[number], changed[number], newline) if edit_values else None
                row_text = edited if edited is not None else rendered_row(rows[number], table.dash, newline)
            parts.append(row_text)
            following = table.rows[number + 1].start if number + 1 < len(table.rows) else span.end
            parts.append(text[span.end:following])  # comments and blank lines between rows
        last_end = table.rows[-1].end
        if not text[:last_end].endswith(("\n", "\r")):  # the file ended on the last row's line
            parts.append(newline)
        parts.extend(rendered_row(row, table.dash, newline) for row in rows[existing:])
        parts.append(text[last_end:])
        ways.append("".join(parts))
    return [*ways, whole]


def _value_edited(text: str, span: _Span, row: Row, language: str, newline: str) -> str | None:
    """The row's text with only its ``language`` value written anew (or added on a line of its own),
    or None when the row is not a block mapping that allows it."""
    node = span.node
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        return None
    value = rendered_value(row[language])
    for key, old in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == language:
            end = _content_end(old)
            ending = newline if text[end - 1:end] == "\n" else ""  # a block value ends at the next line
            if isinstance(old, yaml.CollectionNode) and not old.flow_style:  # a list on the lines below
                return text[span.start:key.end_mark.index] + ": " + value + ending + text[end:span.end]
            return text[span.start:old.start_mark.index] + value + ending + text[end:span.end]
    row_text = text[span.start:span.end]
    if not row_text.endswith("\n"):
        row_text += newline
    key_line = rendered_row({language: row[language]}, 0, newline)[len("- "):]
    return row_text + " " * node.start_mark.column + key_line


def _whole(rows: Sequence[Row], indent: int, newline: str) -> str:
    return f"{KEY}:{newline}" + "".join(rendered_row(row, indent, newline) for row in rows)


def _find(text: str) -> _Table | None:
    """The table's place in ``text`` (a flow file that reads), or None when it has none."""
    document = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(document, yaml.MappingNode):
        return None
    found = next(((key, value) for key, value in document.value
                  if isinstance(key, yaml.ScalarNode) and key.value == KEY), None)
    if found is None:
        return None
    key, value = found
    start = _line_start(text, key.start_mark.index)
    end = _line_end(text, _content_end(value))
    if not isinstance(value, yaml.SequenceNode) or value.flow_style or not value.value:
        return _Table(start, end, None, DEFAULT_INDENT)
    spans: list[_Span] = []
    dashes: set[int] = set()
    for item in value.value:
        row_start = _line_start(text, item.start_mark.index)
        before = text[row_start:item.start_mark.index]
        if before.strip() != "-" or (spans and row_start < spans[-1].end):
            return _Table(start, end, None, DEFAULT_INDENT)  # "-" on a line of its own, or two rows on one line
        dashes.add(before.index("-"))
        spans.append(_Span(row_start, _line_end(text, _content_end(item)), item))
    if len(dashes) != 1:  # rows at different columns: written anew, all at one
        return _Table(start, end, None, DEFAULT_INDENT)
    return _Table(start, end, spans, dashes.pop())


def _content_end(node: yaml.Node) -> int:
    """The offset just after the node's last character of content: a block collection's own end
    mark lies past the comments and blank lines that follow it."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _content_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _content_end(node.value[-1])
    return int(node.end_mark.index)


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _line_end(text: str, offset: int) -> int:
    """Just after the line break of the line ``offset`` is on; an offset already at the start of a
    line (a block scalar's end) is that line's start; the end of the text when it has no break."""
    if offset > 0 and text[offset - 1] == "\n":
        return offset
    found = text.find("\n", offset)
    return len(text) if found < 0 else found + 1
