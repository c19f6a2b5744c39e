"""``python -m bot``: commands for people running the bot.

``webhook`` texts a running server the way Twilio would (signed with TWILIO_AUTH_TOKEN),
so the whole path can be tried locally without a phone or a Twilio account.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterable
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import httpx

from bot.settings import SettingsError, load_settings
from bot.twilio_io import SignatureChecker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="textflow SMS bot tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    webhook = commands.add_parser(
        "webhook", help="text a running bot as Twilio would (signed webhook)",
        description="Send one message per TEXT (or per line of stdin) to a running bot, signed "
                    "with TWILIO_AUTH_TOKEN exactly as Twilio signs, and print the replies.")
    webhook.add_argument("text", nargs="*", help="message(s) to send; none: read lines from stdin")
    webhook.add_argument("--url", help="webhook URL (default: http://HOST:PORT/sms from the settings)")
    webhook.add_argument("--from", dest="sender", default="+15551234567", help="sender number")
    webhook.add_argument("--to", default="+15550001111", help="the bot's number")
    webhook.set_defaults(run=_webhook)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = args.url or f"{settings.local_base_url}/sms"
    # The server checks signatures against PUBLIC_URL when it is set, so sign for that URL.
    parts = urlsplit(url)
    signed_url = settings.public_url + parts.path + (f"?{parts.query}" if parts.query else "") \
        if settings.public_url else url
    checker = SignatureChecker(settings.twilio_auth_token) if settings.twilio_auth_token else None
    if checker is None:
        print("note: TWILIO_AUTH_TOKEN is not set; sending unsigned (works only in DEV_MODE)",
              file=sys.stderr)
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
                print(f"error: cannot reach {url}: {error}", file=sys.stderr)
                return 1
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
