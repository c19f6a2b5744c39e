"""Where a flow's translatable texts stand in its file, and which row of its ``translations:``
table translates each: what lint needs to point at a text, a row, or a word inside a row.

:func:`bot.flows.translations.map_flow` is the one list of what a flow says and listens for;
:func:`places` asks it (with a marker in place of each text) rather than walking the flow a
second way, so a field the lead adds there is located here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from babel import Locale, UnknownLocaleError

from bot.flows.problems import Path
from bot.flows.schema import Flow
from bot.flows.translations import Item, map_flow, with_plain_spellings, words_key
from bot.text.normalise import fold, normalise

#: How a row is found: its base text, or its base words as people's replies are compared
Key = str | tuple[str, ...]

_MARK = "\x00translatable {}\x00"
_MARKED = re.compile(r"\x00translatable (\d+)\x00")


def key_of(value: str | list[str] | tuple[str, ...]) -> Key:
    return value if isinstance(value, str) else words_key(list(value))


@cache
def language_name(code: str) -> str:
    """``es`` as people say it in a message: "Spanish (es)"; an unknown code as itself."""
    try:
        return f"{Locale.parse(code, sep='-').get_display_name('en')} ({code})"
    except (UnknownLocaleError, ValueError):
        return code


@dataclass(frozen=True)
class Place:
    """One text or list of words of a flow, where its file has it."""

    path: Path  # ("states", "ask", "say", 0); a list of words: the list's own path
    item: Item

    @property
    def key(self) -> Key:
        return key_of(self.item.text if self.item.text is not None else self.item.words or ())

    @property
    def shown(self) -> str:
        """The text, or the words, as a message quotes them (long texts shortened)."""
        if self.item.text is not None:
            return quoted(self.item.text)
        return "[" + ", ".join(self.item.words or ()) + "]"

    @property
    def where(self) -> str:
        return where(self.path)


def quoted(text: str, most: int = 60) -> str:
    return repr(text if len(text) <= most else text[:most - 1].rstrip() + "…")


def where(path: Path) -> str:
    """A place as a reader of the file finds it: ``ask.say[0]``, ``anywhere[1].keywords``."""
    parts = path[1:] if path[:1] == ("states",) else path
    label = ""
    for part in parts:
        label += f"[{part}]" if isinstance(part, int) else (f".{part}" if label else str(part))
    return label


def places(flow: Flow) -> list[Place]:
    """Every text and list of words of ``flow`` that a translation may replace: its triggers, its
    ``listed`` text, its ``anywhere`` replies, then each state's, in file order."""
    items: list[Item] = []

    def text(value: str, where: str) -> str:
        items.append(Item(where, text=value))
        return _MARK.format(len(items) - 1)

    def words(value: list[str], where: str) -> list[str]:
        items.append(Item(where, words=tuple(value)))
        return [_MARK.format(len(items) - 1)]

    marked = map_flow(flow, text, words).model_dump(by_alias=True)
    found: dict[int, Path] = {}  # in the order of the flow's fields, its states in file order
    _find_marks(marked, (), found)
    return [Place(_list_path(path, items[number]), items[number]) for number, path in found.items()
            if number < len(items)]


def _list_path(path: Path, item: Item) -> Path:
    return path[:-1] if item.words is not None else path  # the marker stood as the list's one word


def _find_marks(value: object, path: Path, found: dict[int, Path]) -> None:
    if isinstance(value, str):
        marked = _MARKED.fullmatch(value)
        if marked:
            found[int(marked.group(1))] = path
    elif isinstance(value, dict):
        for key, inner in value.items():
            _find_marks(inner, (*path, key), found)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _find_marks(inner, (*path, index), found)


@dataclass(frozen=True)
class Rows:
    """The flow's ``translations:`` as :func:`bot.flows.translations.translated` reads them: found
    by base text (or words), per language; when two rows translate one text, the last one wins."""

    flow: Flow
    numbers: dict[Key, dict[str, list[int]]]  # base → language → rows (0-based), in file order

    @classmethod
    def of(cls, flow: Flow) -> Rows:
        numbers: dict[Key, dict[str, list[int]]] = {}
        for number, row in enumerate(flow.translations):
            key = key_of(row[flow.language])
            for language in row:
                if language != flow.language:
                    numbers.setdefault(key, {}).setdefault(language, []).append(number)
        return cls(flow, numbers)

    def row(self, key: Key, language: str) -> int | None:
        """The row that translates ``key`` into ``language`` (the last such), or None."""
        rows = self.numbers.get(key, {}).get(language)
        return rows[-1] if rows else None

    def version(self, key: Key, language: str) -> tuple[str | list[str], Path] | None:
        """The text (or words) that translate ``key``, and where the file has them."""
        number = self.row(key, language)
        if number is None:
            return None
        return self.flow.translations[number][language], ("translations", number, language)

    def added_words(self, place: Place, language: str) -> list[tuple[str, Path]]:
        """The words the variant in ``language`` adds to the list at ``place`` (those the list
        does not already have), each with its place in the row, in the order the variant has them:
        a word's spelling without accents (MENÚ: "menu") too, as the bot hears it, at its word's place."""
        found = self.version(place.key, language) if place.item.words is not None else None
        if found is None or not isinstance(found[0], list):
            return []
        version, path = found
        own = set(place.key)
        origin: dict[str, int] = {}
        for index, word in enumerate(version):
            origin.setdefault(word, index)
        for index, word in enumerate(version):
            origin.setdefault(fold(word), index)
        return [(word, (*path, origin[word])) for word in with_plain_spellings(list(version))
                if normalise(word) not in own]
