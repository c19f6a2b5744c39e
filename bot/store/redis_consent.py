"""The Redis store's consent ledger entries: a change as one sorted-set member, and back.

The ledger is two sorted sets scored by time holding the same members (a sequence number and the
change as JSON): one per number (``textflow:consent:+1555…``, its history) and one for all
(``textflow:consents``, the export and the sweep). A turn's commit and ``set_consent`` append to
both in their scripts (``redis_scripts.CONSENT``), only when the number's status changes.
"""

from __future__ import annotations

import json

from bot.types import ConsentChange, ConsentMethod, ConsentStatus


def entry(change: ConsentChange) -> str:
    """The change as the scripts append it (after a sequence number they add)."""
    return json.dumps({"at": change.at, "number": change.number, "status": str(change.status),
                       "how": str(change.how), "detail": change.detail, "sid": change.message_sid})


def read_entry(member: str) -> ConsentChange:
    data = json.loads(member.split(" ", 1)[1])  # after the sequence number
    return ConsentChange(data["number"], ConsentStatus(data["status"]), ConsentMethod(data["how"]), data["detail"],
                         data["sid"], float(data["at"]))
