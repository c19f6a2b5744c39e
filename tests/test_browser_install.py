"""tests/browser_install.py: a machine that cannot get Chromium fails the browser tests clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_without_chromium_or_apt_get_the_error_says_what_to_install(tmp_path: Path) -> None:
    """A PATH holding neither Chromium nor apt-get: no skip, an error naming the packages."""
    code = "from tests.browser_install import ensure_chromium; ensure_chromium()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("tests.browser_install.BrowserUnavailable: the browser tests need Debian's Chromium")
    assert "(chromium, chromedriver not on the PATH)" in last_line
    assert last_line.endswith("apt-get install chromium chromium-driver   (Debian/Ubuntu, as root)")
