"""``graph --html``'s page in the shared headless Chromium (tests/browser.py): the vendored renderer
draws the diagram as inline SVG, offline, with no request but the file and no console error (the
``browser`` fixture fails a test on either, a Content-Security-Policy violation included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.flows.graph_page import html_page
from bot.flows.loader import load_flows
from tests.browser import Browser
from tests.conftest import SHIPPED_FLOWS, write_flows
from tests.test_cli import bot, output_of
from tests.test_graph_page import TRICKY

pytestmark = pytest.mark.slow


def drawn_diagram(browser: Browser, page: Path) -> str:
    """Opens the page and returns the SVG the renderer put in place of the Mermaid source."""
    browser.open(page.as_uri())
    browser.find("#diagram > svg")
    svg: str = browser.driver.execute_script("return document.getElementById('diagram').innerHTML")
    assert browser.find("#failed").get_attribute("hidden") is not None  # no "could not be drawn" note
    assert browser.requested == [page.as_uri()]  # the file itself, nothing else
    return svg


def test_the_shipped_flow_is_drawn(browser: Browser, tmp_path: Path) -> None:
    target = tmp_path / "order_status.html"
    result = bot("graph", "order_status", "--flows", SHIPPED_FLOWS, "--html", target)
    assert result.returncode == 0, output_of(result)
    svg = drawn_diagram(browser, target)
    assert svg.startswith("<svg") and 'aria-roledescription="stateDiagram"' in svg
    assert "ask_number" in svg  # a state of flows/status.yaml, drawn


def test_what_authors_wrote_is_drawn_as_text(browser: Browser, tmp_path: Path) -> None:
    """Markup in a description or a keyword stays characters in the drawing."""
    tricky = load_flows(write_flows(tmp_path / "flows", {"tricky.yaml": TRICKY})).flows["tricky"]
    target = tmp_path / "tricky.html"
    target.write_text(html_page(tricky), encoding="utf-8")
    svg = drawn_diagram(browser, target)
    assert ">ask<" in svg or "ask</" in svg  # a state, drawn
    assert "<img" not in svg and "<em>" not in svg and "<strong>" not in svg  # no markup from the flow
    assert "any of &lt;img src=x onerror=alert(1)&gt;, R&amp;D #1 | /^a*b*_c_$/" in svg  # as written
