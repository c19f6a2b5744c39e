"""A translator's workflow (bot/translation_files/): a flow's texts out as PO or CSV and back into
the flow file, stale translations marked fuzzy, and what a translation may not do."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from bot import cli
from bot.flows.editing import FlowFolder
from bot.flows.loader import load_flows
from bot.flows.yamlsource import read_yaml
from bot.simulator import simulation
from bot.translation_files.entries import join_words
from bot.translation_files.workflow import (
    EMPTY,
    FUZZY,
    REFUSED,
    TRANSLATED,
    UNCHANGED,
    TranslationError,
    export,
    import_file,
)
from bot.translation_files.yaml_block import rewritten
from tests.conftest import SHIPPED_FLOWS, write_flows

SENDER = "+15551234567"
STATUS_TRANSLATED_HEADER = "# The flow in Spanish"
OLD_OK = "OK. Text STATUS whenever you want to track an order."

PICKUP = """\
flow: pickup
triggers: [PICKUP]
start: ask
states:
  ask:
    say: "How would you like your order, {{ name | default: 'friend' }}?"
    menu:
      save: method
      choices:
        - label: Pick-up
          go: done
        - label: Delivery
          go: done
  done:
    say: "Thanks: {{ method }} it is."
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A copy of the shipped flows, to change."""
    return Path(shutil.copytree(SHIPPED_FLOWS, tmp_path / "flows"))


def old_ok_es() -> str:
    """The shipped Spanish of OLD_OK (the shipped flow's wording may change)."""
    return shipped_rows("order_status")[OLD_OK]


def shipped_rows(flow: str) -> dict[str, str]:
    """The shipped Spanish translations of a flow, as a translator would fill them in: by base text."""
    model = FlowFolder.read(SHIPPED_FLOWS).flows[flow].model
    return {join_words(row["en"]) if isinstance(row["en"], list) else row["en"]:
            join_words(row["es"]) if isinstance(row["es"], list) else row["es"]  # type: ignore[arg-type]
            for row in model.translations}


def without_table(path: Path) -> bytes:
    """Cut the flow file's translations (and the comment above them); return what is left."""
    text = path.read_text(encoding="utf-8")
    head = text[:text.index(STATUS_TRANSLATED_HEADER)]
    path.write_text(head, encoding="utf-8")
    return head.encode("utf-8")


def catalog_of(data: bytes) -> Catalog:
    return read_po(io.BytesIO(data))


def write_catalog(catalog: Catalog, path: Path) -> Path:
    """As a translator's tool saves it."""
    with path.open("wb") as out:
        write_po(out, catalog)
    return path


def filled(data: bytes, translations: dict[str, str], path: Path, *, confirm: bool = False) -> Path:
    """The exported PO with these msgstrs (and, with ``confirm``, every fuzzy mark removed)."""
    catalog = catalog_of(data)
    for message in catalog:
        if message.id in translations:
            message.string = translations[message.id]
        if confirm:
            message.flags.discard("fuzzy")
    return write_catalog(catalog, path)


def change_state_text(path: Path, old: str, new: str) -> None:
    """Change a text where the flow says it, not in the table (its first place in the file)."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# -- export ---------------------------------------------------------------------------------------

def test_the_shipped_status_flow_exports_with_every_spanish_row_translated() -> None:
    data, texts = export(SHIPPED_FLOWS, "order_status", "es")
    catalog = catalog_of(data)
    messages = [message for message in catalog if message.id]
    assert len(messages) == len(texts.entries) == len(shipped_rows("order_status")) == 9
    assert all(message.string and not message.fuzzy for message in messages)
    assert not catalog.obsolete
    assert (catalog.locale_identifier, catalog.project, catalog.version) == ("es", "textflow", "order_status")
    triggers = next(message for message in messages if message.context == "words" and "STATUS" in message.id)
    assert (triggers.id, triggers.string) == ("STATUS, ORDER, TRACK", shipped_rows("order_status")[str(triggers.id)])
    assert ("status.yaml", 3) in triggers.locations
    lookup = next(message for message in messages if str(message.id).startswith("Order {{ order }}"))
    notes = " ".join(lookup.auto_comments)
    assert "Keep {{ order }}, {{ result.status | truncate: 40 }}" in notes and "Where: lookup.say" in notes
    assert "SMS: the English text costs 1 segment, GSM-7" in notes
    assert "python-format" not in lookup.flags


def test_the_po_file_is_one_gettext_reads(tmp_path: Path, flows: Path) -> None:
    msgfmt = shutil.which("msgfmt")
    change_state_text(flows / "status.yaml", "text MENU to leave.", "text MENU to stop here, or wait a bit longer.")
    data, _ = export(flows, "order_status", "es")
    if msgfmt is None:
        pytest.skip("GNU gettext's msgfmt is not installed")
    (tmp_path / "es.po").write_bytes(data)
    checked = subprocess.run([msgfmt, "--check", "--statistics", "-o", "/dev/null", str(tmp_path / "es.po")],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "8 translated messages, 1 fuzzy translation" in checked.stderr


def test_a_language_the_flow_is_written_in_or_no_language_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["translations", "export", "order_status", "-l", "en", "--flows", str(SHIPPED_FLOWS)]) == 2
    assert "en is the language flow 'order_status' is written in" in capsys.readouterr().err
    assert cli.main(["translations", "export", "order_status", "-l", "spanish!", "--flows", str(SHIPPED_FLOWS)]) == 2
    assert "'spanish!' is not a language code" in capsys.readouterr().err
    assert cli.main(["translations", "export", "nowhere", "-l", "es", "--flows", str(SHIPPED_FLOWS)]) == 2
    assert "no flow 'nowhere'" in capsys.readouterr().err


# -- a PO round trip -------------------------------------------------------------------------------

async def test_a_po_round_trip_writes_the_table_and_the_flow_talks_spanish(
        tmp_path: Path, flows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_API", raising=False)
    head = without_table(flows / "status.yaml")
    data, texts = export(flows, "order_status", "es")
    assert [entry.status for entry in texts.entries] == ["missing"] * 9
    po = filled(data, shipped_rows("order_status"), tmp_path / "es.po")

    report = import_file(po, flows)

    assert (report.count(TRANSLATED), report.count(REFUSED), report.written) == (9, 0, True), report.lines()
    written = (flows / "status.yaml").read_bytes()
    assert written.startswith(head)  # every other line of the file, byte for byte
    assert "¿Cuál es su número de pedido?".encode() in written  # non-ASCII as it is, not escaped
    assert FlowFolder.read(flows).flows["order_status"].model.translations == \
        FlowFolder.read(SHIPPED_FLOWS).flows["order_status"].model.translations
    async with simulation(load_flows(flows)) as sim:
        assert (await sim.text("ESTADO", SENDER)).replies == ("¿Cuál es su número de pedido? (6 dígitos, como 123456)",)
        [answer] = (await sim.text("123456", SENDER)).replies
        assert answer.startswith("El pedido 123456 está ")

    again = import_file(po, flows)  # nothing new: the file is left alone
    assert (again.count(UNCHANGED), again.written) == (9, False)
    assert (flows / "status.yaml").read_bytes() == written


def test_an_import_edits_only_the_values_it_changes(tmp_path: Path, flows: Path) -> None:
    before = (flows / "status.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    data, _ = export(flows, "order_status", "es")
    po = filled(data, {"to track an order": "para seguir su pedido", "MENU, BACK": "MENÚ, VOLVER, ATRÁS"},
                tmp_path / "es.po")
    report = import_file(po, flows)
    assert (report.count(TRANSLATED), report.count(UNCHANGED)) == (2, 7)
    after = (flows / "status.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(after) == len(before)
    assert [(old, new) for old, new in zip(before, after, strict=True) if old != new] == [
        (before[after.index('    es: "para seguir su pedido"\n')], '    es: "para seguir su pedido"\n'),
        (before[after.index("    es: [MENÚ, VOLVER, ATRÁS]\n")], "    es: [MENÚ, VOLVER, ATRÁS]\n")]


# -- stale translations ---------------------------------------------------------------------------

def test_changing_an_english_text_marks_its_entry_fuzzy_with_the_previous_text(tmp_path: Path, flows: Path) -> None:
    change_state_text(flows / "status.yaml", OLD_OK, "Text STATUS whenever you want to track another order.")
    data, texts = export(flows, "order_status", "es")

    [stale] = [entry for entry in texts.entries if entry.status == "stale"]
    assert (stale.previous, stale.translation) == (OLD_OK, old_ok_es())
    message = catalog_of(data).get("Text STATUS whenever you want to track another order.")
    assert message is not None and message.fuzzy and message.string == old_ok_es()
    assert (f'#, fuzzy\n#| msgid "{OLD_OK}"\n'
            'msgid "Text STATUS whenever you want to track another order."\n').encode() in data

    (tmp_path / "es.po").write_bytes(data)
    before = (flows / "status.yaml").read_bytes()
    report = import_file(tmp_path / "es.po", flows)  # as exported: the guess is not applied
    assert (report.count(FUZZY), report.count(UNCHANGED), report.written) == (1, 8, False)
    assert any("fuzzy, not imported" in line for line in report.lines())
    assert (flows / "status.yaml").read_bytes() == before

    confirmed = filled(data, {}, tmp_path / "confirmed.po", confirm=True)
    assert import_file(confirmed, flows).count(TRANSLATED) == 1
    rows = FlowFolder.read(flows).flows["order_status"].model.translations
    assert {"en": "Text STATUS whenever you want to track another order.", "es": old_ok_es()} in rows
    assert {"en": OLD_OK, "es": old_ok_es()} in rows  # the old row stays: never silently lost


def test_a_row_no_text_is_close_to_is_exported_as_obsolete_and_kept(tmp_path: Path, flows: Path) -> None:
    old = "Sorry, our order system isn't answering right now. Please try again in a few minutes."
    change_state_text(flows / "status.yaml", old, "Down.")
    data, texts = export(flows, "order_status", "es")
    assert [entry.status for entry in texts.entries if entry.base == "Down."] == ["missing"]
    catalog = catalog_of(data)
    assert [message.id for message in catalog.obsolete.values()] == [old]
    assert b"#~ msgid" in data
    (tmp_path / "es.po").write_bytes(data)
    assert import_file(tmp_path / "es.po", flows).written is False  # an obsolete entry is never imported
    model = FlowFolder.read(flows).flows["order_status"].model
    assert any(row["en"] == old for row in model.translations)


def test_an_empty_msgstr_leaves_the_text_as_it_was(tmp_path: Path, flows: Path) -> None:
    data, _ = export(flows, "order_status", "es")
    po = filled(data, {OLD_OK: ""}, tmp_path / "es.po")
    report = import_file(po, flows)
    assert (report.count(EMPTY), report.written) == (1, False)
    assert {"en": OLD_OK, "es": old_ok_es()} in FlowFolder.read(flows).flows["order_status"].model.translations


# -- CSV ------------------------------------------------------------------------------------------

def test_a_csv_round_trip(tmp_path: Path, flows: Path) -> None:
    head = without_table(flows / "status.yaml")
    (flows / "status.yaml").write_bytes(head.replace(b'say: "OK. Text STATUS', b'say: "-OK- Text STATUS'))
    out = tmp_path / "es.csv"
    assert cli.main(["translations", "export", "order_status", "-l", "es", "-o", str(out), "--flows", str(flows)]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == ["where (order_status)", "base (en)", "translation (es)", "status", "previous", "note"]
    assert ["'-OK- Text STATUS whenever you want to track an order."] == [row[1] for row in rows if "OK-" in row[1]]
    translations = {**shipped_rows("order_status"), "-OK- Text STATUS whenever you want to track an order.": "-Vale-"}
    for row in rows[1:]:
        base = row[1][1:] if row[1].startswith("'-") else row[1]
        row[2] = translations[base]
    with out.open("w", encoding="utf-8-sig", newline="") as file:  # as Excel saves "CSV UTF-8"
        csv.writer(file, delimiter=";").writerows(rows)

    report = import_file(out, flows)

    assert (report.count(TRANSLATED), report.count(REFUSED)) == (9, 0), report.lines()
    model = FlowFolder.read(flows).flows["order_status"].model
    assert {"en": "-OK- Text STATUS whenever you want to track an order.", "es": "-Vale-"} in model.translations
    assert {"en": ["MENU", "BACK"], "es": ["MENÚ", "VOLVER"]} in model.translations


def test_a_stale_csv_row_is_imported_once_its_status_no_longer_says_stale(tmp_path: Path, flows: Path) -> None:
    new = "Text STATUS whenever you want to track another order."
    change_state_text(flows / "status.yaml", OLD_OK, new)
    data, _ = export(flows, "order_status", "es", "csv")
    rows = list(csv.reader(io.StringIO(data.decode())))
    [stale] = [row for row in rows if row[1] == new]
    assert stale[2:5] == [old_ok_es(), f'stale: changed from "{OLD_OK}"', OLD_OK]
    (tmp_path / "es.csv").write_bytes(data)
    assert import_file(tmp_path / "es.csv", flows).count(FUZZY) == 1
    stale[3] = "translated"
    with (tmp_path / "es.csv").open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows(rows)
    assert import_file(tmp_path / "es.csv", flows).count(TRANSLATED) == 1


# -- what a translation may not do ----------------------------------------------------------------

def test_hostile_translations_are_refused_each_with_where_and_why(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    flows = write_flows(tmp_path / "flows", {"pickup.yaml": PICKUP})
    before = (flows / "pickup.yaml").read_bytes()
    data, _ = export(flows, "pickup", "es")
    po = filled(data, {
        "How would you like your order, {{ name | default: 'friend' }}?":
            "¿Cómo quiere su pedido, {{ name | default: 'amigo' }}? {{ env.SECRET }}",
        "Pick-up": "Recoger\nen tienda",
        "PICKUP": "ALTO, RECOGER",
        "Thanks: {{ method }} it is.": "Gracias: {{ method }}. " + "a" * 2000,
        "Delivery": "Entrega {{ method }}",
    }, tmp_path / "es.po")

    assert cli.main(["translations", "import", str(po), "--flows", str(flows)]) == 1

    printed = capsys.readouterr().out
    assert "0 translated, 0 unchanged, 0 fuzzy skipped, 5 refused, 0 left empty" in printed
    assert "uses the value {{ env.SECRET }}, which the text does not" in printed
    assert "has a line break: these words are texted back as one line" in printed
    assert "has 'ALTO', a compliance keyword" in printed
    assert "is 2,023 characters, 14 SMS segments: more than the 10 a turn may send" in printed, printed
    assert "has {{ }} or {% %}: this text is shown as written" in printed
    po_lines = po.read_text(encoding="utf-8").splitlines()
    for line in printed.splitlines()[1:6]:
        at = int(line.split(":")[1])  # es.po:LINE: refused…
        assert line.startswith("es.po:") and po_lines[at - 1].startswith("msgid"), line
    assert (flows / "pickup.yaml").read_bytes() == before


def test_a_translation_must_keep_every_value_and_add_no_logic(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"pickup.yaml": PICKUP})
    data, _ = export(flows, "pickup", "es")
    po = filled(data, {"Thanks: {{ method }} it is.": "Gracias.",
                       "How would you like your order, {{ name | default: 'friend' }}?":
                           "{% if name %}¿{{ name }}?{% endif %}"}, tmp_path / "es.po")
    reasons = [outcome.reason for outcome in import_file(po, flows).outcomes if outcome.result == REFUSED]
    assert any("leaves out {{ method }}" in reason for reason in reasons), reasons
    assert any("uses the tag {% if %}" in reason for reason in reasons), reasons


def test_a_translated_trigger_may_not_be_another_flows(tmp_path: Path, flows: Path) -> None:
    data, _ = export(flows, "order_status", "es")
    po = filled(data, {"STATUS, ORDER, TRACK": "ESTADO, UNIRME"}, tmp_path / "es.po")  # signup's UNIRME
    [refused] = [outcome for outcome in import_file(po, flows).outcomes if outcome.result == REFUSED]
    assert "'UNIRME', already a trigger of flow 'signup'" in refused.reason


def test_a_file_that_would_not_load_is_not_written_and_the_problem_is_located(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = PICKUP.replace("{{ method }} it is.", "{{ method | upcasee }} it is.")  # an error lint reports
    flows = write_flows(tmp_path / "flows", {"pickup.yaml": broken})
    data, _ = export(flows, "pickup", "es")
    po = filled(data, {"Pick-up": "Recoger"}, tmp_path / "es.po")
    assert cli.main(["translations", "import", str(po), "--flows", str(flows)]) == 1
    printed = capsys.readouterr().out
    assert "not written:" in printed and f"{flows / 'pickup.yaml'}:15:" in printed and "upcasee" in printed
    assert (flows / "pickup.yaml").read_text(encoding="utf-8") == broken


# -- the table written into the file --------------------------------------------------------------

COMMENTED = """\
flow: hello
triggers: [HELLO]   # a comment
start: greet
states:
  greet:
    say: "Hello!"
    replies:
      - keywords:
          - MENU
          - BACK
        go: end

translations:   # the Spanish
  # greetings
  - en: "Hello!"
    es: ¡Hola!   # short

  - en:
      - MENU
      - BACK
    es:
      - MENÚ
# trailing comment
"""


def test_rows_and_comments_the_import_does_not_change_stay_as_they_are(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"hello.yaml": COMMENTED})
    data, _ = export(flows, "hello", "es")
    po = filled(data, {"Hello!": "¡Hola a todos!", "MENU, BACK": "MENÚ, VOLVER", "HELLO": "HOLA, NO, 010, 1e5"},
                tmp_path / "es.po")
    assert import_file(po, flows).count(TRANSLATED) == 3
    written = (flows / "hello.yaml").read_text(encoding="utf-8")
    assert written == COMMENTED.replace("es: ¡Hola!   # short", 'es: "¡Hola a todos!"   # short').replace(
        "    es:\n      - MENÚ\n", "    es: [MENÚ, VOLVER]\n").replace(
        "# trailing comment\n", '  - en: [HELLO]\n    es: [HOLA, "NO", "010", "1e5"]\n# trailing comment\n')
    rows = read_yaml(written)[0]["translations"]
    assert rows[-1] == {"en": ["HELLO"], "es": ["HOLA", "NO", "010", "1e5"]}  # words, read back as words


def test_a_file_with_windows_line_ends_keeps_them() -> None:
    text = COMMENTED.replace("\n", "\r\n")
    rows: list[dict[str, str | list[str]]] = [
        {"en": "Hello!", "es": "¡Hola!"}, {"en": ["MENU", "BACK"], "es": ["MENÚ"]}, {"en": ["HELLO"], "es": ["HOLA"]}]
    [first, *_] = rewritten(text, rows, {}, 2)
    assert first.startswith(text.split("# trailing comment")[0])
    assert "\n" not in first.replace("\r\n", "")
    assert read_yaml(first)[0]["translations"] == rows


def test_a_table_written_as_a_flow_list_is_written_anew() -> None:
    text = "flow: x\nstart: a\nstates:\n  a: {say: Hi}\ntranslations: []\n"
    rows = [{"en": "Hi", "es": "Hola"}]
    [only] = rewritten(text, rows, {}, 0)
    assert only == 'flow: x\nstart: a\nstates:\n  a: {say: Hi}\ntranslations:\n  - en: "Hi"\n    es: "Hola"\n'


def test_a_file_without_a_table_gets_one_at_its_end() -> None:
    text = "flow: x\nstart: a\nstates:\n  a: {say: Hi}  # no newline at the end"
    [only] = rewritten(text, [{"en": "Hi", "es": "Hola"}], {}, 0)
    assert only == text + '\n\ntranslations:\n  - en: "Hi"\n    es: "Hola"\n'


def test_a_row_without_the_language_gets_it_on_a_line_of_its_own(tmp_path: Path) -> None:
    french = COMMENTED.replace("    es: ¡Hola!   # short\n", "    fr: Salut !   # short\n")
    flows = write_flows(tmp_path / "flows", {"hello.yaml": french})
    data, _ = export(flows, "hello", "es")
    assert import_file(filled(data, {"Hello!": "¡Hola!"}, tmp_path / "es.po"), flows).count(TRANSLATED) == 1
    assert (flows / "hello.yaml").read_text(encoding="utf-8") == french.replace(
        "    fr: Salut !   # short\n", '    fr: Salut !   # short\n    es: "¡Hola!"\n')


def test_a_translation_for_a_text_the_flow_no_longer_has_is_kept_as_a_row(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"hello.yaml": COMMENTED})
    catalog = Catalog(locale="es", project="textflow", version="hello")
    catalog.add("Goodbye!", "¡Adiós!")
    catalog.add("Goodbye {{ env.SECRET }}", "Adiós {{ env.SECRET }} {{ env.OTHER }}")
    report = import_file(write_catalog(catalog, tmp_path / "es.po"), flows)
    assert (report.count(TRANSLATED), report.count(REFUSED)) == (1, 1)
    assert any("the flow no longer has this text" in line for line in report.lines())
    rows = FlowFolder.read(flows).flows["hello"].model.translations
    assert rows[-1] == {"en": "Goodbye!", "es": "¡Adiós!"}


def test_export_writes_po_to_standard_output(capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["translations", "export", str(SHIPPED_FLOWS / "status.yaml"), "--language", "es"]) == 0
    out, err = capfd.readouterr()
    assert 'msgid "STATUS, ORDER, TRACK"' in out and "Language: es" in out
    assert "order_status (status.yaml) in es: 9 entries: 9 translated, 0 missing, 0 stale (fuzzy), 0 unused" in err


def test_a_file_naming_a_flow_outside_the_folder_or_a_new_regional_language(tmp_path: Path, flows: Path) -> None:
    outside = write_flows(tmp_path / "elsewhere", {"pickup.yaml": PICKUP}) / "pickup.yaml"
    catalog = Catalog(locale="es", project="textflow", version=str(outside))
    catalog.add("Pick-up", "Recoger")
    with pytest.raises(TranslationError, match="no flow"):
        import_file(write_catalog(catalog, tmp_path / "es.po"), flows)
    data, _ = export(flows, "order_status", "es")
    catalog = catalog_of(data)
    catalog.locale = "es_MX"
    report = import_file(write_catalog(catalog, tmp_path / "es_MX.po"), flows, dry_run=True)
    assert report.language == "es-MX" and report.count(TRANSLATED) == 9
    assert "note: es-MX is a new language for this flow (it has es)" in report.lines()[1]
    assert report.lines()[-1] == f"checked, not written (--dry-run): {flows / 'status.yaml'}"
