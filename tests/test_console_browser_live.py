"""The Simulator and Conversations pages in a real headless Chromium against a real server
(tests/browser.py): HELP texted in the simulator is answered in the phone with its trace; that
sender shows in the live list, which picks up a new conversation without a reload, and their page
has the transcript with each turn's trace. The ``browser``
fixture fails a test on any console error (a CSP violation is one) or request to another origin."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.keys import Keys

from bot.privacy import mask
from tests.browser import Browser, ConsoleServer
from tests.signed_webhooks import signed_request, twilio_form

pytestmark = pytest.mark.slow

WEBHOOK_SENDER = "+15557650042"  # a person texting through Twilio's webhook while the list is open


def test_help_in_the_simulator_then_that_sender_in_the_live_list(console_browser: Browser,
                                                                   console_server: ConsoleServer) -> None:
    browser = console_browser
    browser.open("/console/simulator")
    number = str(browser.find("#sim-from").get_attribute("value"))
    browser.find("#sim-body").send_keys("HELP" + Keys.ENTER)  # Enter sends, as on a phone
    browser.wait_until(lambda: "Acme Orders: text" in browser.text("#sim-screen"), "the HELP text in the phone")
    assert "compliance HELP" in browser.text("#sim-screen .trace")

    browser.find("#sim-body").send_keys("STATUS")
    browser.find("#sim-send").click()
    browser.wait_until(lambda: "What's your order number?" in browser.text("#sim-screen"), "the flow's question")
    browser.wait_until(lambda: "order_status:ask_number" in browser.text("#sim-where"), "where the sender is")
    browser.screenshot("simulator")

    browser.open("/console/conversations")
    rows = browser.text("#live-rows")
    assert mask(number) in rows and number not in rows  # masked, and marked as simulated
    assert "simulated" in rows and "ask_number" in rows

    # A person texts while the list is open: their row appears without a reload (the page polls).
    content, headers = signed_request(console_server.url + "/sms", twilio_form("STATUS", sender=WEBHOOK_SENDER))
    assert httpx.post(console_server.url + "/sms", content=content, headers=headers, timeout=10).status_code == 200
    browser.wait_until(lambda: mask(WEBHOOK_SENDER) in browser.text("#live-rows"), "the new conversation, live")
    browser.screenshot("conversations")

    # The simulated sender's page: where they are, and the transcript with each turn's trace
    next(link for link in browser.find_all("#live-rows a") if link.text == mask(number)).click()
    browser.wait_until(lambda: "Transcript" in browser.text("main"), "the sender's page")
    transcript = browser.text("ol.transcript")
    assert "Acme Orders: text" in transcript and "compliance HELP" in transcript and "trigger STATUS" in transcript
    assert number not in browser.url and number not in browser.text("h1")
    browser.screenshot("conversation")

    # Nothing for the simulated number ever reached Twilio (the fake the server sends to)
    assert [attempt for attempt in console_server.fake_twilio.created if attempt.to == number] == []
