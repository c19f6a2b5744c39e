"""The Flows pages in a real headless Chromium against a real server (tests/browser.py): a flow's
diagram drawn as inline SVG by the vendored renderer; the editor's lint and diagram following the
typing; a save that the running bot's hot reload picks up. The ``browser`` fixture fails a test on
any console error (a Content-Security-Policy violation is one) or any request to another origin."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import Browser, ConsoleServer

pytestmark = pytest.mark.slow

#: A flow of this test's own (not listed in HELP, its own trigger), so the shipped flows the other
#: browser tests text stay as they are.
DEMO = """\
flow: browser_demo
description: Made in the browser test.
triggers: [BROWSERDEMO]
listed: false
expires_after: 1h
start: ask
states:
  ask:
    say: "Do you like it? Reply YES or NO."
    replies:
      - answer: yes
        go: GOTO
      - answer: no
        say: "Sorry to hear."
        go: end
    otherwise: "Please reply YES or NO."
  thanks:
    say: "Thanks!"
"""


FIXED = DEMO.replace("go: GOTO", "go: thanks")
TYPED = "# typed in the browser\n"


def set_text(browser: Browser, text: str) -> None:
    """Replace the editor's text as a paste does (typing it key by key would take seconds)."""
    browser.driver.execute_script("const source = document.getElementById('source'); source.value = arguments[0];"
                                  "source.dispatchEvent(new Event('input'));", text)


def flows_version(server: ConsoleServer) -> str:
    """The flows version the server runs, as operators read it (loopback only: this test's machine)."""
    return str(httpx.get(server.url + "/healthz/details", timeout=5).json()["flows"]["version"])


def test_a_flow_page_draws_its_diagram(console_browser: Browser) -> None:
    console_browser.open("/console/flows")
    console_browser.find("a.flow-name[href='/console/flows/order_status']").click()
    svg = console_browser.find("#diagram > svg")
    assert svg.get_attribute("aria-roledescription") == "stateDiagram"
    assert "ask_number" in console_browser.driver.execute_script(
        "return document.querySelector('#diagram > svg').textContent")
    assert console_browser.find("#failed").get_attribute("hidden") is not None
    console_browser.screenshot("flow")


def test_editing_checks_as_you_type_and_a_save_is_reloaded(console_browser: Browser,
                                                            console_server: ConsoleServer) -> None:
    browser = console_browser
    browser.open("/console/flows")
    browser.find("#new-name").send_keys("browser_demo")
    browser.find("form.new-flow button[type=submit]").click()
    browser.wait_until(lambda: browser.url.endswith("/console/flows/browser_demo/edit"), "the new flow's editor")
    browser.find("#diagram > svg")  # the starter flow, drawn
    try:
        set_text(browser, DEMO)  # "go: GOTO": no such state
        problem = browser.wait_until(lambda: next((item.text for item in browser.find_all("#problems li.error")
                                                   if "'GOTO'" in item.text), None), "the unknown state reported")
        assert problem.startswith("flows/browser_demo.yaml:12:13")
        assert browser.find("#save").get_attribute("disabled") is not None
        assert "errors" in browser.text("#diagram-note")

        set_text(browser, FIXED)
        browser.driver.execute_script("const source = document.getElementById('source'); source.focus();"
                                      "source.setSelectionRange(source.value.length, source.value.length);")
        browser.find("#source").send_keys(TYPED)  # typed key by key, as a person does
        browser.wait_until(lambda: not browser.find_all("#problems li.error"), "no errors left")
        browser.wait_until(lambda: browser.find("#save").get_attribute("disabled") is None, "Save enabled")
        browser.wait_until(lambda: "thanks" in browser.driver.execute_script(
            "const svg = document.querySelector('#diagram > svg'); return svg ? svg.textContent : ''"),
            "the diagram redrawn with the new state")
        browser.screenshot("flow-editor")
        before = flows_version(console_server)
        browser.find("#save").click()
    finally:  # whatever happened, leaving the page must not stop at "leave with unsaved changes?"
        browser.driver.execute_script("const form = document.getElementById('editor-form');"
                                      "if (form) form.dispatchEvent(new Event('submit'));")
    browser.wait_until(lambda: browser.url.endswith("/console/flows/browser_demo?saved=1"), "the flow's page")
    reloaded = browser.wait_until(lambda: browser.find_all("#reload-line.reloaded"), "the page saying it reloaded")
    assert reloaded[0].text.startswith("The bot reloaded: it runs the saved files now")
    assert flows_version(console_server) != before
    assert (console_server.flows_dir / "browser_demo.yaml").read_text() == FIXED + TYPED
    browser.find("#diagram > svg")
