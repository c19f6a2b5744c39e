"""What the command-line tools share: the error users can fix, and finding and loading the flows."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from bot.flows.checks import CheckOptions
from bot.flows.loader import FlowSet, load_flows
from bot.settings import load_settings

#: ``parser.add_subparsers()``: each command module adds its own commands to it.
Commands = Any


class CommandError(Exception):
    """A problem the user can fix; printed as ``error: …`` with exit code 2."""


def add_flows_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flows", type=Path, help="flows folder (default: FLOWS_DIR, or flows/)")


def add_check_options(parser: argparse.ArgumentParser) -> None:
    defaults = CheckOptions()
    parser.add_argument("--max-segments", type=int, default=defaults.max_segments,
                        help=f"warn when a text costs more SMS segments (default {defaults.max_segments})")
    parser.add_argument("--assume-var-length", type=int, default=defaults.assumed_variable_length,
                        help="characters a {{ variable }} counts for when measuring "
                             f"(default {defaults.assumed_variable_length})")


def flows_dir(args: argparse.Namespace) -> Path:
    return args.flows if getattr(args, "flows", None) else Path(load_settings().flows_dir)


def load_for(args: argparse.Namespace) -> FlowSet:
    flows = load_flows(flows_dir(args))
    for warning in flows.warnings:
        print(f"{warning}", file=sys.stderr)
    return flows


def write_file(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None


@contextlib.contextmanager
def opened_output(output: Path | None) -> Iterator[TextIO]:
    """Where a command writes its CSV: the file named with ``-o``, else standard output."""
    if output is None:
        yield sys.stdout
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as file:
            yield file
    except OSError as error:
        raise CommandError(f"cannot write {output}: {error.strerror or error}") from None
