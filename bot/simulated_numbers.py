"""The numbers the console's simulator texts from: a range no phone anywhere has, so a simulated
sender is told apart from a person wherever it matters (nothing is ever sent to one, and only they
may have time moved for them).

The range is ``+1 999 555 0000`` to ``+1 999 555 9999``: area code 999 is one of the North
American Numbering Plan's N9X codes, reserved for expanding the plan and never assigned, and
555 is the exchange of fictional numbers. The familiar 555-01XX numbers of examples and tests
(``+1 415 555 0123``) are deliberately not in it: they stay ordinary numbers to the bot.
``whatsapp:`` in front is a simulated WhatsApp sender.
"""

from __future__ import annotations

import re
import secrets

from bot.types import WHATSAPP

_SIMULATED = re.compile(r"\+1999555\d{4}")
RANGE = "+1 999 555 0000 to 9999 (area code 999 is never assigned), optionally with whatsapp: in front"


def is_simulated(number: str) -> bool:
    """Whether ``number`` (E.164, as Twilio and the simulator write it) is in the simulator's range."""
    return _SIMULATED.fullmatch(number.removeprefix(WHATSAPP)) is not None


def new_simulated_number() -> str:
    """A random number of the range, so two people trying flows at once rarely share a conversation."""
    return f"+1999555{secrets.randbelow(10_000):04d}"
