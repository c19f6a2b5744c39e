"""Read a folder of flow files into a :class:`FlowSet`, or fail with every problem, located.

The server, ``lint`` and the tests all load flows through :func:`load_flows`, so a flow that
lint accepts is a flow the server runs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath

from pydantic import BaseModel, ValidationError

from bot.consent.rules import ConsentRules
from bot.flows.checks import CheckOptions, check_flow, check_flow_set
from bot.flows.compile import CompiledFlow, compile_flow
from bot.flows.consent_source import consent_rules, default_consent_rules
from bot.flows.problems import Finding, FlowLoadError, Problem
from bot.flows.program import Program, ProgramTexts
from bot.flows.program_texts import render_program
from bot.flows.schema import Flow
from bot.flows.translation_checks import translation_findings, translation_set_findings
from bot.flows.validation import validation_problems
from bot.flows.yamlsource import SourceMap, UnreadableFile, YamlError, read_yaml, read_yaml_file
from bot.text.normalise import normalise
from bot.text.trigger_typos import TriggerTypos

PROGRAM_FILE = "program.yaml"


@dataclass
class FlowSet:
    """Every flow that can run, plus the program's compliance texts."""

    program: ProgramTexts
    flows: dict[str, CompiledFlow]
    warnings: list[Problem] = field(default_factory=list)
    #: the consent keywords and revocation phrases, every language (``bot/consent/``)
    consent: ConsentRules = field(default_factory=default_consent_rules)
    version: str = ""  # files_version() of the files loaded: operators compare it across processes
    loaded_at: float = 0.0
    by_trigger: dict[str, CompiledFlow] = field(init=False)
    catch_all: CompiledFlow | None = field(init=False)  # starts on any message no trigger matched
    #: "did you mean": the triggers a mistyped one may be (a catch-all flow's never are)
    trigger_typos: TriggerTypos = field(init=False)

    def texts_for(self, language: str | None) -> ProgramTexts:
        """The program's texts for someone talked to in ``language`` (made once per language)."""
        found = self._texts_by_language.get(language)
        if found is None:
            found = self._texts_by_language[language] = self.program.in_language(language)
        return found

    def __post_init__(self) -> None:
        self._texts_by_language: dict[str | None, ProgramTexts] = {}
        # Triggers are texted all day: how consent reading mends their words is worked out once.
        self.consent.remember(trigger for flow in self.flows.values()
                              for variant in (flow, *flow.variants.values()) for trigger in variant.triggers)
        # Every language's triggers start the flow (ESTADO as STATUS); which language a word is
        # only one language's is the flow's trigger_languages.
        self.by_trigger = {word: flow for flow in self.flows.values()
                           for variant in (flow, *flow.variants.values()) for word in variant.triggers}
        self.catch_all = next((flow for flow in self.flows.values() if flow.start_on_any_message), None)
        self.trigger_typos = TriggerTypos((word for flow in self.flows.values() if not flow.start_on_any_message
                                               for variant in (flow, *flow.variants.values())
                                               for word in variant.triggers), self.consent.keywords)


@dataclass
class _Parsed:
    file: str
    source: SourceMap
    model: BaseModel | None = None
    consent: ConsentRules | None = None  # the program file's: its consent words, compiled
    texts: ProgramTexts | None = None  # the program file's texts, the flows' triggers written in
    is_program: bool = False  # meant as the program file, even when it failed to read or validate


def flow_files(folder: FilePath) -> list[FilePath]:
    """The flow files of a folder: its own ``*.yaml``/``*.yml``, not those of sub-folders."""
    return sorted(path for path in folder.iterdir() if path.suffix in {".yaml", ".yml"} and path.is_file())


VERSION_LENGTH = 12  # hex digits: enough to tell versions apart, short enough to read out


def files_version(files: list[FilePath]) -> str:
    """A short, stable hash of the files' names (not their folder) and contents: the same flow
    files give the same version on every machine, and any edit (or added, removed or renamed
    file) a new one. An unreadable file counts as empty (loading it reports the error)."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda path: path.name):
        try:
            content = path.read_bytes()
        except OSError:
            content = b""
        name = path.name.encode("utf-8", "surrogateescape")
        digest.update(b"%d:%s%d:" % (len(name), name, len(content)) + content)
    return digest.hexdigest()[:VERSION_LENGTH]


def load_flows(folder: str | FilePath, options: CheckOptions = CheckOptions()) -> FlowSet:
    """Load, check and compile every flow in ``folder``; raise FlowLoadError on any error."""
    folder = FilePath(folder)
    if not folder.is_dir():
        raise FlowLoadError([Problem(str(folder), 1, 1, "flows folder not found",
                                     hint="set FLOWS_DIR to the folder holding your flow files")])
    loaded_at = time.time()
    files = flow_files(folder)
    version = files_version(files)
    problems, parsed = _inspect(files, options, program_folder=folder)
    if any(problem.severity == "error" for problem in problems):
        raise FlowLoadError(sorted(problems, key=lambda problem: problem.severity))
    program = next(item for item in parsed if isinstance(item.model, Program))
    assert isinstance(program.model, Program) and program.consent is not None and program.texts is not None
    compiled = {item.model.flow: compile_flow(item.model, item.file)
                for item in parsed if isinstance(item.model, Flow)}
    return FlowSet(program=program.texts, flows=compiled, warnings=problems, consent=program.consent,
                   version=version, loaded_at=loaded_at)


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


@dataclass(frozen=True)
class ParsedFlow:
    """A flow file that read and validated (its checks may still have found problems in it)."""

    file: FilePath
    model: Flow
    source: SourceMap


def check_folder(folder: str | FilePath, options: CheckOptions = CheckOptions(),
                 drafts: Mapping[FilePath, str] | None = None) -> tuple[list[Problem], list[ParsedFlow]]:
    """Every problem of a folder's files, checked together exactly as :func:`load_flows` checks
    them, and each flow file that validated: for tools that show flows beside their problems (the
    console). ``drafts`` stand in for files' contents (an edit not saved yet; a path not on disk
    yet is added), so an edit is checked with the other flows and the program file."""
    folder = FilePath(folder)
    if not folder.is_dir():
        return [Problem(str(folder), 1, 1, "flows folder not found",
                        hint="set FLOWS_DIR to the folder holding your flow files")], []
    drafts = dict(drafts or {})
    files = flow_files(folder)
    files += sorted(path for path in drafts if path not in files)
    problems, parsed = _inspect(files, options, program_folder=folder, drafts=drafts)
    return problems, [ParsedFlow(FilePath(item.file), item.model, item.source)
                      for item in parsed if isinstance(item.model, Flow)]


def _inspect(files: list[FilePath], options: CheckOptions, program_folder: FilePath | None,
             drafts: Mapping[FilePath, str] | None = None) -> tuple[list[Problem], list[_Parsed]]:
    problems: list[Problem] = []
    parsed = [_parse_file(path, problems, drafts) for path in files]
    program_files = [item for item in parsed if isinstance(item.model, Program)]
    flow_models = [item for item in parsed if isinstance(item.model, Flow)]
    for item in flow_models:
        assert isinstance(item.model, Flow)
        checked = check_flow(item.model, options)
        if not any(finding.severity == "error" for finding in checked):  # per language: translation_checks.py
            checked += translation_findings(item.model, options)
        problems.extend(_locate(item, finding) for finding in checked)
    problems.extend(_cross_flow_problems(flow_models))
    files_of = {id(item.model): item for item in flow_models}
    models = [item.model for item in flow_models if isinstance(item.model, Flow)]
    for flow, finding in [*check_flow_set(models), *translation_set_findings(models)]:
        problems.append(_locate(files_of[id(flow)], finding))
    if program_folder is not None and not any(item.is_program for item in parsed):
        problems.append(Problem(str(program_folder / PROGRAM_FILE), 1, 1, "no program file",
                                hint="create it with program: {name, help, opt_out, opt_in}; "
                                     "see docs/flows.md"))
    if program_files:
        first = program_files[0]
        assert isinstance(first.model, Program)
        first.consent, found = consent_rules(first.model.program, first.file, first.source)
        problems.extend(found)
        first.texts, found = render_program(first.model.program, [item.model for item in flow_models
                                                                  if isinstance(item.model, Flow)],
                                            first.file, first.source, options,
                                            all_flows=len(flow_models) + len(program_files) == len(parsed))
        problems.extend(found)
    for extra in program_files[1:]:
        problems.append(Problem(extra.file, 1, 1, f"a second program file (first: {program_files[0].file})",
                                hint="keep one program: section"))
    return problems, parsed


def _parse_file(path: FilePath, problems: list[Problem], drafts: Mapping[FilePath, str] | None = None) -> _Parsed:
    file = str(path)
    try:
        data, source = _read(path, drafts)
    except UnreadableFile as error:
        problems.append(error.problem)
        return _Parsed(file, SourceMap(), is_program=path.stem == "program")
    item = _Parsed(file, source, is_program=isinstance(data, dict) and "program" in data)
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


def _read(path: FilePath, drafts: Mapping[FilePath, str] | None) -> tuple[object, SourceMap]:
    """The file's YAML, or its draft's when one stands in for it (located the same way)."""
    if drafts is None or path not in drafts:
        return read_yaml_file(path)
    try:
        return read_yaml(drafts[path])
    except YamlError as error:
        raise UnreadableFile(Problem(str(path), error.line, error.col, error.message, hint=error.hint)) from None


def _locate(item: _Parsed, finding: Finding) -> Problem:
    line, col = item.source.locate(finding.path, finding.at)
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
