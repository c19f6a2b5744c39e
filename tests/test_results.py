"""Results: conversations through the real inbox (the simulator), then exact counts, rows, funnel and CSV."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import cast

import pytest

from bot.flows.loader import FlowSet, load_flows
from bot.privacy import mask
from bot.results.funnel import funnel, main_path
from bot.results.table import csv_rows
from bot.results.tracking import saved_variables
from bot.simulator import SimulatedClock, Simulation, simulation
from bot.spreadsheet import csv_cell
from bot.store import CommitResult, Store, open_store
from bot.store.base import FlowResults, RunRow
from bot.types import Conversation, Inbound, RunOutcome, RunUpdate, Turn
from tests.conftest import ROOT, write_flows

FINISHED, EXPIRED, OPTED_OUT, LEFT, RESET = (RunOutcome.FINISHED, RunOutcome.EXPIRED, RunOutcome.OPTED_OUT,
                                             RunOutcome.LEFT, RunOutcome.RESET)
T0 = 1_700_010_000.0  # 2023-11-15T01:00:00Z
MINUTE, HOUR = 60.0, 3600.0

SURVEY = """\
flow: survey
triggers: [SURVEY]
start: ask
expires_after: 1h
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: score
        go: comment
    otherwise: "1 to 5, please."
    timeout: {after: 10m, go: nudge}
  nudge:
    say: "Still there? Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: score
        go: comment
    otherwise: "1 to 5, please."
  comment:
    say: "Any comment?"
    replies:
      - pattern: '.+'
        save: comment
        go: thanks
    otherwise: "A word or two, please."
  thanks: {say: "Thanks!"}
"""
SIGNUP = """\
flow: signup
triggers: [JOIN]
start: name
states:
  name:
    say: "Your name?"
    replies:
      - pattern: '.+'
        save: name
        go: where
    otherwise: "Your name, please."
  where:
    enter: {flow: address, then: done}
  done: {say: "Welcome, {{ name }} of {{ zip | default: 'nowhere' }}!"}
"""
ADDRESS = """\
flow: address
triggers: [ADDRESS]
start: zip
states:
  zip:
    say: "Your ZIP code?"
    replies:
      - pattern: '^\\d{5}$'
        save: zip
        go: end
    otherwise: "5 digits, please."
"""
FORMULA = '=HYPERLINK("http://evil.example","click")'


def number(n: int) -> str:
    return f"+1555000{n:04d}"


@pytest.fixture
def flows(tmp_path: Path) -> FlowSet:
    return load_flows(write_flows(tmp_path / "flows", {"survey.yaml": SURVEY, "signup.yaml": SIGNUP,
                                                       "address.yaml": ADDRESS}))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
async def sim(flows: FlowSet, store_url: str) -> AsyncIterator[Simulation]:
    async with simulation(flows, store_url, clock=SimulatedClock(T0)) as simulated:
        yield simulated


def store_of(sim: Simulation) -> Store:
    return cast(Store, sim.inbox.store)  # the simulator's inbox holds a whole store


async def texts(sim: Simulation, sender: str, *bodies: str) -> None:
    for body in bodies:
        await sim.text(body, sender)


async def scenario(sim: Simulation) -> None:
    """Eight runs of the survey, one each way, and a signup that enters the address flow."""
    await texts(sim, number(1), "SURVEY", "4", FORMULA)  # finished
    await texts(sim, number(2), "SURVEY")  # nudged at 10 min, then silent: lapses unseen at 1 h
    await texts(sim, number(3), "SURVEY", "9", "STOP")  # opted out
    await texts(sim, number(4), "SURVEY", "5")  # silent at the comment; writes at 2 h: expired, seen
    await texts(sim, number(5), "SURVEY", "JOIN", "Ada", "12345")  # left for signup, which finishes
    await texts(sim, number(6), "SURVEY", "SURVEY")  # left for itself; the second is nudged, answers…
    await sim.wait(11 * MINUTE)
    await texts(sim, number(6), "3")  # …then stays silent at the comment: lapses unseen at 1h11
    await sim.wait(2 * HOUR)
    await texts(sim, number(4), "hello")
    await texts(sim, number(7), "SURVEY")  # in progress


async def test_counts_and_runs_are_exact_on_every_store(sim: Simulation) -> None:
    await scenario(sim)
    store, now = store_of(sim), sim.clock.now
    assert await store.flow_results("survey", now=now) == FlowResults(
        "survey", 8, {"ask": 8, "nudge": 2, "comment": 3, "thanks": 1},
        {FINISHED: 1, EXPIRED: 3, OPTED_OUT: 1, LEFT: 2})
    assert (await store.flow_results("survey", now=now)).in_progress == 1
    assert await store.flow_results("signup", now=now) == FlowResults(
        "signup", 1, {"name": 1, "where": 1, "done": 1}, {FINISHED: 1})
    assert await store.flow_results("address", now=now) == FlowResults("address", 1, {"zip": 1}, {FINISHED: 1})
    rows = [(row.sender, row.started_at, row.state, row.vars, row.outcome, row.ended_at)
            async for row in store.runs("survey", now=now)]
    assert rows == [
        (number(1), T0, "thanks", {"score": 4, "comment": FORMULA}, FINISHED, T0),
        (number(2), T0, "nudge", {}, EXPIRED, T0 + HOUR),
        (number(3), T0, "ask", {}, OPTED_OUT, T0),
        (number(4), T0, "comment", {"score": 5}, EXPIRED, T0 + HOUR),
        (number(5), T0, "ask", {}, LEFT, T0),
        (number(6), T0, "ask", {}, LEFT, T0),
        (number(6), T0, "comment", {"score": 3}, EXPIRED, T0 + 11 * MINUTE + HOUR),
        (number(7), T0 + 2 * HOUR + 11 * MINUTE, "ask", {}, None, None)]
    [signup] = [row async for row in store.runs("signup", now=now)]
    assert (signup.state, signup.vars, signup.outcome) == ("done", {"name": "Ada", "zip": "12345"}, FINISHED)


async def test_the_sweep_closes_unseen_expiries_without_changing_the_counts(sim: Simulation) -> None:
    await scenario(sim)
    store, now = store_of(sim), sim.clock.now
    before = await store.flow_results("survey", now=now)
    await store.sweep(now)
    assert await store.flow_results("survey", now=now) == before
    # Whatever the clock says later, what ended stays ended (number 7's run lapses at 3h11).
    later = await store.flow_results("survey", now=now + 10 * HOUR)
    assert (later.count(EXPIRED), later.in_progress) == (4, 0)


async def test_a_run_the_sweep_closed_is_not_counted_again_when_its_person_writes(sim: Simulation) -> None:
    await texts(sim, number(2), "SURVEY")  # nudged at 10 min, then silent: lapses at 1 h
    await sim.wait(2 * HOUR)
    store = store_of(sim)
    await store.sweep(sim.clock.now)
    closed = await store.flow_results("survey", now=sim.clock.now)
    assert (closed.started, closed.ended, closed.in_progress) == (1, {EXPIRED: 1}, 0)
    await texts(sim, number(2), "hello", "SURVEY", "3")  # the turn ends it again: counted once
    again = await store.flow_results("survey", now=sim.clock.now)
    assert (again.started, again.ended, again.in_progress) == (2, {EXPIRED: 1}, 1)
    assert again.reached == {"ask": 2, "nudge": 1, "comment": 1}
    rows = [(row.state, row.outcome) async for row in store.runs("survey", now=sim.clock.now)]
    assert rows == [("nudge", EXPIRED), ("comment", None)]


async def test_an_operator_reset_ends_the_run_reset(sim: Simulation) -> None:
    await texts(sim, number(1), "SURVEY", "4")
    await sim.inbox.reset(number(1))
    store = store_of(sim)
    assert (await store.flow_results("survey", now=sim.clock.now)).ended == {RESET: 1}
    [row] = [row async for row in store.runs("survey", now=sim.clock.now)]
    assert (row.state, row.vars, row.outcome) == ("comment", {"score": 4}, RESET)


async def test_a_purge_forgets_the_numbers_runs_but_not_the_counts(sim: Simulation) -> None:
    await texts(sim, number(1), "SURVEY", "4", "fine")
    await texts(sim, number(2), "SURVEY")
    store = store_of(sim)
    await store.purge(number(1))
    await store.purge(number(2))
    assert [row async for row in store.runs("survey", now=sim.clock.now)] == []
    assert await store.flow_results("survey", now=sim.clock.now) == FlowResults(
        "survey", 2, {"ask": 2, "comment": 1, "thanks": 1}, {FINISHED: 1, RESET: 1})


async def test_the_period_is_the_utc_days_runs_began_on(sim: Simulation) -> None:
    await texts(sim, number(1), "SURVEY")  # 2023-11-15
    await sim.wait(24 * HOUR)
    await texts(sim, number(2), "SURVEY", "2", "ok")  # 2023-11-16
    store, now = store_of(sim), sim.clock.now
    day_one, day_two = date(2023, 11, 15), date(2023, 11, 16)
    assert (await store.flow_results("survey", day_one, day_one, now=now)).ended == {EXPIRED: 1}
    assert (await store.flow_results("survey", since=day_two, now=now)).ended == {FINISHED: 1}
    assert (await store.flow_results("survey", until=day_two, now=now)).started == 2
    assert [row.sender async for row in store.runs("survey", since=day_two, now=now)] == [number(2)]


async def test_a_conversation_from_before_results_is_not_counted_until_it_starts_again(
        flows: FlowSet, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url)
    old = Conversation(number(1), "survey", "ask", updated_at=T0)  # saved by a version without results
    turn = Turn(Inbound("SMold", number(1)), old, 0, (), None, T0)
    assert await store.commit(turn) is CommitResult.COMMITTED
    await store.close()
    async with simulation(flows, url, clock=SimulatedClock(T0 + MINUTE)) as sim:
        await texts(sim, number(1), "4", "fine")  # finishes the old run: not counted
        assert await store_of(sim).flow_results("survey", now=sim.clock.now) == FlowResults("survey")
        await texts(sim, number(1), "SURVEY")
        assert (await store_of(sim).flow_results("survey", now=sim.clock.now)).started == 1


def test_the_funnel_follows_where_most_runs_went(flows: FlowSet) -> None:
    survey = flows.flows["survey"]
    assert main_path(survey, {}) == ["ask", "comment", "thanks"]  # no data: the first reply before the timeout
    assert main_path(survey, {"ask": 10, "nudge": 7, "comment": 2}) == ["ask", "nudge", "comment", "thanks"]
    results = FlowResults("survey", 8, {"ask": 8, "nudge": 2, "comment": 3, "thanks": 1, "gone": 1},
                          {FINISHED: 1, EXPIRED: 3})
    shown = funnel(results, survey)
    assert [(step.state, step.count, step.main) for step in shown.steps] == [
        ("ask", 8, True), ("comment", 3, True), ("thanks", 1, True), ("nudge", 2, False), ("gone", 1, False)]
    assert shown.steps[1].share == 3 / 8
    assert dict(shown.ended) == {FINISHED: 1, EXPIRED: 3, OPTED_OUT: 0, LEFT: 0, RESET: 0}
    assert shown.in_progress == 4
    unloaded = funnel(results, None)
    assert [step.state for step in unloaded.steps] == ["ask", "comment", "nudge", "gone", "thanks"]


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("+14155550123", "+14155550123"),
    ("whatsapp:+14155550123", "whatsapp:+14155550123"), ("+1 415", "'+1 415"), ("a=1", "a=1"), ("", "")])
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(value: str, cell: str) -> None:
    assert csv_cell(value) == cell


def test_saved_variables_leave_out_the_engines_context() -> None:
    variables = {"trigger": {"message": {"Body": "SURVEY", "From": "+15550001234"}},
                 "flow": {"channel": {"address": "+15550001111"}, "variables": {}}, "score": 4}
    assert saved_variables(variables) == {"score": 4}
    studio = {"flow": {"channel": {}, "variables": {"age": "30"}}}
    assert saved_variables(studio) == {"flow": {"variables": {"age": "30"}}}


async def test_csv_cells_never_become_formulas(flows: FlowSet) -> None:
    async with simulation(flows, clock=SimulatedClock(T0)) as sim:
        for n, comment in enumerate((FORMULA, "+1 (555) 0100", "-2", "@SUM(A1)", "plain"), start=1):
            await texts(sim, number(n), "SURVEY", "4", comment)
        lines = [row async for row in csv_rows(store_of(sim), "survey", now=sim.clock.now)]
    assert lines[0] == ["number", "started_at", "ended_at", "outcome", "state", "score", "comment"]
    assert [line[-1] for line in lines[1:]] == [
        "'" + FORMULA, "'+1 (555) 0100", "'-2", "'@SUM(A1)", "plain"]
    assert lines[1][:6] == ["'" + mask(number(1)), "2023-11-15T01:00:00Z", "2023-11-15T01:00:00Z", "finished",
                            "thanks", "4"]


# -- python -m bot results, as a user runs it ---------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "results", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def filled(flows: FlowSet, tmp_path: Path) -> tuple[str, Path]:
    """A SQLite store after the scenario, and the flows folder."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"

    async def fill() -> None:
        async with simulation(flows, url, clock=SimulatedClock(T0)) as sim:
            await scenario(sim)

    asyncio.run(fill())
    return url, tmp_path / "flows"


def test_the_cli_writes_the_csv_and_the_funnel(filled: tuple[str, Path]) -> None:
    url, folder = filled
    done = cli("survey", "--store", url, "--flows", str(folder))
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(io.StringIO(done.stdout)))
    assert table[0] == ["number", "started_at", "ended_at", "outcome", "state", "score", "comment"]
    assert [(row[0], row[3]) for row in table[1:]] == [
        ("'" + mask(number(n)), outcome) for n, outcome in (
            (1, "finished"), (2, "expired"), (3, "opted_out"), (4, "expired"), (5, "left"), (6, "left"),
            (6, "expired"), (7, "expired"))]  # the CLI's now is long after the simulated day: 7 lapsed too
    assert table[1][6] == "'" + FORMULA
    assert "+1555" not in done.stdout.replace("'+1555…", "")  # numbers masked
    lines = done.stderr.splitlines()
    assert lines[0] == "survey: runs that began on any day (UTC days)"
    counts = [re.split(r"\s{2,}", line.strip())[:2] for line in lines[1:]]
    assert counts == [["started", "8"], ["ask", "8"], ["comment", "3"], ["thanks", "1"], ["nudge", "2"],
                      ["finished", "1"], ["expired", "4"], ["opted out", "1"], ["left for another flow", "2"],
                      ["reset", "0"], ["in progress", "0"]]
    assert lines[2].endswith("100%") and lines[5].endswith("25%  (off the main path)")


def test_the_cli_writes_a_file_filters_by_day_and_can_write_full_numbers(filled: tuple[str, Path],
                                                                          tmp_path: Path) -> None:
    url, folder = filled
    out = tmp_path / "survey.csv"
    done = cli("survey", "--store", url, "--flows", str(folder), "--since", "2023-11-15", "--until", "2023-11-15",
               "-o", str(out), "--full-numbers")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "survey: runs that began from 2023-11-15 to 2023-11-15 (UTC days)"
    assert done.stdout.splitlines()[-1] == f"wrote 8 run(s) to {out}"
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert rows[1][0] == number(1)  # a full E.164 number is left as it is
    empty = cli("survey", "--store", url, "--flows", str(folder), "--since", "2023-11-16")
    assert empty.stdout.splitlines() == ["number,started_at,ended_at,outcome,state"]


def test_the_cli_stops_quietly_when_the_reader_does(flows: FlowSet, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"

    async def fill() -> None:  # enough rows to overflow the pipe once `head` has gone
        store = open_store(url)
        for n in range(3000):
            update = RunUpdate(f"SM{n}/0", "survey", T0 + n, "ask", {"comment": "x" * 40}, T0 + n + HOUR,
                               began=True, reached=("ask",))
            turn = Turn(Inbound(f"SM{n}", number(n)), Conversation(number(n), updated_at=T0), 0, (), None, T0)
            assert await store.commit(dataclasses.replace(turn, runs=(update,))) is CommitResult.COMMITTED
        await store.close()

    asyncio.run(fill())
    done = subprocess.run(f"{sys.executable} -m bot results survey --store {url} --flows {tmp_path / 'flows'} "
                          "| head -n 2", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_the_cli_says_what_is_wrong(filled: tuple[str, Path]) -> None:
    url, folder = filled
    bad = cli("survey", "--store", url, "--flows", str(folder), "--since", "15/11/2023")
    assert bad.returncode == 2
    assert "--since '15/11/2023' is not a day: write YYYY-MM-DD" in bad.stderr
    backwards = cli("survey", "--store", url, "--flows", str(folder), "--since", "2023-11-16", "--until", "2023-11-15")
    assert "--since 2023-11-16 is after --until 2023-11-15" in backwards.stderr
    unknown = cli("surveyy", "--store", url, "--flows", str(folder))
    assert unknown.returncode == 0
    assert "no flow named 'surveyy' is loaded now (flows: address, signup, survey)" in unknown.stderr
    assert unknown.stdout.splitlines() == ["number,started_at,ended_at,outcome,state"]


def test_rows_of_a_run_read_back_as_the_store_wrote_them() -> None:
    row = RunRow("SM1/0", "survey", number(1), T0, "ask", {}, T0 + HOUR)
    assert row.as_of(T0 + HOUR) is row
    assert row.as_of(T0 + HOUR + 1) == dataclasses.replace(row, outcome=EXPIRED, ended_at=T0 + HOUR)
