"""``python -m bot chat``: text the real engine and flows from the terminal, and let time pass
with ``/wait`` to see what timeouts and reminders send (no server, no Twilio account)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Iterator, Sequence

from bot import segments
from bot.cli.common import CommandError, load_for
from bot.flows.loader import FlowSet
from bot.flows.schema import parse_duration
from bot.flows.translation_table import language_name
from bot.settings import load_settings
from bot.simulator import (
    EndlessTimers,
    Fired,
    Simulation,
    UnknownLanguage,
    format_duration,
    languages_spoken,
    simulation,
)
from bot.types import TraceStep, media_of

HELP = """\
Type a message and press Enter to text it to the bot. Commands:
  /wait DURATION  let time pass (30s, 10m, 1h30m, 2d): the timeouts and reminders that come due
                  fire, and what they send is shown with when, e.g. (after 1h)
  /picture URL [TEXT]  text a picture (an MMS with that media URL), with TEXT if given
  /language CODE  be talked to in that language from now on (es, fr…), as if you had chosen it;
                  /language alone lists the languages the flows speak
  /help           this list
  //TEXT          text /TEXT itself (a message that starts with /)
Ctrl-D quits."""


def run(args: argparse.Namespace) -> int:
    flows = load_for(args)
    if args.language is not None and args.language not in languages_spoken(flows):
        raise CommandError(f"--language {args.language}: no flow or program text is in it; the flows speak "
                           f"{', '.join(languages_spoken(flows))}")
    interactive = sys.stdin.isatty()
    if interactive:
        spoken = f", in {language_name(args.language)}" if args.language else ""
        print(f"Texting as {args.sender}{spoken}. Flows: {', '.join(sorted(flows.flows))}. "
              "/help for commands, Ctrl-D to quit.")
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
    settings = load_settings()
    async with simulation(flows, store_url=args.store, allowed_env=settings.flow_env,
                          suggest_triggers=settings.suggest_triggers) as sim:
        if args.language is not None:  # the person starts out talking in it, as if they had chosen it
            await sim.set_language(args.sender, args.language)
        for line in lines:
            if not sys.stdin.isatty():
                print(f"you> {line}")
            if line.startswith("/") and not line.startswith("//"):
                await _command(sim, line, args)
                continue
            notified_before = len(sim.notified)
            received = await sim.text(line[1:] if line.startswith("//") else line, args.sender)
            _show(received.replies, sim.notified[notified_before:], received.trace, args.trace)
    return 0


async def _command(sim: Simulation, line: str, args: argparse.Namespace) -> None:
    name, _, rest = line.strip().partition(" ")
    if name.lower() == "/help":
        print(HELP)
    elif name.lower() == "/wait":
        await _wait(sim, rest.strip(), args)
    elif name.lower() == "/language":
        await _language(sim, rest.strip(), args)
    elif name.lower() == "/picture":
        url, _, text = rest.strip().partition(" ")
        if not url.lower().startswith(("https://", "http://")):
            print("/picture needs a web address, e.g. /picture https://example.com/box.jpg it's crushed")
            return
        notified_before = len(sim.notified)
        received = await sim.text(text, args.sender, media=(url,))
        _show(received.replies, sim.notified[notified_before:], received.trace, args.trace)
    else:
        print(f"unknown command {name} (/help lists the commands; //{line[1:]} texts it)")


async def _language(sim: Simulation, code: str, args: argparse.Namespace) -> None:
    if not code:
        print(f"/language CODE: the flows speak {', '.join(languages_spoken(sim.inbox.engine.flows))}")
        return
    try:
        await sim.set_language(args.sender, code)
    except UnknownLanguage as error:
        print(f"/language: {error}")
        return
    print(f"bot> (no reply: from now on you are talked to in {language_name(code)})")


async def _wait(sim: Simulation, duration: str, args: argparse.Namespace) -> None:
    if not duration:
        print("/wait needs a duration, e.g. /wait 1h, /wait 90s or /wait 1h30m")
        return
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        print(f"/wait: {error}")
        return
    try:
        fired = await sim.wait(seconds)
    except EndlessTimers as error:
        print(f"/wait: {error}")
        return
    shown = [firing for firing in fired if firing.replies or firing.notified or firing.trace]
    for firing in shown:
        _show(firing.replies, firing.notified, firing.trace, args.trace, _when(firing, args.sender))
    if not shown:
        print(f"bot> (no reply: nothing came due in {format_duration(seconds)})")


def _when(firing: Fired, sender: str) -> str:
    """The marker of a firing's texts: when in the wait, and to whom when it is not you."""
    to = "" if firing.sender == sender else f", to {firing.sender}"
    return f"   (after {format_duration(firing.after)}{to})"


def _show(replies: Sequence[str], notified: Sequence[tuple[str, str]], trace: Sequence[TraceStep],
          show_trace: bool, when: str = "") -> None:
    for reply in replies:
        pictures = len(media_of(reply))
        cost = f"MMS, {pictures} picture{'s' * (pictures != 1)}" if pictures else segments.cost(reply)
        print(f"bot> {reply}   [{cost}]{when}")
        _show_media(reply)
    if not replies:
        print(f"bot> (no reply){when}")
    for to, text in notified:
        print(f"notify> {to}: {text}")
        _show_media(text)
    if show_trace:
        for step in trace:
            print(f"     · {step.before} -> {step.after}  ({step.rule})")


def _show_media(text: str) -> None:
    """The pictures a message carries (MMS), one per line under it."""
    for url in media_of(text):
        print(f"     + picture: {url}")
