"""A flow in other languages: one file, its structure written once, its texts and words per language.

A flow is written in its base language (``language:``, English by default) and may carry a
``translations:`` table: each row pairs a text (or a list of words) as the flow writes it in the
base language with its versions in other languages::

    translations:
      - en: "What's your order number?"
        es: "¿Cuál es su número de pedido?"
      - en: [STATUS, ORDER, TRACK]        # triggers, keywords, any_of, menu synonyms: the same list
        es: [ESTADO, PEDIDO]

A row is found by its base text, as gettext finds a msgid: a translation applies wherever the flow
says that text, and a base text that changes no longer finds its old row, which then stands out as
stale (lint; the next PO export offers it as a "fuzzy" guess) instead of being sent silently or
lost. A text with no row for a language is sent in the base language.

For each language the table names, :func:`translated` makes the flow as it runs for a person in
that language: every text replaced by its translation, every list of words *extended* with its
translated words (a Spanish speaker may still text MENU), menu labels translated with the base
label kept as a synonym. The engine runs that variant for a conversation in that language
(``CompiledFlow.in_language``); structure, state names and conditions are the base flow's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.text.normalise import fold, normalise
from bot.text.wordsets import is_compliance_word

if TYPE_CHECKING:
    from bot.flows.schema import Flow, Rule, State

#: A text of the flow as written, with where it stands ("ask_number.say", "triggers")
TextMap = Callable[[str, str], str]
#: A list of words of the flow as written, with where it stands; returns the list to use
WordsMap = Callable[[list[str], str], list[str]]


def words_key(words: list[str]) -> tuple[str, ...]:
    """How a list of words is found in the table: each word as people's replies are compared."""
    return tuple(normalise(word) for word in words)


@dataclass(frozen=True)
class Item:
    """One thing a translator translates: a text, or a list of words, and where the flow has it."""

    where: str  # "triggers", "ask_number.say", "ask_number.replies.2.keywords", "ask_method.menu.1.label"
    text: str | None = None
    words: tuple[str, ...] | None = None


def translatable(flow: Flow) -> list[Item]:
    """Every text and list of words of ``flow``, in the order the file has them (a text said in
    two places is listed twice: one table row serves both)."""
    found: list[Item] = []

    def text(value: str, where: str) -> str:
        found.append(Item(where, text=value))
        return value

    def words(value: list[str], where: str) -> list[str]:
        found.append(Item(where, words=tuple(value)))
        return value

    map_flow(flow, text, words)
    return found


def languages(flow: Flow) -> list[str]:
    """The languages the flow's table translates into, in the order they first appear."""
    seen: list[str] = []
    for row in flow.translations:
        seen += [code for code in row if code != flow.language and code not in seen]
    return seen


def translated(flow: Flow, language: str) -> Flow:
    """The flow as it runs for a person who speaks ``language`` (the base flow for its own)."""
    if language == flow.language:
        return flow
    texts: dict[str, str] = {}
    words: dict[tuple[str, ...], list[str]] = {}
    for row in flow.translations:
        base, version = row.get(flow.language), row.get(language)
        if version is None or base is None:
            continue
        if isinstance(base, str) and isinstance(version, str):
            texts[base] = version
        elif isinstance(base, list) and isinstance(version, list):
            words[words_key(base)] = version

    def text(value: str, where: str) -> str:
        return texts.get(value, value)

    def extended(value: list[str], where: str) -> list[str]:
        added = [word for word in with_plain_spellings(words.get(words_key(value), []))
                 if normalise(word) not in words_key(value)]
        return [*added, *value]  # theirs first: "{{ triggers }}" in their texts names ESTADO

    return map_flow(flow, text, extended, label_kept=True).model_copy(update={"language": language})


def with_plain_spellings(words: list[str]) -> list[str]:
    """``words`` and, after them, each one's spelling without accents (MENÚ: "menu", ESPAÑOL:
    "espanol"): people often text without them. Never a compliance word: that spelling is STOP's."""
    plain = [fold(word) for word in words]
    extra = [word for word in dict.fromkeys(plain)
             if word and word not in {normalise(original) for original in words} and not is_compliance_word(word)]
    return [*words, *extra]


def map_flow(flow: Flow, text: TextMap, words: WordsMap, *, label_kept: bool = False) -> Flow:
    """``flow`` with each text passed through ``text`` and each list of words through ``words``
    (in file order); ``label_kept``: a menu label that changed stays a synonym of its item."""
    states = {name: _map_state(state, name, text, words, label_kept) for name, state in flow.states.items()}
    return flow.model_copy(update={
        "triggers": words(flow.triggers, "triggers") if flow.triggers else flow.triggers,
        "listed": text(flow.listed, "listed") if isinstance(flow.listed, str) else flow.listed,
        "anywhere": [_map_rule(rule, f"anywhere.{number}", text, words)
                     for number, rule in enumerate(flow.anywhere, start=1)],
        "states": states,
    })


def _texts(values: list[str], where: str, text: TextMap) -> list[str]:
    return [text(value, where) for value in values]


def _map_rule(rule: Rule, where: str, text: TextMap, words: WordsMap) -> Rule:
    return rule.model_copy(update={
        "keywords": words(rule.keywords, f"{where}.keywords") if rule.keywords else rule.keywords,
        "any_of": words(rule.any_of, f"{where}.any_of") if rule.any_of else rule.any_of,
        "say": _texts(rule.say, f"{where}.say", text),
    })


def _map_state(state: State, name: str, text: TextMap, words: WordsMap, label_kept: bool) -> State:
    update: dict[str, object] = {
        "say": _texts(state.say, f"{name}.say", text),
        "otherwise": _texts(state.otherwise, f"{name}.otherwise", text),
        "rules": [_map_rule(rule, f"{name}.replies.{number}", text, words)
                  for number, rule in enumerate(state.rules, start=1)],
    }
    if state.fetch is not None:
        fetch = state.fetch
        update["fetch"] = fetch.model_copy(update={
            "fallback": text(fetch.fallback, f"{name}.fetch.fallback"),
            "not_found": text(fetch.not_found, f"{name}.fetch.not_found") if fetch.not_found else fetch.not_found})
    if state.notify is not None:
        update["notify"] = state.notify.model_copy(update={"say": _texts(state.notify.say, f"{name}.notify.say", text)})
    if state.remind is not None:
        update["remind"] = state.remind.model_copy(update={"say": _texts(state.remind.say, f"{name}.remind.say", text)})
    if state.attempts is not None:
        update["attempts"] = state.attempts.model_copy(
            update={"reask": _texts(state.attempts.reask, f"{name}.attempts.reask", text)})
    if state.menu is not None:
        choices = []
        for number, choice in enumerate(state.menu.choices, start=1):
            where = f"{name}.menu.{number}"
            label = text(choice.label, f"{where}.label")
            also = words(choice.also, f"{where}.also") if choice.also else list(choice.also)
            if label_kept and label != choice.label:
                also = [*with_plain_spellings([label])[1:], choice.label, *also]  # and the base label still does
            choices.append(choice.model_copy(update={
                "label": label, "also": also, "say": _texts(choice.say, f"{where}.say", text),
                # what is saved stays the base label: the flow's branches compare with it
                "value": choice.value if choice.value is not None else choice.label}))
        update["menu"] = state.menu.model_copy(update={"choices": choices})
    return state.model_copy(update=update)
