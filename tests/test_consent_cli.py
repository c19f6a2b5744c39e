"""The consent ledger from the outside: ``python -m bot consent`` (history, CSV export, operators'
entries), and the rows that real webhooks and Twilio's 21610 leave in it."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bot import cli
from bot.app import create_app, retention_of
from bot.cli.common import CommandError
from bot.cli.consent import CSV_HEADER, csv_cell, iso, parse_since
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.settings import Settings, SettingsError, load_settings
from bot.store import Store, open_store
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Conversation, Inbound, Turn
from tests.conftest import SHIPPED_FLOWS, SignedClient, demo_fetcher
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, new_message_sid, signed_request
from tests.test_outbound import outbound_env, output_of, run_bot

OPTED_OUT, OPTED_IN = ConsentStatus.OPTED_OUT, ConsentStatus.OPTED_IN
USER = "+14155550123"
WRITTEN_NATIONALLY = "(415) 555-0123"


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite file for the command, run in an empty folder with none of the shell's settings."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("STORE_URL", "DEFAULT_REGION", "CONSENT_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    return f"sqlite:///{tmp_path / 'bot.db'}"


def with_store(url: str, action: Any) -> Any:
    async def run() -> Any:
        store = open_store(url)
        try:
            return await action(store)
        finally:
            await store.close()
    return asyncio.run(run())


def record(url: str, *changes: ConsentChange) -> None:
    async def write(store: Store) -> None:
        for change in changes:
            assert await store.set_consent(change)
    with_store(url, write)


def history(url: str, number: str) -> list[ConsentChange]:
    return with_store(url, lambda store: store.consent_history(number))  # type: ignore[no-any-return]


def consent(*args: str) -> int:
    return cli.main(["consent", *args])


LEDGER = [
    ConsentChange(USER, OPTED_OUT, ConsentMethod.KEYWORD, "Stop", "SM" + "1" * 32, 1_700_000_000.25),
    ConsentChange("+14155550199", OPTED_OUT, ConsentMethod.PHRASE, "=HYPERLINK(\"http://x\")\nplease stop",
                  "SM" + "2" * 32, 1_700_086_400.0),
    ConsentChange(USER, OPTED_IN, ConsentMethod.TWILIO_OPT_OUT_TYPE, "START", "SM" + "3" * 32, 1_700_172_800.0),
]


# -- consent NUMBER ----------------------------------------------------------------------------------

def test_history_of_a_number_written_nationally(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    record(store_url, *LEDGER)
    assert consent(WRITTEN_NATIONALLY, "--store", store_url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{USER}: not opted out"
    assert lines[1].split() == ["at", "(UTC)", "status", "how", "message_sid", "detail"]
    assert lines[2].split() == ["2023-11-14T22:13:20.250Z", "opted_out", "keyword", "SM" + "1" * 32, "Stop"]
    assert lines[3].split() == ["2023-11-16T22:13:20.000Z", "opted_in", "twilio_opt_out_type", "SM" + "3" * 32,
                                "START"]
    assert len(lines) == 4


def test_history_escapes_what_was_texted(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A texted newline or terminal escape must not forge a line or recolour the operator's terminal."""
    record(store_url, ConsentChange(USER, OPTED_OUT, ConsentMethod.PHRASE, "stop\n2099-01-01 opted_in\x1b[2J",
                                    "SMx", 1_000.0))
    assert consent(USER, "--store", store_url) == 0
    out = capsys.readouterr().out
    assert "stop\\n2099-01-01 opted_in\\x1b[2J" in out and "\x1b" not in out
    assert len(out.splitlines()) == 3


def test_history_of_a_number_without_changes(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert consent(USER, "--store", store_url) == 0
    assert capsys.readouterr().out.splitlines() == [f"{USER}: not opted out", "no consent changes recorded"]


def test_a_number_that_cannot_be_one_is_refused(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert consent("555-01", "--store", store_url) == 2
    assert "'555-01' is not a phone number: too short" in capsys.readouterr().err


# -- consent export --------------------------------------------------------------------------------------

def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_export_writes_csv_with_a_header_and_full_numbers(store_url: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    record(store_url, *LEDGER)
    assert consent("export", "--store", store_url) == 0
    rows = rows_of(capsys.readouterr().out)
    assert rows[0] == list(CSV_HEADER) == ["at", "number", "status", "how", "detail", "message_sid"]
    assert rows[1:] == [
        ["2023-11-14T22:13:20.250Z", USER, "opted_out", "keyword", "Stop", "SM" + "1" * 32],
        ["2023-11-15T22:13:20.000Z", "+14155550199", "opted_out", "phrase",
         "'=HYPERLINK(\"http://x\")\nplease stop", "SM" + "2" * 32],  # a formula defused, the newline kept
        ["2023-11-16T22:13:20.000Z", USER, "opted_in", "twilio_opt_out_type", "START", "SM" + "3" * 32],
    ]


def test_export_since_a_day_or_a_time_to_a_file(store_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    record(store_url, *LEDGER)
    assert consent("export", "--since", "2023-11-15", "--store", store_url) == 0
    assert [row[5] for row in rows_of(capsys.readouterr().out)[1:]] == ["SM" + "2" * 32, "SM" + "3" * 32]
    assert consent("export", "--since", "2023-11-16T23:13:20+01:00", "--store", store_url) == 0  # = 22:13:20Z
    assert [row[5] for row in rows_of(capsys.readouterr().out)[1:]] == ["SM" + "3" * 32]

    target = tmp_path / "evidence" / "consent.csv"
    target.parent.mkdir()
    assert consent("export", "--since", "2023-11-14T22:13:21Z", "-o", str(target), "--store", store_url) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote 2 consent change(s) to {target}" in captured.err
    with target.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == list(CSV_HEADER) and [row[1] for row in rows[1:]] == ["+14155550199", USER]


@pytest.mark.parametrize("since", ["yesterday", "2023-13-01", "14/11/2023", ""])
def test_export_refuses_a_since_that_is_not_a_date(store_url: str, capsys: pytest.CaptureFixture[str],
                                                  since: str) -> None:
    assert consent("export", "--since", since, "--store", store_url) == 2
    assert f"--since {since!r} is not a date: write YYYY-MM-DD or an ISO 8601 time" in capsys.readouterr().err


def test_since_and_times_are_utc() -> None:
    assert parse_since("1970-01-02") == 86_400.0
    assert parse_since("1970-01-02T00:00:00") == 86_400.0
    assert parse_since("1970-01-02T01:00:00+01:00") == 86_400.0
    assert parse_since("1970-01-02T00:00:00Z") == 86_400.0
    assert parse_since(None) is None
    assert iso(86_400.5) == "1970-01-02T00:00:00.500Z"
    with pytest.raises(CommandError):
        parse_since("soon")


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("STOP", "STOP"), ("", ""), ("+14155550123", "+14155550123"),
    ("whatsapp:+14155550123", "whatsapp:+14155550123"), ("+1415555012=3", "'+1415555012=3")])
def test_csv_cells_a_spreadsheet_would_run_are_defused(value: str, cell: str) -> None:
    assert csv_cell(value) == cell


def test_options_of_another_form_are_refused(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert consent("export", USER, "--store", store_url) == 2
    assert f"`consent export` does not take the argument '{USER}'" in capsys.readouterr().err
    assert consent(USER, "--since", "2024-01-01", "--store", store_url) == 2
    assert "`consent NUMBER` does not take --since" in capsys.readouterr().err
    assert consent("opt-out", "--store", store_url) == 2
    assert "consent opt-out needs the NUMBER" in capsys.readouterr().err
    assert consent("opt-in", USER, "-o", "x.csv", "--store", store_url) == 2
    assert "`consent opt-in` does not take -o" in capsys.readouterr().err


# -- consent opt-out / opt-in ----------------------------------------------------------------------------

def test_an_operator_records_a_revocation_and_then_nothing_is_sent(fake_twilio: FakeTwilio, store_url: str,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert consent("opt-out", WRITTEN_NATIONALLY, "--note", "asked by email", "--store", store_url) == 0
    assert capsys.readouterr().out.startswith(f"recorded: {USER} opted_out at ")
    [change] = history(store_url, USER)
    assert (change.status, change.how, change.message_sid) == (OPTED_OUT, ConsentMethod.OPERATOR, "")
    assert change.detail.startswith("python -m bot consent opt-out by ") and change.detail.endswith(": asked by email")
    assert consent("opt-out", USER, "--store", store_url) == 0
    assert capsys.readouterr().out == f"{USER} is already opted out: nothing recorded\n"

    result = run_bot("send", "--to", WRITTEN_NATIONALLY, "Anything new?", cwd=tmp_path,
                     env=outbound_env(fake_twilio, store_url))
    assert result.returncode == 1 and "opted out" in result.stderr, output_of(result)
    assert fake_twilio.attempts == []

    assert consent("opt-in", USER, "--note", "called us", "--store", store_url) == 0
    assert [(change.status, change.how) for change in history(store_url, USER)] == [
        (OPTED_OUT, ConsentMethod.OPERATOR), (OPTED_IN, ConsentMethod.OPERATOR)]


def test_purge_keeps_the_ledger(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def stop(store: Store) -> None:
        change = ConsentChange(USER, OPTED_OUT, ConsentMethod.KEYWORD, "STOP", "SM1", 1_000.0)
        await store.commit(Turn(Inbound("SM1", USER, body="STOP"), Conversation(USER), 0, ("bye",), change, 1_000.0))
    with_store(store_url, stop)
    assert cli.main(["purge", USER, "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "opt-out kept; consent ledger kept (1 change(s))" in out and USER not in out  # masked
    assert [change.message_sid for change in history(store_url, USER)] == ["SM1"]


# -- end to end: the rows real webhooks and Twilio's 21610 leave -------------------------------------------

ONCALL = "+15550009999"


@pytest.fixture
def app_settings(tmp_path: Path, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("ONCALL_NUMBER", ONCALL)
    yield Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                   flows_dir=str(SHIPPED_FLOWS), reload_flows=False, twilio_account_sid=ACCOUNT_SID,
                   twilio_from=BOT_NUMBER, twilio_api_base_url=fake_twilio.url)


def app_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, load_flows(SHIPPED_FLOWS), fetcher=demo_fetcher()))


def test_stop_and_start_through_the_webhook_leave_two_rows_with_their_message_sids(app_settings: Settings) -> None:
    sids = [new_message_sid() for _ in range(4)]
    with app_client(app_settings) as client:
        bot = SignedClient(client)
        assert bot.replies("Stop", USER, message_sid=sids[0])
        assert bot.replies("STOP", USER, message_sid=sids[1]) == []  # already opted out: silent, no row
        assert bot.replies("Stop", USER, message_sid=sids[0])  # a Twilio retry: no row either
        assert bot.replies("START", USER, message_sid=sids[2])
        assert bot.replies("START", USER, message_sid=sids[3])  # subscribed already: no row
    ledger = history(app_settings.store_url, USER)
    assert [(change.status, change.how, change.detail, change.message_sid) for change in ledger] == [
        (OPTED_OUT, ConsentMethod.KEYWORD, "Stop", sids[0]), (OPTED_IN, ConsentMethod.KEYWORD, "START", sids[2])]
    assert ledger[0].at <= ledger[1].at


def test_twilio_opt_out_type_is_recorded_as_such(app_settings: Settings) -> None:
    sid = new_message_sid()
    with app_client(app_settings) as client:
        assert SignedClient(client).replies("stop please", USER, message_sid=sid, OptOutType="STOP") == []
    [change] = history(app_settings.store_url, USER)
    assert (change.status, change.how, change.detail, change.message_sid) == (
        OPTED_OUT, ConsentMethod.TWILIO_OPT_OUT_TYPE, "STOP", sid)


def test_a_21610_from_twilio_adds_a_delivery_error_row(app_settings: Settings, fake_twilio: FakeTwilio) -> None:
    """The AGENT flow notifies the on-call number, which Twilio says is unsubscribed (21610); then a
    status callback reports 21610 for another number."""
    fake_twilio.opt_out(ONCALL)
    request_sid = new_message_sid()
    stranger, callback_sid = "+15550102001", "SM" + "c" * 32
    with app_client(app_settings) as client:
        bot = SignedClient(client)
        bot.replies("AGENT", USER)
        bot.replies("My parcel arrived damaged", USER, message_sid=request_sid)
        status = {"MessageSid": callback_sid, "SmsSid": callback_sid, "MessageStatus": "failed",
                  "SmsStatus": "failed", "To": stranger, "From": BOT_NUMBER, "AccountSid": ACCOUNT_SID,
                  "ApiVersion": "2010-04-01", "ErrorCode": "21610"}
        body, headers = signed_request("http://testserver/sms/status", status)
        assert client.post("/sms/status", content=body, headers=headers).status_code == 204
    assert [attempt.error_code for attempt in fake_twilio.attempts] == [21610]
    [refused] = history(app_settings.store_url, ONCALL)
    assert (refused.status, refused.how, refused.message_sid) == (OPTED_OUT, ConsentMethod.DELIVERY_ERROR, "")
    assert refused.detail.startswith("21610: ") and f"notify|{request_sid}|0" in refused.detail
    [reported] = history(app_settings.store_url, stranger)
    assert (reported.status, reported.how, reported.message_sid) == (OPTED_OUT, ConsentMethod.DELIVERY_ERROR,
                                                                     callback_sid)
    assert reported.detail == "21610 in a status callback (failed)"


# -- CONSENT_RETENTION_DAYS --------------------------------------------------------------------------------

def test_the_ledger_is_kept_five_years_by_default_and_never_under_four() -> None:
    assert retention_of(load_settings({})).consent_seconds == 1826 * 24 * 3600
    settings = load_settings({"CONSENT_RETENTION_DAYS": "2555", "RETENTION": "7d"})
    assert (retention_of(settings).consent_seconds, retention_of(settings).seconds) == (2555 * 86400, 7 * 86400)
    with pytest.raises(SettingsError) as refused:
        load_settings({"CONSENT_RETENTION_DAYS": "365"})
    assert str(refused.value) == ("CONSENT_RETENTION_DAYS must be at least 1461 days (got 365): the consent "
                                  "ledger is evidence against claims under the TCPA, whose limitation period "
                                  "is 4 years")
