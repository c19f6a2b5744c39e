"""The parts that let a broadcast reach a million rows (issue 17 item 4): the CSV read as a stream
and each row found again by its offset, the compact queue and set of numbers, the records written
in batches, the SQLite log kept small, and progress printed a few times a minute, not per row.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from bot.broadcast import Broadcast, ProgressLine, progress_printer
from bot.broadcast_csv import BroadcastError, Recipient, open_recipients, read_recipients
from bot.broadcast_queue import NumberSet, number_key, phone_of
from bot.broadcast_records import BatchedRecords
from bot.broadcast_wal import WalKeeper
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.outbound import Outbox
from bot.quiet_hours import QuietHours
from bot.store import StoreBusy, open_store
from bot.store.sqlite import SqliteStore
from bot.types import OutboundMessage, OutboundState
from tests.conftest import SHIPPED_FLOWS, demo_fetcher


def _scanned(path: Path) -> tuple[list[Recipient], list[Recipient]]:
    """The rows as scanned, and each read again by its position (last first: by offset, not in order)."""
    source = open_recipients(path)
    try:
        scanned = list(source.scan())
        again = [source.recipient(position) for position in reversed(range(len(source)))][::-1]
        assert len(source) == len(scanned)
    finally:
        source.close()
    return scanned, again


def test_rows_read_again_by_their_offset_are_the_rows_scanned(tmp_path: Path) -> None:
    """Quoted cells across lines, commas and quotes in cells, a BOM, blank lines, Windows and old Mac
    line ends, cells missing or extra: each row read back from its offset is the row scanned."""
    text = ("\ufeffname, phone ,date,notes\r\n"
            "Ada,+15551230001,\"Tue 3 Dec, 10:00\",\"two\r\nlines\"\r\n"
            "\r\n"
            "\"O'Brien \"\"Bob\"\"\",(555) 123-0002,Wed\r\n"
            "Cy,+15551230003\r\n"  # no date, no notes: empty, as csv.DictReader gives them
            "Di,+15551230004,Thu,x,extra,cells\r"  # an old Mac line end, and cells past the header
            "Éva,+15551230005,Fri,\"ünïcødé ✓\"\n")
    path = tmp_path / "people.csv"
    path.write_bytes(text.encode("utf-8"))
    scanned, again = _scanned(path)
    # a row's line is its last, as csv.DictReader counts (the header is line 1; blank lines count)
    assert [recipient.line for recipient in scanned] == [3, 5, 6, 7, 8]
    assert [(r.phone, r.variables, r.timezone) for r in scanned] == [(r.phone, r.variables, r.timezone) for r in again]
    assert scanned[0].variables == {"name": "Ada", "date": "Tue 3 Dec, 10:00", "notes": "two\r\nlines"}
    assert scanned[1].variables["name"] == "O'Brien \"Bob\"" and scanned[1].phone == "(555) 123-0002"
    assert scanned[2].variables == {"name": "Cy", "date": "", "notes": ""}
    assert scanned[3].variables == {"name": "Di", "date": "Thu", "notes": "x"}
    assert scanned[4].variables == {"name": "Éva", "date": "Fri", "notes": "ünïcødé ✓"}
    # as the file was read before it was streamed: csv.DictReader in text mode
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        before = [(reader.line_num, (row.get("phone") or "").strip(),
                   {key: (value or "").strip() for key, value in row.items() if key and key != "phone"})
                  for row in reader]
    assert [(r.line, r.phone, r.variables) for r in scanned] == before
    # the list for small files reads the same rows, numbers in E.164
    assert [recipient.phone for recipient in read_recipients(path)] == [f"+155512300{i:02d}" for i in range(1, 6)]


def test_a_csv_that_cannot_be_read_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("phone,name\n+15551230001,Zo\xeb\n".encode("latin-1"))
    with pytest.raises(BroadcastError, match=r"latin1\.csv: cannot read it: 'utf-8' codec can't decode"):
        open_recipients(bad)
    with pytest.raises(BroadcastError, match=r"no\.csv: cannot read it: \[Errno 2\]"):
        open_recipients(tmp_path / "no.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BroadcastError, match=r"header with a 'phone' column \(found: nothing\)"):
        open_recipients(empty)


def test_a_csv_cut_short_while_the_broadcast_runs_stops_it_with_why(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("phone,name\n" + "".join(f"+1555123{i:04d},P{i}\n" for i in range(100)))
    source = open_recipients(path)
    try:
        list(source.scan())
        path.write_text("phone,name\n")  # replaced by a shorter file meanwhile (the handle reads the same inode)
        with path.open("r+") as handle:
            handle.truncate(20)
        with pytest.raises(BroadcastError, match="the file changed while the broadcast ran"):
            source.recipient(99)
    finally:
        source.close()


def test_numbers_as_keys_and_the_set_of_numbers_seen() -> None:
    for phone in ("+15551230001", "whatsapp:+447911123456", "+999999999999999", "+1"):
        assert phone_of(number_key(phone)) == phone
    assert number_key("+15551230001") != number_key("whatsapp:+15551230001")
    seen = NumberSet()  # sized for nothing: grows as it goes
    keys = [number_key(f"+1555{i:07d}") for i in range(0, 50_000, 7)]
    assert all(seen.add(key) for key in keys)
    assert not any(seen.add(key) for key in keys[::3])
    assert seen.add(number_key("whatsapp:+15550000000"))


def _message(index: int, state: OutboundState = OutboundState.SENDING) -> OutboundMessage:
    return OutboundMessage(f"b|+1555124{index:04d}", f"+1555124{index:04d}", "Hi", "b", state)


def test_records_asked_for_together_are_written_in_one_transaction(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "bot.db")
        records = BatchedRecords(store)
        try:
            messages = [_message(index) for index in range(50)]
            await asyncio.gather(*(records.save_outbound(message) for message in messages))
            assert (records.batches, records.written) == (1, 50)
            for index, message in enumerate(messages):  # the caller changes its message: the record is what was saved
                message.state, message.sid = OutboundState.ACCEPTED, f"SM{index:032d}"
            assert {m.state for m in await store.broadcast_messages("b")} == {OutboundState.SENDING}
            await asyncio.gather(*(records.save_outbound(message) for message in messages[:10]))
            assert records.batches == 2
            assert sum(m.state == OutboundState.ACCEPTED for m in await store.broadcast_messages("b")) == 10
            assert await records.outbound(messages[3].id) == messages[3]  # reads go straight to the store
            assert await records.outbound_by_sid(messages[3].sid or "") == messages[3]  # rewritten, found by sid
            assert await store.outbound_by_sid(messages[30].sid or "") is None  # (its new sid was never saved)
        finally:
            await store.close()
    asyncio.run(scenario())


def test_a_batch_the_store_refuses_fails_every_send_waiting_for_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "bot.db")
        records = BatchedRecords(store)
        try:
            (tmp_path / "bot.db").unlink()  # the file is gone: nothing may be taken as recorded
            results = await asyncio.gather(*(records.save_outbound(_message(index)) for index in range(5)),
                                           return_exceptions=True)
            assert all(isinstance(result, StoreBusy) for result in results), results
        finally:
            await store.close()
    asyncio.run(scenario())


def test_the_wal_keeper_lets_the_log_start_again(tmp_path: Path) -> None:
    """Checkpointed on the event loop between a broadcast's writes, the log is copied whole and
    starts again: its file stays the size of one stretch of writes instead of growing with them."""
    async def scenario() -> list[int]:
        store = SqliteStore(tmp_path / "bot.db")
        keeper = WalKeeper(str(tmp_path / "bot.db"))
        sizes = []
        try:
            for stretch in range(4):
                await store.save_outbounds([_message(stretch * 1000 + index) for index in range(1000)])
                assert keeper.checkpoint()
                sizes.append((tmp_path / "bot.db-wal").stat().st_size)
        finally:
            keeper.close()
            await store.close()
        return sizes
    sizes = asyncio.run(scenario())
    assert max(sizes) <= 1.5 * sizes[0], sizes


def test_progress_is_printed_every_few_seconds_and_at_the_end() -> None:
    now = [0.0]
    out = io.StringIO()
    show = progress_printer(out, clock=lambda: now[0])

    def progress(done: int, total: int) -> ProgressLine:
        line = ProgressLine(f"{done}/{total}  sent {done}")
        line.last = done == total
        return line
    for done in range(1, 1001):
        now[0] = done * 0.01  # 100 a second, for 10 seconds
        show(progress(done, 1000))
        if done == 500:
            show("outside sending hours: waiting 0:10:00 …")  # notes are always printed
    lines = out.getvalue().splitlines()
    assert lines[0] == "1/1000  sent 1" and lines[-1] == "1000/1000  sent 1000"
    assert "outside sending hours: waiting 0:10:00 …" in lines
    assert 6 <= len(lines) <= 8, lines  # every 2 seconds, the note, and the last


def test_a_broadcast_on_redis_writes_its_records_one_by_one_and_sends_each_once(fake_twilio: FakeTwilio,
                                                                                 redis_url: str) -> None:
    """A store without batch writes (Redis) gets each record on its own, through the same path."""
    recipients = [Recipient(i + 2, f"+1555125{i:04d}", {"name": f"P{i}"}) for i in range(30)]

    async def scenario() -> None:
        store = open_store(redis_url)
        records = BatchedRecords(store)
        outbox = Outbox(records, fake_twilio.outbound_settings())
        try:
            report = await Broadcast("redis", "reminder", store, Engine(load_flows(SHIPPED_FLOWS), demo_fetcher()),
                                     outbox, rate=None, hours=QuietHours(any_time=True), records=records,
                                     in_flight=8).run(recipients)
            assert (report.sent, report.in_doubt) == (30, [])
            assert {m.state for m in await store.broadcast_messages("redis")} == {OutboundState.ACCEPTED}
            assert records.written == 60  # sending, then accepted
        finally:
            await outbox.close()
            await store.close()
    asyncio.run(scenario())
    assert sorted(attempt.to for attempt in fake_twilio.created) == [r.phone for r in recipients]
