"""Lint per language (issue 16): every finding about a flow's ``translations:``, as lint prints it,
at the line and column of what to fix (``bot/flows/translation_checks.py``,
``bot/flows/translation_words.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.flows.checks import CheckOptions
from bot.flows.loader import lint_paths
from bot.flows.problems import Finding
from bot.flows.schema import Flow
from bot.flows.translation_checks import _moves
from bot.flows.translation_table import Rows, language_name, places
from bot.flows.yamlsource import read_yaml
from tests.conftest import write_flows

ORDER = """\
flow: order
triggers: [ORDER]
start: ask
states:
  ask:
    say: "What's your order number?"
    replies:
      - pattern: '^\\d{6}$'
        save: number
        say: "Looking up {{ number }}."
        go: end
      - keywords: [MENU]
        say: "OK, bye."
        go: end
    otherwise: "What's your order number?"
translations:
  - en: [ORDER]
    es: [PEDIDO]
"""


def lint(tmp_path: Path, files: dict[str, str], options: CheckOptions = CheckOptions()) -> list[str]:
    folder = write_flows(tmp_path / "flows", files)
    return [str(problem).replace(f"{folder}/", "") for problem in lint_paths([folder], options)]


def about(printed: list[str], text: str) -> list[str]:
    return [line for line in printed if text in line]


# -- missing translations -------------------------------------------------------------------------

def test_a_text_with_no_row_is_one_warning_at_its_first_use_listing_the_others(tmp_path: Path) -> None:
    printed = lint(tmp_path, {"order.yaml": ORDER})
    assert about(printed, "What's your order number?") == [
        "order.yaml:6:10: warning: no Spanish (es) version of \"What's your order number?\"; it is sent in "
        "English (en) (add a row under translations: with en: (this text) and es: (its translation); also "
        "used at ask.otherwise[0])"]
    assert about(printed, "[MENU]") == [
        "order.yaml:12:19: warning: no Spanish (es) version of the words [MENU]; only the English (en) words are "
        "heard (add a row under translations: with en: [these words] and es: [theirs])"]
    assert about(printed, "'OK, bye.'") == [
        "order.yaml:13:14: warning: no Spanish (es) version of 'OK, bye.'; it is sent in English (en) (add a row "
        "under translations: with en: (this text) and es: (its translation))"]


def test_each_language_the_table_names_is_checked_and_named_once_per_text(tmp_path: Path) -> None:
    flow = ORDER.replace("    es: [PEDIDO]\n", "    es: [PEDIDO]\n    fr: [COMMANDE]\n")
    [line] = about(lint(tmp_path, {"order.yaml": flow}), "'OK, bye.'")
    assert "no Spanish (es) or French (fr) version of 'OK, bye.'" in line


def test_texts_of_only_values_and_digits_need_no_row(tmp_path: Path) -> None:
    flow = ORDER.replace('"Looking up {{ number }}."', '"{{ number }}: 123"')
    assert about(lint(tmp_path, {"order.yaml": flow}), "number }}") == []


def test_a_flow_written_in_spanish_misses_its_english_versions(tmp_path: Path) -> None:
    flow = """\
flow: pedido
language: es
triggers: [PEDIDO]
start: ask
states:
  ask:
    say: "¿Cuál es su número de pedido?"
    replies:
      - pattern: '^\\d{6}$'
        go: end
    otherwise: "Seis dígitos, por favor."
translations:
  - es: [PEDIDO]
    en: [ORDER]
  - es: "¿Cuál es su número de pedido?"
    en: "What's your order number?"
"""
    assert about(lint(tmp_path, {"pedido.yaml": flow}), "no English") == [
        "pedido.yaml:11:16: warning: no English (en) version of 'Seis dígitos, por favor.'; it is sent in Spanish "
        "(es) (add a row under translations: with es: (this text) and en: (its translation))"]


# -- stale and repeated rows -----------------------------------------------------------------------

COMPLETE = ORDER + """\
  - en: "What's your order number?"
    es: "¿Cuál es su número de pedido?"
  - en: "Looking up {{ number }}."
    es: "Busco {{ number }}."
  - en: [MENU]
    es: [MENU]
  - en: "OK, bye."
    es: "Adiós."
"""


def test_a_complete_table_is_quiet(tmp_path: Path) -> None:
    assert lint(tmp_path, {"order.yaml": COMPLETE}) == []


def test_a_row_for_a_text_the_flow_no_longer_says_is_stale_with_the_closest_text(tmp_path: Path) -> None:
    edited = COMPLETE.replace('"What\'s your order number?"', '"What is your order number?"', 2)  # not the row
    printed = lint(tmp_path, {"order.yaml": edited})
    assert about(printed, "never used") == [
        "order.yaml:19:9: warning: translation 2 is never used: the flow no longer says \"What's your order "
        "number?\" (did you mean 'What is your order number?' (at ask.say[0])? If it was edited, change this "
        "row's en: to it and check the translation still says the same; or export the flow again for your "
        "translator)"]
    assert about(printed, "no Spanish (es) version of 'What is your order number?'")


def test_a_stale_row_with_nothing_close_says_to_remove_it(tmp_path: Path) -> None:
    flow = COMPLETE + '  - en: "Thanks for shopping with Acme!"\n    es: "¡Gracias por comprar en Acme!"\n' \
                      '  - en: [LEAVE, QUIT NOW]\n    es: [SALIR]\n'
    printed = about(lint(tmp_path, {"order.yaml": flow}), "never used")
    assert printed == [
        "order.yaml:27:9: warning: translation 6 is never used: the flow no longer says 'Thanks for shopping with "
        "Acme!' (remove the row, or change it to a text the flow says)",
        "order.yaml:29:9: warning: translation 7 is never used: the flow no longer listens for [LEAVE, QUIT NOW] "
        "(remove the row, or change it to a text the flow says)"]


def test_a_text_translated_twice_is_reported_at_the_later_row(tmp_path: Path) -> None:
    flow = COMPLETE + '  - en: "OK, bye."\n    es: "Hasta luego."\n'
    assert about(lint(tmp_path, {"order.yaml": flow}), "again") == [
        "order.yaml:28:9: warning: es: translation 6 translates 'OK, bye.' again (translation 5 does too); the "
        "bot uses the last one (keep one of the two rows)"]


# -- SMS segments and encoding per language ---------------------------------------------------------

def test_an_accent_that_doubles_a_translation_names_the_language_and_the_character(tmp_path: Path) -> None:
    spanish = "Los números de pedido tienen seis cifras. Inténtelo de nuevo, o envíe MENU para salir."
    flow = COMPLETE.replace('es: "Adiós."', f'es: "{spanish}"')
    assert lint(tmp_path, {"order.yaml": flow}) == [
        "order.yaml:26:9: warning: es: 'ú' (U+00FA LATIN SMALL LETTER U WITH ACUTE) switches this text to UCS-2, "
        "making it 2 segments instead of 1 (write ú as u, í as i if your readers accept it, or shorten it: in "
        "UCS-2 one segment holds 70 characters)"]


def test_a_translation_longer_than_the_limit_is_reported_at_its_row(tmp_path: Path) -> None:
    flow = COMPLETE.replace('es: "Adiós."', 'es: "' + "Muchas gracias por escribirnos. " * 6 + '"')
    [line] = lint(tmp_path, {"order.yaml": flow}, CheckOptions(max_segments=1))
    assert line.startswith("order.yaml:26:9: warning: es: this text costs 2 SMS segments (GSM-7, 192 units); "
                           "the limit is 1 segment")


def test_a_pasted_quote_in_english_still_gets_the_plain_character_hint(tmp_path: Path) -> None:
    flow = COMPLETE.replace('"OK, bye."', '"OK, bye’ now. ' + "x" * 100 + '"')
    [line] = about(lint(tmp_path, {"order.yaml": flow}), "UCS-2")
    assert line == ("order.yaml:13:14: warning: '’' (U+2019 RIGHT SINGLE QUOTATION MARK) switches this text to "
                    "UCS-2, making it 2 segments instead of 1 (use a plain character (e.g. ' instead of ’) if you can)")


# -- templates in translations ---------------------------------------------------------------------

def test_a_translations_templates_are_checked_at_the_row(tmp_path: Path) -> None:
    flow = COMPLETE.replace('es: "Busco {{ number }}."', 'es: "Busco {{ numero }} {{ number | upcse }}."')
    assert lint(tmp_path, {"order.yaml": flow}) == [
        "order.yaml:22:19: warning: es: {{ numero }} is never saved on any path to state 'ask' (did you mean "
        "'number'? save: numero in an earlier reply or fetch, or give it a default)",
        "order.yaml:22:41: error: es: unknown filter 'upcse' (did you mean 'upcase'?)"]


# -- words that collide once translated ------------------------------------------------------------

OTHER = """\
flow: other
triggers: [OTHER]
start: ask
states:
  ask:
    say: "Done?"
    replies:
      - keywords: [DONE, PEDIDO]
        go: end
    otherwise: "Say DONE."
"""


def test_a_translated_trigger_of_another_flow_is_an_error_and_words_it_takes_are_warned(tmp_path: Path) -> None:
    taker = OTHER.replace("flow: other", "flow: taker").replace("[OTHER]", "[TAKE]").replace("DONE, PEDIDO", "DONE")
    taker += 'translations:\n  - en: [TAKE]\n    es: [PEDIDO]\n  - en: "Done?"\n    es: "¿Listo?"\n' \
             '  - en: [DONE]\n    es: [LISTO]\n  - en: "Say DONE."\n    es: "Diga LISTO."\n'
    printed = lint(tmp_path, {"order.yaml": COMPLETE, "other.yaml": OTHER, "taker.yaml": taker})
    assert printed == [
        "taker.yaml:13:10: error: es: trigger 'PEDIDO' is also a trigger of flow 'order' in Spanish (es) (a word "
        "can start only one flow: choose another word)",
        "other.yaml:8:26: warning: 'PEDIDO' is a trigger of flow 'order' in Spanish (es) (triggers are checked "
        "first), so this reply never sees it (use another word here, or remove it from the triggers)"]


def test_a_translated_reply_word_that_is_a_trigger_is_warned_at_the_row(tmp_path: Path) -> None:
    flow = COMPLETE.replace("    es: [MENU]\n", "    es: [OTHER]\n")
    assert about(lint(tmp_path, {"order.yaml": flow, "other.yaml": OTHER}), "trigger of flow 'other'") == [
        "order.yaml:24:10: warning: es: 'OTHER' is a trigger of flow 'other' (triggers are checked first), so this "
        "reply never sees it (use another word here, or remove it from the triggers)"]


def test_a_word_two_languages_share_is_fine(tmp_path: Path) -> None:
    shared = COMPLETE.replace("    es: [PEDIDO]\n", "    es: [PEDIDO, ORDER]\n    fr: [COMMANDE, ORDER]\n")
    shared = shared.replace("es: [MENU]", "es: [MENU]\n    fr: [MENU]")
    assert about(lint(tmp_path, {"order.yaml": shared}), "ORDER") == []


MENU = """\
flow: collect
triggers: [COLLECT]
start: how
anywhere:
  - keywords: [AGENT]
    say: "An agent will text you."
states:
  how:
    say: "How would you like to get your order?"
    menu:
      choices:
        - label: Pick-up
          also: [pickup]
          go: end
        - label: Delivery
          go: end
    replies:
      - keywords: [LATER]
        say: "Later, then."
        go: end
    otherwise: "Please choose one:"
translations:
  - en: [COLLECT]
    es: [RECOGIDA]
  - en: "An agent will text you."
    es: "Un agente le escribirá."
  - en: [AGENT]
    es: [AGENTE]
  - en: "How would you like to get your order?"
    es: "¿Cómo quiere recibir su pedido?"
  - en: Pick-up
    es: Recoger
  - en: Delivery
    es: Entrega
  - en: [pickup]
    es: [recogida en tienda]
  - en: [LATER]
    es: [DESPUÉS]
  - en: "Later, then."
    es: "Entonces, más tarde."
  - en: "Please choose one:"
    es: "Elija una:"
"""


def test_a_complete_menu_flow_is_quiet(tmp_path: Path) -> None:
    assert lint(tmp_path, {"collect.yaml": MENU}) == []


def test_a_translated_label_that_would_choose_two_items_is_an_error(tmp_path: Path) -> None:
    flow = MENU.replace("es: Entrega", "es: recoger")
    assert lint(tmp_path, {"collect.yaml": flow}) == [
        "collect.yaml:34:9: error: es: 'recoger' would choose both 'Pick-up' and 'Delivery' (each number, label "
        "and synonym must choose one item: translate them apart)"]


def test_a_translated_label_that_is_a_compliance_word_is_an_error(tmp_path: Path) -> None:
    flow = MENU.replace("es: Entrega", "es: Ayuda")
    assert lint(tmp_path, {"collect.yaml": flow}) == [
        "collect.yaml:34:9: error: es: 'Ayuda' is a compliance keyword: a person who texts the label back is opted "
        "out, opted in or sent the help text, never given this choice (translate the label with more words "
        "(\"Cancelar el pedido\"))"]


def test_a_translated_keyword_an_earlier_reply_takes_is_warned(tmp_path: Path) -> None:
    flow = MENU.replace("es: [DESPUÉS]", "es: [DESPUÉS, AGENTE, pickup]")
    assert lint(tmp_path, {"collect.yaml": flow}) == [
        "collect.yaml:38:19: warning: es: a message of just 'AGENTE' goes to the flow's anywhere reply 1 (heard "
        "first in this state), never to reply 1 (translate it with another word, or leave it out of one of the two)",
        "collect.yaml:38:27: warning: es: a message of just 'pickup' goes to menu item 1 ('Pick-up') (heard first "
        "in this state), never to reply 1 (translate it with another word, or leave it out of one of the two)"]


def test_a_translated_word_that_takes_a_later_replys_word_is_warned_at_the_row(tmp_path: Path) -> None:
    flow = MENU.replace("es: [AGENTE]", "es: [AGENTE, LATER]")
    assert lint(tmp_path, {"collect.yaml": flow}) == [
        "collect.yaml:28:18: warning: es: 'LATER' takes a message of just 'LATER' before reply 1 hears it: people "
        "talked to in Spanish (es) never reach it with that word (translate it with another word)"]


def test_a_translated_trigger_that_is_a_compliance_word_is_refused_at_its_row(tmp_path: Path) -> None:
    flow = MENU.replace("es: [RECOGIDA]", "es: [RECOGIDA, AYUDA]")
    [line] = lint(tmp_path, {"collect.yaml": flow})
    assert line.startswith("collect.yaml:24:20: error: translation 1, es: 'AYUDA' is a compliance keyword")


def test_a_language_no_flow_speaks_is_warned_where_it_is_chosen(tmp_path: Path) -> None:
    flow = MENU.replace("          go: end\n        - label: Delivery",
                        "          go: end\n          language: de\n        - label: Delivery")
    assert lint(tmp_path, {"collect.yaml": flow}) == [
        "collect.yaml:15:21: warning: no flow is translated into German (de): people who choose it still get the "
        "flows' own texts (add de: versions to the flows' translations: (the flows speak en, es))"]


# -- pieces --------------------------------------------------------------------------------------

def test_a_menu_items_synonyms_are_found_after_the_base_label_the_variant_keeps() -> None:
    """A finding about the variant's synonyms list: translated words come after the base label."""
    flow = Flow.model_validate(read_yaml(MENU)[0])
    moves = _moves(places(flow), Rows.of(flow), "es")
    also = ("states", "how", "menu", "choices", 0, "also")
    finding = Finding((*also, 1), "a problem")
    assert moves.relocated(finding, "es") == Finding(("translations", 6, "es", 0), "es: a problem")
    assert moves.relocated(Finding((*also, 0), "x"), "es") is None  # the base label: the flow's own
    assert moves.relocated(Finding((*also, 2), "x"), "es") is None  # the base synonym


@pytest.mark.parametrize(("code", "name"), [("es", "Spanish (es)"), ("pt-BR", "Portuguese (Brazil) (pt-BR)"),
                                            ("xx", "xx")])
def test_languages_are_named_for_people(code: str, name: str) -> None:
    assert language_name(code) == name


def test_the_label_of_an_item_that_sets_the_language_needs_no_row(tmp_path: Path) -> None:
    flow = MENU.replace("        - label: Delivery\n", "        - label: Español\n          language: es\n")
    flow = flow.replace("  - en: Delivery\n    es: Entrega\n", "")
    assert lint(tmp_path, {"collect.yaml": flow}) == []
