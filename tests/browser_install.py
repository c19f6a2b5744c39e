"""Debian's Chromium and ChromeDriver for the browser tests: found on the PATH, else installed.

The README's test command must run the browser tests on a fresh Debian machine, as it runs the Redis
tests with nothing set up by hand. The browser cannot come from PyPI (Selenium's own driver download
and Playwright's browser download reach hosts a locked-down machine cannot), so, like the bench does
for ``wrk``, a root user on Debian gets the two packages from Debian's archive with ``apt-get``. A
machine where that is impossible fails the browser tests with the command to run, never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

#: Debian's packages: the browser, its matching WebDriver, and the fonts its screenshots are drawn in.
PACKAGES = ("chromium", "chromium-driver", "fonts-liberation")
INSTALL_HINT = "apt-get install chromium chromium-driver   (Debian/Ubuntu, as root)"
APT_TIMEOUT = 900  # seconds: a slow mirror, with another apt-get holding the lock for a while


class BrowserUnavailable(Exception):
    """Chromium or ChromeDriver is missing and could not be installed here."""


@dataclass(frozen=True)
class Chromium:
    """Where the browser and its driver are."""

    browser: str
    driver: str


def _on_path() -> dict[str, str | None]:
    return {"chromium": shutil.which("chromium") or shutil.which("chromium-browser"),
            "chromedriver": shutil.which("chromedriver")}


def find() -> Chromium | None:
    paths = _on_path()
    browser, driver = paths["chromium"], paths["chromedriver"]
    return Chromium(browser, driver) if browser and driver else None


def ensure_chromium() -> Chromium:
    """Chromium and ChromeDriver, installed with apt-get when missing (root on Debian only).

    Debian builds both from one source at one version, so the driver always matches the browser."""
    found = find()
    if found is not None:
        return found
    missing = [name for name, path in _on_path().items() if path is None]
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BrowserUnavailable(
            f"the browser tests need Debian's Chromium and ChromeDriver ({', '.join(missing)} not on the PATH); "
            f"the tests install them when run as root on Debian, otherwise run: {INSTALL_HINT}")
    output = _apt_install()
    found = find()
    if found is None:
        raise BrowserUnavailable(
            f"the browser tests need Chromium and ChromeDriver; installing {' '.join(PACKAGES)} with apt-get "
            f"failed:\n{output[-3000:]}\nInstall them yourself: {INSTALL_HINT}")
    return found


def _apt_install() -> str:
    """``apt-get install``; when that fails (a fresh machine's package lists are stale or absent),
    ``apt-get update`` and once more. Returns what apt printed, for the error message."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=300", *PACKAGES]
    update = ["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=300"]
    output = ""
    for command in (install, update, install):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return output + f"$ {' '.join(command)}\n(gave up after {APT_TIMEOUT} s)\n"
        output += f"$ {' '.join(command)}\n{done.stdout}{done.stderr}"
        if command is install and done.returncode == 0 and find() is not None:
            break
    return output
