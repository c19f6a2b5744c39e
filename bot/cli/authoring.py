"""Commands for people who write flows: lint, chat, test, graph, schema — flow files alone, no
server and no Twilio account."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from bot.cli import chat as chat_command
from bot.cli.common import CommandError, Commands, add_check_options, add_flows_option, flows_dir, load_for, write_file
from bot.flows import graph, graph_page
from bot.flows.checks import CheckOptions
from bot.flows.compile import CompiledFlow
from bot.flows.loader import lint_paths, load_flows
from bot.flows.schema import json_schema
from bot.flows.translation_table import language_name
from bot.flowtests import run_conversations
from bot.settings import load_settings


def add_commands(commands: Commands) -> None:
    lint = commands.add_parser("lint", help="check flow files", description=(
        "Check flow files and folders. Prints each finding as file:line:col: severity: message (hint). "
        "Exit status 0 when there are no errors (warnings allowed), 1 when there are errors."))
    lint.add_argument("paths", nargs="*", type=Path, help="flow files or folders (default: FLOWS_DIR)")
    add_check_options(lint)
    lint.set_defaults(run=_lint)

    chat = commands.add_parser("chat", help="text the flows from the terminal (simulator)", description=(
        "Talk to the real engine and flows as a given number, one message per line (stdin may be "
        "piped). Shows each reply with its SMS segment count and encoding. '/wait 1h' lets time pass: "
        "the timeouts and reminders that come due fire and show what they send; '/help' lists the "
        "commands. The store is thrown away at the end unless --store says otherwise; fetch steps really run."))
    chat.add_argument("--from", dest="sender", default="+15551234567", help="the number you text as")
    chat.add_argument("--trace", action="store_true", help="show the rule that matched and state before -> after")
    chat.add_argument("--store", default="memory://", help="STORE_URL to use (default: a throwaway memory store)")
    chat.add_argument("--language", metavar="CODE", help=(
        "be talked to in this language from the start (es, fr…), as if you had chosen it; a trigger "
        "only one language has (ESTADO, STATUS) still switches, as on the server"))
    add_flows_option(chat)
    chat.set_defaults(run=chat_command.run)

    test = commands.add_parser("test", help="run conversation tests", description=(
        "Replay conversation tests (YAML files of send/expect turns) against the real engine. "
        "Exit status 1 with a diff at the first mismatch of any test."))
    test.add_argument("paths", nargs="*", type=Path, help="test files or folders (default: FLOWS_DIR/tests)")
    add_flows_option(test)
    test.set_defaults(run=_test)

    draw = commands.add_parser("graph", help="draw a flow as a Mermaid diagram", description=(
        "Print a flow's Mermaid stateDiagram-v2 (drawn by transitions' diagram support), write "
        "it to a .md file that GitHub renders, or to a standalone HTML page that draws it offline."))
    draw.add_argument("flow", help="the flow's name, or its file")
    draw.add_argument("--language", metavar="CODE", help=(
        "draw the flow as it runs for people talked to in this language (its translations:, es…)"))
    output = draw.add_mutually_exclusive_group()
    output.add_argument("-o", "--output", type=Path, help="write here (.md: wrapped in a mermaid block)")
    output.add_argument("--html", type=Path, metavar="FILE", help=(
        "write a standalone HTML page that draws the diagram in any browser, offline (the renderer "
        "is inside the page; nothing is loaded from the network)"))
    add_flows_option(draw)
    draw.set_defaults(run=_graph)

    schema = commands.add_parser("schema", help="print the JSON Schema of flow files", description=(
        "Print the JSON Schema of flow files (for editor autocompletion; see docs/flows.md)."))
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(run=_schema)


# -- lint -------------------------------------------------------------------------------------

def _lint(args: argparse.Namespace) -> int:
    # As the server checks: with FLOW_ENV and the cap on a turn (CheckOptions.of_the_bot).
    options = CheckOptions.of_the_bot(load_settings().flow_env, max_segments=args.max_segments,
                                      assumed_variable_length=args.assume_var_length)
    problems = lint_paths(args.paths or [Path(load_settings().flows_dir)], options)
    for problem in problems:
        print(problem)
    errors = sum(problem.severity == "error" for problem in problems)
    warnings = len(problems) - errors
    print(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}", file=sys.stderr)
    return 1 if errors else 0


# -- test -------------------------------------------------------------------------------------

def _test(args: argparse.Namespace) -> int:
    folder = flows_dir(args)
    flows = load_for(args)
    paths = args.paths or [folder / "tests"]
    settings = load_settings()
    engine_log = logging.getLogger("bot.engine")
    level = engine_log.level
    engine_log.setLevel(logging.ERROR)  # a stubbed failing fetch is expected here
    try:
        run = asyncio.run(run_conversations(flows, paths, settings.flow_env,
                                            suggest_triggers=settings.suggest_triggers))
    finally:
        engine_log.setLevel(level)  # main() may be called in-process (tests, an embedding program)
    for problem in run.problems:
        print(problem)
    for result in run.results:
        if result.passed:
            print(f"ok    {result.file}: {result.name}")
        else:
            print(f"FAIL  {result.file}: {result.name}")
            print("      " + result.report.replace("\n", "\n      "))
    failed = sum(not result.passed for result in run.results)
    print(f"{len(run.results) - failed} passed, {failed} failed"
          + (f", {len(run.problems)} problem(s) in test files" if run.problems else ""), file=sys.stderr)
    if not run.results and not run.problems:
        print(f"no conversation tests found in {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    return 0 if run.ok else 1


# -- graph and schema -------------------------------------------------------------------------

def _graph(args: argparse.Namespace) -> int:
    as_file = Path(args.flow)
    if as_file.suffix in {".yaml", ".yml"} and as_file.is_file():
        flows = load_flows(as_file.parent)
        matches = [flow for flow in flows.flows.values() if Path(flow.file).resolve() == as_file.resolve()]
    else:
        flows = load_for(args)
        matches = [flows.flows[args.flow]] if args.flow in flows.flows else []
    if not matches:
        raise CommandError(f"no flow {args.flow!r}; flows: {', '.join(sorted(flows.flows))}")
    flow = _in_language(matches[0], args.language)
    title = f"{flow.name} ({flow.language})" if flow is not matches[0] else None
    if args.html is not None:
        try:
            page = graph_page.html_page(flow, title)
        except graph_page.VendoredFileMissing as error:
            raise CommandError(str(error)) from None
        write_file(args.html, page)
        print(f"wrote {args.html}: open it in a browser (it works offline)", file=sys.stderr)
    elif args.output is None:
        print(graph.mermaid(flow, title), end="")
    else:
        text = graph.markdown(flow, title) if args.output.suffix == ".md" else graph.mermaid(flow, title)
        write_file(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _in_language(flow: CompiledFlow, language: str | None) -> CompiledFlow:
    """The flow as it runs for people talked to in ``language`` (None: as written)."""
    if language is None or language == flow.language:
        return flow
    if language not in flow.variants:
        spoken = ", ".join([flow.language, *flow.variants])
        raise CommandError(f"flow {flow.name!r} has no {language_name(language)} texts; it speaks {spoken}")
    return flow.variants[language]


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        write_file(args.output, text)
    return 0


