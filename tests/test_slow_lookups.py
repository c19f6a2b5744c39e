"""A lookup slower than SLOW_REPLY_SECONDS: "one moment" at once, the answer later via the REST
API (exactly once, from the number the person texted), and the sender's next message waits for it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bot.app import create_app
from bot.fake_twilio import FakeTwilio, LoopbackServer
from bot.flows.loader import load_flows
from bot.settings import Settings
from tests.conftest import SignedClient, write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

SLOW_FLOW = """\
flow: slow
triggers: [SLOW]
start: lookup
states:
  lookup:
    fetch: {url: "{{ env.SLOW_API }}/answer", save: result, timeout: 10s}
    say: "The answer is {{ result.value }}."
"""


@pytest.fixture
def slow_api() -> Iterator[LoopbackServer]:
    async def answer(request: Request) -> JSONResponse:
        await asyncio.sleep(1.0)
        return JSONResponse({"value": 42})

    server = LoopbackServer(Starlette(routes=[Route("/answer", answer)]), name="slow-api").start()
    yield server
    server.stop()


def test_a_slow_lookup_is_answered_later_in_order(tmp_path: Path, fake_twilio: FakeTwilio,
                                                  slow_api: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOW_API", slow_api.url)
    flows = write_flows(tmp_path / "flows", {"slow.yaml": SLOW_FLOW})
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), reload_flows=False, slow_reply_seconds=0.3, flow_env=("SLOW_API",),
                        twilio_account_sid=ACCOUNT_SID, twilio_from="+15550007777",
                        twilio_api_base_url=fake_twilio.url)
    with TestClient(create_app(settings, load_flows(flows))) as client:
        bot = SignedClient(client)
        started = time.monotonic()
        sid = "SM" + "5" * 32
        assert bot.replies("SLOW", "+15551110000", message_sid=sid) == ["One moment, I'm looking that up…"]
        assert time.monotonic() - started < 0.9  # answered before the lookup finished

        # The sender's next message waits for the deferred answer, so replies stay in order.
        later: list[list[str]] = []
        follow_up = threading.Thread(target=lambda: later.append(bot.replies("hello", "+15551110000")))
        follow_up.start()
        follow_up.join(timeout=10)
        assert later and "HELP" in later[0][0]
        assert [(a.to, a.from_, a.body) for a in fake_twilio.created] == [
            ("+15551110000", BOT_NUMBER, "The answer is 42.")]  # from the number that was texted
        assert fake_twilio.created[0].sid is not None

        # A Twilio retry of the first message gets the interim answer again, and nothing is re-sent.
        assert bot.replies("SLOW", "+15551110000", message_sid=sid) == ["One moment, I'm looking that up…"]
    assert len(fake_twilio.created) == 1


def test_without_outbound_settings_the_webhook_simply_waits(tmp_path: Path, slow_api: LoopbackServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOW_API", slow_api.url)
    flows = write_flows(tmp_path / "flows", {"slow.yaml": SLOW_FLOW})
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), reload_flows=False, slow_reply_seconds=0.3, flow_env=("SLOW_API",))
    with TestClient(create_app(settings, load_flows(flows))) as client:
        assert SignedClient(client).replies("SLOW") == ["The answer is 42."]
