"""``python -m bot translations export|import``: a flow's texts out to a translator and back.

export writes a flow's texts with their current translations into one language as a PO file
(Poedit, Weblate, Crowdin…) or CSV (a spreadsheet); import checks a translated file and writes its
translations into the flow's ``translations:`` table, the rest of the flow file kept as it is
(``bot/translation_files/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.cli.common import CommandError, Commands, add_flows_option, flows_dir
from bot.translation_files.workflow import FORMATS, TranslationError, export, export_summary, import_file


def add_commands(commands: Commands) -> None:
    translations = commands.add_parser(
        "translations", help="export a flow's texts for a translator (PO or CSV), and import them back",
        description=(
            "export FLOW --language es: write FLOW's texts and their current translations as a PO file "
            "(stdout, or -o FILE; --format csv, or -o FILE.csv, for a spreadsheet). A text that changed since it "
            "was translated is marked fuzzy (CSV: stale) with its old text beside it. import FILE: bring a "
            "translated PO or CSV file back into the flow's translations: table; fuzzy entries are not imported "
            "until a translator removes the mark, empty ones leave a text untranslated, and a translation that "
            "changes the text's {{ values }}, puts a line break in a menu label or a compliance word among the "
            "words people text is refused. Exit status 1 when anything was refused."))
    actions = translations.add_subparsers(dest="action", required=True, metavar="export|import")

    out = actions.add_parser("export", help="write a flow's texts as a PO or CSV file for a translator",
                             description="Write FLOW's texts and their translations into LANGUAGE as PO or CSV.")
    out.add_argument("flow", metavar="FLOW", help="the flow's name (its flow:), or its file")
    out.add_argument("--language", "-l", required=True, metavar="CODE", help="the language to translate into: es, fr…")
    out.add_argument("--format", choices=FORMATS, help="po (default) or csv; -o FILE.csv means csv")
    out.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default: stdout)")
    add_flows_option(out)
    out.set_defaults(run=_export)

    into = actions.add_parser("import", help="write a translated PO or CSV file back into its flow",
                              description="Write the translations of FILE (.po or .csv) into its flow's file.")
    into.add_argument("file", type=Path, metavar="FILE", help="the translated .po or .csv file")
    into.add_argument("--flow", metavar="NAME", help="the flow (default: the one the file names)")
    into.add_argument("--language", "-l", metavar="CODE", help="the language (default: the one the file names)")
    into.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    add_flows_option(into)
    into.set_defaults(run=_import)


def _folder(args: argparse.Namespace, flow: str | None = None) -> Path:
    """--flows, else the folder of a flow named by its file, else FLOWS_DIR."""
    if getattr(args, "flows", None) is None and flow is not None and Path(flow).suffix in (".yaml", ".yml") \
            and Path(flow).is_file():
        return Path(flow).parent
    return flows_dir(args)


def _export(args: argparse.Namespace) -> int:
    file_format = args.format or ("csv" if args.output is not None and args.output.suffix.lower() == ".csv" else "po")
    try:
        data, texts = export(_folder(args, args.flow), args.flow, args.language, file_format)
    except TranslationError as error:
        raise CommandError(str(error)) from None
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            args.output.write_bytes(data)
        except OSError as error:
            raise CommandError(f"cannot write {args.output}: {error.strerror or error}") from None
    print(export_summary(texts) + (f"; wrote {args.output}" if args.output is not None else ""), file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    try:
        report = import_file(args.file, _folder(args), flow=args.flow, language=args.language, dry_run=args.dry_run)
    except TranslationError as error:
        raise CommandError(str(error)) from None
    print("\n".join(report.lines()))
    return 1 if report.failed else 0
