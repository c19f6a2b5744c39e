"""The Results page in a real headless Chromium against a real server (tests/browser.py): people
text a flow through the signed webhook, then the page, chosen with its own form, draws the funnel
and lists the answers (numbers masked), and its Export CSV link answers the CSV as an attachment.
The ``browser`` fixture fails a test on any console error (a CSP violation is one) or request to
another origin."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from selenium.webdriver.support.ui import Select

from bot.privacy import mask
from tests.browser import Browser, ConsoleServer
from tests.signed_webhooks import signed_request, twilio_form

pytestmark = pytest.mark.slow

FINISHER, STARTER = "+15557650071", "+15557650072"

FETCH_CSV = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async (answer) => done({status: answer.status, type: answer.headers.get("content-type"),
  disposition: answer.headers.get("content-disposition"), text: await answer.text()}))
  .catch((error) => done({error: String(error)}));
"""


def text(server: ConsoleServer, sender: str, body: str) -> None:
    content, headers = signed_request(server.url + "/sms", twilio_form(body, sender=sender))
    assert httpx.post(server.url + "/sms", content=content, headers=headers, timeout=10).status_code == 200


def test_the_funnel_the_answers_and_the_csv(console_browser: Browser, console_server: ConsoleServer) -> None:
    browser = console_browser
    for body in ("JOIN", "Ann", "YES"):
        text(console_server, FINISHER, body)
    text(console_server, STARTER, "JOIN")

    browser.open("/console/results")
    assert browser.text("nav a[aria-current=page]") == "Results"
    Select(browser.find("#results-flow")).select_by_value("signup")
    browser.find("#results-filter button[type=submit]").click()
    browser.wait_until(lambda: "flow=signup" in browser.url, "the signup flow's results")

    started = browser.find("#funnel li.started")
    assert int(started.find_element("css selector", ".count").text) >= 2
    labels = [item.text for item in browser.find_all("#funnel li.state .label")]
    assert labels[:3] == ["ask_name", "confirm", "done"]  # the main path, in order
    fills = browser.find_all("#funnel .fill")
    assert all(fill.size["width"] > 0 for fill in fills[:2])  # drawn: the CSS loaded, inline widths allowed
    assert int(browser.text("#funnel-ended li.finished .count")) >= 1
    answers = browser.text("#answers")
    assert mask(FINISHER) in answers and mask(STARTER) in answers and FINISHER not in answers
    assert "Ann" in answers
    browser.screenshot("results")

    href = str(browser.find("#export-csv").get_attribute("href"))
    assert href.startswith(console_server.url + "/console/results/export.csv?flow=signup&since=")
    got: dict[str, Any] = browser.driver.execute_async_script(FETCH_CSV, href)
    assert got.get("status") == 200, got
    assert got["type"] == "text/csv; charset=utf-8"
    day = datetime.now(UTC).date().isoformat()
    assert got["disposition"] == f'attachment; filename="results-signup-{day}.csv"'
    rows = list(csv.reader(io.StringIO(got["text"])))
    assert rows[0][:6] == ["number", "started_at", "ended_at", "outcome", "state", "name"]
    mine = {row[0]: row for row in rows[1:] if row[0] in ("'" + mask(FINISHER), "'" + mask(STARTER))}
    assert mine["'" + mask(FINISHER)][3:6] == ["finished", "done", "Ann"]
    assert mine["'" + mask(STARTER)][3:5] == ["in_progress", "ask_name"]
