"""A fake of the parts of Twilio's REST API the bot uses, served on loopback for the REAL SDK.

``python -m bot fake-twilio [PORT]`` serves it for demos (try a broadcast without a Twilio
account), and the test suite runs it in-process: tests never reach api.twilio.com and never mock
the SDK; ``bot.twilio_outbound.rest_client`` is pointed at :attr:`FakeTwilio.url` and the unmodified
``twilio.rest.Client`` talks HTTP to this server. It needs only the runtime dependencies.

What it serves (Twilio's 2010-04-01 API, JSON, HTTP Basic auth with the account SID or an API key):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` -- form ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body`` and/or ``MediaUrl`` (repeated, one per picture: kept in
  ``Attempt.media``), optional ``StatusCallback``. Answers 201
  with a message resource, or Twilio's error JSON ``{"code", "message", "more_info", "status"}``:
  401/20003 bad credentials or another account's path, 429/20429 throttled, and 400 with
  21604 (no To), 21211 (To not E.164), 21603 (neither From nor MessagingServiceSid),
  21212 (malformed From), 21602 (neither Body nor MediaUrl), 21623 (more than 10 MediaUrl),
  21620 (a MediaUrl that is not an http(s) address), 21617 (Body over 1600 characters),
  21610 (To has opted out).
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` -- the resource, with the status
  the delivery simulation reached; 404/20404 for an unknown sid.

Status callbacks are posted by a background worker, form-encoded and signed with
``X-Twilio-Signature`` (``RequestValidator.compute_signature`` with the auth token), after the
create response was sent: ``queued`` -> ``sent`` -> ``delivered``, or ``undelivered``/``failed``
with ``ErrorCode`` for numbers given to :meth:`FakeTwilio.fail_delivery`.

Use it as a context manager (``with FakeTwilio() as fake:``), through :func:`serve` (the command),
or in tests through the ``fake_twilio`` fixture (tests/fake_twilio_fixtures.py).

The modules, one job each:

* ``wire.py`` -- Twilio's wire format: the create checks, error codes and bodies, the message
  resource, the status-callback form.
* ``state.py`` -- what a fake remembers under one lock (``Ledger``), and its records ``Attempt``
  and ``Callback``.
* ``delivery.py`` -- the worker that walks each message through its statuses and posts signed callbacks.
* ``server.py`` -- ``LoopbackServer``: uvicorn on a background thread on 127.0.0.1.
* ``api.py`` -- ``FakeTwilio``: the routes (auth, create, fetch) and the fake's lifecycle.
* ``command.py`` -- ``serve()``, behind ``python -m bot fake-twilio``.
"""

from __future__ import annotations

from bot.fake_twilio.api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, SERVICE_NUMBER, FakeTwilio
from bot.fake_twilio.command import DEFAULT_PORT, serve
from bot.fake_twilio.server import LoopbackServer
from bot.fake_twilio.state import Attempt, Callback

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "DEFAULT_FROM", "DEFAULT_PORT", "SERVICE_NUMBER", "Attempt",
           "Callback", "FakeTwilio", "LoopbackServer", "serve"]
