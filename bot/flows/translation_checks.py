"""Lint per language: what a flow's ``translations:`` table leaves out, no longer matches, or gets
wrong in one of its languages (the table itself: :mod:`bot.flows.translations`).

For each language the table names:

- a text, or a list of words, with no row for that language: a warning at its first use, saying
  where else it is used ("no Spanish (es) version of …; it is sent in English");
- a row whose base text the flow no longer says (the text was edited since): a warning at the row,
  with the closest text the flow says now; a text translated twice: a warning at the later row;
- the flow as it runs in that language (:func:`~bot.flows.translations.translated`) goes through
  the same whole-flow checks as the flow (:func:`~bot.flows.checks.check_flow`: templates, SMS
  segments and encoding, values of any length, menu labels); each finding about a translated
  text or word is moved to the row's value and names the language ("es: 'í' (U+00ED …) switches
  this text to UCS-2, making it 2 segments instead of 1"); findings about texts the translation
  leaves as they were are the flow's own, reported once;
- words that collide once translated: :mod:`bot.flows.translation_words`.

The loader runs these after the flow's own checks pass, so lint and the server report the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from bot.flows.checks import CheckOptions, check_flow
from bot.flows.problems import Finding, Path
from bot.flows.schema import Flow
from bot.flows.template_checks import measured_text
from bot.flows.translation_table import Key, Place, Rows, key_of, language_name, places, quoted
from bot.flows.translation_words import trigger_findings, variant_word_findings
from bot.flows.translations import languages, translated, with_plain_spellings
from bot.flows.walk import saved_anywhere
from bot.text import templates

STALE_MIN_SCORE = 50  # how alike (rapidfuzz's ratio, 0-100) a current text must be to be suggested for a stale row


def translation_findings(flow: Flow, options: CheckOptions = CheckOptions()) -> list[Finding]:
    """Every problem of ``flow``'s translations (none for a flow without a table)."""
    codes = languages(flow)
    if not codes:
        return []
    found = places(flow)
    rows = Rows.of(flow)
    findings = [*_missing(flow, found, rows, codes), *_stale(flow, found, rows), *_repeated(flow, rows),
                *_other_values(flow)]
    for language in codes:
        moves = _moves(found, rows, language)
        findings += [moved for finding in check_flow(translated(flow, language), options)
                     if (moved := moves.relocated(finding, language)) is not None]
        findings += variant_word_findings(flow, found, rows, language)
    return list(dict.fromkeys(findings))  # an anywhere reply's word is heard in every state: once


def translation_set_findings(flows: list[Flow]) -> list[tuple[Flow, Finding]]:
    """The checks that need every flow: triggers and words across languages, and a ``language:``
    that no flow speaks."""
    return [*trigger_findings(flows), *_unknown_choices(flows)]


# -- missing, stale and repeated rows -------------------------------------------------------------

def _missing(flow: Flow, found: list[Place], rows: Rows, codes: list[str]) -> Iterator[Finding]:
    uses: dict[Key, list[Place]] = {}
    for place in found:
        uses.setdefault(place.key, []).append(place)
    base = language_name(flow.language)
    for key, used in uses.items():
        lacking = [code for code in codes if rows.row(key, code) is None]
        if not lacking or not _has_words(used[0]) or all(_names_its_language(flow, place.path) for place in used):
            continue
        first = used[0]
        names = " or ".join(language_name(code) for code in lacking)
        also = f"; also used at {', '.join(place.where for place in used[1:])}" if used[1:] else ""
        if first.item.text is not None:
            message = f"no {names} version of {first.shown}; it is sent in {base}"
            row = f"{flow.language}: (this text) and {lacking[0]}: (its translation)"
        else:
            message = f"no {names} version of the words {first.shown}; only the {base} words are heard"
            row = f"{flow.language}: [these words] and {lacking[0]}: [theirs]"
        yield Finding(first.path, message, severity="warning", hint=f"add a row under translations: with {row}{also}")


def _has_words(place: Place) -> bool:
    """Whether there is anything to translate: a text of only {{ values }}, digits or emoji is
    the same in every language."""
    texts = [measured_text(place.item.text, "")] if place.item.text is not None else list(place.item.words or ())
    return any(char.isalpha() for text in texts for char in text)


def _names_its_language(flow: Flow, path: Path) -> bool:
    """A menu item that switches the language ("2) Español") is labelled in that language for all."""
    if path[:1] != ("states",) or path[2:4] != ("menu", "choices") or path[-1:] != ("label",):
        return False
    menu = flow.states[str(path[1])].menu
    return menu is not None and menu.choices[int(path[4])].language is not None


def _stale(flow: Flow, found: list[Place], rows: Rows) -> Iterator[Finding]:
    current: dict[Key, Place] = {}
    for place in found:
        current.setdefault(place.key, place)  # a text said twice: at its first place
    for number, row in enumerate(flow.translations):
        written = row[flow.language]
        if key_of(written) in current:
            continue
        is_text = isinstance(written, str)
        untranslated = [place for key, place in current.items()
                        if (place.item.text is not None) == is_text
                        and any(rows.row(key, code) is None for code in row if code != flow.language)]
        same_kind = [place for place in current.values() if (place.item.text is not None) == is_text]
        meant = _closest(written, untranslated) or _closest(written, same_kind)
        said = f"says {quoted(written)}" if isinstance(written, str) else f"listens for [{', '.join(written)}]"
        advice = (f"did you mean {meant.shown} (at {meant.where})? If it was edited, change this row's "
                  f"{flow.language}: to it and check the translation still says the same; or export the flow "
                  "again for your translator") if meant else "remove the row, or change it to a text the flow says"
        yield Finding(("translations", number, flow.language), f"translation {number + 1} is never used: the flow "
                      f"no longer {said}", severity="warning", hint=advice)


def _closest(written: str | list[str], candidates: list[Place]) -> Place | None:
    shown = {_plain(place): place for place in candidates}
    best = process.extractOne(_plain_value(written), list(shown), scorer=fuzz.ratio, score_cutoff=STALE_MIN_SCORE)
    return shown[best[0]] if best is not None else None


def _plain(place: Place) -> str:
    return _plain_value(place.item.text if place.item.text is not None else list(place.item.words or ()))


def _plain_value(value: str | list[str]) -> str:
    return value if isinstance(value, str) else " ".join(value)


def _repeated(flow: Flow, rows: Rows) -> Iterator[Finding]:
    for by_language in rows.numbers.values():
        for language, numbers in by_language.items():
            for later in numbers[1:]:
                written = flow.translations[later][flow.language]
                shown = quoted(written) if isinstance(written, str) else f"[{', '.join(written)}]"
                yield Finding(("translations", later, language), f"{language}: translation {later + 1} translates "
                              f"{shown} again (translation {numbers[0] + 1} does too); the bot uses the last one",
                              severity="warning", hint="keep one of the two rows")


def _other_values(flow: Flow) -> Iterator[Finding]:
    """A translation rewords its text: it shows the same ``{{ values }}``. One that shows another
    (typed into the file by hand: ``import`` refuses it) would print what the text never did — an
    ``env`` setting, another person's variable — or drop the order number the text promised."""
    saved = saved_anywhere(flow)
    for number, row in enumerate(flow.translations):
        base = row.get(flow.language)
        if not isinstance(base, str):
            continue
        try:
            wanted = templates.variables(templates.parse(base))
        except templates.TemplateSyntaxError:
            continue  # the flow's own checks report it
        for language, text in row.items():
            if language == flow.language or not isinstance(text, str):
                continue
            try:
                shown = templates.variables(templates.parse(text))
            except templates.TemplateSyntaxError:
                continue  # the variant's checks report it, at the row
            # A name nothing saves is the variant's own check's ("never saved"): said once, there
            added, dropped = sorted((shown - wanted) & (saved | {"env"})), sorted(wanted - shown)
            hint = "a translation shows the same {{ values }} as its text, reworded around them"
            if added:  # it would print what the text never did: an error
                shows = "; ".join(f"shows {{{{ {name} }}}}, which the text does not" for name in added)
                yield Finding(("translations", number, language), f"{language}: translation {number + 1} {shows}",
                              hint=hint)
            if dropped:  # it says less than the text: worth a look, not a refusal
                leaves = "; ".join(f"leaves out {{{{ {name} }}}}" for name in dropped)
                yield Finding(("translations", number, language), f"{language}: translation {number + 1} {leaves}",
                              severity="warning", hint=hint)


# -- the variant's own checks, moved to the rows ----------------------------------------------------

@dataclass
class _Moves:
    """Where each translated text and word of the variant comes from in the file."""

    texts: dict[Path, Path] = field(default_factory=dict)  # the variant's text → the row's value
    words: dict[Path, list[Path]] = field(default_factory=dict)  # a list → its leading, translated words' places
    offsets: dict[Path, int] = field(default_factory=dict)  # a menu item's synonyms: the base label comes first

    def relocated(self, finding: Finding, language: str) -> Finding | None:
        """``finding`` about the variant, at the row it comes from, or None when it is about a text
        the translation did not change (the flow's own, reported by its own checks)."""
        path = self.texts.get(finding.path)
        if path is None and finding.path and isinstance(finding.path[-1], int):
            added = self.words.get(finding.path[:-1], [])
            index = finding.path[-1] - self.offsets.get(finding.path[:-1], 0)
            path = added[index] if 0 <= index < len(added) else None
        if path is None:
            return None
        return Finding(path, f"{language}: {finding.message}", finding.severity, finding.hint, finding.at)


def _moves(found: list[Place], rows: Rows, language: str) -> _Moves:
    moves = _Moves()
    for place in found:
        if place.item.words is not None:
            moves.words[place.path] = [path for _, path in rows.added_words(place, language)]
            label = (*place.path[:-1], "label")
            if place.path[-1] == "also" and (kept := _label_kept(found, rows, label, language)):
                moves.offsets[place.path] = kept  # translations.map_flow puts these first among the synonyms
        elif (version := rows.version(place.key, language)) is not None and version[0] != place.item.text:
            moves.texts[place.path] = version[1]  # (a row that keeps the text as it is: the flow's own)
    return moves


def _label_kept(found: list[Place], rows: Rows, label: Path, language: str) -> int:
    """How many synonyms a translated label puts before the item's own (map_flow's ``label_kept``):
    the translated label's spelling without accents, if it has one, and the base label; 0 when the
    label is not translated."""
    place = next((place for place in found if place.path == label), None)
    if place is None:
        return 0
    version = rows.version(place.key, language)
    if version is None or version[0] == place.item.text or not isinstance(version[0], str):
        return 0
    return len(with_plain_spellings([version[0]]))  # its plain spelling(s), then the base label


# -- a language: that no flow speaks ---------------------------------------------------------------

def _unknown_choices(flows: list[Flow]) -> Iterator[tuple[Flow, Finding]]:
    spoken = {flow.language for flow in flows} | {code for flow in flows for code in languages(flow)}
    for flow in flows:
        for path, code in _language_choices(flow):
            if code not in spoken:
                yield flow, Finding(path, f"no flow is translated into {language_name(code)}: people who choose it "
                                          "still get the flows' own texts", severity="warning",
                                    hint=f"add {code}: versions to the flows' translations: (the flows speak "
                                         f"{', '.join(sorted(spoken))})")


def _language_choices(flow: Flow) -> Iterator[tuple[Path, str]]:
    for index, rule in enumerate(flow.anywhere):
        if rule.language is not None:
            yield ("anywhere", index, "language"), rule.language
    for name, state in flow.states.items():
        for index, rule in enumerate(state.rules):
            if rule.language is not None:
                yield ("states", name, "replies", index, "language"), rule.language
        for index, choice in enumerate(state.menu.choices if state.menu is not None else ()):
            if choice.language is not None:
                yield ("states", name, "menu", "choices", index, "language"), choice.language
