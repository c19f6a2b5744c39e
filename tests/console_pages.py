"""What the console page tests share: a bot with the console on (a real app, a real SQLite store,
real signed webhooks), logged in, and the pieces of its pages they read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from bot.app import create_app
from bot.console.security import CSRF_COOKIE
from bot.flows.loader import load_flows
from bot.settings import Settings
from tests.signed_webhooks import AUTH_TOKEN, signed_request, twilio_form
from tests.test_console_security import PASSWORD, log_in


@contextmanager
def console_bot(tmp_path: Path, flows: Path, **changes: Any) -> Iterator[TestClient]:
    """The bot with the console on, logged in. ``changes``: more settings (outbound, for one)."""
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), reload_flows=False, admin_password=PASSWORD, **changes)
    with TestClient(create_app(settings, load_flows(flows)), base_url="http://testserver",
                    follow_redirects=False) as client:
        assert log_in(client).status_code == 303  # type: ignore[attr-defined]
        yield client


def text(client: TestClient, sender: str, body: str, **form: str) -> str:
    """A message through the real webhook (signed as Twilio signs it); the TwiML answer."""
    content, headers = signed_request("http://testserver/sms", twilio_form(body, sender=sender, **form))
    answer = client.post("/sms", content=content, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.text


def csrf(client: TestClient) -> str:
    token = client.cookies.get(CSRF_COOKIE)
    assert token, "no CSRF cookie: open a console page first"
    return str(token)


def post_json(client: TestClient, path: str, payload: dict[str, Any], *, with_token: bool = True) -> Any:
    headers = {"X-CSRF-Token": csrf(client)} if with_token else {}
    return client.post(path, json=payload, headers=headers)


def links_to_senders(page: str) -> list[str]:
    """The per-sender links of a console page, in order."""
    return re.findall(r'href="(/console/conversations/[A-Za-z0-9_-]{20,})"', page)
