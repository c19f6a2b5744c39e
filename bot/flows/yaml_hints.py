"""YAML syntax errors explained in the words of the mistake an ops person made, not the parser's.

PyYAML says "mapping values are not allowed here" or "expected <block end>, but found '<scalar>'";
the mistake behind it is nearly always one of a few: a text holding ": " without quotes, a tab, a
quote never closed or closed early (an apostrophe inside '…'), a text starting with ``{{``, ``[``,
``@``, ``*``, ``!`` or ``|`` that YAML reads as something else, or a line indented wrongly. Each gets a
message saying which, the place to look at, and a hint showing the line written right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

#: A line's field or list dash, then its value: ``    say: Note: closed`` → ("    say: ", "Note: closed").
#: Field names are lower case (``say``, ``any_of``), so ``- Note: closed`` is a dash and a text.
#: The value ends at its last non-space (``.*\S``, not a lazy ``.*?`` before ``\s*$``, which retries
#: the spaces after every character: seconds for a line of many spaces, in the server's event loop).
_LINE = re.compile(r"^(?P<prefix>\s*(?:-\s+)?(?:[a-z_][a-z0-9_]*\s*:\s+)?)(?P<value>(?:.*\S)?)\s*$")
_KEY_ONLY = re.compile(r"\s*(?:-\s+)?[A-Za-z_][\w-]*\s*")
_INDENTATION = ("'<block mapping start>'", "'<block sequence start>'", "'?'", "'-'", "'<block end>'")
#: What a character at the start of a plain text makes YAML read instead of a text.
_SPECIAL_START = {"@": "", "`": "", "%": "a directive",
                  "*": "an alias (a reference to an earlier value)", "&": "an anchor (a name for a value)",
                  "!": "a tag (a type name)", "|": "a block of lines", ">": "a block of folded lines",
                  "[": "a list", "{": "a mapping"}


@dataclass(frozen=True, slots=True)
class Explained:
    """Where the mistake is (1-based), what it is, and how to fix it."""

    line: int
    col: int
    message: str
    hint: str = ""


def explain(error: yaml.MarkedYAMLError, text: str) -> Explained:
    """The mistake behind a YAML error: its place, a message and a hint."""
    lines = text.splitlines()
    context = error.context or ""
    problem = error.problem or ""
    at = error.problem_mark or error.context_mark
    line, col = (at.line + 1, at.column + 1) if at is not None else (1, 1)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    parsers = "YAML syntax: " + " ".join(part for part in (error.context, error.problem) if part)

    opened = context.startswith("while parsing a flow") and error.context_mark is not None
    if opened and error.problem_mark is not None and error.context_mark is not None:
        return _never_closed(error, lines)
    template = _template_line(lines, error)
    if template is not None:
        where, value_col = template
        return Explained(where, value_col, "YAML syntax: a text starting with '{' is read as a mapping",
                         _quote_hint(lines[where - 1], "quote a text that starts with {{ or {%"))
    if "'\\t'" in problem:
        indenting = not source[:col - 1].strip()
        return Explained(line, col, "YAML syntax: a tab character",
                         "YAML indents with spaces, never tabs: replace the tab with spaces" if indenting
                         else "replace the tab with a space")
    if context == "while scanning a simple key" and error.context_mark is not None:
        return _no_colon(lines, error.context_mark.line + 1)
    if problem == "mapping values are not allowed here":
        if _KEY_ONLY.fullmatch(source[:col - 1]):
            above = next((number for number in range(line - 1, 0, -1) if lines[number - 1].strip()), 0)
            if above and _indent(lines[above - 1]) >= _indent(source):
                return _no_colon(lines, above)
            return Explained(line, col, "YAML syntax: this field is indented more than the one above it",
                             "line it up with the field above it, using the same number of spaces, or put a "
                             "text that goes on over several lines in quotes")
        return Explained(line, col, "YAML syntax: mapping values are not allowed here: YAML reads the ': ' "
                                    "in this text as the start of a field",
                         _quote_hint(source, "quote text that contains ': '"))
    if context == "while scanning a quoted scalar" and error.context_mark is not None:
        return _unclosed_quote(error.context_mark, lines, problem)
    if "unknown escape character" in problem:
        return Explained(line, col, parsers, "inside double quotes a backslash starts an escape: put a regular "
                                             "expression in single quotes ('^\\d{6}$'), or write \\\\ for a backslash")
    if problem.startswith("expected <block end>, but found '<scalar>'"):
        opened_above = _opened_above(lines, line, col)
        if opened_above is not None:
            return opened_above
        closed_early = _closed_early(source, col)
        if closed_early is not None:
            return Explained(line, col, *closed_early)
    special = _special_start(error, lines)
    if special is not None:
        return special
    if ("expected <block end>" in problem and problem.endswith(_INDENTATION)) or \
            problem.startswith(("did not find expected key", "did not find expected '-' indicator")):
        return Explained(line, col, "YAML syntax: the indentation of this line does not fit the lines above it",
                         "line it up, with spaces, with the fields or list items of the same level above it")
    return Explained(line, col, parsers, "look here for a stray character, or a text that needs quotes "
                                         "(docs/flows.md, section 11)")


def unhashable_key(line: int, col: int, text: str) -> Explained:
    """A mapping or list used as a field name: ``say: {{ name }}`` read as ``{{name: null}: null}``."""
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    found = _LINE.match(source)
    first = found["value"][:1] if found is not None else ""
    if first not in ("[", "{"):
        return Explained(line, col, "YAML syntax: a field name must be a plain word, not a list or a mapping")
    return Explained(line, _value_col(source) or col,
                     f"YAML syntax: a text starting with {first!r} is read as {_SPECIAL_START[first]}",
                     _quote_hint(source, "quote a text that starts with {{ or {%" if first == "{"
                                 else f"quote a text that starts with {first!r}"))


def control_character(error: yaml.reader.ReaderError, text: str) -> Explained:
    """A character YAML refuses anywhere in a file (a NUL, an escape, or the vertical tab a word
    processor writes for a line break within a paragraph, pasted into a text)."""
    position = error.position if isinstance(error.position, int) and 0 <= error.position <= len(text) else 0
    before = text[:position]
    line, col = before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
    code = error.character if isinstance(error.character, int) else ord(str(error.character)[:1] or "\0")
    return Explained(line, col, f"YAML syntax: an invisible control character (U+{code:04X}) that YAML does not allow",
                     "delete it and retype the text around it; text pasted from a word processor often "
                     "carries one where a line breaks")


def _never_closed(error: yaml.MarkedYAMLError, lines: list[str]) -> Explained:
    """An unclosed ``[`` or ``{`` is where it opened, not where YAML gave up."""
    assert error.context_mark is not None and error.problem_mark is not None
    closer = "]" if "sequence" in (error.context or "") else "}"
    what = "list" if closer == "]" else "mapping"
    line = error.context_mark.line + 1
    source = lines[line - 1] if line <= len(lines) else ""
    value = _LINE.match(source)
    hint = f"add {closer!r} at the end of the {what} on this line"
    if value is not None and value["value"].startswith("[") and "]" in value["value"]:
        hint = _quote_hint(source, "a text that starts with '[' is read as a list: quote it")
    return Explained(line, error.context_mark.column + 1,
                     f"YAML syntax: this {what} is never closed with {closer!r} (on line "
                     f"{error.problem_mark.line + 1}, {_plainer(error.problem or '')})", hint)


def _indent(source: str) -> int:
    return len(source) - len(source.lstrip(" -"))


def _no_colon(lines: list[str], line: int) -> Explained:
    """A field written without its ':' (``go end``, ``say "hi"``): shown with it."""
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    found = re.match(r"^(\s*(?:-\s+)?)([A-Za-z_][\w-]*)\s+(\S(?:.*\S)?)\s*$", source)
    fixed = f", like this: {found[2]}: {found[3]}" if found is not None else ""
    col = len(found[1]) + 1 if found is not None else len(source) - len(source.lstrip()) + 1
    return Explained(line, col, "YAML syntax: this line has no ':' after its field name",
                     f"write the field's name, a ':' and a space, then its value{fixed}")


def _plainer(problem: str) -> str:
    """PyYAML's "expected ',' or ']', but got ':'" as "YAML wanted ',' or ']' but found ':'"."""
    return problem.replace("expected ", "YAML wanted ", 1).replace(", but got ", " but found ", 1)


def _unclosed_quote(opened: yaml.Mark, lines: list[str], problem: str) -> Explained:
    source = lines[opened.line] if opened.line < len(lines) else ""
    quote = source[opened.column] if opened.column < len(source) else '"'
    inside = "write \\\" for a \" inside double quotes" if quote == '"' else \
        "write an apostrophe inside single quotes twice ('It''s')"
    return Explained(opened.line + 1, opened.column + 1,
                     "YAML syntax: this quoted text is never closed" +
                     (": it runs to the end of the file" if "end of stream" in problem else f" ({problem})"),
                     f"end the text with {quote} on the line where it ends; {inside}")


def _opened_above(lines: list[str], line: int, col: int) -> Explained | None:
    """A text whose opening quote is never closed on its line runs on to the next quote, often
    the opening one of a later field (``otherwise: "…``): point at where it opened."""
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    before = source[:col - 1].rstrip()
    value = _LINE.match(source)
    if value is None or len(before) != len(value["prefix"]) + 1 or before[-1:] not in ("'", '"'):
        return None
    quote = before[-1]
    for number in range(line - 1, 0, -1):
        found = _LINE.match(lines[number - 1])
        if found is not None and found["value"].startswith(quote) and found["value"].count(quote) % 2 == 1:
            return Explained(number, len(found["prefix"]) + 1,
                             f"YAML syntax: this quoted text is never closed on its line: it runs on to the {quote} "
                             f"on line {line}", f"end the text with {quote} on the line where it ends")
    return None


def _closed_early(source: str, col: int) -> tuple[str, str] | None:
    """Text after a closing quote: an apostrophe that ended a '…' text, or words after "…"."""
    before = source[:col - 1].rstrip()
    value = _LINE.match(source)
    if not before or value is None or not value["value"] or value["value"][0] not in "'\"":
        return None
    quote = value["value"][0]
    if before[-1] != quote:
        return None
    text, closing = value["value"], len(before) - 1 - len(value["prefix"])
    if len(text) > 1 and text[-1] == quote:  # quotes inside meant as written: "He said "hi" to me"
        meant = text[1:-1].replace("''", "'") if quote == "'" else text[1:-1]
    else:  # words after the closing quote meant as part of the text: "Hi" there
        meant = text[1:closing] + text[closing + 1:]
    shown = f"{value['prefix'].strip()} {quoted(meant)}".strip()
    if quote == "'" and len(before) == col - 1:  # no space after it: an apostrophe, as in 'It's'
        return ("YAML syntax: an apostrophe ends a text in single quotes",
                f"write the apostrophe twice ('It''s'), or put the text in double quotes: {shown}")
    return ("YAML syntax: the text goes on after its closing quote",
            f"put all of the text inside the quotes: {shown}")


def _template_line(lines: list[str], error: yaml.MarkedYAMLError) -> tuple[int, int] | None:
    """The line and column of a value starting with ``{{`` or ``{%`` where YAML stopped."""
    for mark in (error.problem_mark, error.context_mark):
        if mark is not None and mark.line < len(lines):
            source = lines[mark.line]
            found = _LINE.match(source)
            if found is not None and found["value"].startswith(("{{", "{%")):
                return mark.line + 1, len(found["prefix"]) + 1
    return None


def _special_start(error: yaml.MarkedYAMLError, lines: list[str]) -> Explained | None:
    """A text starting with a character YAML gives a meaning of its own: @, `, *, &, !, |, >, [."""
    for mark in (error.context_mark, error.problem_mark):
        if mark is None or mark.line >= len(lines):
            continue
        source = lines[mark.line]
        found = _LINE.match(source)
        if found is None or not found["value"]:
            continue
        first = found["value"][0]
        if first in _SPECIAL_START and len(found["prefix"]) <= mark.column and first not in "{":
            if first == "[" and "]" not in found["value"][:-1]:
                continue  # a list indeed, broken some other way
            meaning = _SPECIAL_START[first]
            message = f"is read as {meaning}" if meaning else "is not allowed (YAML keeps the character for itself)"
            return Explained(mark.line + 1, len(found["prefix"]) + 1,
                             f"YAML syntax: a text starting with {first!r} {message}",
                             _quote_hint(source, f"quote a text that starts with {first!r}"))
    return None


def _value_col(source: str) -> int | None:
    found = _LINE.match(source)
    return len(found["prefix"]) + 1 if found is not None and found["value"] else None


def _quote_hint(source: str, advice: str) -> str:
    """``advice``, with the line written right when it can be shown: say: "Note: we are closed"."""
    found = _LINE.match(source)
    if found is None or not found["value"]:
        return advice
    shown = f"{found['prefix'].strip()} {quoted(found['value'])}".strip()
    return f"{advice}, like this: {shown}"


def quoted(value: str) -> str:
    """``value`` as a quoted YAML text: in double quotes when that needs no escapes, else in single."""
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"
