"""A flow's diagram as one standalone HTML page that works offline (``python -m bot graph FLOW --html``).

The page carries the vendored Mermaid renderer (``bot/static/vendor/mermaid/``, the file the web
console serves too) inline, and the script that starts it (``bot/static/console/diagram.js``, which
the console's flow pages load too), and a Content-Security-Policy that allows exactly the page's own two
scripts (by hash) and nothing from any other origin: opened from a laptop, an e-mail attachment or
a shared drive, it draws the diagram as inline SVG and never touches the network.
"""

from __future__ import annotations

import base64
import hashlib
import html
from functools import cache
from pathlib import Path

from bot.flows import graph
from bot.flows.compile import CompiledFlow

STATIC = Path(__file__).resolve().parent.parent / "static"
VENDOR = STATIC / "vendor" / "mermaid"
#: The renderer: the single minified browser bundle of the pinned Mermaid release (README.md beside it).
MERMAID_SCRIPT = VENDOR / "mermaid.min.js"
#: What starts it on ``#diagram`` (strict security level, a failure shown in ``#failed``): ours, shared
#: with the web console, which serves it as a file (its policy allows no inline script).
START_SCRIPT = STATIC / "console" / "diagram.js"

_STYLE = """\
body { font: 16px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1a1a1a; }
h1 { margin-bottom: .25rem; }
.meta { color: #555; font-size: .9rem; }
#diagram { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; overflow-x: auto; }
#failed { color: #a40000; }
details pre { background: #f6f6f6; padding: 1rem; overflow-x: auto; }
"""


class VendoredFileMissing(Exception):
    """The vendored renderer is not where the checkout keeps it (a partial copy of the repo)."""


@cache
def mermaid_script() -> str:
    """The vendored renderer's text, checked safe to inline in a ``<script>`` element."""
    return _inlinable(MERMAID_SCRIPT, "the vendored diagram renderer", VENDOR / "README.md")


@cache
def start_script() -> str:
    """The script that starts the renderer, checked safe to inline."""
    return _inlinable(START_SCRIPT, "the diagram's start script", START_SCRIPT)


def _inlinable(path: Path, what: str, see: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise VendoredFileMissing(f"cannot read {what} {path}: {error.strerror or error} (restore it from the "
                                  f"repository; see {see})") from None
    if "</script" in text.lower() or "<script" in text.lower():  # would end or confuse the element early
        raise VendoredFileMissing(f"{path} cannot be inlined in a page: it contains a script tag")
    return text


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(scripts: tuple[str, ...]) -> str:
    """Nothing from anywhere but the page: its scripts by hash, inline styles (Mermaid writes them
    into the SVG), pictures and fonts only as data: URLs; no forms, no base URL, no connections."""
    return ("default-src 'none'; script-src " + " ".join(_csp_hash(script) for script in scripts)
            + "; style-src 'unsafe-inline'; img-src data:; font-src data:; base-uri 'none'; form-action 'none'")


def html_page(flow: CompiledFlow, title: str | None = None) -> str:
    """The standalone page: the flow's name (or ``title``: a language's version), description, the
    diagram, and its Mermaid source; in the flow's language (``lang``)."""
    source = graph.mermaid(flow, title)
    renderer, start = mermaid_script(), start_script()
    escaped_source = html.escape(source)
    name = html.escape(title or flow.name)
    description = f'<p class="description">{html.escape(flow.description)}</p>\n' if flow.description else ""
    return (
        f"<!DOCTYPE html>\n<html lang=\"{html.escape(flow.language)}\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy((renderer, start))}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{name} · textflow</title>\n<style>\n{_STYLE}</style>\n</head>\n<body>\n"
        f"<header>\n<h1>{name}</h1>\n{description}"
        f'<p class="meta">From {html.escape(flow.file or "?")}; starts at {html.escape(flow.start)}.</p>\n'
        "</header>\n<main>\n"
        f'<pre class="mermaid" id="diagram">\n{escaped_source}</pre>\n'
        '<p id="failed" hidden></p>\n'
        f"<details>\n<summary>Mermaid source</summary>\n<pre>{escaped_source}</pre>\n</details>\n"
        f"</main>\n<script>{renderer}</script>\n<script>{start}</script>\n</body>\n</html>\n")
