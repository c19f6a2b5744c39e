"""The console's Operations page (bot/console/operations.py) and where broadcasts stand
(bot/broadcast_progress.py), over HTTP against the real app on a SQLite store: the flows version
this process runs, a refused reload with its file:line, the store's health, and a real broadcast
(the real twilio SDK against the fake Twilio API) seen mid-run and at its end, on the page, in its
JSON and in ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bot import __version__
from bot.app import create_app
from bot.broadcast import Broadcast, Recipient, default_name
from bot.broadcast_progress import SILENT_AFTER_SECONDS, ProgressRecorder, Standing, recording, standing
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.reload import FlowReloader
from bot.settings import Settings
from bot.store import open_store
from bot.store.base import BroadcastProgress, FlowsVersion, ProcessStatus
from bot.store.memory import MemoryStore
from tests.conftest import SHIPPED_FLOWS
from tests.console_pages import console_bot
from tests.signed_webhooks import AUTH_TOKEN
from tests.test_broadcast import FakeClock, broadcast_parts, write_csv
from tests.test_console_flows import visible
from tests.test_console_security import PASSWORD, log_in
from tests.test_metrics import samples_of, value
from tests.test_outbound import outbound_env, output_of, run_bot
from tests.test_status import break_status_flow

PAGE = "/console/operations"
WAIT_SECONDS = 10.0


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, folder, ignore=shutil.ignore_patterns("tests"))
    return folder


@pytest.fixture
def console(tmp_path: Path, flows: Path) -> Iterator[TestClient]:
    with console_bot(tmp_path, flows) as client:
        yield client


def page_once(client: TestClient, condition: Callable[[str], Any], what: str) -> str:
    """The page's text (tags gone) once ``condition`` holds: what the store says changes in the background."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        answer = client.get(PAGE)
        assert answer.status_code == 200, answer.text
        if condition(answer.text):
            return answer.text
        assert time.monotonic() < deadline, f"waited for {what}; the page says: {said(answer.text)}"
        time.sleep(0.05)


def said(page: str) -> str:
    """The page's text as read: tags gone, and no space a tag left before punctuation."""
    return re.sub(r"\(\s+", "(", re.sub(r"\s+([,.:;)])", r"\1", visible(page)))


def section(page: str, id_: str) -> str:
    found = re.search(rf'<section id="{id_}".*?</section>', page, re.DOTALL)
    assert found is not None, page
    return said(found.group(0))


# -- reloads, the store, uptime -------------------------------------------------------------------

def test_the_page_shows_the_flows_this_process_runs_its_uptime_and_every_process(console: TestClient,
                                                                                  flows: Path) -> None:
    version = load_flows(flows).version
    page = page_once(console, lambda text: "running, heard from" in text, "this process's entry in the store")
    assert re.search(r'<nav aria-label="Console">.*Operations</a>\s*</nav>', page, re.DOTALL)  # last, for now
    assert 'href="/console/operations" aria-current="page"' in page
    this = section(page, "this-process")
    assert f"{socket.gethostname()}:{os.getpid()}" in this and f"version {version}, loaded " in this
    assert re.search(r"up for \d+s \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", this), this
    assert "agent, order_status, reminder, signup" in this
    assert "0 applied since start-up" in this and "No reload refused." in this
    assert f"The bot runs these files (flows version {version})." in this
    processes = section(page, "processes")
    assert f"{socket.gethostname()}:{os.getpid()}" in processes and version in processes


def test_the_release_each_process_runs_is_shown_and_the_footer_names_it(console: TestClient) -> None:
    """textflow X.Y.Z (``bot.__version__``, as ``python -m bot --version``): this process's, each
    process's from its entry in the store (one written before releases were recorded says so), and
    in every page's footer for ops staff logged in; never to a visitor on the login page."""
    store = console.app_state["store"]
    now = time.time()
    older = ProcessStatus("old-host:7", now - 60, now - 1, FlowsVersion("aaaaaaaaaaaa", now - 60, ("signup",)))
    console.portal.call(store.record_status, older)  # as a process of the last release wrote it: no release
    page = page_once(console, lambda text: "old-host:7" in text and f"{socket.gethostname()}:{os.getpid()}" in text,
                     "both processes' entries")
    assert f"Release textflow {__version__}" in section(page, "this-process")
    row = r'<td><code>([^<]+)</code><div class="muted">started [^<]+</div></td>\s*<td class="release">([^<]+)</td>'
    rows = dict(re.findall(row, page))
    assert rows == {f"{socket.gethostname()}:{os.getpid()}": f"textflow {__version__}",
                    "old-host:7": "textflow (release not recorded: an older one)"}
    for path in (PAGE, "/console/flows"):
        assert f'<footer class="release"><span id="release">textflow {__version__}</span></footer>' in \
            console.get(path).text, path
    console.cookies.clear()
    login = console.get("/console/login")
    assert login.status_code == 200 and "textflow " + __version__ not in login.text


def test_a_refused_reload_is_shown_with_its_file_and_line_until_fixed(console: TestClient, flows: Path) -> None:
    reloader: FlowReloader = console.app_state["reloader"]
    running = load_flows(flows).version
    broken = break_status_flow(flows)  # /tmp/…/flows/status.yaml:N:C: error: unknown state 'lokup'
    shown = "flows/" + broken.removeprefix(f"{flows}/")  # named as the Flows pages name it
    assert console.portal.call(reloader.reload) is False

    page = page_once(console, lambda text: "still refused" in text, "the refused reload in the process table")
    this = section(page, "this-process")
    assert f"version {running}, loaded " in this  # still serving what it had
    assert "Last refused reload: " in this and "still refused, fix the files and save again" in this
    assert shown in this and str(flows) not in this
    assert "The bot refused to reload these files" in this
    assert shown in section(page, "processes")

    (flows / "status.yaml").write_text((SHIPPED_FLOWS / "status.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert console.portal.call(reloader.reload) is True
    fixed = section(page_once(console, lambda text: "fixed since" in text and "still refused" not in text,
                              "the reload that fixed it"), "this-process")
    assert "1 applied since start-up" in fixed and "fixed since (newer flows were loaded after it)" in fixed
    assert f"version {load_flows(flows).version}, loaded " in fixed


def test_the_stores_health_and_what_is_wrong_with_it(console: TestClient, tmp_path: Path) -> None:
    store = section(console.get(PAGE).text, "store")
    assert "Healthy: it takes turns now" in store and f"sqlite:///{tmp_path / 'bot.db'}" in store
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)  # the store now refuses every write
    page = console.get(PAGE)
    assert page.status_code == 200  # the page still answers, and says why the bot does not
    store = section(page.text, "store")
    assert "Unavailable: " in store and str(tmp_path / "bot.db") in store and "deleted" in store


def test_the_store_url_is_shown_without_its_password(tmp_path: Path, flows: Path, redis_url: str) -> None:
    with_password = redis_url.replace("redis://", "redis://:s3cret-pass@", 1)
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=with_password, flows_dir=str(flows),
                        reload_flows=False, admin_password=PASSWORD)
    with TestClient(create_app(settings, load_flows(flows)), follow_redirects=False) as client:
        assert log_in(client).status_code == 303  # type: ignore[attr-defined]
        page = client.get(PAGE).text  # a Redis that has no such password: unavailable, and named
    assert "s3cret-pass" not in page and ":***@" in section(page, "store")


def test_it_needs_the_login(console: TestClient) -> None:
    console.cookies.clear()
    for path in (PAGE, f"{PAGE}/broadcasts.json"):
        answer = console.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login"), path


# -- a broadcast under way, and its end ------------------------------------------------------------

NUMBERS = ["+15550300001", "12345", "+15550300002", "+15550300003", "+15550300004", "+15550300005"]


def counts_in(page: str) -> dict[str, int]:
    """The first broadcast row's counts, by column."""
    row = re.search(r'<tbody id="broadcast-rows">\s*<tr class="([^"]*)">(.*?)</tr>', page, re.DOTALL)
    assert row is not None, page
    found = {name: int(number) for name, number in re.findall(r'<td class="([a-z-]+)">(\d+)</td>', row.group(2))}
    return {"standing": row.group(1), **found}  # type: ignore[dict-item]


def test_a_broadcast_is_shown_with_its_counts_while_it_runs_and_when_it_ends(
        console: TestClient, tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    """A broadcast in its own event loop (as in its own process) on the same SQLite file; while it
    waits between two sends the page, its JSON and /metrics show where it stands."""
    fake_twilio.opt_out(NUMBERS[3])  # Twilio answers 21610: a failure
    recipients = [Recipient(line, number, {"name": "Ada"}) for line, number in enumerate(NUMBERS, 2)]
    name = f"reminder:{tmp_path / 'numbers.csv'}"
    told: list[BroadcastProgress] = []
    seen: dict[str, Any] = {}

    def under_way_page() -> None:
        page = page_once(console, lambda text: 'class="sent">2<' in text and 'class="failed">1<' in text,
                         "the counts of the broadcast under way")
        seen["counts"] = counts_in(page)
        seen["name shown"] = name in page
        seen["polling"] = 'data-running="yes"' in page
        seen["json"] = console.get(f"{PAGE}/broadcasts.json").json()
        seen["metrics"] = samples_of(console.get("/console/metrics").text)

    async def run() -> None:
        async with broadcast_parts(tmp_path / "bot.db", fake_twilio) as (store, engine, outbox):
            clock = FakeClock(start=1_700_000_000.0)

            async def sleep(seconds: float) -> None:  # pacing between sends: look at the page once, mid-run
                await clock.sleep(seconds)
                if "counts" not in seen and told[-1].failed == 1:
                    await asyncio.to_thread(under_way_page)
            async with recording(store) as recorder:
                def progress(told_now: BroadcastProgress) -> None:
                    told.append(told_now)
                    recorder(told_now)
                await Broadcast(name, "reminder", store, engine, outbox, clock=clock.time, sleep=sleep,
                                progress=progress).run(recipients)

    asyncio.run(run())
    assert seen["counts"] == {"standing": "running", "sent": 2, "skipped": 1, "failed": 1, "in-doubt": 0,
                              "waiting": 2}
    assert seen["name shown"] and seen["polling"]
    [item] = seen["json"]["items"]
    assert seen["json"]["running"] is True and item["standing"] == "running"
    assert (item["requested"], item["settled"], item["sent"], item["waiting"]) == (6, 4, 2, 2)
    metrics = seen["metrics"]
    assert value(metrics, "textflow_broadcasts_running") == 1
    for state, count in {"sent": 2, "skipped": 1, "failed": 1, "waiting": 2, "in_doubt": 0}.items():
        assert value(metrics, "textflow_broadcast_recipients", flow="reminder", state=state) == count, state

    page = page_once(console, lambda text: 'class="finished"' in text, "the finished broadcast")
    assert counts_in(page) == {"standing": "finished", "sent": 4, "skipped": 1, "failed": 1, "in-doubt": 0,
                               "waiting": 0}
    assert "6 of 6 settled" in said(page) and 'data-running=""' in page
    assert console.get(f"{PAGE}/broadcasts.json").json()["running"] is False
    after = samples_of(console.get("/console/metrics").text)
    assert value(after, "textflow_broadcasts_running") == 0  # finished: no longer under way
    assert not [key for key in after if key[0] == "textflow_broadcast_recipients"]
    assert sorted(attempt.to for attempt in fake_twilio.attempts) == sorted(NUMBERS[:1] + NUMBERS[2:])


def test_the_broadcast_command_records_where_it_stands_and_a_dry_run_does_not(tmp_path: Path,
                                                                          fake_twilio: FakeTwilio) -> None:
    """``python -m bot broadcast`` in a process of its own writes its progress to the store the
    server reads; ``--dry-run`` sends nothing, so it is no broadcast under way."""
    csv_path = write_csv(tmp_path / "people.csv", [{"phone": "+15550300001", "name": "Ada"},
                                                   {"phone": "12345", "name": "Typo"}])
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    env = outbound_env(fake_twilio, store_url, FLOWS_DIR=str(SHIPPED_FLOWS), BROADCAST_WINDOW="any")
    dry = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, output_of(dry)
    assert asyncio.run(_broadcasts(store_url)) == []

    done = run_bot("broadcast", "--flow", "reminder", "--to", csv_path, "--rate", "1000", cwd=tmp_path, env=env)
    assert done.returncode == 0, output_of(done)
    [entry] = asyncio.run(_broadcasts(store_url))
    assert (entry.flow, entry.requested, entry.sent, entry.skipped, entry.waiting) == ("reminder", 2, 1, 1, 0)
    assert entry.finished and entry.name == default_name("reminder", csv_path)
    assert time.time() - 60 < entry.started_at <= entry.written_at <= time.time()


async def _broadcasts(store_url: str) -> list[BroadcastProgress]:
    store = open_store(store_url)
    try:
        return await store.broadcasts(3600)
    finally:
        await store.close()


def test_a_broadcasts_name_is_only_ever_text(console: TestClient, tmp_path: Path) -> None:
    """A CSV path is whatever the operator named the file: escaped in the page, a value in the JSON."""
    name = 'reminder:/srv/<img src=x onerror=alert(1)>"&\'.csv'
    asyncio.run(_record(f"sqlite:///{tmp_path / 'bot.db'}", BroadcastProgress(name, "reminder", 1, 0, 0, 0, 0, 1,
                                                                               written_at=time.time())))
    page = console.get(PAGE).text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;&#34;&amp;&#39;.csv" in page
    assert console.get(f"{PAGE}/broadcasts.json").json()["items"][0]["name"] == name


async def _record(store_url: str, progress: BroadcastProgress) -> None:
    store = open_store(store_url)
    try:
        await store.record_broadcast_progress(progress)
    finally:
        await store.close()


# -- the recorder: at most once a second, a heartbeat, the end, a failing store -------------------

def told(sent: int, waiting: int, *, finished: bool = False) -> BroadcastProgress:
    return BroadcastProgress("b", "reminder", 100, sent, 0, 0, 0, waiting, finished)


async def test_the_store_is_written_at_most_once_a_second_and_at_the_end() -> None:
    store = MemoryStore()
    async with recording(store, every_seconds=0.5) as recorder:
        for sent in range(1, 101):  # a fast run: a hundred recipients settled at once
            recorder(told(sent, 100 - sent))
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        [first] = await store.broadcasts(60)
        assert first.sent < 100 and not first.finished  # the first write went at once
        await asyncio.sleep(0.6)
        [caught_up] = await store.broadcasts(60)
        assert caught_up.sent == 100 and not caught_up.finished  # the latest counts, a moment later
        writes_while_running = recorder.writes
    assert writes_while_running == 2
    [last] = await store.broadcasts(60)
    assert last.finished and last.sent == 100 and last.started_at <= last.written_at
    assert standing(last, time.time()) is Standing.FINISHED


async def test_a_run_waiting_for_sending_hours_is_rewritten_now_and_then_and_an_end_without_word_is_an_end() -> None:
    store = MemoryStore()
    with pytest.raises(RuntimeError, match="the run failed"):
        async with recording(store, every_seconds=0.0, heartbeat_seconds=0.05) as recorder:
            recorder(told(10, 90))
            await asyncio.sleep(0.3)  # nothing changes: everyone left waits for their hours
            assert recorder.writes >= 3
            [running] = await store.broadcasts(60)
            assert standing(running, time.time()) is Standing.RUNNING
            assert standing(running, running.written_at + SILENT_AFTER_SECONDS + 1) is Standing.SILENT
            raise RuntimeError("the run failed")
    [ended] = await store.broadcasts(60)
    assert ended.finished and ended.waiting == 90  # over, with people left: stopped early
    assert standing(ended, time.time()) is Standing.STOPPED


async def test_a_store_that_fails_costs_a_log_line_not_the_broadcast(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)  # the store now refuses every write
    try:
        with caplog.at_level(logging.WARNING, logger="bot.broadcast_progress"):
            recorder = ProgressRecorder(store)
            writer = asyncio.create_task(recorder.run())
            recorder(told(1, 99))
            recorder.close()
            await asyncio.wait_for(writer, 10)
        assert recorder.writes == 0
        assert "could not record the broadcast's progress in the store" in caplog.text and "deleted" in caplog.text
    finally:
        await store.close()
