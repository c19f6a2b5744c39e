"""Flows in the texter's language (issue 16): who is talked to in which language, and what they get.

The shipped flows carry Spanish rows (``flows/status.yaml``, ``flows/signup.yaml``) and the
program Spanish texts (``flows/program.yaml``): these tests text them as people would, through the
real pipeline on a real store, and check every reply word for word.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.engine import Engine
from bot.flows.loader import FlowSet, load_flows
from bot.inbox import Inbox
from bot.store import Store, open_store
from bot.types import Inbound
from tests.conftest import PROGRAM_YAML, SHIPPED_FLOWS, write_flows

OURS = "+15550001111"
SPANISH_NUMBER = "+15550002222"
SENDER = "+15557654321"

SHIPPED = load_flows(SHIPPED_FLOWS)
SPANISH = SHIPPED.program.in_language("es")


class Orders:
    async def get_json(self, url: str, timeout: float, **_: Any) -> Any:
        return {"status": "shipped", "detail": "It left our warehouse today."}


class Person:
    """Someone texting the bot: each message a new MessageSid, through the real pipeline."""

    def __init__(self, store: Store, flows: FlowSet, sender: str = SENDER, to: str = OURS) -> None:
        self.store, self.sender, self.to = store, sender, to
        self.inbox = Inbox(store, Engine(flows, Orders()))
        self.sids = (f"SM{uuid.uuid4().hex}" for _ in itertools.count())

    async def text(self, body: str) -> list[str]:
        return list((await self.inbox.receive(Inbound(next(self.sids), self.sender, self.to, body))).replies)

    async def language(self) -> str | None:
        return (await self.store.snapshot(self.sender, "")).conversation.language


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = open_store(f"sqlite:///{tmp_path / 'bot.db'}")
    yield opened
    await opened.close()


async def test_ayuda_gets_the_spanish_help_and_estado_runs_the_order_flow_in_spanish(store: Store) -> None:
    person = Person(store, SHIPPED)
    assert await person.text("AYUDA") == [SPANISH.help]
    assert "ESTADO para seguir un pedido" in SPANISH.help  # the Spanish triggers, by {{ triggers_described }}
    assert await person.language() == "es"
    assert await person.text("ESTADO") == ["¿Cuál es su número de pedido? (6 dígitos, como 123456)"]
    assert await person.text("12345") == [
        "Son 6 dígitos, como 123456. Pruebe de nuevo o envíe MENÚ para salir."]
    assert await person.text("123456") == ["El pedido 123456 está shipped. It left our warehouse today."]
    assert await person.text("hola") == [
        "No entendí. Envíe ESTADO o UNIRME, o AYUDA para más opciones."]


async def test_a_spanish_conversation_answers_si_and_keeps_its_words(store: Store) -> None:
    person = Person(store, SHIPPED)
    assert await person.text("UNIRME") == ["¡Bienvenido a los avisos de Acme Orders! ¿Cuál es su nombre?"]
    assert await person.text("Bo") == ["¡Gracias, Bo! ¿Le suscribimos a los avisos? Responda SÍ o NO."]
    assert await person.text("SÍ") == ["¡Listo, Bo! Le avisaremos cuando se envíen sus pedidos.",
                                       "Responda ALTO en cualquier momento para darse de baja."]
    # Spanish words added to a list, the English ones still heard (MENU as MENÚ)
    await person.text("ESTADO")
    assert await person.text("menu") == ["De acuerdo. Envíe ESTADO cuando quiera seguir un pedido."]


async def test_the_language_is_kept_across_flows_and_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    first = open_store(url)
    before = Person(first, SHIPPED)
    await before.text("ESTADO")
    await before.text("123456")  # the flow ends; the language stays the person's
    await first.close()
    again = open_store(url)  # a restart: a new process, the same store
    try:
        person = Person(again, SHIPPED)
        assert await person.language() == "es"
        assert await person.text("nada") == [
            "No entendí. Envíe ESTADO o UNIRME, o AYUDA para más opciones."]
        assert await person.text("UNIRME") == ["¡Bienvenido a los avisos de Acme Orders! ¿Cuál es su nombre?"]
        assert await person.text("STATUS") == ["What's your order number? (6 digits, like 123456)"]  # English word
        assert await person.language() == "en"
    finally:
        await again.close()


CHOICES = """\
flow: pickup
triggers: [PICKUP, OK]
start: how
states:
  how:
    say: "How do you want it?"
    menu:
      save: method
      choices:
        - label: Pick-up
          also: [collect]
          go: done
        - label: Delivery
          go: done
  done:
    say: "You chose {{ method }}."
translations:
  - en: [PICKUP, OK]
    es: [RECOGIDA, OK]
  - en: "How do you want it?"
    es: "¿Cómo lo quiere?"
  - en: Pick-up
    es: Recoger
  - en: [collect]
    es: [buscarlo]
  - en: Delivery
    es: A domicilio
  - en: "You chose {{ method }}."
    es: "Eligió {{ method }}."
"""

CHOOSE_LANGUAGE = """\
flow: welcome
triggers: [HELLO, HOLA]
start: which
states:
  which:
    say: "Which language? / ¿Qué idioma?"
    menu:
      choices:
        - label: English
          language: en
          go: hi
        - label: Español
          language: es
          go: hi
    replies:
      - keywords: [spanish]
        language: es
        go: hi
  hi:
    say: "Hi! Text PICKUP to choose how you get your order."
translations:
  - en: "Hi! Text PICKUP to choose how you get your order."
    es: "¡Hola! Envíe RECOGIDA para elegir cómo recibe su pedido."
"""


def custom(tmp_path: Path, numbers: str = "") -> FlowSet:
    program = PROGRAM_YAML + numbers
    return load_flows(write_flows(tmp_path / "flows", {"pickup.yaml": CHOICES, "welcome.yaml": CHOOSE_LANGUAGE},
                                  program=program))


async def test_a_menu_item_is_picked_by_its_spanish_label_and_saves_the_flows_value(store: Store,
                                                                                     tmp_path: Path) -> None:
    person = Person(store, custom(tmp_path))
    assert await person.text("RECOGIDA") == ["¿Cómo lo quiere?\n1) Recoger\n2) A domicilio"]
    assert await person.text("recoger") == ["Eligió Pick-up."]  # the value the flow's branches know
    await person.text("RECOGIDA")
    assert await person.text("buscarlo") == ["Eligió Pick-up."]  # a translated synonym
    await person.text("RECOGIDA")
    assert await person.text("Delivery") == ["Eligió Delivery."]  # the English label still chooses


async def test_a_word_two_languages_share_does_not_switch_the_persons_language(store: Store,
                                                                              tmp_path: Path) -> None:
    flows = custom(tmp_path)
    spanish = Person(store, flows, sender="+15557654322")
    await spanish.text("RECOGIDA")
    assert await spanish.language() == "es"
    assert await spanish.text("OK") == ["¿Cómo lo quiere?\n1) Recoger\n2) A domicilio"]  # OK: both lists
    assert await spanish.language() == "es"
    english = Person(store, flows, sender="+15557654323")
    assert await english.text("OK") == ["How do you want it?\n1) Pick-up\n2) Delivery"]
    assert await english.language() is None
    await english.text("PICKUP")
    await english.text("no")  # an answer both languages have: never a switch
    assert await english.language() == "en"


async def test_a_flow_step_sets_the_language_and_the_next_state_speaks_it(store: Store, tmp_path: Path) -> None:
    person = Person(store, custom(tmp_path))
    assert await person.text("HELLO") == ["Which language? / ¿Qué idioma?\n1) English\n2) Español"]
    assert await person.text("2") == ["¡Hola! Envíe RECOGIDA para elegir cómo recibe su pedido."]
    assert await person.language() == "es"
    await person.text("HELLO")  # HELLO is the English trigger: English again, until they choose
    assert await person.text("spanish") == ["¡Hola! Envíe RECOGIDA para elegir cómo recibe su pedido."]


async def test_the_number_they_text_gives_the_language_until_they_choose(store: Store, tmp_path: Path) -> None:
    numbers = f"  numbers:\n    \"{SPANISH_NUMBER}\": es\n"
    flows = custom(tmp_path, numbers)
    assert flows.program.numbers == {SPANISH_NUMBER: "es"}
    person = Person(store, flows, to=SPANISH_NUMBER)
    assert await person.text("OK") == ["¿Cómo lo quiere?\n1) Recoger\n2) A domicilio"]
    assert await person.language() is None  # not chosen: the number's, for as long as they text it
    assert await Person(store, flows, sender="+15557654329").text("OK") == [
        "How do you want it?\n1) Pick-up\n2) Delivery"]  # our other number: the flows' own language


async def test_a_broadcast_starts_a_flow_in_the_language_of_its_csv_row(store: Store) -> None:
    person = Person(store, SHIPPED)
    started = await person.inbox.start(SENDER, "order_status", {"language": "es"}, "start-1")
    assert list(started.replies) == ["¿Cuál es su número de pedido? (6 dígitos, como 123456)"]
    assert await person.language() == "es"


def test_the_base_program_texts_stay_plain_strings() -> None:
    written = yaml.safe_load((SHIPPED_FLOWS / "program.yaml").read_text(encoding="utf-8"))["program"]
    for name in ("help", "opt_out", "opt_in", "fallback", "stop_hint"):
        assert isinstance(written[name], str), name
    assert set(written["languages"]) == {"es", "fr"}
    assert SHIPPED.program.in_language(None) is SHIPPED.program
    assert SHIPPED.program.in_language("de") is SHIPPED.program  # no German: the English texts
    assert SHIPPED.program.in_language("fr").fallback == SHIPPED.program.fallback  # French has none of its own


async def test_one_moment_is_said_in_the_persons_language(store: Store) -> None:
    """A slow lookup's interim answer ("one moment") in Spanish for someone talked to in Spanish."""
    import asyncio

    from bot.inbox import Patience

    class SlowOrders(Orders):
        async def get_json(self, url: str, timeout: float, **_: Any) -> Any:
            await asyncio.sleep(0.3)
            return await super().get_json(url, timeout)

    person = Person(store, SHIPPED)
    person.inbox = Inbox(store, Engine(SHIPPED, SlowOrders()))
    await person.text("ESTADO")
    sent: list[tuple[str, ...]] = []

    async def deliver(record: Inbound, replies: tuple[str, ...]) -> bool:
        sent.append(replies)
        return True

    answered = await person.inbox.receive(Inbound("SMslow1", SENDER, OURS, "123456"),
                                          Patience(0.05, SHIPPED.program.wait, deliver))
    assert answered.replies == (SPANISH.wait,) and SPANISH.wait == "Un momento, lo estoy buscando…"
    await asyncio.wait(person.inbox.pending())
    assert sent == [("El pedido 123456 está shipped. It left our warehouse today.",)]


async def test_a_mistyped_spanish_trigger_is_offered_in_spanish_and_a_yes_starts_it_in_spanish(
        store: Store) -> None:
    person = Person(store, SHIPPED)
    assert await person.text("ESTDO") == ["¿Quiso decir ESTADO? Responda SÍ"]
    assert await person.text("si") == ["¿Cuál es su número de pedido? (6 dígitos, como 123456)"]
    assert await person.language() == "es"
    english = Person(store, SHIPPED, sender="+15557654330")
    assert await english.text("STAUTS") == ["Did you mean STATUS? Reply YES"]


async def test_translated_words_are_heard_without_their_accents_too(store: Store, tmp_path: Path) -> None:
    """People often text without accents: "inscripcion" is INSCRIPCIÓN, "espanol" is Español."""
    flow = CHOICES.replace("    es: [RECOGIDA, OK]", "    es: [RECOGIDA, OK, RECOGIDA EN TIENDA]").replace(
        "    es: Recoger", "    es: Recogerlo aquí")
    flows = load_flows(write_flows(tmp_path / "accents", {"pickup.yaml": flow}))
    person = Person(store, flows)
    assert await person.text("recogida en tienda") == ["¿Cómo lo quiere?\n1) Recogerlo aquí\n2) A domicilio"]
    assert await person.text("recogerlo aqui") == ["Eligió Pick-up."]
    assert await person.language() == "es"


def test_a_number_not_written_as_twilio_writes_it_is_refused(tmp_path: Path) -> None:
    from bot.flows.problems import FlowLoadError

    with pytest.raises(FlowLoadError, match=r"write '\(555\) 000-2222'|not a phone number"):
        custom(tmp_path, '  numbers:\n    "(555) 000-2222": es\n')


async def test_a_regional_language_speaks_the_flows_language_when_it_has_no_own_texts(store: Store) -> None:
    """es-MX (from numbers:, a CSV, a reply's language:) gets the es texts, never English by accident."""
    person = Person(store, SHIPPED)
    await person.inbox.set_language(SENDER, "es-MX")
    assert await person.text("hola") == ["No entendí. Envíe ESTADO o UNIRME, o AYUDA para más opciones."]
    assert await person.text("RASTREAR") == ["¿Cuál es su número de pedido? (6 dígitos, como 123456)"]


def test_a_translation_that_shows_other_values_than_its_text_is_an_error(tmp_path: Path) -> None:
    """Typed by hand (import refuses it): {{ env.API_KEY }} the text never showed, {{ method }} dropped."""
    from bot.flows.problems import FlowLoadError

    flow = CHOICES.replace('    es: "Eligió {{ method }}."', '    es: "Eligió {{ env.API_KEY }}."')
    with pytest.raises(FlowLoadError) as refused:
        load_flows(write_flows(tmp_path / "values", {"pickup.yaml": flow}))
    assert "error: es: translation 6 shows {{ env }}, which the text does not" in str(refused.value)
    assert "warning: es: translation 6 leaves out {{ method }}" in str(refused.value)
