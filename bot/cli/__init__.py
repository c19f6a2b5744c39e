"""``python -m bot <command>``: the tools for people who run the bot and write its flows.

lint, chat, test, graph and schema work on flow files alone — no server, no Twilio account;
webhook texts a running server exactly as Twilio would; status shows which flows the running
servers serve and why a reload was refused; consent reads and adds to the consent ledger; results
writes a flow's runs as CSV with its funnel; backup and restore copy the SQLite store; translations
exports a flow's texts for a translator and imports them back. Each module here adds its own commands.
"""

from __future__ import annotations

import argparse
import sys

from bot import __version__
from bot.cli import authoring, backup, consent, operations, results, sending, status, studio_import, translations
from bot.cli.common import CommandError
from bot.flows.problems import FlowLoadError
from bot.logs import CLI_FORMAT, configure_logging
from bot.settings import SettingsError, load_settings
from bot.store.base import StoreUnavailable
from bot.twilio_outbound import OutboundNotConfigured


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Warnings (a failed fetch, a template error) matter to flow authors; routine INFO does not.
    configure_logging("warning", CLI_FORMAT, log_format=_log_format())
    try:
        return int(args.run(args))
    except (SettingsError, CommandError, OutboundNotConfigured) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FlowLoadError as error:
        print(f"error: the flows cannot run:\n{error.listing()}", file=sys.stderr)
        return 1
    except StoreUnavailable as error:  # unreachable, unwritable, or from a newer release (SchemaTooNew)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _log_format() -> str:
    """LOG_FORMAT (a broadcast run by cron may log to the same pipeline as the server), or text when
    the settings cannot be read: the command that needs them says what is wrong."""
    try:
        return load_settings().log_format
    except (ValueError, OSError):  # SettingsError, an unreadable .env
        return "text"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="textflow SMS bot tools.")
    parser.add_argument("--version", action="version", version=f"textflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (authoring, studio_import, sending, operations, backup, status, consent, results, translations):
        module.add_commands(commands)
    return parser
