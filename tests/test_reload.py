"""Hot reload against a running server: good edits go live, broken edits are refused."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHIPPED_FLOWS, ServerProcess, replies_of
from tests.signed_webhooks import AUTH_TOKEN, signed_request, twilio_form


def text(server: ServerProcess, body: str, sender: str = "+15551112222") -> list[str]:
    url = server.url + "/sms"
    content, headers = signed_request(url, twilio_form(body, sender))
    response = httpx.post(url, content=content, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return replies_of(response.text)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def reloads(server: ServerProcess) -> int:
    return int(httpx.get(server.url + "/healthz/details", timeout=5).json()["reloads"])


@pytest.mark.slow  # a real server process, waiting in real time for its file watcher
def test_hot_reload(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, flows)
    server = ServerProcess({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "FLOWS_DIR": str(flows), "DEV_MODE": "0",
                            "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}", "PUBLIC_URL": "", "DEMO_ORDERS": "1"},
                           cwd=tmp_path).start()
    try:
        assert text(server, "JOIN", "+15550000001") == ["Welcome to Acme Orders updates! What's your first name?"]
        assert text(server, "STATUS", "+15550000002")[0].startswith("What's your order number?")

        # A good change goes live without a restart; a conversation whose state still exists continues.
        signup = flows / "signup.yaml"
        signup.write_text(signup.read_text().replace("Thanks, {{ name }}!", "Lovely, {{ name }}!"))
        assert wait_for(lambda: reloads(server) == 1)
        assert text(server, "Ada", "+15550000001")[0].startswith("Lovely, Ada!")

        # A broken change is refused: the old flows keep answering.
        status = flows / "status.yaml"
        good_status = status.read_text()
        status.write_text(good_status.replace("go: lookup", "go: lokup"))
        time.sleep(1.5)
        assert reloads(server) == 1
        assert text(server, "123456", "+15550000002")[0].startswith("Order 123456 is shipped.")

        status.write_text(good_status)
        assert wait_for(lambda: reloads(server) == 2)

        # A change that removes a state resets conversations in it, politely.
        assert text(server, "JOIN", "+15550000003")[0].startswith("Welcome")
        signup.write_text(signup.read_text().replace("ask_name", "what_name"))
        assert wait_for(lambda: reloads(server) == 3)
        assert text(server, "Grace", "+15550000003") == [
            "Sorry, this service was just updated and our conversation had to start over. "
            "Text HELP for what you can do."]
    finally:
        output = server.stop()
    assert "flow change rejected, still serving the previous flows" in output
    assert "status.yaml:13:13: error: unknown state 'lokup' (did you mean 'lookup'?" in output
