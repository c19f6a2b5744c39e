"""A waiting state's timeout is kept in the store and fires after a restart, through the REST API."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bot.fake_twilio import FakeTwilio
from tests.conftest import ServerProcess, replies_of, write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, signed_request, twilio_form

pytestmark = pytest.mark.slow  # a real timeout, waited for in real time across a restart

FLOW = """\
flow: survey
triggers: [SURVEY]
start: ask
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: score
        go: thanks
    otherwise: "1 to 5, please."
    timeout: {after: 2s, go: nudge}
  nudge:
    say: "Still there? Rate us 1-5 any time."
  thanks: {say: "Thanks for the {{ score }}!"}
"""


def test_a_timeout_fires_after_a_restart(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    flows = write_flows(tmp_path / "flows", {"survey.yaml": FLOW})
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_FROM": "+15550007777",
           "TWILIO_API_BASE_URL": fake_twilio.url, "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
           "FLOWS_DIR": str(flows), "RELOAD_FLOWS": "0", "DEV_MODE": "0", "PUBLIC_URL": ""}
    server = ServerProcess(env, cwd=tmp_path).start()
    url = server.url + "/sms"
    content, headers = signed_request(url, twilio_form("SURVEY", "+15551112222", to="+15550001111"))
    assert replies_of(httpx.post(url, content=content, headers=headers).text) == ["Rate us 1-5."]
    server.stop()  # down before the timeout is due
    time.sleep(2.5)
    assert fake_twilio.created == []
    restarted = ServerProcess(env, cwd=tmp_path)
    restarted.start()
    try:
        deadline = time.monotonic() + 10
        while not fake_twilio.created and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # and nothing more follows
    finally:
        restarted.stop()
    assert [(m.to, m.from_, m.body) for m in fake_twilio.created] == [
        ("+15551112222", "+15550001111", "Still there? Rate us 1-5 any time.")]
