"""Visible reloads: the flows' version and the last refused reload, for operators only.

``python -m bot status`` reads every process's entry from the store; ``/healthz/details`` answers
requests made on this machine, and nobody else; ``/healthz`` says healthy or not, nothing more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from bot import __version__
from bot.app import create_app
from bot.cli.status import describe
from bot.flows.loader import files_version, flow_files, load_flows
from bot.flows.problems import FlowLoadError
from bot.reload import FlowReloader
from bot.settings import Settings
from bot.status import ProcessStatusKeeper
from bot.store import open_store
from bot.store.base import FlowsVersion, ProcessStatus, RejectedReload
from tests.conftest import SHIPPED_FLOWS, ServerProcess
from tests.signed_webhooks import AUTH_TOKEN
from tests.test_cli import bot, output_of

LOCAL = ("127.0.0.1", 51000)


def break_status_flow(flows: Path) -> str:
    """Point a ``go:`` at a state that does not exist; returns the start of lint's line for it."""
    status = flows / "status.yaml"
    lines = status.read_text(encoding="utf-8").replace("go: lookup", "go: lokup").splitlines(keepends=True)
    status.write_text("".join(lines), encoding="utf-8")
    number = next(number for number, line in enumerate(lines, 1) if "go: lokup" in line)
    return f"{status}:{number}:{lines[number - 1].index('lokup') + 1}: error: unknown state 'lokup'"


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, folder, ignore=shutil.ignore_patterns("tests"))
    return folder


def settings_for(tmp_path: Path, flows: Path) -> Settings:
    return Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                    flows_dir=str(flows), reload_flows=False)


@pytest.fixture
def app(tmp_path: Path, flows: Path) -> Iterator[TestClient]:
    """The app on a SQLite store, reached from loopback (the client address and Host a local curl has)."""
    with TestClient(create_app(settings_for(tmp_path, flows), load_flows(flows)), base_url="http://127.0.0.1:8000",
                    client=LOCAL) as client:
        yield client


def wait_for_entry(client: TestClient, condition: Any, timeout: float = 10) -> dict[str, Any]:
    """This process's entry as the store holds it (read through the details page), once ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        entries = client.get("/healthz/details").json()["processes"]
        mine = [entry for entry in entries if entry["process"].endswith(f":{os.getpid()}")]
        if mine and condition(mine[0]):
            return dict(mine[0])
        assert time.monotonic() < deadline, entries
        time.sleep(0.02)


# -- the flows' version ---------------------------------------------------------------------------

def test_the_version_is_a_stable_hash_of_the_files(tmp_path: Path, flows: Path) -> None:
    first = load_flows(flows)
    assert len(first.version) == 12 and int(first.version, 16) >= 0
    assert first.loaded_at == pytest.approx(time.time(), abs=30)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(flows, elsewhere)
    assert load_flows(elsewhere).version == first.version  # the same files on another machine
    program = flows / "program.yaml"
    program.write_text(program.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    edited = load_flows(flows).version
    assert edited != first.version  # the program file counts too, even a comment
    (flows / "agent.yaml").rename(flows / "handover.yaml")
    assert load_flows(flows).version not in {edited, first.version}  # so does a file's name
    assert files_version(flow_files(flows)) == load_flows(flows).version


# -- a refused reload, seen from the command line -------------------------------------------------

def test_a_refused_reload_is_recorded_with_its_errors_and_shown_by_the_status_command(
        tmp_path: Path, flows: Path, app: TestClient) -> None:
    reloader: FlowReloader = app.app_state["reloader"]
    running = load_flows(flows).version
    wait_for_entry(app, lambda entry: entry["flows"]["version"] == running)  # written at start-up

    broken = break_status_flow(flows)
    assert app.portal.call(reloader.reload) is False
    entry = wait_for_entry(app, lambda entry: entry["rejected"] is not None)
    assert entry["flows"]["version"] == running  # still serving what it had
    assert entry["rejected"]["version"] == files_version(flow_files(flows))
    assert any(line.startswith(broken) for line in entry["rejected"]["problems"]), entry

    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    shown = bot("status", "--store", store_url)
    assert shown.returncode == 0, output_of(shown)
    assert f"{socket.gethostname()}:{os.getpid()}  running, last heard from " in shown.stdout
    assert f"flows version {running}, loaded " in shown.stdout
    assert "agent, order_status, reminder, signup" in shown.stdout
    assert "last refused reload: " in shown.stdout
    assert f"(still serving {running}; fix the files and save again):" in shown.stdout
    assert f"\n    {broken}" in shown.stdout

    as_json = bot("status", "--json", cwd=tmp_path, STORE_URL="sqlite:///bot.db")  # STORE_URL, relative
    assert as_json.returncode == 0, output_of(as_json)
    [listed] = json.loads(as_json.stdout)
    assert listed["rejected"]["problems"] == entry["rejected"]["problems"]

    # Fixed: the next reload goes through, and the refusal is shown as history.
    (flows / "status.yaml").write_text((SHIPPED_FLOWS / "status.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert app.portal.call(reloader.reload) is True
    wait_for_entry(app, lambda entry: entry["reloads"] == 1)
    shown = bot("status", "--store", store_url)
    assert f"fixed since: {running} was loaded after it" in shown.stdout, output_of(shown)


def test_status_says_when_no_process_wrote_and_never_creates_a_store(tmp_path: Path) -> None:
    missing = bot("status", "--store", f"sqlite:///{tmp_path / 'typo.db'}")
    assert missing.returncode == 2 and "no SQLite store at" in missing.stderr, output_of(missing)
    assert not (tmp_path / "typo.db").exists()
    asyncio.run(open_store(f"sqlite:///{tmp_path / 'bot.db'}").close())
    empty = bot("status", "--store", f"sqlite:///{tmp_path / 'bot.db'}")
    assert empty.returncode == 1 and "no server process has recorded its status" in empty.stderr, output_of(empty)
    memory = bot("status", "--store", "memory://")
    assert memory.returncode == 2 and "lives inside one process" in memory.stderr, output_of(memory)


def test_status_shows_every_process_newest_first_with_its_age() -> None:
    now = 1_750_000_000.0
    serving = FlowsVersion("aaaaaaaaaaaa", now - 7200, ("order_status", "signup"))
    newer = FlowsVersion("bbbbbbbbbbbb", now - 60, ("order_status", "signup"))
    entries = [
        ProcessStatus("web-2:20", now - 3600, now - 5, newer, reloads=1),
        ProcessStatus("web-1:10", now - 7200, now - 30, serving, rejected=RejectedReload(
            now - 90, "cccccccccccc", ("flows/status.yaml:12:13: error: unknown state 'lokup'",))),
        ProcessStatus("web-1:9", now - 90_000, now - 86_400, serving),  # killed a day ago
        ProcessStatus("web-1:8", now - 200_000, now - 180_000, serving, stopped_at=now - 180_000),
    ]
    text = describe(entries, now)
    blocks = text.split("\n\n")
    assert [block.split()[0] for block in blocks[:4]] == ["web-2:20", "web-1:10", "web-1:9", "web-1:8"]
    assert "web-2:20  running, last heard from 5s ago; started " in blocks[0]
    assert "(1h 0m ago)" in blocks[0] and "hot reloads applied: 1" in blocks[0] and "no reload refused" in blocks[0]
    assert "last refused reload: " in blocks[1] and "(1m ago), files version cccccccccccc" in blocks[1]
    assert "still serving aaaaaaaaaaaa" in blocks[1]
    assert "    flows/status.yaml:12:13: error: unknown state 'lokup'" in blocks[1]
    assert "web-1:9  SILENT since " in blocks[2] and "(1d 0h ago): the process died" in blocks[2]
    assert "web-1:8  stopped " in blocks[3] and "(2d 2h ago)" in blocks[3]
    # Two live processes disagree: said once, at the end (the dead ones do not count).
    assert text.rstrip().endswith("note: live processes serve different flows (aaaaaaaaaaaa, bbbbbbbbbbbb): "
                                  "a reload still under way, a refused one, or different files on different machines")


def test_status_names_the_release_each_process_runs_and_notes_a_mix() -> None:
    now = 1_750_000_000.0
    flows = FlowsVersion("aaaaaaaaaaaa", now - 600, ("signup",))
    entries = [ProcessStatus("web-2:20", now - 60, now - 5, flows, release="0.2.0"),
               ProcessStatus("web-1:10", now - 600, now - 30, flows, release="0.1.0"),
               ProcessStatus("web-1:9", now - 90_000, now - 86_400, flows)]  # dead, and older than releases
    text = describe(entries, now)
    blocks = text.split("\n\n")
    assert blocks[0].splitlines()[1] == "  textflow 0.2.0" and blocks[1].splitlines()[1] == "  textflow 0.1.0"
    assert blocks[2].splitlines()[1] == "  textflow (release not recorded: an older one)"
    assert text.rstrip().endswith("note: live processes run different releases (textflow 0.1.0, textflow 0.2.0): "
                                  "an upgrade under way, or a process not restarted since one")
    assert "different releases" not in describe(entries[:1] + entries[2:], now)  # the dead one does not count


async def test_a_process_records_the_release_it_runs(tmp_path: Path, flows: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        await ProcessStatusKeeper(store, load_flows(flows), process="here:1").write()
        [entry] = await store.process_statuses()
        assert entry.release == __version__
    finally:
        await store.close()


# -- recording never costs a reload -----------------------------------------------------------

async def test_a_store_that_fails_while_recording_costs_a_log_line_not_the_reload(
        tmp_path: Path, flows: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    keeper = ProcessStatusKeeper(store, load_flows(flows), process="here:1")
    await keeper.write()
    assert [entry.process for entry in await store.process_statuses()] == ["here:1"]
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)  # the store now refuses every write
    try:
        with caplog.at_level(logging.WARNING, logger="bot.status"):
            keeper.loaded(load_flows(flows))
            await keeper.write()
        assert keeper.status.reloads == 1  # the reload itself stands
        assert "could not record this process's flows status in the store" in caplog.text
        assert "deleted" in caplog.text
    finally:
        await store.close()


async def test_a_store_that_never_answers_is_given_up_on_not_waited_for(
        flows: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that accepts the connection and then says nothing (a hung server, a black hole)."""
    monkeypatch.setattr("bot.status.WRITE_SECONDS", 0.3)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        store = open_store(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        keeper = ProcessStatusKeeper(store, load_flows(flows), process="here:1")
        try:
            with caplog.at_level(logging.WARNING, logger="bot.status"):
                await asyncio.wait_for(keeper.write(), 5)
            assert "no answer within 0.3s" in caplog.text
        finally:
            await asyncio.wait_for(store.close(), 5)


def test_an_entry_from_a_newer_version_is_still_read() -> None:
    """During a rolling upgrade an older ``status`` reads entries a newer server wrote."""
    written = json.loads(ProcessStatus("web-1:1", 1.0, 2.0, FlowsVersion("ab", 0.5, ("signup",))).to_json())
    written["signed_in_operator"] = "ada"  # a field this version does not know
    written["flows"]["hash_of"] = ["program.yaml"]
    assert ProcessStatus.from_json(json.dumps(written)) == ProcessStatus(
        "web-1:1", 1.0, 2.0, FlowsVersion("ab", 0.5, ("signup",)))


async def test_the_keeper_writes_at_start_on_change_each_heartbeat_and_at_stop(tmp_path: Path, flows: Path) -> None:
    store = open_store("memory://")
    clock = [1000.0]
    keeper = ProcessStatusKeeper(store, load_flows(flows), process="here:1", clock=lambda: clock[0],
                                 heartbeat_seconds=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(keeper.run(stop))

    async def written(condition: Any) -> ProcessStatus:
        for _ in range(200):
            [entry] = await store.process_statuses() or [None]
            if entry is not None and condition(entry):
                return entry
            await asyncio.sleep(0.01)
        raise AssertionError(await store.process_statuses())

    assert (await written(lambda entry: True)).written_at == 1000.0  # start-up
    clock[0] = 1001.0
    assert (await written(lambda entry: entry.written_at == 1001.0)).rejected is None  # a heartbeat
    break_status_flow(flows)
    with pytest.raises(FlowLoadError) as refused:
        load_flows(flows)
    keeper.rejected(refused.value, "feedfacecafe")
    entry = await written(lambda entry: entry.rejected is not None)
    assert entry.rejected is not None and entry.rejected.version == "feedfacecafe"
    clock[0] = 1002.0
    stop.set()
    await running
    [last] = await store.process_statuses()
    assert last.stopped_at == 1002.0 and last.rejected == entry.rejected


# -- /healthz and /healthz/details ------------------------------------------------------------------

def test_healthz_says_healthy_or_not_and_nothing_more(tmp_path: Path, app: TestClient) -> None:
    assert app.get("/healthz").json() == {"status": "ok"}
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    unhealthy = app.get("/healthz")
    assert unhealthy.status_code == 503 and unhealthy.json() == {"status": "unavailable"}
    details = app.get("/healthz/details")  # why is for operators, on this machine
    assert details.status_code == 503 and str(tmp_path / "bot.db") in details.json()["store"], details.text


def test_details_answer_a_local_request(flows: Path, app: TestClient) -> None:
    response = app.get("/healthz/details")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok" and body["store"] is None and body["pid"] == os.getpid()
    assert body["process"] == f"{socket.gethostname()}:{os.getpid()}"
    assert body["flows"]["version"] == load_flows(flows).version
    assert body["flows"]["flows"] == ["agent", "order_status", "reminder", "signup"]
    assert body["reloads"] == 0 and body["rejected"] is None and body["stopped_at"] is None
    for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
        assert app.get("/healthz/details", headers={"host": host}).status_code == 200, host


@pytest.mark.parametrize("headers", [
    {"x-forwarded-for": "127.0.0.1"},  # a proxy on this machine relaying someone who claims loopback
    {"x-forwarded-for": "203.0.113.7"},
    {"forwarded": "for=127.0.0.1"},
    {"x-real-ip": "127.0.0.1"},
    {"x-forwarded-host": "localhost"},
    {"x-forwarded-proto": "https"},  # what a TRUST_PROXY proxy sends
    {"via": "1.1 nginx"},
    {"host": "bot.example.com"},  # a proxy that passes the public Host on
    {"host": ""},
], ids=lambda headers: ",".join(f"{name}={value}" for name, value in headers.items()))
def test_details_refuse_a_relayed_request_as_if_there_were_no_such_page(app: TestClient,
                                                                         headers: dict[str, str]) -> None:
    response = app.get("/healthz/details", headers=headers)
    assert response.status_code == 404 and response.text == "Not Found"


def test_details_refuse_a_client_elsewhere(tmp_path: Path, flows: Path) -> None:
    settings = settings_for(tmp_path, flows).model_copy(update={"trust_proxy": True})
    with TestClient(create_app(settings, load_flows(flows)), base_url="http://127.0.0.1:8000",
                    client=("203.0.113.7", 40000)) as client:
        assert client.get("/healthz/details").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
    with TestClient(create_app(settings, load_flows(flows)), base_url="http://127.0.0.1:8000",
                    client=("::1", 40000)) as client:
        assert client.get("/healthz/details").status_code == 200  # TRUST_PROXY or not, local is local


# -- the real thing: a server process, its file watcher, uvicorn's proxy headers -------------------

@pytest.mark.slow  # a real server process, waiting in real time for its file watcher
def test_a_running_server_shows_a_refused_reload_to_operators_only(tmp_path: Path, flows: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    server = ServerProcess({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "FLOWS_DIR": str(flows), "DEV_MODE": "0",
                            "STORE_URL": store_url, "PUBLIC_URL": "", "RELOAD_FLOWS": "1"}, cwd=tmp_path).start()
    try:
        details = httpx.get(server.url + "/healthz/details", timeout=5).json()
        running = details["flows"]["version"]
        # uvicorn believes X-Forwarded-For from a loopback peer (its default): the client address
        # becomes the one claimed; the page still refuses, for the header is there.
        for claimed in ("127.0.0.1", "203.0.113.7"):
            relayed = httpx.get(server.url + "/healthz/details", headers={"x-forwarded-for": claimed}, timeout=5)
            assert relayed.status_code == 404, relayed.text
        assert httpx.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}

        broken = break_status_flow(flows)
        deadline = time.monotonic() + 15
        while httpx.get(server.url + "/healthz/details", timeout=5).json()["rejected"] is None:
            assert time.monotonic() < deadline, "the refused reload never showed"
            time.sleep(0.1)
        shown = bot("status", "--store", store_url)
        assert shown.returncode == 0, output_of(shown)
        assert f":{details['pid']}  running" in shown.stdout and f"still serving {running}" in shown.stdout
        assert f"\n    {broken}" in shown.stdout, shown.stdout
    finally:
        output = server.stop()
    assert "flow change rejected, still serving the previous flows" in output
    stopped = bot("status", "--store", store_url)
    assert f":{details['pid']}  stopped " in stopped.stdout, output_of(stopped)
