"""How long a stop (SIGTERM) waits for the webhooks in flight: uvicorn's ``timeout_graceful_shutdown``,
for ``server.py`` and any other way of running the app under uvicorn.

A turn answers within SLOW_REPLY_SECONDS (5 s by default: "one moment", the real answer sent later
through the REST API) when the bot can send, so 10 s sees every such turn through with room to
spare; a larger SLOW_REPLY_SECONDS gets 2 s more than itself. Never 15 s: Twilio has given up on
the webhook by then, and the answer is lost anyway. A turn still running at the bound is cancelled
before its commit (uvicorn answers 500), and Twilio's retry, the same MessageSid, is handled once
after the restart. The rest of the stop follows in the app's lifespan (``bot/app.py``), each part
bounded: timeouts firing (15 s), answers still owed (15 s), the status write (5 s).
"""

from __future__ import annotations

import math

SHUTDOWN_GRACE_SECONDS = 10
TWILIO_WAITS_SECONDS = 15


def shutdown_grace(slow_reply_seconds: float) -> int:
    """Seconds a stop waits for the webhooks in flight: 10, or SLOW_REPLY_SECONDS and 2 more, at most 14."""
    return min(TWILIO_WAITS_SECONDS - 1, max(SHUTDOWN_GRACE_SECONDS, math.ceil(slow_reply_seconds) + 2))
