"""A flow's texts as CSV for a translator who works in a spreadsheet, and the file read back.

Columns: ``where`` (the places the flow uses the text), ``base``, ``translation``, ``status``
(translated, missing, ``stale: changed from "…"``, or ``unused``), ``previous`` (a stale entry's
old text) and ``note`` (what the entry is, as the PO file's comments say). The headers name the
flow and the languages (``where (order_status)``, ``base (en)``, ``translation (es)``), so the file
says what it is for. A list of words is one cell, its words separated by commas.

Every cell is written spreadsheet-safe (``bot/spreadsheet.py``: a text starting ``=`` gets a
leading ``'``, never run as a formula when a translator opens the file in Excel), and that ``'``
is taken off again on import. A stale row is imported once its status no longer says stale; an
unused row never is.
"""

from __future__ import annotations

import csv
import io
import re

from bot.spreadsheet import FORMULA_STARTS, csv_cell
from bot.translation_files.entries import FlowTexts, Imported, Translation, TranslationFile, join_words
from bot.translation_files.notes import notes

COLUMNS = ("where", "base", "translation", "status", "previous", "note")
STALE = "stale"
UNUSED = "unused"
_QUALIFIED = re.compile(r"^\s*([a-z]+)\s*(?:\((.*)\))?\s*$")


class UnreadableCsv(ValueError):
    """A CSV file that is not a translation file; the message says what is wrong."""


def csv_text(texts: FlowTexts) -> str:
    """The CSV file of ``texts``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"where ({texts.flow})", f"base ({texts.base_language})", f"translation ({texts.language})",
                     "status", "previous", "note"])
    for entry in texts.entries:
        status = {"translated": "translated", "missing": "missing"}.get(entry.status) or \
            f'{STALE}: changed from "{entry.previous}"'
        writer.writerow([csv_cell(cell) for cell in (
            ", ".join(place.where for place in entry.places), entry.base, _cell(entry.translation), status,
            entry.previous or "", " ".join(notes(entry, texts.base_language, texts.language, where=False)))])
    for orphan in texts.unused:
        writer.writerow([csv_cell(cell) for cell in (
            "", orphan.base, _cell(orphan.translation), f"{UNUSED}: {texts.file.name} no longer has this text",
            "", "Kept so its translation is not lost; import leaves it as it is.")])
    return out.getvalue()


def _cell(translation: Translation | None) -> str:
    if translation is None:
        return ""
    return translation if isinstance(translation, str) else join_words(translation)


def plain(cell: str) -> str:
    """A cell as it was before :func:`csv_cell` protected it."""
    return cell[1:] if cell.startswith("'") and cell[1:2] and cell[1:2] in "".join(FORMULA_STARTS) else cell


def read_csv_file(data: bytes, name: str) -> TranslationFile:
    """A CSV file's flow, language and entries (``name``: the file's name, for the report)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableCsv(f"{name}: not UTF-8 text; in Excel, save it as \"CSV UTF-8\"") from None
    first = text.split("\n", 1)[0]
    # Excel writes ";" where the decimal mark is ",": the header's separator is the one it has most of
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise UnreadableCsv(f"{name}: the file is empty")
    columns: dict[str, int] = {}
    qualifiers: dict[str, str] = {}
    for index, title in enumerate(header):
        found = _QUALIFIED.match(plain(title))
        if found and found.group(1) in COLUMNS:
            columns.setdefault(found.group(1), index)
            qualifiers[found.group(1)] = (found.group(2) or "").strip()
    missing = [column for column in ("base", "translation") if column not in columns]
    if missing:
        raise UnreadableCsv(f"{name}:1: no {' or '.join(missing)} column; the first row names the columns: "
                            f"{', '.join(COLUMNS)}")
    entries: list[Imported] = []
    line = reader.line_num + 1
    for row in reader:
        def cell(column: str, row: list[str] = row) -> str:
            index = columns.get(column)
            return plain(row[index]) if index is not None and index < len(row) else ""

        status = cell("status").strip().lower()
        if any(value.strip() for value in row):
            entries.append(Imported(f"{name}:{line}", cell("base"), cell("translation"),
                                    fuzzy=status.startswith(STALE), obsolete=status.startswith(UNUSED)))
        line = reader.line_num + 1
    return TranslationFile(qualifiers.get("where") or None, qualifiers.get("translation") or None, entries)
