"""Commands for running the bot: forget a sender (purge), text a running bot (webhook), and a
fake Twilio API to try sending without an account (fake-twilio)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Iterable
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import httpx

from bot.cli.common import CommandError, Commands
from bot.privacy import mask
from bot.settings import load_settings
from bot.store import open_store
from bot.twilio_inbound import SignatureChecker


def add_commands(commands: Commands) -> None:
    purge = commands.add_parser("purge", help="forget one sender's data on request", description=(
        "Delete one sender's conversation, transcript and flow runs (their saved answers; results' counts "
        "stay), and blank the replies recorded for their "
        "messages (the MessageSids stay for 48 h so Twilio retries are still recognised). Their "
        "opt-out is kept: forgetting it would text someone who said STOP; so is their consent ledger "
        "(python -m bot consent NUMBER), the evidence of when and how they opted out or in."))
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


# -- purge ------------------------------------------------------------------------------------

def _purge(args: argparse.Namespace) -> int:
    settings = load_settings()
    return asyncio.run(_purge_sender(args.store or settings.store_url, args.number))


async def _purge_sender(store_url: str, number: str) -> int:
    store = open_store(store_url)
    try:
        purged = await store.purge(number)
        opted_out = await store.is_opted_out(number)
        ledger = await store.consent_history(number)
    finally:
        await store.close()
    print(f"purged {mask(number)}: {purged.conversations} conversation(s), {purged.transcript_lines} "
          f"transcript line(s), {purged.replies_blanked} recorded repl(ies) blanked"
          + ("; opt-out kept" if opted_out else "")
          + (f"; consent ledger kept ({len(ledger)} change(s))" if ledger else ""))
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

    from bot.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, serve

    if not 0 <= args.port <= 65535:
        raise CommandError(f"PORT must be 0-65535, not {args.port}")
    token = os.environ.get("TWILIO_AUTH_TOKEN", "")
    try:
        serve(args.port, os.environ.get("TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID, token or DEFAULT_AUTH_TOKEN,
              show_token=not token)
    except OSError as error:  # e.g. the port is taken
        raise CommandError(f"cannot listen on 127.0.0.1:{args.port}: {error}") from None
    return 0
