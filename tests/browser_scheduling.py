"""pytest-xdist's scheduling with one change: every browser test runs on the same worker.

The browser tests share one server and one Chromium (tests/browser.py), which are per worker
process; spread over two workers they would start two of each. xdist's own answer, ``xdist_group``
marks with ``--dist loadgroup``, does nothing on pytest 9.2: it tags the group onto the test's node
id, which pytest 9.2 no longer lets a plugin change, so the tests are spread as if unmarked
(pytest-xdist issue #1386, open, with xdist 3.8.0). The worker that collects knows the marks but
the controller that schedules sees only node ids, so the group is told by the file's name instead:
browser tests live in files whose name has the word ``browser`` (``test_console_browser.py``,
``test_graph_page_browser.py``). Everything else is scheduled file by file, as ``--dist loadfile``
does. The ``browser`` fixture refuses a test in any other file, so the rule cannot drift.

The files are handed out in the order the workers collected them, and the workers put them in this
order (``pytest_collection_modifyitems``): the browser tests, then the files with a test marked
``slow`` (the bench smoke runs, the fuzz run, the real processes), then the rest, most tests first.
xdist's own order (most tests first) handed the smoke runs, whose files have one to five tests,
out last: two of them then ran alone at the end of the suite, each wanting both cores.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

GROUP = "browser"


def is_browser_test_file(path: str) -> bool:
    """``tests/test_console_browser.py``, ``tests/test_browser_login.py``: the word, between underscores."""
    return GROUP in PurePosixPath(path).stem.split("_")


class BrowserTestsTogether(LoadScopeScheduling):
    """A scope per test file (a file's tests run in order on one worker: some share module state,
    as the fuzz run and its summary do), except one scope holding all the browser tests; the largest
    scope is handed out first, so the browser runs beside everything else."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return GROUP if is_browser_test_file(path) else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadScopeScheduling | None:
    """For ``-n N`` (``--dist load``, pyproject's addopts); any other ``--dist`` asked for is xdist's own."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    config.option.loadscopereorder = False  # the workers' order (below), not the number of tests alone
    return BrowserTestsTogether(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the files in the order they should be handed out (see the module); each
    file's tests keep their order. A run without workers keeps pytest's order."""
    if not hasattr(config, "workerinput"):
        return
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(path: str) -> tuple[int, int]:
        tests = files[path]
        group = 0 if is_browser_test_file(path) else 1 if any(test.get_closest_marker("slow") for test in tests) else 2
        return group, -len(tests)

    items[:] = [item for path in sorted(files, key=rank) for item in files[path]]
