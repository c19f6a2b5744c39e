"""The browser tests' fixtures: one real bot server and one headless Chromium for the whole run.

Starting a server process and a browser costs seconds, so the session shares one of each (registered
in tests/conftest.py). Tests that use them live in files named for it (``test_*browser*.py``, the
word between underscores: tests/browser_scheduling.py sends those to one pytest-xdist worker, so
two workers never start two servers and two browsers) and are marked ``slow``.

* ``console_server``: ``python server.py`` on 127.0.0.1 with ``ADMIN_PASSWORD`` set, a copy of
  ``flows/`` watched for changes (``RELOAD_FLOWS``), a SQLite store, and outbound texts going to
  the session's fake Twilio API.
* ``browser``: the shared Chromium (Selenium, Debian's chromium-driver), with every request the page
  makes and every console error recorded (Chrome's DevTools performance and browser logs). After
  each test the fixture fails the test on a console error (a Content-Security-Policy violation is
  one) or a request to another origin, unless the test took them (``take_console_errors``,
  ``reset``) because it provoked them on purpose.
* ``console_browser``: the same browser, logged in to the console through its real login form (once).

``UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest -n 0 tests/test_*browser*.py`` writes each
:meth:`Browser.screenshot` to ``docs/images/console-NAME.png`` for the README.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from bot.console.security import SESSION_COOKIE
from bot.fake_twilio import FakeTwilio
from bot.settings import Settings
from tests.browser_install import Chromium, ensure_chromium
from tests.browser_scheduling import is_browser_test_file
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

if TYPE_CHECKING:
    from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "images"
VIEWPORT = (1280, 800)  # CSS pixels at scale 1: the screenshots' size
WAIT_SECONDS = 10.0


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (``file://`` for local files)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# Not a request to anywhere: inline data, the page's own blobs, and the blank page between tests.
_LOCAL_SCHEMES = ("data:", "blob:", "about:")
_FAVICON_MISSING = re.compile(r"https?://[^/\s]+/favicon\.ico - Failed to load resource: .* status of 404\b")


class Browser:
    """The shared headless Chromium, with what the current test made it request and log.

    ``requested`` lists every URL the page asked for (documents, scripts, styles, images, fetch,
    event streams, web sockets), whether it loaded or was blocked; ``take_console_errors`` the
    console's errors: uncaught exceptions, ``console.error``, failed loads and Content-Security-Policy
    violations. (Requests of service or shared workers are not seen: the console starts none.)
    """

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self._requested: list[str] = []
        self._console_errors: list[str] = []

    # -- navigating ------------------------------------------------------------------------------

    def open(self, path_or_url: str) -> None:
        """Load a page (a path on the bot's server, or a whole URL) and wait until it has loaded."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        self.driver.get(url)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def find(self, css: str, timeout: float = WAIT_SECONDS) -> WebElement:
        """The first element matching ``css``, waiting for it to appear."""
        return self.wait_until(lambda: self._first(css), f"an element matching {css!r}", timeout)

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str, timeout: float = WAIT_SECONDS) -> str:
        """The element's text, found afresh if a page's poll redrew it between the find and the read."""
        for _ in range(5):
            try:
                return str(self.find(css, timeout).text)
            except StaleElementReferenceException:
                continue
        return str(self.find(css, timeout).text)

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
        """Waits for ``condition()`` to be truthy and returns it; on a timeout, says what it waited
        for, on which page, and what the page logged."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _driver: condition())
        except TimeoutException:
            self._collect()
            raise AssertionError(f"waited {timeout:.0f} s for {what} on {self.url}; console errors: "
                                 f"{self._console_errors or 'none'}") from None

    def _first(self, css: str) -> WebElement | None:
        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found else None

    # -- what the page did -----------------------------------------------------------------------

    @property
    def requested(self) -> list[str]:
        """Every URL the page asked for in this test, in order, whether it loaded or was blocked. (A
        connection the Content-Security-Policy refuses before it starts, such as a ``fetch`` to another
        origin, shows as a console error instead.)"""
        self._collect()
        return list(self._requested)

    def foreign_requests(self, *allowed_origins: str) -> list[str]:
        """The URLs requested in this test from an origin other than the bot's (or those given)."""
        allowed = set(allowed_origins or (origin(self.base_url),))
        return [url for url in self.requested if not url.startswith(_LOCAL_SCHEMES) and origin(url) not in allowed]

    def take_console_errors(self) -> list[str]:
        """The console errors logged since the last call, for a test that expects some; the rest
        fail the test when it ends."""
        self._collect()
        errors, self._console_errors = self._console_errors, []
        return errors

    def reset(self) -> None:
        """Forget what earlier tests made the browser request and log."""
        self._collect()
        self._requested.clear()
        self._console_errors.clear()

    def _collect(self) -> None:
        for entry in self.driver.get_log("performance"):
            event = json.loads(entry["message"])["message"]
            if event["method"] == "Network.requestWillBeSent":
                self._requested.append(event["params"]["request"]["url"])
            elif event["method"] == "Network.webSocketCreated":
                self._requested.append(event["params"]["url"])
        for entry in self.driver.get_log("browser"):
            # Chromium itself asks every site for /favicon.ico; its 404 is no error of the page's.
            if entry["level"] == "SEVERE" and not _FAVICON_MISSING.match(entry["message"]):
                self._console_errors.append(f"{entry.get('source', '?')}: {entry['message']}")

    # -- the console -----------------------------------------------------------------------------

    def cookie(self, name: str) -> dict[str, Any] | None:
        """A cookie of the bot's server, whatever page is open (the console's have ``path=/console``)."""
        cookies = self.driver.execute_cdp_cmd("Network.getCookies", {"urls": [self.base_url + "/console/"]})
        return next((cookie for cookie in cookies["cookies"] if cookie["name"] == name), None)

    def log_in(self, password: str) -> None:
        """Through the real login form, as a person does."""
        self.open("/console/login")
        self.find("#password").send_keys(password)
        self.find("form[action='/console/login'] button[type=submit]").click()
        self.wait_until(lambda: self.cookie(SESSION_COOKIE) or self._first(".error"), "the login's answer")
        if self.cookie(SESSION_COOKIE) is None:
            raise AssertionError(f"logging in to the console failed: {self.text('.error')}")

    # -- screenshots -----------------------------------------------------------------------------

    def screenshot(self, name: str, css: str | None = None) -> Path | None:
        """With ``UPDATE_SCREENSHOTS=1``: the page (or the element matching ``css``) as
        ``docs/images/console-NAME.png`` for the README; otherwise nothing."""
        if os.environ.get("UPDATE_SCREENSHOTS") != "1":
            return None
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ValueError(f"screenshot names are lowercase words joined by '-', not {name!r}")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"console-{name}.png"
        png = self.find(css).screenshot_as_png if css else self.driver.get_screenshot_as_png()
        target.write_bytes(png)
        return target


def start_chromium(chromium: Chromium, profile: Path, log_file: Path) -> webdriver.Chrome:
    """Headless Chromium under ChromeDriver, logging network events and the console.

    The flags keep Chromium from calling home (updates, sync, safe browsing lists, QUIC probes): a
    closed network refuses those, and they are no part of what a page requests."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--disable-extensions", "--disable-default-apps",
                 "--disable-features=Translate,OptimizationHints,MediaRouter", "--hide-scrollbars",
                 "--force-device-scale-factor=1", "--lang=en-US", f"--window-size={VIEWPORT[0]},{VIEWPORT[1] + 200}",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download a driver) is never run.
    service = Service(executable_path=chromium.driver, log_output=str(log_file))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    # The page's own size, whatever the headless window's frame takes: screenshots come out the same.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
    driver.get("about:blank")  # away from the new-tab page Chromium may open with, and its requests
    return driver


@dataclass
class ConsoleServer:
    """The bot as ops staff run it, with the console on. Its flows folder is a copy the tests may
    change (the server reloads it); texts it sends land in ``fake_twilio`` (shared by the session)."""

    url: str
    password: str
    flows_dir: Path
    store_url: str
    fake_twilio: FakeTwilio
    process: ServerProcess = field(repr=False)

    def output(self) -> str:
        """What the server has logged so far (print it when a test fails on the server's side)."""
        return self.process.output()


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's Chromium and ChromeDriver, installed by apt-get when missing (tests/browser_install.py)."""
    return ensure_chromium()


@pytest.fixture(scope="session")
def console_server(fake_twilio_server: FakeTwilio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    from tests.conftest import ServerProcess  # here, not at the top: conftest imports this module

    folder = tmp_path_factory.mktemp("console-server")
    flows = folder / "flows"
    shutil.copytree(ROOT / "flows", flows)
    store_url = f"sqlite:///{folder / 'bot.db'}"
    password = secrets.token_urlsafe(18)
    process = ServerProcess({}, cwd=folder)  # cwd: no stray .env is read
    # Only these settings: none of the developer's shell (a TWILIO_* or STORE_URL there) leaks in.
    process.env = {name: value for name, value in process.env.items() if not _is_setting(name)}
    process.env.update(
        PORT=str(process.port), HOST="127.0.0.1", PUBLIC_URL=process.url, DEV_MODE="0", ADMIN_PASSWORD=password,
        FLOWS_DIR=str(flows), RELOAD_FLOWS="1", STORE_URL=store_url, DEMO_ORDERS="1",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_FROM=BOT_NUMBER,
        TWILIO_API_BASE_URL=fake_twilio_server.url)
    process.start()
    yield ConsoleServer(process.url, password, flows, store_url, fake_twilio_server, process)
    process.stop()


def _is_setting(name: str) -> bool:
    """A variable the bot reads (a setting, the Twilio SDK's, a flow's ``env``)."""
    return name in _SETTING_NAMES or name.startswith(("TWILIO_", "BROADCAST_"))


_SETTING_NAMES = frozenset({str(info.validation_alias or name).upper() for name, info in Settings.model_fields.items()}
                           | set(Settings.model_fields["flow_env"].default))


@pytest.fixture(scope="session")
def shared_browser(chromium: Chromium, console_server: ConsoleServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    folder = tmp_path_factory.mktemp("chromium")
    driver = start_chromium(chromium, folder / "profile", folder / "chromedriver.log")
    try:
        yield Browser(driver, console_server.url)
    finally:
        driver.quit()


@pytest.fixture
def browser(shared_browser: Browser, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """The shared browser for one test, which fails when it ends on a console error it did not take
    (``take_console_errors``) or on any request to an origin other than the bot's."""
    if not is_browser_test_file(request.node.path.name):
        pytest.fail(f"{request.node.nodeid} drives the shared browser, so it belongs in a file named "
                    "tests/test_*browser*.py: only those run on the worker that holds the browser "
                    "(tests/browser_scheduling.py)")
    shared_browser.reset()
    yield shared_browser
    errors = shared_browser.take_console_errors()
    # The bot's origin, and local files (graph --html's page is one: it may request only itself).
    foreign = shared_browser.foreign_requests(origin(shared_browser.base_url), "file://")
    assert not errors, f"the browser logged errors: {errors}"
    assert not foreign, f"the page requested another origin: {foreign}"


@pytest.fixture
def console_browser(browser: Browser, console_server: ConsoleServer) -> Browser:
    """The shared browser, logged in to the console (through the login form, once per session)."""
    if browser.cookie(SESSION_COOKIE) is None:
        browser.log_in(console_server.password)
    return browser
