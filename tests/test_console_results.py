"""The Results page (bot/console/results.py), over HTTP against the real app on a SQLite store:
conversations texted through the real webhook and the console's simulator, then the funnel's counts
and the answers' table (numbers masked, hostile saved values only ever text), the period filter,
paging, the CSV export (the CLI's CSV, streamed, as an attachment), and the login it needs."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bot.console import results
from bot.privacy import mask
from tests.conftest import write_flows
from tests.console_pages import console_bot, post_json, text
from tests.test_console_flows import visible

ROOT = Path(__file__).resolve().parent.parent
PAGE = "/console/results"
EXPORT = "/console/results/export.csv"
SURVEY = """\
flow: survey
triggers: [SURVEY]
start: ask_name
expires_after: 1h
states:
  ask_name:
    say: "What's your name?"
    replies:
      - pattern: '.+'
        save: name
        go: ask_zip
  ask_zip:
    say: "Thanks. Your ZIP code?"
    replies:
      - pattern: '^\\d{5}$'
        save: zip
        go: done
    otherwise: "Five digits, please."
  done:
    say: "All done, thank you!"
"""
OTHER = """\
flow: other
triggers: [OTHER]
start: hello
states:
  hello:
    say: "Hello."
"""
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
SIM = "+19995550177"
HOSTILE = '<script>alert("x")</script> & "quoted"'
FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def console(tmp_path: Path) -> Iterator[TestClient]:
    flows = write_flows(tmp_path / "flows", {"survey.yaml": SURVEY, "other.yaml": OTHER})
    with console_bot(tmp_path, flows) as client:
        yield client


def survey(client: TestClient) -> None:
    """Alice finishes; Bob stops at the ZIP question with a hostile name; Carol opts out; a simulated
    number (through the console's simulator, the same inbox) saves a formula and stays at the ZIP."""
    for body in ("SURVEY", "Alice", "94105"):
        text(client, ALICE, body)
    for body in ("SURVEY", HOSTILE):
        text(client, BOB, body)
    for body in ("SURVEY", "STOP"):
        text(client, CAROL, body)
    client.get("/console/simulator")  # the CSRF cookie
    for body in ("SURVEY", FORMULA):
        answer = post_json(client, "/console/simulator/send", {"from": SIM, "body": body, "media": []})
        assert answer.status_code == 200, answer.text


def bars(page: str, list_id: str) -> dict[str, tuple[int, str]]:
    """A funnel list's bars: label → (count, share)."""
    found = re.search(rf'<ol class="funnel" id="{list_id}">(.*?)</ol>', page, re.DOTALL)
    assert found is not None, page
    shown = {}
    for item in re.findall(r'<li class="bar[^"]*">(.*?)</li>', found.group(1), re.DOTALL):
        label = visible(re.search(r'<span class="label">(.*?)</span>', item, re.DOTALL).group(1)).strip()  # type: ignore[union-attr]
        count = int(re.search(r'<span class="count">(\d+)</span>', item).group(1))  # type: ignore[union-attr]
        share = re.search(r'<span class="share muted">([^<]*)</span>', item).group(1)  # type: ignore[union-attr]
        shown[label] = (count, share)
    return shown


def table_rows(page: str) -> list[list[str]]:
    body = re.search(r'<table class="answers" id="answers">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    assert body is not None, page
    return [re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.DOTALL)]


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_the_funnel_counts_and_the_answers_table(console: TestClient) -> None:
    survey(console)
    answer = console.get(PAGE, params={"flow": "survey"})
    assert answer.status_code == 200, answer.text
    page = answer.text
    assert 'href="/console/results" aria-current="page"' in page
    assert re.search(r"Results</a>\s*<a href=\"/console/operations\"", page)  # before Operations
    assert "<script>" not in page.replace("&lt;script&gt;", "")
    assert bars(page, "funnel") == {"started": (4, "100%"), "ask_name": (4, "100%"), "ask_zip": (3, "75%"),
                                    "done": (1, "25%")}
    ended = bars(page, "funnel-ended")
    assert ended["finished"] == (1, "25%") and ended["opted out"] == (1, "25%") and ended["expired"] == (0, "0%")
    assert ended["in progress"] == (2, "50%")
    assert 'style="width: 75.0%"' in page  # ask_zip's bar

    rows = table_rows(page)
    assert [row[0] for row in rows] == [mask(n) for n in (ALICE, BOB, CAROL, SIM)]
    for number in (ALICE, BOB, CAROL, SIM):
        assert number not in page and number[2:] not in page
    assert re.search(r"<th><code>name</code></th>\s*<th><code>zip</code></th>", page)
    alice, bob, carol, sim = rows
    assert alice[3:] == ["finished", "done", "Alice", "94105"]
    assert carol[3:5] == ["opted_out", "ask_name"]
    # What people texted is only ever text: escaped in the page, never markup
    assert bob[3:5] == ["in_progress", "ask_zip"]
    assert bob[5] == "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quoted&#34;"
    assert HOSTILE not in page
    assert sim[5] == "=HYPERLINK(&#34;http://evil.example&#34;,&#34;click&#34;)"
    link = re.search(r'<a class="button" id="export-csv" download\s+href="([^"]+)"', page)
    assert link is not None and link.group(1).startswith("/console/results/export.csv?flow=survey&amp;since=")


def test_the_period_filter_defaults_to_the_last_30_days(console: TestClient) -> None:
    survey(console)
    day = datetime.now(UTC).date()
    default = console.get(PAGE, params={"flow": "survey"}).text
    assert f'name="since" value="{day - timedelta(days=29)}"' in default
    assert f'name="until" value="{day}"' in default
    assert bars(default, "funnel")["started"][0] == 4
    tomorrow = (day + timedelta(days=1)).isoformat()
    later = console.get(PAGE, params={"flow": "survey", "since": tomorrow, "until": tomorrow}).text
    assert bars(later, "funnel")["started"] == (0, "0%")
    assert "No run of this flow began in the period." in later
    earlier = console.get(PAGE, params={"flow": "survey", "until": (day - timedelta(days=1)).isoformat()}).text
    assert bars(earlier, "funnel")["started"][0] == 0
    only_today = console.get(PAGE, params={"flow": "survey", "since": today(), "until": today()}).text
    assert bars(only_today, "funnel")["started"][0] == 4 and len(table_rows(only_today)) == 4
    other = console.get(PAGE, params={"flow": "other"}).text
    assert bars(other, "funnel")["started"][0] == 0 and '<option value="other" selected>' in other


def test_a_period_or_flow_the_page_cannot_show_is_said_plainly(console: TestClient) -> None:
    backwards = console.get(PAGE, params={"flow": "survey", "since": "2026-05-02", "until": "2026-05-01"})
    assert backwards.status_code == 400
    assert "the period begins (2026-05-02) after it ends (2026-05-01)" in backwards.text
    bad_day = console.get(PAGE, params={"flow": "survey", "since": "<b>soon</b>"})
    assert bad_day.status_code == 400 and "is not a day" in bad_day.text and "<b>soon" not in bad_day.text
    bad_name = console.get(PAGE, params={"flow": "../etc"})
    assert bad_name.status_code == 400 and "letters, digits and _" in visible(bad_name.text)
    assert console.get(PAGE, params={"flow": "survey", "cursor": "nonsense"}).status_code == 400
    assert console.get(EXPORT, params={"flow": "survey", "since": "yesterday"}).status_code == 400
    gone = console.get(PAGE, params={"flow": "retired"})  # no longer loaded: what the store kept
    assert gone.status_code == 200 and "No flow named" in visible(gone.text)


def test_the_answers_are_paged(console: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    survey(console)
    monkeypatch.setattr(results, "PAGE_SIZE", 3)
    first = console.get(PAGE, params={"flow": "survey"}).text
    assert [row[0] for row in table_rows(first)] == [mask(n) for n in (ALICE, BOB, CAROL)]
    following = re.search(r'<a id="answers-next" href="([^"]+)"', first)
    assert following is not None
    url = following.group(1).replace("&amp;", "&")
    assert "cursor=" in url and not re.search(r"\d{7}", url.split("cursor=")[1].split("~")[1])
    second = console.get(url).text
    assert [row[0] for row in table_rows(second)] == [mask(SIM)]
    assert 'id="answers-next"' not in second and 'id="answers-first"' in second


def test_the_csv_export_is_the_clis_csv_as_an_attachment(console: TestClient, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"  # console_bot's store
    survey(console)
    answer = console.get(EXPORT, params={"flow": "survey", "since": today(), "until": today()})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == f'attachment; filename="results-survey-{today()}.csv"'
    assert answer.headers["cache-control"] == "no-store"
    assert "content-security-policy" in answer.headers  # the console's guard answered
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["number", "started_at", "ended_at", "outcome", "state", "name", "zip"]
    assert [row[0] for row in rows[1:]] == ["'" + mask(n) for n in (ALICE, BOB, CAROL, SIM)]  # '+…' is formula-safe
    assert rows[1][3:] == ["finished", "done", "Alice", "94105"]
    assert rows[2][5] == HOSTILE  # a value, as texted (CSV is not HTML)
    assert rows[4][5] == "'" + FORMULA  # never run by a spreadsheet
    for number in (ALICE, BOB, CAROL, SIM):
        assert number not in answer.text
    # Byte for byte what `python -m bot results` writes for the same store, flow and period
    done = subprocess.run([sys.executable, "-m", "bot", "results", "survey", "--store", store_url, "--flows",
                           str(tmp_path / "flows"), "--since", today(), "--until", today()],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ADMIN_PASSWORD": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace("\r\n", "\n") == answer.text.replace("\r\n", "\n")
    empty = console.get(EXPORT, params={"flow": "survey", "until": "2020-01-01"})
    assert list(csv.reader(io.StringIO(empty.text))) == [["number", "started_at", "ended_at", "outcome", "state"]]


def test_the_page_and_the_export_need_a_login(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"survey.yaml": SURVEY})
    with console_bot(tmp_path, flows) as client:
        text(client, ALICE, "SURVEY")
        client.cookies.clear()
        for path in (PAGE, EXPORT + "?flow=survey"):
            answer: Any = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
            assert "number" not in answer.text
