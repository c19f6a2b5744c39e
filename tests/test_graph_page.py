"""``python -m bot graph FLOW --html FILE``: a standalone page that draws the diagram offline."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bot.flows import graph
from bot.flows.compile import CompiledFlow
from bot.flows.graph_page import MERMAID_SCRIPT, VENDOR, html_page, mermaid_script
from bot.flows.loader import load_flows
from tests.conftest import SHIPPED_FLOWS, write_flows
from tests.test_cli import bot, output_of

# A description and a keyword that would be markup if the page pasted them in unescaped.
TRICKY = """\
flow: tricky
description: '</pre><script>alert("description")</script> & <b>bold</b>'
triggers: [TRICKY]
start: ask
states:
  ask:
    say: "Yes or no?"
    replies:
      - any_of: ["<img src=x onerror=alert(1)>", "R&D #1"]
        go: end
      - pattern: '^a*b*_c_$'
        go: end
    otherwise: "Yes or no, please."
"""


VOID = {"meta", "link", "br", "img", "input", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}


class Page(HTMLParser):
    """What a browser would make of the page: its elements' attributes, its scripts, and the text
    inside each element (by tag name, and by ``#id``), character references decoded."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: dict[str, str] = {}
        self._open: list[list[str]] = []  # the keys of each open element: its tag, #id and .class
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script":
            self.scripts.append("")
        if tag not in VOID:
            keys = [tag]
            if attributes.get("id"):
                keys.append(f"#{attributes['id']}")
            if attributes.get("class"):
                keys.append(f".{attributes['class']}")
            self._open.append(keys)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1][0] == "script":
            self.scripts[-1] += data
        for keys in self._open:
            for key in keys:
                self.text[key] = self.text.get(key, "") + data

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


@pytest.fixture(scope="module")
def tricky() -> CompiledFlow:
    return load_flows(write_flows(Path(tempfile.mkdtemp()), {"tricky.yaml": TRICKY})).flows["tricky"]


@pytest.fixture(scope="module")
def tricky_page(tricky: CompiledFlow) -> str:
    return html_page(tricky)


def test_the_page_loads_nothing_from_anywhere(tricky_page: str) -> None:
    page = Page(tricky_page)
    # Nothing is fetched: no element names a source or a link (the renderer is inline).
    assert not [attrs for _, attrs in page.tags if {"src", "href", "srcset", "action", "data"} & set(attrs)]
    assert page.all("link") == [] and page.all("iframe") == [] and page.all("img") == []
    [csp] = [attrs for attrs in page.all("meta") if attrs.get("http-equiv") == "Content-Security-Policy"]
    policy = dict(part.strip().split(" ", 1) for part in str(csp["content"]).split(";"))
    assert policy["default-src"] == "'none'"
    assert "http" not in str(csp["content"]) and "*" not in str(csp["content"])
    # Scripts run only by hash: exactly the two in the page, the vendored renderer and its start.
    assert len(page.scripts) == 2
    assert policy["script-src"].split() == [csp_hash(script) for script in page.scripts]
    # The policy comes before the first script, so it governs every one.
    assert page.tags.index(("meta", csp)) < [name for name, _ in page.tags].index("script")


def test_the_vendored_renderer_is_inlined_unchanged(tricky_page: str) -> None:
    assert Page(tricky_page).scripts[0] == MERMAID_SCRIPT.read_text(encoding="utf-8") == mermaid_script()
    assert "mermaid.run(" in Page(tricky_page).scripts[1]


def test_what_authors_wrote_is_text_never_markup(tricky: CompiledFlow, tricky_page: str) -> None:
    page = Page(tricky_page)
    assert page.all("img") == [] and page.all("b") == [] and len(page.scripts) == 2  # nothing became markup
    assert '</pre><script>alert("description")</script> & <b>bold</b>' in page.text[".description"]
    assert "#lt;img src=x onerror=alert(1)#gt;" in page.text["#diagram"]  # Mermaid's own escapes, as text
    assert page.text["#diagram"] == "\n" + graph.mermaid(tricky)


def test_labels_are_drawn_as_the_characters_written(tricky: CompiledFlow) -> None:
    """Mermaid reads a label as Markdown and HTML: its entity codes keep a keyword's characters."""
    drawn = graph.mermaid(tricky)
    assert ("n_ask --> n_end: any of #lt;img src=x onerror=alert(1)#gt;, R#amp;D #35;1 | /^a#42;b#42;#95;c#95;$/"
            in drawn)


def test_the_page_names_the_flow_and_describes_it() -> None:
    flow = dataclasses.replace(load_flows(SHIPPED_FLOWS).flows["order_status"], name="<order & status>")
    page = Page(html_page(flow))
    assert page.text["h1"] == "<order & status>" and page.text["title"] == "<order & status> · textflow"
    assert page.text[".description"] == "Tell a customer where their order is."
    assert page.all("order") == []
    assert page.text["#diagram"].strip() == graph.mermaid(flow).strip()
    assert page.text["details"] == "\nMermaid source\n" + graph.mermaid(flow) + "\n"


def test_the_vendored_file_is_the_pinned_release() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    version = re.search(r"Mermaid \*\*(\d+\.\d+\.\d+)\*\*", readme)
    pinned = re.search(r"`mermaid.min.js` sha256: `([0-9a-f]{64})`", readme)
    assert version and pinned, "bot/static/vendor/mermaid/README.md must name the version and the sha256"
    assert hashlib.sha256(MERMAID_SCRIPT.read_bytes()).hexdigest() == pinned.group(1)
    assert f"mermaid@{version.group(1)}" in readme
    assert "MIT" in (VENDOR / "LICENSE").read_text(encoding="utf-8")


def test_graph_html_writes_the_page(tmp_path: Path) -> None:
    target = tmp_path / "diagrams" / "status.html"
    result = bot("graph", "order_status", "--flows", SHIPPED_FLOWS, "--html", target)
    assert result.returncode == 0, output_of(result)
    assert f"wrote {target}" in result.stderr and result.stdout == ""
    page = Page(target.read_text(encoding="utf-8"))
    assert page.text["h1"] == "order_status" and "stateDiagram-v2" in page.text["#diagram"]


def test_graph_html_and_output_are_one_or_the_other(tmp_path: Path) -> None:
    result = bot("graph", "order_status", "--html", tmp_path / "a.html", "-o", tmp_path / "a.md")
    assert result.returncode == 2 and "not allowed with" in result.stderr, output_of(result)
