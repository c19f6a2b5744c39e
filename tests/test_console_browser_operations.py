"""The Operations page in a real headless Chromium against a real server (tests/browser.py): it
shows the flows the server runs and the store's health, and a broadcast's counts change in the page
without a reload while it runs (the page polls). The ``browser`` fixture fails a test on any console
error (a Content-Security-Policy violation is one) or request to another origin."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import httpx
import pytest

from bot.store import open_store
from bot.store.base import BroadcastProgress
from tests.browser import Browser, ConsoleServer

pytestmark = pytest.mark.slow


def record(store_url: str, progress: BroadcastProgress) -> None:
    """What ``python -m bot broadcast`` records in the server's store as it goes."""
    async def write() -> None:
        store = open_store(store_url)
        try:
            await store.record_broadcast_progress(dataclasses.replace(progress, written_at=time.time()))
        finally:
            await store.close()
    asyncio.run(write())


def test_the_operations_page_and_a_broadcast_updating_live(console_browser: Browser,
                                                           console_server: ConsoleServer) -> None:
    browser = console_browser
    started = time.time()
    progress = BroadcastProgress("reminder:/srv/lists/browser-test.csv", "reminder", 40, 10, 2, 1, 0, 27,
                                 started_at=started)
    record(console_server.store_url, progress)

    browser.open("/console/operations")
    assert browser.text("nav a[aria-current=page]") == "Operations"
    # The page shows the version the server runs now (another test may have just edited its folder,
    # and a reload follows an edit by a moment): the one the server itself reports on this machine.
    served = httpx.get(console_server.url + "/healthz/details", timeout=10).json()["flows"]["version"]
    assert re.fullmatch(r"[0-9a-f]{12}", browser.text("#flows-version"))
    if browser.text("#flows-version") != served:  # reloaded between the two reads: read both again
        browser.open("/console/operations")
        served = httpx.get(console_server.url + "/healthz/details", timeout=10).json()["flows"]["version"]
    assert browser.text("#flows-version") == served
    assert browser.text("#store-health").startswith("Healthy")
    # Read afresh each time, never through an element held across reads: the page's poll redraws the rows.
    assert "browser-test.csv" in browser.text("#broadcast-rows tr.running")
    assert browser.text("#broadcast-rows tr.running td.sent") == "10"

    record(console_server.store_url, dataclasses.replace(progress, sent=30, waiting=7))
    browser.wait_until(lambda: browser.text("#broadcast-rows tr.running td.sent") == "30", "the new counts, live")
    assert browser.text("#broadcast-rows tr.running td.waiting") == "7"
    assert "33 of 40 settled" in browser.text("#broadcast-rows")
    browser.screenshot("operations")

    record(console_server.store_url, dataclasses.replace(progress, sent=37, waiting=0, finished=True))
    browser.wait_until(lambda: browser.find_all("#broadcast-rows tr.finished"), "the broadcast's end")
    assert browser.text("#broadcast-rows tr.finished td.sent") == "37"
    assert "updated every" not in browser.text("#broadcasts-status")  # none runs: polled now and then only
