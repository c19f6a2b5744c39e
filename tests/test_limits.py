"""Staff notifications are rate-limited (issue 11, finding 12: ``notify`` has no limit).

Before, every turn that passed a ``notify:`` state texted staff: 30 AGENT texts paged the on-call
number 30 times. Now at most NOTIFY_PER_SENDER_PER_HOUR per person whose turn notified, and
NOTIFY_PER_HOUR in all, leave through Twilio; the rest are held back, one log line each (numbers
masked, never the text). The webhook itself is never limited: every AGENT text is still answered.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.broadcast import Broadcast, Recipient
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.outbound import Outbox
from bot.privacy import mask
from bot.quiet_hours import QuietHours
from bot.settings import Settings, load_settings
from bot.store import open_store
from tests.conftest import SignedClient, write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN

ONCALL = "+15550009999"
SECRET_WORDS = "my card number is 4111"

# AGENT-like: each AGENT text passes a state that tells staff, and is answered.
AGENT = f"""\
flow: agent
triggers: [AGENT]
start: handed_over
states:
  handed_over:
    notify: {{to: "{ONCALL}", say: "{{{{ sender }}}} asks for a person: {SECRET_WORDS}"}}
    say: "Thanks! Someone from our team will text you back shortly."
"""

# A broadcast whose opening state tells staff about each person it starts.
REMIND = f"""\
flow: remind
start: hello
states:
  hello:
    say: "Hi {{{{ name }}}}, reply YES to confirm."
    notify: {{to: "{ONCALL}", say: "reminded {{{{ sender }}}}"}}
    replies:
      - keywords: ["yes"]
        say: "Confirmed."
    otherwise: "Reply YES to confirm."
"""


def settings_for(tmp_path: Path, fake_twilio: FakeTwilio, **extra: object) -> Settings:
    return Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                    flows_dir=str(write_flows(tmp_path / "flows", {"agent.yaml": AGENT})), reload_flows=False,
                    twilio_account_sid=ACCOUNT_SID, twilio_from="+15550007777",
                    twilio_api_base_url=fake_twilio.url, **extra)  # type: ignore[arg-type]


def paged(fake_twilio: FakeTwilio) -> list[str]:
    return [attempt.body for attempt in fake_twilio.created if attempt.to == ONCALL]


def held_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "held back" in record.getMessage()]


def test_notify_has_a_limit_per_sender(tmp_path: Path, fake_twilio: FakeTwilio,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """30 AGENT texts from one person page the on-call number 3 times (the default), not 30."""
    settings = settings_for(tmp_path, fake_twilio)
    caplog.set_level(logging.INFO)
    sender = "+15551230000"
    with TestClient(create_app(settings, load_flows(settings.flows_dir))) as client:
        bot = SignedClient(client)
        for _ in range(30):  # every text is still answered: the webhook is not rate-limited
            assert bot.replies("AGENT", sender) == ["Thanks! Someone from our team will text you back shortly."]
    assert paged(fake_twilio) == [f"{sender} asks for a person: {SECRET_WORDS}"] * 3
    held = held_lines(caplog)
    assert len(held) == 27
    routes = [record.getMessage() for record in caplog.records if record.name == "bot.route"]
    for line in held:
        assert mask(sender) in line and mask(ONCALL) in line and "3 per sender per hour" in line
        assert sender not in line and ONCALL not in line and SECRET_WORDS not in line
        turn = line.split("turn ")[1].split()[0]  # the turn's route line (same MessageSid) names flow and state
        assert [route for route in routes if f"sid={turn} " in route and "agent:handed_over" in route]
    assert all(SECRET_WORDS not in record.getMessage() for record in caplog.records)


def test_notify_has_a_limit_in_all(tmp_path: Path, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture) -> None:
    """One AGENT text from each of 30 people: 20 pages in the hour (the default), 10 held back."""
    settings = settings_for(tmp_path, fake_twilio)
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings, load_flows(settings.flows_dir))) as client:
        bot = SignedClient(client)
        for n in range(30):
            assert bot.replies("AGENT", f"+1555124{n:04d}")
    assert len(paged(fake_twilio)) == 20
    assert len(held_lines(caplog)) == 10
    assert all("20 per hour in all" in line for line in held_lines(caplog))


def test_notify_limits_are_settings(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    assert load_settings({}).notify_per_sender_per_hour == 3
    assert load_settings({}).notify_per_hour == 20
    loaded = load_settings({"NOTIFY_PER_SENDER_PER_HOUR": "1", "NOTIFY_PER_HOUR": "2"})
    settings = settings_for(tmp_path, fake_twilio, notify_per_sender_per_hour=loaded.notify_per_sender_per_hour,
                            notify_per_hour=loaded.notify_per_hour)
    with TestClient(create_app(settings, load_flows(settings.flows_dir))) as client:
        bot = SignedClient(client)
        for sender in ["+15551250001", "+15551250001", "+15551250002", "+15551250003"]:
            bot.replies("AGENT", sender)
    assert len(paged(fake_twilio)) == 2  # one for the first sender, one for the second; the rest held


async def test_a_broadcasts_notifications_are_limited_too(tmp_path: Path, fake_twilio: FakeTwilio,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A broadcast to 25 people through a state that tells staff: 20 notifications, not 25."""
    from bot.limits import NotifyLimiter

    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    outbox = Outbox(store, fake_twilio.outbound_settings())
    engine = Engine(load_flows(write_flows(tmp_path / "flows", {"remind.yaml": REMIND})), _NoFetch(), env={})

    async def no_sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    people = [Recipient(n + 2, f"+1555126{n:04d}", {"name": f"P{n}"}) for n in range(25)]
    caplog.set_level(logging.INFO)
    try:
        report = await Broadcast("b", "remind", store, engine, outbox, rate=1000.0, sleep=no_sleep,
                                 hours=QuietHours(any_time=True),  # a real clock: no quiet hours
                                 notify_limiter=NotifyLimiter(per_sender=3, overall=20)).run(people)
    finally:
        await outbox.close()
        await store.close()
    assert report.sent == 25  # the broadcast itself is not limited
    assert len(paged(fake_twilio)) == 20
    assert len(held_lines(caplog)) == 5


class _NoFetch:
    async def get_json(self, url: str, timeout: float, **request: object) -> object:
        raise AssertionError("no lookups here")


def test_the_limits_are_a_sliding_hour() -> None:
    from bot.limits import NotifyLimiter

    now = [0.0]
    limiter = NotifyLimiter(per_sender=2, overall=3, clock=lambda: now[0])
    assert [limiter.admit("+1") for _ in range(3)] == [None, None, "2 per sender per hour"]
    now[0] = 1800.0
    assert [limiter.admit("+2"), limiter.admit("+3")] == [None, "3 per hour in all"]
    now[0] = 3600.0  # the first two left the window; the one at 1800 s still counts
    assert [limiter.admit("+1"), limiter.admit("+1"), limiter.admit("+3")] == [None, None, "3 per hour in all"]
    now[0] = 3 * 3600.0
    assert limiter.admit("+3") is None
    assert len(limiter._senders._events) == 1  # senders idle for an hour are forgotten
    assert NotifyLimiter(per_sender=0, clock=lambda: 0.0).admit("+1") == "0 per sender per hour"
