"""``python -m bot <command>``: the tools for people who run the bot and write its flows.

lint, chat, test, graph and schema work on flow files alone — no server, no Twilio account;
webhook texts a running server exactly as Twilio would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import httpx

from bot import segments, studio
from bot.actions import HttpFetcher
from bot.broadcast import (
    Broadcast,
    BroadcastError,
    Recipient,
    SendWindow,
    default_name,
    progress_printer,
    read_recipients,
)
from bot.engine import Engine
from bot.flows import graph
from bot.flows.checks import CheckOptions
from bot.flows.loader import FlowSet, lint_paths, load_flows
from bot.flows.problems import FlowLoadError
from bot.flows.schema import json_schema
from bot.flowtests import run_conversations
from bot.outbound import Outbox, TwilioUnreachable, retrying
from bot.privacy import mask
from bot.settings import Settings, SettingsError, load_settings
from bot.simulator import simulation
from bot.store import open_store
from bot.twilio_inbound import SignatureChecker
from bot.twilio_outbound import OutboundNotConfigured
from bot.types import OutboundMessage, OutboundState


class CommandError(Exception):
    """A problem the user can fix; printed as ``error: …`` with exit code 2."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Warnings (a failed fetch, a template error) matter to flow authors; routine INFO does not.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args))
    except (SettingsError, CommandError, OutboundNotConfigured) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FlowLoadError as error:
        print("error: the flows cannot run:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="textflow SMS bot tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lint = commands.add_parser("lint", help="check flow files", description=(
        "Check flow files and folders. Prints each finding as file:line:col: severity: message (hint). "
        "Exit status 0 when there are no errors (warnings allowed), 1 when there are errors."))
    lint.add_argument("paths", nargs="*", type=Path, help="flow files or folders (default: FLOWS_DIR)")
    _add_check_options(lint)
    lint.set_defaults(run=_lint)

    chat = commands.add_parser("chat", help="text the flows from the terminal (simulator)", description=(
        "Talk to the real engine and flows as a given number, one message per line (stdin may be "
        "piped). Shows each reply with its SMS segment count and encoding. The store is thrown away "
        "at the end unless --store says otherwise; fetch steps really run."))
    chat.add_argument("--from", dest="sender", default="+15551234567", help="the number you text as")
    chat.add_argument("--trace", action="store_true", help="show the rule that matched and state before -> after")
    chat.add_argument("--store", default="memory://", help="STORE_URL to use (default: a throwaway memory store)")
    _add_flows_option(chat)
    chat.set_defaults(run=_chat)

    test = commands.add_parser("test", help="run conversation tests", description=(
        "Replay conversation tests (YAML files of send/expect turns) against the real engine. "
        "Exit status 1 with a diff at the first mismatch of any test."))
    test.add_argument("paths", nargs="*", type=Path, help="test files or folders (default: FLOWS_DIR/tests)")
    _add_flows_option(test)
    test.set_defaults(run=_test)

    draw = commands.add_parser("graph", help="draw a flow as a Mermaid diagram", description=(
        "Print a flow's Mermaid stateDiagram-v2 (drawn by transitions' diagram support), or write "
        "it to a .md file that GitHub renders."))
    draw.add_argument("flow", help="the flow's name, or its file")
    draw.add_argument("-o", "--output", type=Path, help="write here (.md: wrapped in a mermaid block)")
    _add_flows_option(draw)
    draw.set_defaults(run=_graph)

    schema = commands.add_parser("schema", help="print the JSON Schema of flow files", description=(
        "Print the JSON Schema of flow files (for editor autocompletion; see docs/flows.md)."))
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(run=_schema)

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

    send = commands.add_parser("send", help="send one text message now", description=(
        "Send a text through Twilio's API (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM or "
        "TWILIO_MESSAGING_SERVICE_SID needed). Opted-out numbers are never texted."))
    send.add_argument("--to", required=True, help="the number to text, E.164 (+15551234567)")
    send.add_argument("text", help="the message")
    send.add_argument("--from", dest="from_number", default="", help="send from this number (default: TWILIO_FROM)")
    send.set_defaults(run=_send)

    broadcast = commands.add_parser("broadcast", help="start a flow for every number in a CSV", description=(
        "Start FLOW for each recipient of a CSV file (header row; number in column 'phone'; other "
        "columns become flow variables such as {{ name }}). Skips opted-out and invalid numbers, "
        "paces itself, retries 'too many requests', waits outside BROADCAST_WINDOW, and resumes where "
        "it stopped when run again: a message Twilio accepted is never sent twice."))
    broadcast.add_argument("--flow", required=True, help="the flow to start")
    broadcast.add_argument("--to", required=True, type=Path, dest="csv", help="CSV file of recipients")
    broadcast.add_argument("--name", help="the broadcast's name (default: flow and CSV file path)")
    broadcast.add_argument("--rate", type=float, default=1.0, help="messages per second (default 1)")
    broadcast.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    _add_flows_option(broadcast)
    broadcast.set_defaults(run=_broadcast)

    report = commands.add_parser("report", help="a broadcast's delivery counts", description=(
        "Show how a broadcast's messages fared: sent, skipped, failed, in doubt, and the delivery "
        "statuses Twilio reported (delivered, undelivered with error codes, …)."))
    report.add_argument("broadcast", help="the broadcast's name (as printed by broadcast)")
    report.set_defaults(run=_report)

    purge = commands.add_parser("purge", help="forget one sender's data on request", description=(
        "Delete one sender's conversation and transcript, and blank the replies recorded for their "
        "messages (the MessageSids stay for 48 h so Twilio retries are still recognised). Their "
        "opt-out is kept: forgetting it would text someone who said STOP."))
    purge.add_argument("number", help="the sender's number, as Twilio sends it (+15551234567)")
    purge.add_argument("--store", help="STORE_URL (default: from the settings)")
    purge.set_defaults(run=_purge)

    webhook = commands.add_parser("webhook", help="text a running bot as Twilio would (signed webhook)",
                                  description=(
        "Send one message per TEXT (or per line of stdin) to a running bot, signed with "
        "TWILIO_AUTH_TOKEN exactly as Twilio signs, and print the replies."))
    webhook.add_argument("text", nargs="*", help="message(s) to send; none: read lines from stdin")
    webhook.add_argument("--url", help="webhook URL (default: http://HOST:PORT/sms from the settings)")
    webhook.add_argument("--from", dest="sender", default="+15551234567", help="sender number")
    webhook.add_argument("--to", default="+15550001111", help="the bot's number")
    webhook.set_defaults(run=_webhook)

    fake = commands.add_parser("fake-twilio", help="serve a fake Twilio API locally (try outbound without an account)",
                               description=(
        "Serve a fake of Twilio's Messages API on 127.0.0.1:PORT, for trying send, notify and broadcast "
        "without a Twilio account: the real SDK talks HTTP to it, it posts signed delivery reports to "
        "each message's StatusCallback, and prints every message it is asked to send. It prints the "
        "settings that point the bot at it (TWILIO_API_BASE_URL, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
        "TWILIO_FROM). It accepts the TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN of the environment, else "
        "made-up test credentials. Nothing leaves this machine. Ctrl-C stops it."))
    fake.add_argument("port", nargs="?", type=int, default=8900, metavar="PORT",
                      help="the port to listen on (default 8900; 0: any free port)")
    fake.set_defaults(run=_fake_twilio)
    return parser


def _add_flows_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flows", type=Path, help="flows folder (default: FLOWS_DIR, or flows/)")


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    defaults = CheckOptions()
    parser.add_argument("--max-segments", type=int, default=defaults.max_segments,
                        help=f"warn when a text costs more SMS segments (default {defaults.max_segments})")
    parser.add_argument("--assume-var-length", type=int, default=defaults.assumed_variable_length,
                        help="characters a {{ variable }} counts for when measuring "
                             f"(default {defaults.assumed_variable_length})")


def _flows_dir(args: argparse.Namespace) -> Path:
    return args.flows if getattr(args, "flows", None) else Path(load_settings().flows_dir)


def _load(args: argparse.Namespace) -> FlowSet:
    flows = load_flows(_flows_dir(args))
    for warning in flows.warnings:
        print(f"{warning}", file=sys.stderr)
    return flows


# -- lint -------------------------------------------------------------------------------------

def _lint(args: argparse.Namespace) -> int:
    options = CheckOptions(max_segments=args.max_segments, assumed_variable_length=args.assume_var_length)
    problems = lint_paths(args.paths or [Path(load_settings().flows_dir)], options)
    for problem in problems:
        print(problem)
    errors = sum(problem.severity == "error" for problem in problems)
    warnings = len(problems) - errors
    print(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}", file=sys.stderr)
    return 1 if errors else 0


# -- chat -------------------------------------------------------------------------------------

def _chat(args: argparse.Namespace) -> int:
    flows = _load(args)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Texting as {args.sender}. Flows: {', '.join(sorted(flows.flows))}. Ctrl-D to quit.")
    return asyncio.run(_chat_loop(flows, args, _lines(interactive)))


def _lines(interactive: bool) -> Iterator[str]:
    if not interactive:
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    while True:
        try:
            yield input("you> ")
        except EOFError:
            print()
            return


async def _chat_loop(flows: FlowSet, args: argparse.Namespace, lines: Iterable[str]) -> int:
    async with simulation(flows, store_url=args.store) as sim:
        for line in lines:
            if not sys.stdin.isatty():
                print(f"you> {line}")
            received = await sim.text(line, args.sender)
            for reply in received.replies:
                print(f"bot> {reply}   [{segments.cost(reply)}]")
            if not received.replies:
                print("bot> (no reply)")
            if args.trace:
                for step in received.trace:
                    print(f"     · {step.before} -> {step.after}  ({step.rule})")
    return 0


# -- test -------------------------------------------------------------------------------------

def _test(args: argparse.Namespace) -> int:
    logging.getLogger("bot.engine").setLevel(logging.ERROR)  # a stubbed failing fetch is expected here
    flows_dir = _flows_dir(args)
    flows = _load(args)
    paths = args.paths or [flows_dir / "tests"]
    run = asyncio.run(run_conversations(flows, paths))
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
        flows = _load(args)
        matches = [flows.flows[args.flow]] if args.flow in flows.flows else []
    if not matches:
        raise CommandError(f"no flow {args.flow!r}; flows: {', '.join(sorted(flows.flows))}")
    flow = matches[0]
    if args.output is None:
        print(graph.mermaid(flow), end="")
    else:
        text = graph.markdown(flow) if args.output.suffix == ".md" else graph.mermaid(flow)
        _write(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        _write(args.output, text)
    return 0


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
    _write(args.output, imported.flow_yaml())
    print(f"wrote {args.output}", file=sys.stderr)
    if tests is not None:
        _write(tests_path, tests)
        print(f"wrote {tests_path}", file=sys.stderr)
    else:
        print(f"no conversation test: not even the first turn of {name} can be walked (see the notes)", file=sys.stderr)
    for note in imported.test_notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None


# -- send, broadcast, report -------------------------------------------------------------------

def _send(args: argparse.Namespace) -> int:
    settings = load_settings()
    settings.outbound.require("send")
    return asyncio.run(_send_one(settings, args))


async def _send_one(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings.store_url)
    outbox = Outbox(store, settings.outbound, status_callback=settings.status_callback_url)
    try:
        message = OutboundMessage(f"send|{uuid.uuid4().hex}", args.to, args.text, from_number=args.from_number)
        result = await retrying(lambda: outbox.send(message), asyncio.sleep)
    except TwilioUnreachable as error:
        raise CommandError(str(error)) from None
    finally:
        await outbox.close()
        await store.close()
    if result.state == OutboundState.ACCEPTED:
        print(f"sent to {mask(args.to)}: {result.sid}")
        return 0
    print(f"not sent to {mask(args.to)}: {result.state}, {result.reason}", file=sys.stderr)
    return 1


def _broadcast(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not args.dry_run:
        settings.outbound.require("broadcast")
    if args.rate <= 0:
        raise CommandError("--rate must be above 0")
    try:
        window = SendWindow.parse(settings.broadcast_window, settings.broadcast_timezone) \
            if settings.broadcast_window else None
        recipients = read_recipients(args.csv)
    except BroadcastError as error:
        raise CommandError(str(error)) from None
    flows = _load(args)
    name = args.name or default_name(args.flow, args.csv)
    return asyncio.run(_run_broadcast(settings, flows, name, args, window, recipients))


async def _run_broadcast(settings: Settings, flows: FlowSet, name: str, args: argparse.Namespace,
                         window: SendWindow | None, recipients: list[Recipient]) -> int:
    store = open_store(settings.store_url)
    outbox = None if args.dry_run else Outbox(store, settings.outbound, status_callback=settings.status_callback_url)
    async with httpx.AsyncClient() as client:
        engine = Engine(flows, HttpFetcher(client, settings.local_base_url))
        run = Broadcast(name, args.flow, store, engine, outbox, rate=args.rate, window=window,
                        show=progress_printer())
        print(f"broadcast {name!r}{' (dry run: nothing is sent)' if args.dry_run else ''}", file=sys.stderr)
        try:
            report = await run.run(recipients)
        except BroadcastError as error:
            raise CommandError(str(error)) from None
        finally:
            if outbox is not None:
                await outbox.close()
            await store.close()
    print(file=sys.stderr)
    print(report.summary())
    if report.stopped:
        return 2
    return 0 if not report.failed and not report.in_doubt else 1


def _report(args: argparse.Namespace) -> int:
    settings = load_settings()
    return asyncio.run(_show_report(settings.store_url, args.broadcast))


async def _show_report(store_url: str, name: str) -> int:
    store = open_store(store_url)
    try:
        messages = await store.broadcast_messages(name)
    finally:
        await store.close()
    if not messages:
        raise CommandError(f"no broadcast named {name!r} in {store_url}")
    states = Counter(message.state for message in messages)
    statuses = Counter(message.status or "(no report yet)" for message in messages
                       if message.state == OutboundState.ACCEPTED)
    errors = Counter(message.error_code for message in messages if message.error_code)
    print(f"broadcast {name}: {len(messages)} recipients")
    labels = {OutboundState.ACCEPTED: "sent (accepted by Twilio)", OutboundState.SKIPPED: "skipped",
              OutboundState.FAILED: "failed", OutboundState.SENDING: "in doubt",
              OutboundState.PREPARED: "not sent yet"}
    for state, label in labels.items():
        if states[state]:
            print(f"  {label}: {states[state]}")
    if statuses:
        print("delivery reported by Twilio:")
        for status, count in statuses.most_common():
            print(f"  {status}: {count}")
    if errors:
        print("error codes: " + ", ".join(f"{code} x{count}" for code, count in errors.most_common()))
    return 0


# -- purge ------------------------------------------------------------------------------------

def _purge(args: argparse.Namespace) -> int:
    settings = load_settings()
    return asyncio.run(_purge_sender(args.store or settings.store_url, args.number))


async def _purge_sender(store_url: str, number: str) -> int:
    store = open_store(store_url)
    try:
        purged = await store.purge(number)
        opted_out = await store.is_opted_out(number)
    finally:
        await store.close()
    print(f"purged {mask(number)}: {purged.conversations} conversation(s), {purged.transcript_lines} "
          f"transcript line(s), {purged.replies_blanked} recorded repl(ies) blanked"
          + ("; opt-out kept" if opted_out else ""))
    return 0


# -- webhook ----------------------------------------------------------------------------------

def _webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = args.url or f"{settings.local_base_url}/sms"
    # The server checks signatures against PUBLIC_URL when it is set, so sign for that URL.
    parts = urlsplit(url)
    signed_url = (settings.public_url + parts.path + (f"?{parts.query}" if parts.query else "")
                  if settings.public_url else url)
    checker = SignatureChecker(settings.twilio_auth_token) if settings.twilio_auth_token else None
    if checker is None:
        print("note: TWILIO_AUTH_TOKEN is not set; sending unsigned (works only in DEV_MODE)", file=sys.stderr)
    texts: Iterable[str] = args.text or (line.rstrip("\n") for line in sys.stdin)
    with httpx.Client(timeout=20) as client:
        for text in texts:
            message_sid = "SM" + uuid.uuid4().hex
            form = {"MessageSid": message_sid, "SmsMessageSid": message_sid, "AccountSid": "AC" + "0" * 32,
                    "From": args.sender, "To": args.to, "Body": text, "NumMedia": "0", "NumSegments": "1",
                    "SmsStatus": "received", "ApiVersion": "2010-04-01"}
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if checker is not None:
                headers["X-Twilio-Signature"] = checker.sign(signed_url, form)
            try:
                response = client.post(url, content=urlencode(form), headers=headers)
            except httpx.HTTPError as error:
                raise CommandError(f"cannot reach {url}: {error}") from None
            print(f"> {text}")
            if response.status_code != 200:
                print(f"error: HTTP {response.status_code}: {response.text.strip()}", file=sys.stderr)
                return 1
            messages = ElementTree.fromstring(response.content).findall("Message")
            for message in messages:
                print(f"< {message.text or ''}")
            if not messages:
                print("  (no reply)")
    return 0


# -- fake-twilio ------------------------------------------------------------------------------

def _fake_twilio(args: argparse.Namespace) -> int:
    import os

    from bot.fake_twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, serve

    if not 0 <= args.port <= 65535:
        raise CommandError(f"PORT must be 0-65535, not {args.port}")
    token = os.environ.get("TWILIO_AUTH_TOKEN", "")
    try:
        serve(args.port, os.environ.get("TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID, token or DEFAULT_AUTH_TOKEN,
              show_token=not token)
    except OSError as error:  # e.g. the port is taken
        raise CommandError(f"cannot listen on 127.0.0.1:{args.port}: {error}") from None
    return 0
