"""The program's texts with the flows written in: ``{{ triggers }}`` in HELP or the fallback lists
the flows people can start, so adding a flow updates them.

Rendered once per flow load (the flows change only on a reload), never per message, and checked
as sent: the help must still name STOP and the fallback HELP, and SMS segments are counted on the
text with the list in it, which grows with every flow added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from liquid.exceptions import LiquidError
from pydantic import ValidationError

from bot.flows.checks import CheckOptions, cost_findings
from bot.flows.problems import Finding, Path, Problem
from bot.flows.program import DEFAULT_LANGUAGE, Program, ProgramTexts
from bot.flows.schema import Flow
from bot.flows.suggest import closest, did_you_mean
from bot.flows.translations import translated
from bot.flows.validation import validation_problems
from bot.flows.yamlsource import SourceMap
from bot.text import templates

#: What a program text may show: the listed flows' triggers, and the same with their descriptions.
NAMES = ("triggers", "triggers_described")
#: The word before the last item of a list ("JOIN, REFILL or STATUS"), by language; a language
#: not here gets commas only (write the list out, or use Liquid: ``{{ triggers | replace: ... }}``).
OR_WORDS = {"en": "or", "es": "o", "fr": "ou", "pt": "ou", "it": "o", "de": "oder", "nl": "of"}
_TEXTS = ("help", "opt_out", "opt_in", "fallback", "stop_hint", "wait", "reset")
_LANGUAGE_TEXTS = ("help", "opt_out", "opt_in", "stop_hint", "fallback", "wait", "reset")


@dataclass(frozen=True, slots=True)
class Entry:
    """One flow in the list."""

    trigger: str  # its first trigger, as written
    about: str = ""  # its ``listed:`` text ("to track an order"), or nothing


def entries(flows: Iterable[Flow]) -> list[Entry]:
    """The flows a program text lists: those with triggers and not ``listed: false``, each by its
    first trigger, in alphabetical order (so the list reads the same whatever the file names)."""
    found = [Entry(flow.triggers[0], flow.listed if isinstance(flow.listed, str) else "")
             for flow in flows if flow.triggers and flow.listed is not False]
    return sorted(found, key=lambda entry: (entry.trigger.casefold(), entry.trigger))


def joined(items: list[str], language: str) -> str:
    """"A", "A or B", "A, B or C": no comma before the last, as texts are written."""
    word = OR_WORDS.get(language.split("-")[0].lower())
    if len(items) < 2 or word is None:
        return ", ".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def values(listed: list[Entry], language: str) -> dict[str, str]:
    """What ``{{ triggers }}`` and ``{{ triggers_described }}`` show in ``language``'s texts."""
    return {"triggers": joined([entry.trigger for entry in listed], language),
            "triggers_described": joined([f"{entry.trigger} {entry.about}".rstrip() for entry in listed], language)}


def render_program(program: ProgramTexts, flows: Iterable[Flow], file: str, source: SourceMap,
                   options: CheckOptions = CheckOptions(), *,
                   all_flows: bool = True) -> tuple[ProgramTexts | None, list[Problem]]:
    """``program`` with every text that shows the flows rendered (None when one cannot be), and
    every problem found, located in the program file. ``all_flows``: ``flows`` are all there will
    be (not when some flow files have errors), so an empty list is worth a warning."""
    flows = list(flows)
    listed = entries(flows)
    findings: list[Finding] = []
    data = program.model_dump()
    rendered: dict[Path, str] = {}
    for path, text, language in _texts(program):
        if "{{" in text or "{%" in text:
            # In a language's texts, the flows as that language's speakers text them (ESTADO)
            shown = listed if language == DEFAULT_LANGUAGE else entries(translated(flow, language) for flow in flows)
            result = _render(path, text, values(shown, language), findings)
            if result is not None:
                rendered[path] = result
                _put(data, path[1:], result)
    if not listed and rendered and all_flows:
        first = next(iter(rendered))
        findings.append(Finding(first, "no flow is listed here: no flow has triggers, or every one has "
                                       "listed: false", severity="warning",
                                hint="give a flow triggers, or write this text without {{ triggers }}"))
    for path, text in rendered.items():
        findings.extend(cost_findings(path, text, options))
    problems = [_locate(file, source, finding) for finding in findings]
    if any(problem.severity == "error" for problem in problems):
        return None, problems
    try:
        checked = Program.model_validate({"program": data}).program  # the rules, on the texts as sent
    except ValidationError as error:
        return None, problems + validation_problems(file, source, Program, error)
    return checked, problems


def _texts(program: ProgramTexts) -> Iterator[tuple[Path, str, str]]:
    """Each text of the program: its path in the file, the text, and its language."""
    for name in _TEXTS:
        yield ("program", name), getattr(program, name), DEFAULT_LANGUAGE
    for code, texts in program.languages.items():
        for name in _LANGUAGE_TEXTS:
            text = getattr(texts, name)
            if text is not None:
                yield ("program", "languages", code, name), text, code


def _render(path: Path, text: str, context: dict[str, str], findings: list[Finding]) -> str | None:
    try:
        template = templates.parse(text)
    except templates.TemplateSyntaxError as error:
        findings.append(Finding(path, str(error)))
        return None
    unknown = sorted(templates.variables(template) - set(NAMES))
    for name in unknown:
        meant = did_you_mean(closest(name, NAMES))
        findings.append(Finding(path, f"a program text cannot show {{{{ {name} }}}}",
                                hint=meant or "it can show {{ triggers }} and {{ triggers_described }}; "
                                              "write anything else out"))
    if unknown:
        return None
    try:
        return templates.render(template, context)
    except LiquidError as error:
        findings.append(Finding(path, f"template error in {text!r}: {str(error).splitlines()[0]}"))
        return None


def _put(data: dict[str, Any], path: Path, value: str) -> None:
    for part in path[:-1]:
        data = data[str(part)]
    data[str(path[-1])] = value


def _locate(file: str, source: SourceMap, finding: Finding) -> Problem:
    line, col = source.locate(finding.path)
    return Problem(file, line, col, finding.message, finding.severity, finding.hint)
