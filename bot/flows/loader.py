"""Read a folder of flow files into a :class:`FlowSet`, or fail with every problem, located.

The server, ``lint`` and the tests all load flows through :func:`load_flows`, so a flow that
lint accepts is a flow the server runs.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.consent.rules import ConsentRules
from bot.flows.checks import CheckOptions, check_flow, check_flow_set
from bot.flows.compile import CompiledFlow, compile_flow
from bot.flows.consent_source import consent_rules, default_consent_rules
from bot.flows.problems import Finding, FlowLoadError, Path, Problem
from bot.flows.program import Program, ProgramTexts
from bot.flows.schema import Flow
from bot.flows.yamlsource import SourceMap, UnreadableFile, read_yaml_file
from bot.text.normalise import normalise

PROGRAM_FILE = "program.yaml"


@dataclass
class FlowSet:
    """Every flow that can run, plus the program's compliance texts."""

    program: ProgramTexts
    flows: dict[str, CompiledFlow]
    warnings: list[Problem] = field(default_factory=list)
    #: the consent keywords and revocation phrases, every language (``bot/consent/``)
    consent: ConsentRules = field(default_factory=default_consent_rules)
    by_trigger: dict[str, CompiledFlow] = field(init=False)
    catch_all: CompiledFlow | None = field(init=False)  # starts on any message no trigger matched

    def __post_init__(self) -> None:
        self.by_trigger = {word: flow for flow in self.flows.values() for word in flow.triggers}
        self.catch_all = next((flow for flow in self.flows.values() if flow.start_on_any_message), None)


@dataclass
class _Parsed:
    file: str
    source: SourceMap
    model: BaseModel | None = None
    consent: ConsentRules | None = None  # the program file's: its consent words, compiled


def flow_files(folder: FilePath) -> list[FilePath]:
    """The flow files of a folder: its own ``*.yaml``/``*.yml``, not those of sub-folders."""
    return sorted(path for path in folder.iterdir() if path.suffix in {".yaml", ".yml"} and path.is_file())


def load_flows(folder: str | FilePath, options: CheckOptions = CheckOptions()) -> FlowSet:
    """Load, check and compile every flow in ``folder``; raise FlowLoadError on any error."""
    folder = FilePath(folder)
    if not folder.is_dir():
        raise FlowLoadError([Problem(str(folder), 1, 1, "flows folder not found",
                                     hint="set FLOWS_DIR to the folder holding your flow files")])
    problems, parsed = _inspect(flow_files(folder), options, program_folder=folder)
    if any(problem.severity == "error" for problem in problems):
        raise FlowLoadError(sorted(problems, key=lambda problem: problem.severity))
    program = next(item for item in parsed if isinstance(item.model, Program))
    assert isinstance(program.model, Program) and program.consent is not None
    compiled = {item.model.flow: compile_flow(item.model, item.file)
                for item in parsed if isinstance(item.model, Flow)}
    return FlowSet(program=program.model.program, flows=compiled, warnings=problems, consent=program.consent)


def lint_paths(paths: list[FilePath], options: CheckOptions = CheckOptions()) -> list[Problem]:
    """Every problem in the given flow files and folders, checked together (as the server would).

    A folder must hold a program file; single files are checked on their own.
    """
    files: list[FilePath] = []
    folder: FilePath | None = None
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            files.extend(flow_files(path))
            folder = folder or path
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
    found, _ = _inspect(files, options, program_folder=folder)
    return problems + found


def _inspect(files: list[FilePath], options: CheckOptions,
             program_folder: FilePath | None) -> tuple[list[Problem], list[_Parsed]]:
    problems: list[Problem] = []
    parsed = [_parse_file(path, problems) for path in files]
    program_files = [item for item in parsed if isinstance(item.model, Program)]
    flow_models = [item for item in parsed if isinstance(item.model, Flow)]
    for item in flow_models:
        assert isinstance(item.model, Flow)
        problems.extend(_locate(item, finding) for finding in check_flow(item.model, options))
    problems.extend(_cross_flow_problems(flow_models))
    files_of = {id(item.model): item for item in flow_models}
    for flow, finding in check_flow_set([item.model for item in flow_models if isinstance(item.model, Flow)]):
        problems.append(_locate(files_of[id(flow)], finding))
    if program_folder is not None and not program_files:
        problems.append(Problem(str(program_folder / PROGRAM_FILE), 1, 1, "no program file",
                                hint="create it with program: {name, help, opt_out, opt_in}; "
                                     "see docs/flows.md"))
    if program_files:
        first = program_files[0]
        assert isinstance(first.model, Program)
        first.consent, found = consent_rules(first.model.program, first.file, first.source)
        problems.extend(found)
    for extra in program_files[1:]:
        problems.append(Problem(extra.file, 1, 1, f"a second program file (first: {program_files[0].file})",
                                hint="keep one program: section"))
    return problems, parsed


def _parse_file(path: FilePath, problems: list[Problem]) -> _Parsed:
    file = str(path)
    try:
        data, source = read_yaml_file(path)
    except UnreadableFile as error:
        problems.append(error.problem)
        return _Parsed(file, SourceMap())
    item = _Parsed(file, source)
    if not isinstance(data, dict) or not ({"flow", "program"} & set(data)):
        problems.append(Problem(file, 1, 1, "not a flow file",
                                hint="a flow file starts with flow: NAME; the program file with program:"))
        return item
    model_type: type[BaseModel] = Program if "program" in data else Flow
    try:
        item.model = model_type.model_validate(data)
    except ValidationError as error:
        problems.extend(validation_problems(file, source, model_type, error))
    return item


def validation_problems(file: str, source: SourceMap, model_type: type[BaseModel],
                        error: ValidationError) -> list[Problem]:
    """Pydantic's errors as located problems, in words an ops person can act on."""
    return [_validation_problem(file, source, model_type, detail) for detail in error.errors()]


def _validation_problem(file: str, source: SourceMap, model_type: type[BaseModel], detail: Any) -> Problem:
    path: Path = tuple(detail["loc"])
    kind = detail["type"]
    message = str(detail["msg"]).removeprefix("Value error, ")
    hint = ""
    if kind == "extra_forbidden":
        field_name = str(path[-1])
        allowed = _allowed_fields(model_type, path[:-1])
        close = difflib.get_close_matches(field_name, allowed, n=1)
        message = f"unknown field {field_name!r}"
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        path = (*path, "[key]")
    elif kind == "missing":
        message = f"missing field {path[-1]!r}"
        path = path[:-1]
    elif detail.get("input") is None and kind.endswith("_type"):
        message = f"{_field_name(path)!r} is empty"
        hint = "write a value after the colon"
    elif kind == "too_short":
        message = f"{_field_name(path)!r} needs at least {detail.get('ctx', {}).get('min_length', 1)} item(s)"
    elif kind == "string_pattern_mismatch":
        message = f"{detail.get('input')!r} is not a valid name"
        hint = "use letters, digits and _, not starting with a digit"
    elif kind == "bool_type" or isinstance(detail.get("input"), bool):
        hint = "quote words such as 'true' and 'false' if you mean the words"
    line, col = source.locate(path)
    return Problem(file, line, col, message, hint=hint)


def _field_name(path: Path) -> str:
    """The last named part of a path: ``flow`` for ("flow",), ``keywords`` for (..., "keywords", 0)."""
    return next((str(part) for part in reversed(path) if isinstance(part, str) and part != "[key]"), "value")


def _allowed_fields(model_type: type[BaseModel], path: Path) -> list[str]:
    """The field names valid at ``path`` of a model, found by walking the type annotations
    (so a state named ``fetch`` is a dict key, not the Fetch field)."""
    current: Any = model_type
    for part in path:
        current = _descend(current, part)
        if current is None:
            return []
    return list(_yaml_fields(current)) if _is_model(current) else []


def _yaml_fields(model_type: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the names written in flow files (``replies`` for ``State.rules``)."""
    return {info.alias or name: info for name, info in model_type.model_fields.items()}


def _descend(annotation: Any, part: str | int) -> Any:
    """The type found one step into ``annotation`` along ``part`` (a field, a dict key, an index)."""
    if _is_model(annotation):
        field_info = _yaml_fields(annotation).get(str(part))
        return field_info.annotation if field_info is not None else None
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _descend(arguments[0], part)
    if origin is dict:
        return arguments[1]
    if origin is list:
        return arguments[0] if isinstance(part, int) else None
    for option in arguments:  # a union such as ``Fetch | None``: the option that can hold ``part``
        found = _descend(option, part)
        if found is not None:
            return found
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _locate(item: _Parsed, finding: Finding) -> Problem:
    line, col = item.source.locate(finding.path)
    return Problem(item.file, line, col, finding.message, finding.severity, finding.hint)


def _cross_flow_problems(items: list[_Parsed]) -> list[Problem]:
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    names: dict[str, str] = {}
    for item in items:
        assert isinstance(item.model, Flow)
        flow = item.model
        if flow.flow in names:
            problems.append(_locate(item, Finding(("flow",), f"flow name {flow.flow!r} is also used by "
                                                  f"{names[flow.flow]}", hint="give each flow its own name")))
        names.setdefault(flow.flow, item.file)
        for index, word in enumerate(flow.triggers or ()):
            key = normalise(word)
            if key in owners and owners[key] != flow.flow:
                problems.append(_locate(item, Finding(("triggers", index), f"trigger {word!r} is also a trigger "
                                                      f"of flow {owners[key]!r}",
                                                      hint="a word can start only one flow")))
            owners.setdefault(key, flow.flow)
    return problems
