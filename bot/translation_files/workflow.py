"""Export a flow's texts for a translator, and import what they translated back into the flow file.

Import applies only what a translator gave and confirmed: a fuzzy entry (a stale guess) is not
applied until its fuzzy mark is removed, an empty one leaves its text untranslated (a translation
already in the table stays), and each translation is vetted (``vetting.py``) before it is written.
No row is ever removed: a row for a text the flow no longer has stays as it was, or takes the
translation the file gives for that text. The new file is checked as the console's editor checks
an edit (``bot/flows/editing.py``: with the other flows and the program file), must read back with
exactly the intended table and the rest of the file unchanged, and is written atomically, unless
the file changed on disk meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.consent.words import LANGUAGE_CODE
from bot.flows.editing import EditRefused, FlowFolder, check_draft, digest, write_atomically
from bot.flows.loader import PROGRAM_FILE, ParsedFlow
from bot.flows.schema import Flow
from bot.flows.schema_types import row_values
from bot.flows.translations import languages, words_key
from bot.flows.yamlsource import YamlError, read_yaml
from bot.text.normalise import normalise
from bot.translation_files.entries import (
    TEXT,
    WORDS,
    Entry,
    FlowTexts,
    Imported,
    Key,
    TranslationFile,
    flow_texts,
    key_of,
    row_key,
    split_words,
)
from bot.translation_files.notes import KEYWORDS, SENT, roles
from bot.translation_files.po import UnreadablePo, po_bytes, read_po_file
from bot.translation_files.spreadsheet import UnreadableCsv, csv_text, read_csv_file
from bot.translation_files.vetting import Refused, Subject, vetted
from bot.translation_files.yaml_block import KEY, rewritten

FORMATS = ("po", "csv")
TRANSLATED, UNCHANGED, FUZZY, REFUSED, EMPTY = "translated", "unchanged", "fuzzy", "refused", "empty"


class TranslationError(Exception):
    """Something the user can fix (a flow that is not there, a file that is not a translation file)."""


def flow_named(folder: FlowFolder, flow: str) -> ParsedFlow:
    """Flow ``flow`` of the folder (by its name, or its file), valid enough to translate."""
    found = folder.flows.get(flow)
    if found is not None:
        return found
    path = Path(flow)
    for item in folder.flows.values():
        if path.suffix in (".yaml", ".yml") and item.file.resolve() == path.resolve():
            return item
    broken = [problem for problem in folder.problems if problem.severity == "error"
              and (Path(problem.file).stem == flow or Path(problem.file).resolve() == path.resolve())]
    if broken:
        raise TranslationError(f"{broken[0].file} does not load; fix it first:\n"
                               + "\n".join(str(problem) for problem in broken[:10]))
    known = ", ".join(sorted(folder.flows)) or "none"
    unreadable = sorted({Path(problem.file).name for problem in folder.outside_flows()
                         if problem.severity == "error" and Path(problem.file).name != PROGRAM_FILE})
    also = f"; {', '.join(unreadable)} {'does' if len(unreadable) == 1 else 'do'} not load (lint says why)" \
        if unreadable else ""
    raise TranslationError(f"no flow {flow!r} in {folder.folder} (flows: {known}{also}); name a flow by its "
                           "flow: name")


def checked_language(code: str, flow: Flow) -> str:
    if not LANGUAGE_CODE.fullmatch(code):
        raise TranslationError(f"{code!r} is not a language code; write one such as es, fr or pt-BR")
    if code == flow.language:
        raise TranslationError(f"{code} is the language flow {flow.flow!r} is written in: translate it into another")
    return code


# -- export ---------------------------------------------------------------------------------------

def export(folder: Path, flow: str, language: str, file_format: str = "po") -> tuple[bytes, FlowTexts]:
    """The translation file of ``flow`` into ``language``, and what it holds."""
    parsed = flow_named(FlowFolder.read(folder), flow)
    texts = flow_texts(parsed.model, parsed.source, parsed.file, checked_language(language, parsed.model))
    data = po_bytes(texts) if file_format == "po" else csv_text(texts).encode("utf-8")
    return data, texts


def export_summary(texts: FlowTexts) -> str:
    counts = {status: sum(entry.status == status for entry in texts.entries)
              for status in ("translated", "missing", "stale")}
    return (f"{texts.flow} ({texts.file.name}) in {texts.language}: {len(texts.entries)} entries: "
            f"{counts['translated']} translated, {counts['missing']} missing, {counts['stale']} stale (fuzzy), "
            f"{len(texts.unused)} unused")


# -- import ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What became of one entry of the translator's file."""

    at: str
    base: str
    result: str  # TRANSLATED, UNCHANGED, FUZZY, REFUSED, EMPTY
    reason: str = ""
    gone: bool = False  # for a text the flow no longer has: kept as a (stale) row


@dataclass
class ImportReport:
    file: Path
    flow: str
    language: str
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the new file was not written
    notes: list[str] = field(default_factory=list)
    written: bool = False
    dry_run: bool = False

    def count(self, result: str) -> int:
        return sum(outcome.result == result for outcome in self.outcomes)

    @property
    def failed(self) -> bool:
        return bool(self.problems) or self.count(REFUSED) > 0

    def lines(self) -> list[str]:
        lines = [f"{self.flow} ({self.file.name}) in {self.language}: {self.count(TRANSLATED)} translated, "
                 f"{self.count(UNCHANGED)} unchanged, {self.count(FUZZY)} fuzzy skipped, {self.count(REFUSED)} "
                 f"refused, {self.count(EMPTY)} left empty", *self.notes]
        for outcome in self.outcomes:
            if outcome.result == FUZZY:
                lines.append(f"{outcome.at}: fuzzy, not imported: {short(outcome.base)}: check the translation "
                             "against the text, then remove the fuzzy mark")
            elif outcome.result == REFUSED:
                lines.append(f"{outcome.at}: refused: the translation of {short(outcome.base)} {outcome.reason}")
            elif outcome.gone:
                lines.append(f"{outcome.at}: {short(outcome.base)}: the flow no longer has this text; its "
                             "translation is kept as a row (lint calls it stale)")
        if self.problems:
            lines.append(f"not written: {self.file} would not load with these translations:")
            lines.extend(f"  {problem}" for problem in self.problems)
        elif self.written:
            lines.append(f"wrote {self.file}")
        elif self.dry_run and self.count(TRANSLATED):
            lines.append(f"checked, not written (--dry-run): {self.file}")
        else:
            lines.append(f"nothing to write: {self.file} is unchanged")
        return lines


def short(text: str, limit: int = 60) -> str:
    """A text quoted on one line for the report, control characters shown as escapes."""
    shown = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" if ord(char) < 256 else "?"
                    for char in text.replace("\n", " "))
    return '"' + (shown if len(shown) <= limit else shown[:limit - 1] + "…") + '"'


def read_translation_file(path: Path) -> TranslationFile:
    """A .po or .csv file, by its extension."""
    suffix = path.suffix.lower()
    if suffix not in (".po", ".csv"):
        raise TranslationError(f"{path.name}: name a .po or .csv file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TranslationError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return read_po_file(data, path.name) if suffix == ".po" else read_csv_file(data, path.name)
    except (UnreadablePo, UnreadableCsv) as error:
        raise TranslationError(str(error)) from None


def import_file(path: Path, folder_path: Path, *, flow: str | None = None, language: str | None = None,
                dry_run: bool = False) -> ImportReport:
    """Bring the translations of ``path`` into their flow's file (see the module's docstring)."""
    document = read_translation_file(path)
    name = flow or document.flow
    if not name:
        raise TranslationError(f"{path.name} does not say which flow it translates: add --flow NAME")
    code = language or document.language
    if not code:
        raise TranslationError(f"{path.name} does not say its language: add --language CODE")
    folder = FlowFolder.read(folder_path)
    parsed = flow_named(folder, name)
    code = checked_language(code, parsed.model)
    try:
        original = parsed.file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TranslationError(f"cannot read {parsed.file}: {error}") from None
    texts = flow_texts(parsed.model, parsed.source, parsed.file, code)
    plan = _Plan.of(document, texts, parsed.model, _other_triggers(folder, parsed.model.flow))
    report = ImportReport(parsed.file, parsed.model.flow, code, plan.outcomes, dry_run=dry_run)
    known = languages(parsed.model)
    if code not in known and known:  # es_ES from a translator's tool where the flow says es
        report.notes.append(f"note: {code} is a new language for this flow (it has {', '.join(known)}); "
                            "--language CODE imports into another")
    if len(plan.rows) == plan.existing and not plan.changed:
        return report
    text, report.problems = _new_text(folder, parsed.model.flow, original, plan)
    if report.problems or dry_run:
        return report
    _save(parsed.file, original, text)
    report.written = True
    return report


Row = dict[str, str | list[str]]


@dataclass
class _Plan:
    """The table as the import leaves it, and what became of each entry."""

    rows: list[Row]
    existing: int  # how many of the rows the file has now
    changed: dict[int, str]  # which of those the import changes, and in which language
    outcomes: list[Outcome]

    @classmethod
    def of(cls, document: TranslationFile, texts: FlowTexts, flow: Flow, others: dict[str, str]) -> _Plan:
        rows: list[Row] = [dict(row) for row in flow.translations]
        plan = cls(rows, len(rows), {}, [])
        by_base = {(entry.kind, entry.base): entry for entry in texts.entries}
        by_key = {entry.key: entry for entry in texts.entries}
        row_of: dict[Key, int] = {}
        for number, row in enumerate(rows):
            key = row_key(row, flow.language)
            if key is not None and (key not in row_of or texts.language in row):
                row_of[key] = number  # the last row with the language, as the flow runs
        done: dict[Key, str] = {}
        for item in document.entries:
            if not item.obsolete:
                plan._take(item, _match(item, by_base, by_key), texts, row_of, done, others)
        return plan

    def _take(self, item: Imported, entry: Entry | None, texts: FlowTexts, row_of: dict[Key, int],
              done: dict[Key, str], others: dict[str, str]) -> None:
        kind = entry.kind if entry is not None else item.kind or TEXT
        base = entry.base if entry is not None else item.base
        if item.unreadable:
            self.outcomes.append(Outcome(item.at, base, REFUSED, item.unreadable))
            return
        if item.fuzzy or not item.translation:
            self.outcomes.append(Outcome(item.at, base, FUZZY if item.fuzzy else EMPTY))
            return
        key = entry.key if entry is not None else key_of(kind, base)
        if key in done:
            self.outcomes.append(Outcome(item.at, base, REFUSED, f"is given twice (first at {done[key]}): "
                                                                 "keep one entry per text"))
            return
        done[key] = item.at
        subject = Subject(kind, base, frozenset(roles(entry) if entry is not None else
                                                {SENT if kind == TEXT else KEYWORDS}))
        try:
            if entry is None:  # its text will be a row's base text too: held to the same rules
                try:
                    vetted(subject, base)
                except Refused as why:
                    raise Refused(f"is for a text the flow does not have, and that text {why}") from None
            value = vetted(subject, item.translation, others)
        except Refused as why:
            self.outcomes.append(Outcome(item.at, base, REFUSED, str(why)))
            return
        new = list(value) if isinstance(value, tuple) else value
        number = row_of.get(key)
        gone = entry is None
        if number is not None and self.rows[number].get(texts.language) == new:
            self.outcomes.append(Outcome(item.at, base, UNCHANGED, gone=gone))
            return
        if number is None:
            words = list(entry.words) if entry is not None else list(split_words(base))
            self.rows.append({texts.base_language: words if kind == WORDS else base, texts.language: new})
            row_of[key] = len(self.rows) - 1
        else:
            self.rows[number][texts.language] = new
            if number < self.existing:
                self.changed[number] = texts.language
        self.outcomes.append(Outcome(item.at, base, TRANSLATED, gone=gone))


def _match(item: Imported, by_base: dict[tuple[str, str], Entry], by_key: dict[Key, Entry]) -> Entry | None:
    """The flow's entry a translator's entry is for: by its text (and kind, when the file says it),
    else by its words as replies are compared."""
    kinds = [item.kind] if item.kind else [TEXT, WORDS]
    for kind in kinds:
        found = by_base.get((kind, item.base)) or by_key.get(key_of(kind, item.base))
        if found is not None:
            return found
    return None


def _other_triggers(folder: FlowFolder, name: str) -> dict[str, str]:
    """Every other flow's trigger words in every language (normalised), with that flow's name."""
    taken: dict[str, str] = {}
    for other in folder.flows.values():
        model = other.model
        if model.flow == name or not model.triggers:
            continue
        words = list(model.triggers)
        for row in model.translations:
            base = row.get(model.language)
            if isinstance(base, list) and words_key(base) == words_key(model.triggers):
                words += [word for value in row.values() if isinstance(value, list) for word in value]
        taken.update({normalise(word): model.flow for word in words})
    return taken


def _new_text(folder: FlowFolder, name: str, original: str, plan: _Plan) -> tuple[str, list[str]]:
    """The flow file with the new table, checked; or the problems that stop it being written."""
    try:
        before = read_yaml(original)[0]
    except YamlError as error:
        raise TranslationError(f"cannot read the flow file again: {error}") from None
    for text in rewritten(original, plan.rows, plan.changed, plan.existing):
        try:
            if not _reads_as(read_yaml(text)[0], before, plan.rows):
                continue  # this way of writing it changed something else: try the next
        except YamlError:
            continue
        try:
            draft = check_draft(folder, name, text)
        except EditRefused as error:
            raise TranslationError(str(error)) from None
        lines = text.splitlines()
        return text, [f"{problem}" + (f"\n    {lines[problem.line - 1].strip()}" if 0 < problem.line <= len(lines)
                                      and Path(problem.file) == draft.file else "")
                      for problem in draft.blocking]
    raise TranslationError(f"the translations could not be written into flow {name!r}'s file so that it reads "
                           "back as intended; nothing was written (please report this, with the file)")


def _reads_as(data: object, before: object, rows: list[Row]) -> bool:
    """Whether the rewritten file's ``data`` is ``before`` with exactly ``rows`` as its table (a
    row's values as the flow reads them: ``[1, one]`` is ["1", "one"], as the table holds it)."""
    if not isinstance(data, dict) or not isinstance(before, dict) or not isinstance(data.get(KEY), list):
        return False
    rest = {key: value for key, value in data.items() if key != KEY}
    if rest != {key: value for key, value in before.items() if key != KEY}:
        return False
    try:
        return [row_values(row) for row in data[KEY]] == rows
    except ValueError:
        return False


def _save(file: Path, original: str, text: str) -> None:
    try:
        if digest(file.read_bytes().decode("utf-8")) != digest(original):
            raise TranslationError(f"not written: {file} changed on disk during the import; run it again")
        write_atomically(file, text)
    except (OSError, UnicodeDecodeError) as error:
        raise TranslationError(f"cannot write {file}: {error}") from None
