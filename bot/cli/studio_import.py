"""``import-studio``: convert a Twilio Studio export into a flow file and its conversation test."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot import studio
from bot.cli.common import CommandError, Commands, write_file


def add_commands(commands: Commands) -> None:
    studio_import = commands.add_parser("import-studio", help="convert a Twilio Studio flow export into a flow",
                                        description=(
        "Convert a Twilio Studio flow export (JSON) into a flow file: widgets become states of the same "
        "name, Studio's templates are kept. With -o, also writes a conversation test to tests/ beside "
        "the flow. Widgets that cannot run here (voice, Flex, ...) make the import fail (exit status 1) "
        "unless --stub. See docs/studio.md."))
    studio_import.add_argument("export", type=Path, metavar="FLOW.json", help="the Studio export")
    studio_import.add_argument("-o", "--output", type=Path, metavar="FILE.yaml",
                               help="write the flow here, and its test to tests/FILE.yaml beside it "
                                    "(default: print the flow)")
    studio_import.add_argument("--name", help="the flow's name (default: the output file's name, else the export's)")
    studio_import.add_argument("--trigger", action="extend", nargs="+", default=[], metavar="WORD",
                               help="a message that starts the flow (repeat for more)")
    studio_import.add_argument("--default", action="store_true",
                               help="start the flow on any message that matches no trigger, when idle")
    studio_import.add_argument("--stub", action="store_true",
                               help="replace widgets that cannot run here with states that say so")
    studio_import.add_argument("--subflow", action="append", default=[], metavar="FWSID=FLOW",
                               help="the flow a Run Subflow widget's flow SID was imported as (repeat for more)")
    studio_import.set_defaults(run=_import_studio)


def _import_studio(args: argparse.Namespace) -> int:
    subflows: dict[str, str] = {}
    for item in args.subflow:
        sid, equals, flow = (part.strip() for part in item.partition("="))
        if not equals or not sid or not flow:
            raise CommandError(f"--subflow {item!r}: write it as FWSID=FLOW, e.g. --subflow FW0123…=booking")
        subflows[sid] = flow
    for word in args.trigger:
        problem = studio.trigger_problem(word)
        if problem:
            raise CommandError(problem)
    name = args.name or studio.flow_name_from((args.output or args.export).stem)
    if not studio.NAME_RE.match(name):
        raise CommandError(f"--name {name!r}: use letters, digits and _, not starting with a digit")
    if not args.export.is_file():
        raise CommandError(f"{args.export}: no such file")
    options = studio.Options(name=name, triggers=tuple(args.trigger), default=args.default, stub=args.stub,
                             subflows=subflows)
    try:
        imported = studio.import_flow(studio.read_export(args.export), options)
    except studio.StudioError as error:
        print(f"error: {args.export}: {error}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return 1
    for item in imported.stubbed:
        print(f"warning: stubbed {item}", file=sys.stderr)
    for warning in imported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output is None:
        print(imported.flow_yaml(), end="")
        return 0
    tests_path = args.output.parent / "tests" / args.output.name
    tests = imported.tests_yaml()
    write_file(args.output, imported.flow_yaml())
    print(f"wrote {args.output}", file=sys.stderr)
    if tests is not None:
        write_file(tests_path, tests)
        print(f"wrote {tests_path}", file=sys.stderr)
    else:
        print(f"no conversation test: not even the first turn of {name} can be walked (see the notes)", file=sys.stderr)
    for note in imported.test_notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


