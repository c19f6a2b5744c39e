"""``python -m bot backup`` / ``restore`` against a real server: a backup under load holds every
acknowledged turn and opt-out, whole; restore refuses while the store is served; Redis is refused.

The servers are real ``server.py`` processes on SQLite files in the test's folder, texted with
signed webhooks over HTTP; the backups are real files checked with SQLite itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot import cli
from bot.backup import backup
from bot.store import open_store
from bot.store.serving_lock import RestoreUnderWay, StoreInUse, exclusive, serving
from bot.store.sqlite_schema import LATEST
from tests.conftest import PROGRAM_YAML, ROOT, ServerProcess, counting_flow, write_flows
from tests.signed_webhooks import AUTH_TOKEN, new_message_sid, signed_request, twilio_form
from tests.test_cli import clean_env
from tests.test_server_process import running, server_process, text

HELP_TEXT = "Test Program: text COUNT to count. Reply STOP to opt out."
PHONES = 8  # senders texting at once, each through its own numbers one after another
WARM_UP_SECONDS = 0.7  # load before the backup starts
AFTER_SECONDS = 0.2  # load after it finished


def start_server(folder: Path, database: Path) -> ServerProcess:
    flows = write_flows(folder / "flows", {"counting.yaml": counting_flow(20)}, program=PROGRAM_YAML)
    return server_process(folder, TWILIO_AUTH_TOKEN=AUTH_TOKEN, STORE_URL=f"sqlite:///{database}",
                          FLOWS_DIR=str(flows), LOG_LEVEL="warning", RELOAD_FLOWS="0")


def run_bot(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=30, env=clean_env())


def read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)


# -- backup under load, restore, serve again ---------------------------------------------------

@dataclass(frozen=True)
class Sent:
    number: str
    sid: str
    body: str
    status: int
    sent_at: float  # time.monotonic() when it was sent
    acked_at: float  # and when the answer came


async def phone(client: httpx.AsyncClient, url: str, k: int, sent: list[Sent], stop: asyncio.Event) -> None:
    """Numbers texted one after another: COUNT, a few ticks, and every third one STOP."""
    i = 0
    while not stop.is_set():
        number = f"+1555{k:03d}{i:04d}"
        ticks = 1 + (i * 7 + k) % 8
        for body in ["COUNT", *["tick"] * ticks, *(["STOP"] if i % 3 == 0 else [])]:
            if stop.is_set():
                return
            form = twilio_form(body, number, message_sid=new_message_sid())
            content, headers = signed_request(url, form)
            sent_at = time.monotonic()
            response = await client.post(url, content=content, headers=headers)
            sent.append(Sent(number, form["MessageSid"], body, response.status_code, sent_at, time.monotonic()))
        i += 1


async def load_with_backup(url: str, store_url: str, file: Path, cwd: Path) -> tuple[list[Sent], float, float, str]:
    """Text the server from PHONES senders; run ``python -m bot backup`` in the middle of it."""
    sent: list[Sent] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=10) as client:
        phones = [asyncio.create_task(phone(client, url, k, sent, stop)) for k in range(PHONES)]
        await asyncio.sleep(WARM_UP_SECONDS)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "backup", str(file), "--store", store_url, cwd=cwd, env=clean_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        finished = time.monotonic()
        assert process.returncode == 0, output.decode()
        await asyncio.sleep(AFTER_SECONDS)
        stop.set()
        await asyncio.gather(*phones)
    return sent, started, finished, output.decode()


def test_backup_under_load_holds_every_acknowledged_turn_and_restores(tmp_path: Path) -> None:
    database, file = tmp_path / "bot.db", tmp_path / "backups" / "bot-backup.db"
    file.parent.mkdir()
    server = start_server(tmp_path, database)
    with running(server):
        sent, started, finished, output = asyncio.run(
            load_with_backup(server.url + "/sms", f"sqlite:///{database}", file, tmp_path))
    assert {item.status for item in sent} == {200}, "every webhook answered"
    assert "integrity ok" in output and str(file) in output

    before = [item for item in sent if item.acked_at < started]
    during = [item for item in sent if started <= item.acked_at <= finished]
    with read_only(file) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT message_sid, sender, body FROM processed ORDER BY rowid").fetchall()
        opted_out = {sender for (sender,) in db.execute("SELECT sender FROM opt_outs")}
        ledger = {(number, sid) for number, sid in db.execute("SELECT number, message_sid FROM consent_ledger "
                                                               "WHERE status = 'opted_out'")}
        conversations = {sender: (flow, state) for sender, flow, state in
                         db.execute("SELECT sender, flow, state FROM conversations")}
    in_backup = {sid for sid, _, _ in rows}
    # Every turn acknowledged before the backup began is in it, and every opt-out with its ledger row.
    assert not [item for item in before if item.sid not in in_backup]
    stops_before = [item for item in before if item.body == "STOP"]
    assert stops_before and all(item.number in opted_out for item in stops_before)
    assert all((item.number, item.sid) in ledger for item in stops_before)
    # Nothing half written: each number's conversation is exactly what its recorded turns made it,
    # and an opt-out is in the backup exactly when its STOP is.
    bodies: dict[str, list[str]] = defaultdict(list)
    for _, sender, body in rows:
        bodies[sender].append(body)
    stop_sids = {sid for sid, _, body in rows if body == "STOP"}
    assert {sid for _, sid in ledger} == stop_sids
    for sender, texts in bodies.items():
        assert texts[0] == "COUNT"
        if texts[-1] == "STOP":
            assert sender in opted_out
        else:
            assert sender not in opted_out
            assert conversations[sender] == ("counting", f"n{texts.count('tick')}"), sender
    assert opted_out == {sender for sender, texts in bodies.items() if texts[-1] == "STOP"}
    print(f"\nbackup under load: {len(before)} turns acknowledged before the backup began "
          f"({len(stops_before)} STOPs), {len(during)} while it ran ({sum(item.sid in in_backup for item in during)} "
          f"of them in it), {len(sent)} in all; the backup holds {len(rows)} turns, {len(conversations)} "
          f"conversations and {len(opted_out)} opt-outs; the backup took {finished - started:.2f}s; answer times "
          f"before it {_times(before)}, while it ran {_times(during)}")

    # Restored onto a new path (no server running there), the bot serves from it.
    restored = tmp_path / "restored" / "bot.db"
    restored.parent.mkdir()
    result = run_bot("restore", file, "--store", f"sqlite:///{restored}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"restored {file} to {restored}" in result.stdout
    still_counting = next(sender for sender, texts in bodies.items() if texts[-1] != "STOP")
    stopped = next(iter(opted_out))
    server = start_server(tmp_path / "restored", restored)
    with running(server):
        assert text(server, "HELP", "+15559990000") == [HELP_TEXT]
        assert text(server, "tick", still_counting) == [str(bodies[still_counting].count("tick") + 1)]
        assert text(server, "COUNT", stopped) == []  # still opted out: nothing is texted
    with read_only(restored) as db:
        assert db.execute("SELECT 1 FROM opt_outs WHERE sender = ?", (stopped,)).fetchone() is not None


def _times(sent: list[Sent]) -> str:
    """Median and worst answer time, for the report (measured, never asserted: bench/ times things)."""
    times = sorted(item.acked_at - item.sent_at for item in sent)
    return f"median {times[len(times) // 2] * 1000:.1f} ms, worst {times[-1] * 1000:.1f} ms" if times else "-"


# -- restore refuses while the store is in use -------------------------------------------------

def test_restore_refuses_while_the_store_is_in_use_and_keeps_later_opt_outs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database, file = tmp_path / "bot.db", tmp_path / "copy.db"
    store_url = f"sqlite:///{database}"
    counting, stopped_before, stopped_after = "+15550000001", "+15550000002", "+15550000003"
    server = start_server(tmp_path, database)
    with running(server):
        assert text(server, "COUNT", counting) == ["0"]
        text(server, "STOP", stopped_before)
        backup(database, file)  # made while it serves
        assert text(server, "tick", counting) == ["1"]
        late_stop = twilio_form("STOP", stopped_after)
        text(server, "STOP", stopped_after, MessageSid=late_stop["MessageSid"])
        text(server, "START", stopped_before)
        identity = database.stat().st_ino
        result = run_bot("restore", file, "--store", store_url, cwd=tmp_path)
        assert result.returncode == 2
        assert f"{database}" in result.stderr and "systemctl stop textflow" in result.stderr, result.stderr
        assert "Nothing was changed" in result.stderr
        # Untouched: the same file, nothing kept aside, and the conversation goes on.
        assert database.stat().st_ino == identity
        assert not list(tmp_path.glob("*before-restore*")) and not list(tmp_path.glob(".*partial*"))
        assert text(server, "tick", counting) == ["2"]

    # A process with the file open but no serving lock (any python -m bot command) is seen too.
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time\n"
                               "db = sqlite3.connect(sys.argv[1]); db.execute('SELECT 1 FROM opt_outs').fetchall()\n"
                               "print('open', flush=True); time.sleep(60)", str(database)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert cli.main(["restore", str(file), "--store", store_url]) == 2
        assert "another process has the SQLite store" in capsys.readouterr().err
        assert not list(tmp_path.glob("*before-restore*"))
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    legacy = "+15550000004"  # opted out before the consent ledger was kept: in opt_outs alone
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO opt_outs (sender, at) VALUES (?, ?)", (legacy, time.time()))
    db.close()
    assert cli.main(["restore", str(file), "--store", store_url]) == 0
    assert "carried over 3 consent change(s)" in capsys.readouterr().out
    kept = list(tmp_path.glob("bot.db.before-restore-*"))
    assert len(kept) == 1 and not Path(f"{database}-wal").exists()
    with read_only(kept[0]) as db:  # the replaced store, whole: its WAL was folded in before it moved
        assert db.execute("SELECT state FROM conversations WHERE sender = ?", (counting,)).fetchall() == [("n2",)]
    with read_only(database) as db:
        # The conversation as it was backed up; consent as the replaced store last had it.
        assert db.execute("SELECT state FROM conversations WHERE sender = ?", (counting,)).fetchall() == [("n0",)]
        assert {sender for (sender,) in db.execute("SELECT sender FROM opt_outs")} == {stopped_after, legacy}
        ledger = db.execute("SELECT number, status, how, message_sid FROM consent_ledger ORDER BY at").fetchall()
    assert (stopped_after, "opted_out", "keyword", late_stop["MessageSid"]) in ledger
    assert [status for number, status, _, _ in ledger if number == stopped_before] == ["opted_out", "opted_in"]
    assert [how for number, _, how, _ in ledger if number == legacy] == ["operator"]


def test_a_server_waits_for_a_restore_under_way_then_refuses(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    with exclusive(database):
        began = time.monotonic()
        with pytest.raises(RestoreUnderWay, match="a restore is replacing"), serving(f"sqlite:///{database}", 0.3):
            pass
        assert time.monotonic() - began >= 0.3
    with serving(f"sqlite:///{database}"), serving(f"sqlite:///{database}"):  # shared: every worker
        with pytest.raises(StoreInUse, match="Stop it first"), exclusive(database):
            pass


# -- what backup and restore refuse ------------------------------------------------------------

def make_store(database: Path) -> None:
    async def create() -> None:
        await open_store(f"sqlite:///{database}").close()

    asyncio.run(create())


def test_backup_never_replaces_a_file_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database, file = tmp_path / "bot.db", tmp_path / "b.db"
    make_store(database)
    store = ["--store", f"sqlite:///{database}"]
    file.write_bytes(b"an older backup")
    assert cli.main(["backup", str(file), *store]) == 2
    assert "exists: choose another name, or add --force" in capsys.readouterr().err
    assert file.read_bytes() == b"an older backup"
    assert cli.main(["backup", str(file), "--force", *store]) == 0
    assert "integrity ok; 0 conversations, 0 opt-outs, 0 consent records, 0 turns" in capsys.readouterr().out
    assert cli.main(["backup", str(database), "--force", *store]) == 2
    assert "is the store itself" in capsys.readouterr().err
    assert cli.main(["backup", str(tmp_path / "b2.db"), "--store", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no SQLite store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "b2.db").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_restore_refuses_what_is_not_a_textflow_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "bot.db"
    make_store(database)
    before = database.read_bytes()
    store = ["--store", f"sqlite:///{database}"]
    not_sqlite, other_sqlite, newer = tmp_path / "notes.txt", tmp_path / "other.db", tmp_path / "newer.db"
    not_sqlite.write_text("conversations, opt_outs\n")
    with sqlite3.connect(other_sqlite) as db:
        db.execute("CREATE TABLE conversations (sender TEXT)")
    db.close()
    backup(database, newer)
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.close()
    expected = {not_sqlite: "is not a textflow store: it is not an SQLite database",
                other_sqlite: "is not a textflow store: it has no processed, opt_outs table",
                newer: f"newer than this release knows ({LATEST})",
                tmp_path / "missing.db": "no file"}
    for source, message in expected.items():
        assert cli.main(["restore", str(source), *store]) == 2, source
        assert message in capsys.readouterr().err, source
    assert database.read_bytes() == before
    assert not list(tmp_path.glob("*before-restore*")) and not list(tmp_path.glob(".*partial*"))


# -- Redis ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["backup", "restore"])
def test_redis_store_is_refused_with_the_pointer(tmp_path: Path, command: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "dump.db"
    if command == "restore":
        file.write_bytes(b"")
    assert cli.main([command, str(file), "--store", "redis://:s3cret@127.0.0.1:6379/0"]) == 2
    error = capsys.readouterr().err
    assert 'README.md, "Running in production", "Backups"' in error and "appendonly yes" in error
    assert "s3cret" not in error and "redis://:***@127.0.0.1:6379/0" in error
    assert (file.read_bytes() == b"") if command == "restore" else not file.exists()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    production = readme.index("\n## Running in production\n")
    assert production < readme.index("\n### Backups\n", production)


def test_backup_file_is_one_whole_file_for_a_server_that_never_ran(tmp_path: Path) -> None:
    """What ``checked`` promises: the backup has no -wal beside it and opens alone, read-only."""
    database, file = tmp_path / "bot.db", tmp_path / "b.db"
    make_store(database)
    backup(database, file)
    assert not Path(f"{file}-wal").exists() and not Path(f"{file}-shm").exists()
    with sqlite3.connect(f"{file.resolve().as_uri()}?immutable=1", uri=True) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_a_backup_from_an_older_release_is_migrated_as_it_is_restored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The store files made by earlier releases (tests/store_fixtures/, kept for the migrations'
    tests) restore like any backup: checked, then brought to this release's schema."""
    older = sorted((ROOT / "tests" / "store_fixtures").glob("sqlite-*.db"))
    assert older, "tests/store_fixtures/ holds a store made by an earlier release"
    database = tmp_path / "bot.db"
    with read_only(older[0]) as db:
        version, opt_outs = db.execute("SELECT (SELECT user_version FROM pragma_user_version), "
                                       "(SELECT COUNT(*) FROM opt_outs)").fetchone()
    db.close()
    assert cli.main(["restore", str(older[0]), "--store", f"sqlite:///{database}"]) == 0
    output = capsys.readouterr().out
    assert f"migrated it from schema version {version} (an older release's) to {LATEST}" in output
    assert f"schema version {LATEST}, integrity ok" in output and f" {opt_outs} opt-outs" in output
    with read_only(database) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (LATEST,)
    db.close()
    assert older[0].read_bytes()[:16] == b"SQLite format 3\x00"  # the source is only read
