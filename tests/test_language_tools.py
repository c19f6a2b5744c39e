"""The authoring tools take a language (issue 16): ``chat --language`` and ``/language``, a
conversation test's ``language:``, ``graph --language``, and lint's findings per language.

Each runs the real command in-process (``bot.cli.main``) on a small flows folder, through the real
engine: a language set by a tool is the person's language as a trigger would set it, so a trigger
only one language has (ORDER) still switches it, as on the server.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from bot import cli
from bot.flows.loader import load_flows
from bot.flowtests import run_conversations
from bot.simulator import UnknownLanguage, simulation
from tests.conftest import write_flows

PROGRAM = """\
program:
  name: Test Program
  help: "Test Program: text ORDER. Reply STOP to opt out."
  opt_out: "You are unsubscribed. Reply START to come back."
  opt_in: "Welcome back. Reply STOP to opt out."
  fallback: "Sorry, I didn't get that. Text HELP for help."
  languages:
    es:
      help: "Test Program: envíe PEDIDO. Responda ALTO para darse de baja."
      opt_out: "Se ha dado de baja. Responda COMENZAR para volver."
      opt_in: "Bienvenido de nuevo. Responda ALTO para darse de baja."
      fallback: "Perdón, no entendí. Envíe AYUDA para ver las opciones."
"""

ORDER = """\
flow: order
triggers: [ORDER]
start: ask
states:
  ask:
    say: "Your order number?"
    replies:
      - pattern: '^\\d{6}$'
        save: number
        say: "Order {{ number }} is on its way."
        go: end
      - keywords: [MENU]
        say: "Bye."
        go: end
    otherwise: "Six digits, please."
translations:
  - en: [ORDER]
    es: [PEDIDO]
  - en: "Your order number?"
    es: "¿Su número de pedido?"
  - en: "Order {{ number }} is on its way."
    es: "El pedido {{ number }} va en camino."
  - en: [MENU]
    es: [MENÚ]
  - en: "Bye."
    es: "Adiós."
  - en: "Six digits, please."
    es: "Seis dígitos, por favor."
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    return write_flows(tmp_path / "flows", {"order.yaml": ORDER}, program=PROGRAM)


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def bot_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("bot>", "/language"))]


# -- chat --------------------------------------------------------------------------------------------

def test_chat_language_starts_the_person_in_that_language(flows: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run(["chat", "--flows", str(flows), "--language", "es"], capsys, monkeypatch,
                         "hola\nPEDIDO\nMENU\nORDER\n")
    assert status == 0
    assert bot_lines(out) == [
        "bot> Perdón, no entendí. Envíe AYUDA para ver las opciones.   [1 segment, UCS-2]",
        "bot> ¿Su número de pedido?   [1 segment, UCS-2]",
        "bot> Adiós.   [1 segment, UCS-2]",  # MENU still works: the variant keeps the English words
        "bot> Your order number?   [1 segment, GSM-7]"]  # ORDER is English only: it switches back


def test_slash_language_changes_the_language_in_the_middle(flows: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run(["chat", "--flows", str(flows)], capsys, monkeypatch,
                         "ORDER\n/language es\n12\n/language\n/language de\n123456\n")
    assert status == 0
    assert bot_lines(out) == [
        "bot> Your order number?   [1 segment, GSM-7]",
        "bot> (no reply: from now on you are talked to in Spanish (es))",
        "bot> Seis dígitos, por favor.   [1 segment, UCS-2]",  # the same state, now in Spanish
        "/language CODE: the flows speak en, es",
        "/language: no flow or program text is in 'de'; the flows speak en, es",
        "bot> El pedido 123456 va en camino.   [1 segment, GSM-7]"]


def test_chat_refuses_a_language_nothing_speaks(flows: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    status, _, err = run(["chat", "--flows", str(flows), "--language", "fr"], capsys, monkeypatch, "hi\n")
    assert status == 2
    assert err == "error: --language fr: no flow or program text is in it; the flows speak en, es\n"


# -- the simulator and the pipeline ------------------------------------------------------------------

async def test_setting_the_language_is_a_turn_that_changes_nothing_else(flows: Path) -> None:
    async with simulation(load_flows(flows)) as sim:
        await sim.text("ORDER", "+15551234567")
        await sim.set_language("+15551234567", "es")
        snapshot = await sim.inbox.store.snapshot("+15551234567", "")
        conversation = snapshot.conversation
        assert (conversation.language, conversation.flow, conversation.state) == ("es", "order", "ask")
        assert (await sim.text("nope", "+15551234567")).replies == ("Seis dígitos, por favor.",)
        with pytest.raises(UnknownLanguage, match="the flows speak en, es"):
            await sim.set_language("+15551234567", "fr")
        with pytest.raises(ValueError, match="not a language code"):
            await sim.inbox.set_language("+15551234567", "Spanish")


# -- conversation tests ------------------------------------------------------------------------------

TESTS = """\
tests:
  - name: a Spanish speaker orders
    language: es
    turns:
      - send: hola
        expect: "Perdón, no entendí. Envíe AYUDA para ver las opciones."
      - send: PEDIDO
        expect: "¿Su número de pedido?"
      - send: "123456"
        expect: "El pedido 123456 va en camino."
  - name: without a language, English
    turns:
      - send: PEDIDO
        expect: "¿Su número de pedido?"
      - send: ORDER
        expect: "Your order number?"
"""


async def test_a_conversation_test_starts_in_its_language(flows: Path, tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(TESTS, encoding="utf-8")
    run_result = await run_conversations(load_flows(flows), [tmp_path / "t.yaml"])
    assert run_result.problems == []
    assert [(result.name, result.passed, result.report) for result in run_result.results] == [
        ("a Spanish speaker orders", True, ""), ("without a language, English", True, "")]


async def test_a_conversation_test_in_a_language_nothing_speaks_fails_saying_so(flows: Path, tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(TESTS.replace("language: es", "language: fr"), encoding="utf-8")
    [failed, _] = (await run_conversations(load_flows(flows), [tmp_path / "t.yaml"])).results
    assert not failed.passed
    assert failed.report == "language: no flow or program text is in 'fr'; the flows speak en, es"


async def test_a_language_that_is_no_code_is_a_located_problem(flows: Path, tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(TESTS.replace("language: es", "language: Spanish"), encoding="utf-8")
    [problem] = (await run_conversations(load_flows(flows), [tmp_path / "t.yaml"])).problems
    assert f"{problem.line}:{problem.col}" == "3:15"
    assert "'Spanish' is not a language code" in problem.message


# -- graph and lint ----------------------------------------------------------------------------------

def test_graph_draws_the_flow_a_language_runs(flows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run(["graph", "order", "--flows", str(flows), "--language", "es"], capsys, monkeypatch)
    assert status == 0
    assert out.startswith("---\ntitle: order (es)\n---\n")
    assert "n_ask --> n_end: /^\\d{6}$/ | MENÚ / MENU\n" in out
    page = tmp_path / "order.html"
    status, _, _ = run(["graph", "order", "--flows", str(flows), "--language", "es", "--html", str(page)],
                       capsys, monkeypatch)
    html = page.read_text(encoding="utf-8")
    assert status == 0 and '<html lang="es">' in html and "<h1>order (es)</h1>" in html
    status, out, _ = run(["graph", "order", "--flows", str(flows), "--language", "en"], capsys, monkeypatch)
    assert out.startswith("---\ntitle: order\n---\n") and "n_ask --> n_end: /^\\d{6}$/ | MENU\n" in out


def test_graph_refuses_a_language_the_flow_does_not_speak(flows: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    status, _, err = run(["graph", "order", "--flows", str(flows), "--language", "fr"], capsys, monkeypatch)
    assert status == 2
    assert err == "error: flow 'order' has no French (fr) texts; it speaks en, es\n"


def test_lint_reports_per_language(flows: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (flows / "order.yaml").write_text(ORDER.replace('es: "Adiós."', 'es: "Adiós, {{ nombre }}."'), encoding="utf-8")
    status, out, err = run(["lint", str(flows)], capsys, monkeypatch)
    assert status == 0
    assert out == (f"{flows}/order.yaml:26:20: warning: es: {{{{ nombre }}}} is never saved on any path to state "
                   "'ask' (did you mean 'number'? save: nombre in an earlier reply or fetch, or give it a default)\n")
    assert err == "0 errors, 1 warning\n"
