"""Reading the consent words for a flow load: the shipped language files plus ``program.yaml``'s
``consent:`` additions, compiled into :class:`bot.consent.rules.ConsentRules`, every problem
located at its file and line (the shipped files are ops staff's to read and extend too)."""

from __future__ import annotations

from functools import cache
from pathlib import Path as FilePath

from pydantic import ValidationError

from bot.consent.rules import ConsentRules, ConsentRulesError, RuleProblem, build_rules
from bot.consent.words import ConsentWords, builtin_language_files
from bot.flows.problems import Problem
from bot.flows.program import ProgramTexts
from bot.flows.validation import validation_problems
from bot.flows.yamlsource import SourceMap, UnreadableFile, read_yaml_file


def consent_rules(program: ProgramTexts | None, program_file: str = "",
                  program_source: SourceMap | None = None) -> tuple[ConsentRules | None, list[Problem]]:
    """The consent rules for ``program`` (None when there are errors), and every problem found.

    Rules built without problems are kept for the same shipped files (path, size, mtime) and the
    same program additions: compiling them takes a quarter of a second, and every flow load, hot
    reload and test would otherwise pay it again for identical input."""
    key = (_stamps(), program_file, program.model_dump_json(include={"consent"}) if program is not None else "")
    if key in _BUILT:
        return _BUILT[key], []
    problems: list[Problem] = []
    sources: dict[str, SourceMap] = {}
    parts: dict[str, list[tuple[str, ConsentWords]]] = {}
    for code, path in builtin_language_files().items():
        words = _read_language_file(path, problems, sources)
        if words is not None:
            parts.setdefault(code, []).append((str(path), words))
    if program is not None:
        sources[program_file] = program_source or SourceMap()
        for code, words in program.consent.items():
            parts.setdefault(code, []).append((program_file, words))
    if problems:
        return None, problems
    try:
        rules = build_rules(parts)
    except ConsentRulesError as error:
        return None, [_located(problem, sources, program_file) for problem in error.problems]
    problems.extend(_located(problem, sources, program_file) for problem in rules.example_problems())
    if problems:
        return None, problems  # a wrong example is an error: lint must fail
    if len(_BUILT) >= _BUILT_KEPT:
        del _BUILT[next(iter(_BUILT))]  # the oldest
    _BUILT[key] = rules
    return rules, []


_BUILT_KEPT = 8
_BUILT: dict[tuple[object, ...], ConsentRules] = {}


def _stamps() -> tuple[tuple[str, int, int], ...]:
    """Which shipped consent files there are, and which version of each (an edit changes these)."""
    stamps = []
    for path in builtin_language_files().values():
        try:
            stat = path.stat()
        except OSError:
            stamps.append((str(path), -1, -1))
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _read_language_file(path: FilePath, problems: list[Problem], sources: dict[str, SourceMap]) -> ConsentWords | None:
    try:
        data, source = read_yaml_file(path)
    except UnreadableFile as error:
        problems.append(error.problem)
        return None
    sources[str(path)] = source
    try:
        return ConsentWords.model_validate(data or {})
    except ValidationError as error:
        problems.extend(validation_problems(str(path), source, ConsentWords, error))
        return None


def _located(problem: RuleProblem, sources: dict[str, SourceMap], program_file: str) -> Problem:
    in_program = program_file and problem.origin == program_file
    path = ("program", "consent", problem.language, *problem.path) if in_program else problem.path
    line, col = sources.get(problem.origin, SourceMap()).locate(path)
    return Problem(problem.origin, line, col, problem.message, hint=problem.hint)


@cache
def default_consent_rules() -> ConsentRules:
    """The shipped rules alone (for a FlowSet built without a program file, as some tests do)."""
    rules, problems = consent_rules(None)
    if rules is None:
        raise ConsentRulesError([RuleProblem("", problem.file, (), problem.message) for problem in problems])
    return rules
