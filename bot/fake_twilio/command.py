"""``python -m bot fake-twilio [PORT]``: serve the fake in the foreground and print what it is asked to send."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from bot.fake_twilio.api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, FakeTwilio

DEFAULT_PORT = 8900


def serve(port: int = DEFAULT_PORT, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN,
          *, show_token: bool = True, out: Callable[[str], object] | None = None) -> None:
    """Serve the fake on 127.0.0.1:``port`` until Ctrl-C or SIGTERM (``python -m bot fake-twilio``).

    Prints the settings that point the bot at it, then a line per create request (accepted or
    refused). ``show_token=False`` prints a placeholder instead of the auth token (one taken from
    the environment may be a real one, and tokens are never printed)."""
    out = out or _say
    fake = FakeTwilio(account_sid, auth_token, port=port)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        fake.start()
        token = auth_token if show_token else "<the TWILIO_AUTH_TOKEN already in your environment>"
        out(f"fake Twilio API on {fake.url} (account {fake.account_sid}); Ctrl-C to stop\n"
            "point the bot at it with these settings (environment or .env):\n"
            f"  TWILIO_API_BASE_URL={fake.url}\n"
            f"  TWILIO_ACCOUNT_SID={fake.account_sid}\n"
            f"  TWILIO_AUTH_TOKEN={token}\n"
            f"  TWILIO_FROM={DEFAULT_FROM}")
        shown = 0
        while not stopping.wait(0.2):
            attempts = fake.attempts
            for attempt in attempts[shown:]:
                outcome = f"accepted {attempt.sid}" if attempt.accepted else f"refused {attempt.error_code}"
                out(f"{attempt.to}: {attempt.body!r} -> {outcome}")
            shown = len(attempts)
    finally:
        fake.stop()
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also when stdout is a pipe
