"""The console in a real headless Chromium against a real server (tests/browser.py): logging in."""

from __future__ import annotations

import pytest

from bot.console.security import SESSION_COOKIE
from tests.browser import Browser, ConsoleServer

pytestmark = pytest.mark.slow


def test_logging_in_through_the_form(browser: Browser, console_server: ConsoleServer) -> None:
    """A wrong password is refused in the page; the right one sets an HttpOnly, SameSite=Strict
    session cookie scoped to /console. The login page loads only the bot's own files."""
    browser.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.open("/console/")
    assert browser.url == console_server.url + "/console/login?next=/console/"
    browser.screenshot("login")

    browser.find("#password").send_keys("not the password")
    browser.find("form[action='/console/login'] button[type=submit]").click()
    assert browser.text("[role=alert]") == "That password is not right."
    assert browser.cookie(SESSION_COOKIE) is None
    # The refused login answers 401, which Chromium reports in the console; nothing else may be there.
    assert [error for error in browser.take_console_errors() if "status of 401" not in error] == []

    browser.log_in(console_server.password)
    cookie = browser.cookie(SESSION_COOKIE)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    assert browser.requested and all(url.startswith(console_server.url) for url in browser.requested)
    log = console_server.output()
    assert "console: failed login" in log and "console: logged in" in log
    assert console_server.password not in log and "not the password" not in log


def test_the_browser_sees_what_the_policy_blocks(browser: Browser, console_server: ConsoleServer) -> None:
    """The checks every browser test ends with are not empty words: a script, a picture and a fetch
    from another origin put into a console page are refused by its Content-Security-Policy, and the
    browser helper reports each (the attempted loads as foreign requests, all three as CSP errors)."""
    browser.open("/console/login")
    browser.driver.execute_script("""
        const script = document.createElement("script");
        script.src = "https://cdn.example.com/library.js";
        document.body.append(script);
        const picture = document.createElement("img");
        picture.src = "https://images.example.com/tracker.png";
        document.body.append(picture);
        fetch("https://api.example.com/data").catch(() => {});
    """)
    violations: list[str] = []

    def all_three_refused() -> bool:
        violations.extend(error for error in browser.take_console_errors() if "Content Security Policy" in error)
        return all(any(host in error for error in violations) for host in ("cdn.", "images.", "api."))

    browser.wait_until(all_three_refused, "the policy's three refusals in the console")
    assert browser.foreign_requests() == ["https://cdn.example.com/library.js", "https://images.example.com/tracker.png"]
    browser.reset()  # what this test provoked on purpose: not a failure


def test_the_logged_in_browser_is_let_through(console_browser: Browser, console_server: ConsoleServer) -> None:
    """The ``console_browser`` fixture's session works: a console address is answered (here a 404,
    as no page has that name) instead of being sent to the login page."""
    console_browser.open("/console/no-such-page")
    assert console_browser.url == console_server.url + "/console/no-such-page"
    assert console_browser.find_all("#password") == []  # no login form
    assert [error for error in console_browser.take_console_errors() if "status of 404" not in error] == []
