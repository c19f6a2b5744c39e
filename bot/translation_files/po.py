"""A flow's texts as a gettext PO file (Babel), the format translators' tools (Poedit, Weblate,
Crowdin, Lokalize) read, and the file read back.

One entry per distinct text: ``msgid`` is the base text, ``msgstr`` the translation ("" when
missing); a list of words is one entry, its words joined by commas, with ``msgctxt "words"`` so a
translator's tool shows it is a list. ``#:`` names the flow file and the line of each place the
text is used, ``#.`` says what it is and where (``notes.py``). A stale guess is ``#, fuzzy`` with
the old text as ``#| msgid``; a row the flow no longer uses is an obsolete ``#~`` entry. The header
says the language (``Language:``) and the flow (``Project-Id-Version: textflow FLOW``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import PoFileError, generate_po, normalize, read_po

from bot.translation_files.entries import TEXT, WORDS, FlowTexts, Imported, Translation, TranslationFile, join_words
from bot.translation_files.notes import language_name, notes

PROJECT = "textflow"
WORDS_CONTEXT = "words"
#: Babel marks a text that looks like a printf or str.format string ("50% off", "{name}") as such,
#: and tools then check its placeholders as Python's: our texts have Liquid's {{ }}, not those.
_FORMAT_FLAGS = ("python-format", "python-brace-format")
_WIDTH = 76  # as xgettext and Babel wrap


class UnreadablePo(ValueError):
    """A PO file that cannot be read; the message says where."""


def po_bytes(texts: FlowTexts) -> bytes:
    """The PO file of ``texts``, UTF-8."""
    catalog = Catalog(locale=texts.language.replace("-", "_"), project=PROJECT, version=texts.flow,
                      header_comment=_header(texts), msgid_bugs_address="", fuzzy=False,
                      language_team=language_name(texts.language))
    for entry in texts.entries:
        message = catalog.add(
            entry.base, _string(entry.translation), context=WORDS_CONTEXT if entry.kind == WORDS else None,
            locations=list(dict.fromkeys((texts.file.name, place.line) for place in entry.places)),
            auto_comments=notes(entry, texts.base_language, texts.language),
            flags=["fuzzy"] if entry.previous is not None else [],
            previous_id=entry.previous if entry.previous is not None else ())
        for flag in _FORMAT_FLAGS:
            message.flags.discard(flag)
    for orphan in texts.unused:
        context = WORDS_CONTEXT if orphan.kind == WORDS else None
        catalog.obsolete[(orphan.base, context) if context else orphan.base] = Message(
            orphan.base, _string(orphan.translation), context=context,
            user_comments=[f"Unused: {texts.file.name} no longer has this text; kept so its translation is not "
                           "lost. Import leaves it as it is."])
    previous = [message.previous_id[0] for message in catalog if message.id and message.previous_id]
    return "".join(_previous_mended(generate_po(catalog, include_previous=True, width=_WIDTH), previous)).encode()


def _string(translation: Translation | None) -> str:
    if translation is None:
        return ""
    return translation if isinstance(translation, str) else join_words(translation)


def _header(texts: FlowTexts) -> str:
    """What the translator reads first (kept under Babel's 76 columns: it re-wraps longer lines)."""
    return "\n".join([
        f"# Flow {texts.flow} ({texts.file.name}) in {language_name(texts.language)} ({texts.language}).",
        "# Fill in each msgstr. An entry marked fuzzy holds the translation of an",
        "# older text (on its #| line): check it against the new text, then remove",
        "# the fuzzy mark, or it is not imported. Entries starting #~ are",
        "# translations the flow no longer uses, kept so they are not lost.",
        "# A character outside GSM-7 (such as á, í, ó, ú, a curly quote or an",
        "# emoji) makes an SMS cost 70 characters a segment instead of 160.",
        "# Bring it back with: python -m bot translations import FILE",
    ])


def _previous_mended(lines: Iterable[str], previous: list[str]) -> Iterator[str]:
    """Babel wraps a long ``#| msgid "…"`` as a comment, cutting the quoted text across lines that
    gettext cannot read; each such run of lines is written again as gettext writes it."""
    olds = iter(previous)
    in_run = False
    for line in lines:
        if line.startswith("#|"):
            if not in_run:
                in_run = True
                yield "#| msgid " + normalize(next(olds), prefix="#| ", width=_WIDTH) + "\n"
            continue
        in_run = False
        yield line


def read_po_file(data: bytes, name: str) -> TranslationFile:
    """A PO file's flow, language and entries (``name``: the file's name, for the report)."""
    try:
        catalog = read_po(io.BytesIO(data), abort_invalid=True)
    except PoFileError as error:
        raise UnreadablePo(f"{name}:{error.lineno + 1}: not a PO file the bot can read: {error}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise UnreadablePo(f"{name}: not a PO file the bot can read: {error}") from None
    flow = catalog.version if catalog.project == PROJECT and catalog.version else None
    language = catalog.locale_identifier.replace("_", "-") if catalog.locale_identifier else None
    entries = [_imported(message, name) for message in catalog if message.id]
    entries += [_imported(message, name, obsolete=True) for message in catalog.obsolete.values()]
    return TranslationFile(flow, language, entries)


def _imported(message: Message, name: str, obsolete: bool = False) -> Imported:
    at = f"{name}:{message.lineno}" if message.lineno else name
    if isinstance(message.id, (list, tuple)):
        return Imported(at, str(message.id[0]), "", fuzzy=message.fuzzy, obsolete=obsolete,
                        unreadable="has plural forms (msgid_plural), which flows do not have: write one msgstr")
    kind = WORDS if message.context == WORDS_CONTEXT else TEXT if message.context == "text" else None
    string = message.string if isinstance(message.string, str) else ""
    return Imported(at, str(message.id), string, kind=kind, fuzzy=message.fuzzy, obsolete=obsolete)
