"""The pytest fixtures for the fake Twilio API (bot/fake_twilio/), registered by conftest.py.

The fake answers to the test credentials of tests/signed_webhooks.py (``ACCOUNT_SID``,
``AUTH_TOKEN``), so status callbacks it signs pass the bot's signature check in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.fake_twilio import FakeTwilio
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN


@pytest.fixture(scope="session")
def fake_twilio_server() -> Iterator[FakeTwilio]:
    """One running :class:`FakeTwilio` for the session (starting and stopping uvicorn costs ~0.2 s)."""
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def fake_twilio(fake_twilio_server: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> FakeTwilio:
    """The session's fake Twilio, reset for this test (account ``ACCOUNT_SID``, token ``AUTH_TOKEN``).

    TWILIO_REGION / TWILIO_EDGE are removed from the environment for the test: the SDK reads them
    and then calls ``api.<edge>.<region>.twilio.com``, a host the rebasing client does not rewrite,
    so a developer's shell setting would send the test's requests to the real Twilio."""
    for name in ("TWILIO_REGION", "TWILIO_EDGE"):
        monkeypatch.delenv(name, raising=False)
    fake_twilio_server.reset()
    return fake_twilio_server
