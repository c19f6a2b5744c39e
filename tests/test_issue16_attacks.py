"""Adversarial pass on issue 16 (flows in the texter's language): each test pins one defect found
by attacking the feature as a hostile texter, a careless ops person and a translator would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.flows.loader import check_folder, load_flows
from bot.flows.problems import FlowLoadError
from bot.store import Store, open_store
from bot.text.normalise import normalise, trim
from bot.translation_files.workflow import TRANSLATED, import_file
from tests.conftest import write_flows
from tests.test_languages import SHIPPED, Person


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    yield opened
    await opened.close()


MENU_FLOW = "flow: main_menu\ntriggers: [MENU]\nstart: s\nstates:\n  s:\n    say: \"Main menu\"\n"
OPTIONS_FLOW = """\
flow: options
triggers: [OPTIONS]
start: s
states:
  s:
    say: "Options"
translations:
  - en: [OPTIONS]
    es: [MENÚ]
  - en: "Options"
    es: "Opciones"
"""


def test_a_translated_triggers_spelling_without_accents_cannot_take_another_flows_trigger(tmp_path: Path) -> None:
    """The bot hears a translated word without its accents too (MENÚ as "menu"), so a Spanish
    trigger MENÚ made "menu" a trigger of its flow. Lint compared only the words as written, so it
    passed, and an English speaker texting MENU got whichever of the two flows the loader built
    last: the other flow, in Spanish, by file order. Lint now hears the words as the bot does."""
    folder = write_flows(tmp_path / "flows", {"a.yaml": MENU_FLOW, "b.yaml": OPTIONS_FLOW})
    errors = [str(problem) for problem in check_folder(folder)[0] if problem.severity == "error"]
    assert len(errors) == 1 and "b.yaml:9:10" in errors[0]
    assert "trigger 'MENÚ' (heard without its accents as 'menu') is also a trigger of flow 'main_menu'" in errors[0]
    with pytest.raises(FlowLoadError, match="heard without its accents"):
        load_flows(folder)


NUMBERED = """\
flow: pick
triggers: [PICK]
start: s
states:
  s:
    say: 42
    otherwise: "Text 1 or one"
    replies:
      - keywords: [1, one]
        say: "First"
        go: end
translations:
  - en: [PICK]
    es: [ELEGIR]
  - en: 42
    es: cuarenta y dos
  - en: "Text 1 or one"
    es: "Envíe 1 o uno"
  - en: [1, one]
    es: [1, uno]
  - en: "First"
    es: "Primero"
"""


async def test_a_row_writes_numbers_as_the_flow_does(store: Store, tmp_path: Path) -> None:
    """A flow may write ``keywords: [1, one]`` and ``say: 42`` (numbers are words and texts), but a
    row repeating them as written (``en: [1, one]``) was refused with pydantic's bare "Input should
    be a valid string", twice per value: the menu-style "1 or one" replies could not be translated
    without quoting every number. Rows now read numbers as the flow's fields do, and a value that is
    neither a text nor words (an empty list, nothing after the colon) says so by its language."""
    person = Person(store, load_flows(write_flows(tmp_path / "flows", {"pick.yaml": NUMBERED})))
    assert await person.text("ELEGIR") == ["cuarenta y dos"]
    assert await person.text("uno") == ["Primero"]
    empty = write_flows(tmp_path / "empty", {"pick.yaml": NUMBERED.replace("es: [1, uno]", "es: []")})
    problems = [str(problem) for problem in check_folder(empty)[0] if problem.severity == "error"]
    assert len(problems) == 1 and "es: an empty list is not a list of words" in problems[0]


def test_import_into_a_flow_whose_rows_hold_numbers_keeps_the_rest_of_its_table(tmp_path: Path) -> None:
    """The import keeps the first rewrite of the file that reads back with exactly the intended
    table; it compared the raw YAML (``[1, one]``: 1 a number) with the table as the flow holds it
    ("1"), so for a flow with number words only its last resort matched: the whole table written
    anew, every row's quoting changed and the comments between rows lost. The check now reads each
    row as the flow does, so only the translated value is written."""
    flow = NUMBERED.replace('  - en: "First"', '  # the answer to the first question\n  - en: "First"')
    folder = write_flows(tmp_path / "flows", {"pick.yaml": flow})
    po = tmp_path / "pick.es.po"
    po.write_text('msgid ""\nmsgstr ""\n"Project-Id-Version: textflow pick\\n"\n"Language: es\\n"\n\n'
                  'msgctxt "words"\nmsgid "1, one"\nmsgstr "1, uno, un"\n', encoding="utf-8")
    report = import_file(po, folder)
    assert report.written and [outcome.result for outcome in report.outcomes] == [TRANSLATED]
    assert (folder / "pick.yaml").read_text(encoding="utf-8") == flow.replace(
        "    es: [1, uno]\n", '    es: ["1", uno, un]\n')


async def test_direction_marks_around_a_texted_word_do_not_hide_it(store: Store) -> None:
    """Phones set to Arabic or Hebrew put direction marks (RLM U+200F, isolates, overrides) around
    what people type. STOP was still heard (consent reads the keyword's letters), but a trigger or
    reply word was not: "\\u200fESTADO" got the fallback. Words are now compared without these
    marks, as without zero-width spaces; a saved reply keeps them (the person's text is theirs)."""
    person = Person(store, SHIPPED)
    assert await person.text("\u200fESTADO\u200f") == ["¿Cuál es su número de pedido? (6 dígitos, como 123456)"]
    assert await person.text("\u2067MENÚ\u2069") == ["De acuerdo. Envíe ESTADO cuando quiera seguir un pedido."]
    assert normalise("\u202eSTATUS\u200e") == "status"
    assert trim("\u200fשלום") == "\u200fשלום"
