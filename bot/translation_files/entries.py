"""A flow's texts as a translator sees them: one entry per distinct text (or list of words), where
the flow has it, and its translation into one language from the flow's ``translations:`` table.

Rows are found by their base text (``bot/flows/translations.py``), so a base text that changed no
longer finds its row: that row is *orphaned*. A changed text with no translation is offered the
closest orphaned row's translation as a stale guess (rapidfuzz's ratio, at least
:data:`STALE_SIMILARITY`), which the PO file marks fuzzy with the old text beside it; an orphaned
row no text is close to is kept as an unused entry, so nothing a translator wrote is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FilePath

from rapidfuzz import fuzz

from bot.flows.problems import Path
from bot.flows.schema import Flow
from bot.flows.translations import translatable, words_key
from bot.flows.yamlsource import SourceMap

TEXT = "text"
WORDS = "words"
#: How alike (rapidfuzz's ratio, 0-100) an orphaned row's base text must be to a changed text for its
#: translation to be offered as a guess. gettext's msgmerge offers fuzzy matches from 0.6 likewise;
#: below it the old text is another text, and its translation would mislead more than help.
STALE_SIMILARITY = 60.0
WORD_SEPARATOR = ", "

#: A text's translation, or a list of words' translated words
Translation = str | tuple[str, ...]
Key = tuple[str, object]  # (TEXT, the text) or (WORDS, the words as replies are compared)


def join_words(words: tuple[str, ...] | list[str]) -> str:
    """A list of words as one entry: ``STATUS, ORDER, TRACK`` (the PO msgid, a CSV cell)."""
    return WORD_SEPARATOR.join(words)


def split_words(text: str) -> tuple[str, ...]:
    """A translator's comma-separated words, blanks and empty items (a trailing comma) left out."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


def key_of(kind: str, base: str) -> Key:
    """How a translator's entry is found: a text as written, words (comma-separated) as people's
    replies are compared, so ``Status, order`` finds ``[STATUS, ORDER]``."""
    return (WORDS, words_key(list(split_words(base)))) if kind == WORDS else (TEXT, base)


@dataclass(frozen=True)
class Place:
    """One place the flow has a text: its ``where`` (``ask_number.say``) and its line in the file."""

    where: str
    line: int


@dataclass
class Entry:
    """One distinct text (or list of words) of the flow, and its translation into the language."""

    kind: str  # TEXT or WORDS
    base: str  # the text; for words, the words joined by ", "
    words: tuple[str, ...] = ()  # the words, as the flow first has them
    places: list[Place] = field(default_factory=list)
    translation: Translation | None = None  # from the table; for a stale entry, the guess
    previous: str | None = None  # stale: the old base text the guessed translation was made for

    @property
    def key(self) -> Key:
        return (WORDS, words_key(list(self.words))) if self.kind == WORDS else (TEXT, self.base)

    @property
    def status(self) -> str:
        if self.translation is None:
            return "missing"
        return "stale" if self.previous is not None else "translated"


@dataclass(frozen=True)
class Orphan:
    """A row of the table for a text the flow no longer has, with a translation into the language."""

    kind: str
    base: str
    translation: Translation
    row: int


@dataclass
class FlowTexts:
    """Everything a translation file for one flow and one language holds."""

    flow: str
    file: FilePath
    base_language: str
    language: str
    entries: list[Entry]
    unused: list[Orphan]  # orphaned rows not offered as a guess: exported as obsolete entries


def row_base(row: dict[str, str | list[str]], language: str) -> tuple[str, str] | None:
    """A row's kind and base text (words joined), or None when it lacks the base language."""
    base = row.get(language)
    if base is None:
        return None
    return (WORDS, join_words(base)) if isinstance(base, list) else (TEXT, base)


def row_key(row: dict[str, str | list[str]], language: str) -> Key | None:
    """How a row is found: by its base text, or its base words as replies are compared."""
    base = row.get(language)
    if base is None:
        return None
    return (WORDS, words_key(base)) if isinstance(base, list) else (TEXT, base)


def row_translation(row: dict[str, str | list[str]], language: str) -> Translation | None:
    value = row.get(language)
    if value is None:
        return None
    return tuple(value) if isinstance(value, list) else value


def flow_texts(flow: Flow, source: SourceMap, file: FilePath, language: str) -> FlowTexts:
    """The flow's entries in the order of the file, each with its translation into ``language``."""
    entries: dict[Key, Entry] = {}
    counts: dict[str, int] = {}
    for item in translatable(flow):
        index = counts.get(item.where, 0)
        counts[item.where] = index + 1
        if item.words is not None:
            entry = Entry(WORDS, join_words(item.words), item.words)
            line = source.locate(source_path(item.where))[0]
        else:
            entry = Entry(TEXT, item.text or "")
            line = source.locate((*source_path(item.where), index))[0]
        entry = entries.setdefault(entry.key, entry)
        entry.places.append(Place(item.where, line))
    orphans: list[Orphan] = []
    for number, row in enumerate(flow.translations):
        found, key = row_base(row, flow.language), row_key(row, flow.language)
        if found is None or key is None:
            continue
        translation = row_translation(row, language)
        owner = entries.get(key)
        if owner is None:
            if translation is not None:
                orphans.append(Orphan(*found, translation, number))
        elif translation is not None:  # the last row with the language wins, as when the flow runs
            owner.translation = translation
    for entry in entries.values():
        entry.places.sort(key=lambda place: place.line)
    ordered = sorted(entries.values(), key=lambda entry: entry.places[0].line)  # as the file has them
    unused = _guess_stale(ordered, orphans)
    return FlowTexts(flow.flow, file, flow.language, language, ordered, unused)


def _guess_stale(entries: list[Entry], orphans: list[Orphan]) -> list[Orphan]:
    """Offer each untranslated entry the closest orphaned row of its kind (each row to one entry,
    the closest pairs first); return the orphans left over."""
    pairs = sorted(((fuzz.ratio(entry.base, orphan.base), number, orphan_number)
                    for number, entry in enumerate(entries) if entry.translation is None
                    for orphan_number, orphan in enumerate(orphans) if orphan.kind == entry.kind),
                   key=lambda pair: -pair[0])
    taken_entries: set[int] = set()
    taken_orphans: set[int] = set()
    for score, number, orphan_number in pairs:
        if score < STALE_SIMILARITY or number in taken_entries or orphan_number in taken_orphans:
            continue
        taken_entries.add(number)
        taken_orphans.add(orphan_number)
        orphan = orphans[orphan_number]
        entries[number].translation = orphan.translation
        entries[number].previous = orphan.base
    return [orphan for number, orphan in enumerate(orphans) if number not in taken_orphans]


def source_path(where: str) -> Path:
    """Where ``where`` (as :func:`bot.flows.translations.translatable` names places) is in the
    file's YAML: ``ask.replies.2.keywords`` is ``states.ask.replies[1].keywords``."""
    parts = where.split(".")
    if parts[0] in ("triggers", "listed") and len(parts) == 1:
        return (parts[0],)
    if parts[0] == "anywhere" and len(parts) > 2 and parts[1].isdigit():
        return ("anywhere", int(parts[1]) - 1, *parts[2:])
    state, rest = parts[0], parts[1:]
    if len(rest) >= 2 and rest[0] == "replies" and rest[1].isdigit():
        return ("states", state, "replies", int(rest[1]) - 1, *rest[2:])
    if len(rest) >= 2 and rest[0] == "menu" and rest[1].isdigit():
        return ("states", state, "menu", "choices", int(rest[1]) - 1, *rest[2:])
    return ("states", state, *rest)


@dataclass(frozen=True)
class Imported:
    """One entry of a translator's file, as read (nothing checked yet)."""

    at: str  # where in that file, for the report: "es.po:42", "es.csv:7"
    base: str  # the msgid: the text, or the words joined by commas
    translation: str  # "" when not translated
    kind: str | None = None  # TEXT or WORDS when the file says (a PO msgctxt); None: found by the base alone
    fuzzy: bool = False  # a guess a translator has not confirmed
    obsolete: bool = False  # an unused row, exported so it is not lost: never imported
    unreadable: str = ""  # why the entry cannot be imported at all, as read


@dataclass
class TranslationFile:
    """A translator's file: which flow and language it says it is for, and its entries."""

    flow: str | None
    language: str | None
    entries: list[Imported]
