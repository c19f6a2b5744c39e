"""Words that collide once a flow is translated: lint's checks of what people may text in each
language, as the base checks do for the words the flow is written with.

- A translated trigger that is another flow's trigger, in any language: an error (the bot routes
  every language's triggers for everyone, so one of the two flows could never be started by it).
- A word a waiting state hears (a reply's keywords or any_of, a menu label or synonym) that is a
  trigger in another language: a warning, as :mod:`bot.flows.trigger_words` warns in one.
- In the variant a language runs: a translated menu word that would choose two items (an error,
  as the schema refuses in the base), a translated word that an earlier reply or menu item of
  the same state takes first (a warning), a translated menu label that is a compliance word (an
  error: texted back, it opts out or gets the help text).

Only collisions a translation brings are reported here: the base flow's own are the base checks'.
A word two languages of one flow share (NO, OK) is fine: it starts the flow, and says nothing
about the person's language.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bot.flows.problems import Finding, Path
from bot.flows.schema import Choice, Flow, Rule
from bot.flows.translation_table import Place, Rows, language_name, places
from bot.flows.translations import languages
from bot.text import matching
from bot.text.normalise import normalise
from bot.text.wordsets import is_compliance_word


@dataclass(frozen=True)
class Word:
    """A word people may text, where the file has it, and the language of the row it comes
    from (None: the flow's own word)."""

    text: str
    path: Path
    language: str | None = None


@dataclass(frozen=True)
class Listener:
    """What takes a message by its words in a waiting state: a reply, or a menu item."""

    kind: str  # "keywords", "any_of" or "menu"
    name: str  # "reply 2", "the flow's anywhere reply 1", "menu item 1 ('Pick-up')"
    words: tuple[Word, ...]
    label: str = ""  # a menu item's label, as the flow writes it

    def taker(self, word: str) -> Word | None:
        """Its word that takes a message of just ``word`` (any_of: found inside it), or None."""
        if self.kind == "any_of":
            return next((own for own in self.words
                         if matching.any_of_matcher([own.text])(normalise(word), word) is not None), None)
        return next((own for own in self.words if normalise(own.text) == normalise(word)), None)


# -- in the variant of one language ----------------------------------------------------------------

def variant_word_findings(flow: Flow, found: list[Place], rows: Rows, language: str) -> Iterator[Finding]:
    """The collisions the ``language`` version of ``flow`` brings into its waiting states (``found``:
    its :func:`places`)."""
    at = {place.path: place for place in found}
    for name, state in flow.states.items():
        if not state.waits:
            continue
        listeners = [*_replies(flow.anywhere, ("anywhere",), "the flow's anywhere reply", at, rows, language),
                     *_menu(("states", name, "menu", "choices"), state.menu.choices if state.menu else [],
                            at, rows, language),
                     *_replies(state.rules, ("states", name, "replies"), "reply", at, rows, language)]
        yield from _menu_findings([listener for listener in listeners if listener.kind == "menu"], language)
        yield from _shadowed(listeners, language)
    yield from _compliance_labels(flow, at, rows, language)


def _words(place: Place | None, base: list[str], path: Path, rows: Rows, language: str) -> list[Word]:
    own = [Word(word, (*path, index)) for index, word in enumerate(base)]
    added = [Word(word, where, language) for word, where in rows.added_words(place, language)] if place else []
    return [*added, *own]


def _replies(rules: list[Rule], base: Path, noun: str, at: dict[Path, Place], rows: Rows,
             language: str) -> Iterator[Listener]:
    for index, rule in enumerate(rules):
        for kind in ("keywords", "any_of"):
            written = getattr(rule, kind)
            if written:
                path = (*base, index, kind)
                yield Listener(kind, f"{noun} {index + 1}", tuple(_words(at.get(path), written, path, rows, language)))


def _menu(base: Path, choices: list[Choice], at: dict[Path, Place], rows: Rows, language: str) -> Iterator[Listener]:
    for index, choice in enumerate(choices):
        path = (*base, index)
        label_path = (*path, "label")
        words = [Word(str(index + 1), label_path), Word(choice.label, label_path)]
        label = at.get(label_path)
        version = rows.version(label.key, language) if label is not None else None
        if version is not None and isinstance(version[0], str) and normalise(version[0]) != normalise(choice.label):
            words.append(Word(version[0], version[1], language))
        words += _words(at.get((*path, "also")), list(choice.also), (*path, "also"), rows, language)
        yield Listener("menu", f"menu item {index + 1} ({choice.label!r})", tuple(words), choice.label)


def _menu_findings(items: list[Listener], language: str) -> Iterator[Finding]:
    """A translated number, label or synonym that would choose two items (the schema's rule)."""
    seen: dict[str, tuple[Listener, Word]] = {}
    for item in items:
        for word in item.words:
            key = normalise(word.text)
            first = seen.setdefault(key, (item, word))
            if first[0] is item or not (word.language or first[1].language):
                continue
            blamed = word if word.language else first[1]
            yield Finding(blamed.path, f"{language}: {blamed.text!r} would choose both {first[0].label!r} and "
                                       f"{item.label!r}", hint="each number, label and synonym must choose one "
                                                               "item: translate them apart")


def _shadowed(listeners: list[Listener], language: str) -> Iterator[Finding]:
    """A word a listener waits for that an earlier one of the same state takes first, where a
    translation brings either word (menu items among themselves: :func:`_menu_findings`)."""
    for later_index, later in enumerate(listeners):
        for word in later.words:
            for earlier in listeners[:later_index]:
                taker = earlier.taker(word.text)
                if taker is None or earlier.kind == later.kind == "menu":
                    continue
                if word.language:
                    yield Finding(word.path, f"{language}: a message of just {word.text!r} goes to {earlier.name} "
                                             f"(heard first in this state), never to {later.name}", severity="warning",
                                  hint="translate it with another word, or leave it out of one of the two")
                elif taker.language:
                    yield Finding(taker.path, f"{language}: {taker.text!r} takes a message of just {word.text!r} "
                                              f"before {later.name} hears it: people talked to in "
                                              f"{language_name(language)} never reach it with that word",
                                  severity="warning", hint="translate it with another word")
                break  # the first listener that takes it is the one that matters


def _compliance_labels(flow: Flow, at: dict[Path, Place], rows: Rows, language: str) -> Iterator[Finding]:
    for place in at.values():
        if place.path[-1:] != ("label",):
            continue
        version = rows.version(place.key, language)
        if version is not None and isinstance(version[0], str) and is_compliance_word(version[0]):
            yield Finding(version[1], f"{language}: {version[0]!r} is a compliance keyword: a person who texts the "
                                      "label back is opted out, opted in or sent the help text, never given this "
                                      "choice", hint="translate the label with more words (\"Cancelar el pedido\")")


# -- across flows: triggers in every language -------------------------------------------------------

@dataclass(frozen=True)
class _Trigger:
    flow: Flow
    language: str | None  # None: among the flow's own triggers


def trigger_findings(flows: list[Flow]) -> Iterator[tuple[Flow, Finding]]:
    """Translated triggers that are another flow's trigger, and words waited for that are a
    trigger in a language other than the flow's own (the base pairs are the base checks')."""
    owners: dict[str, _Trigger] = {}
    for flow in flows:
        for word in flow.triggers or ():
            owners.setdefault(normalise(word), _Trigger(flow, None))
    found = {id(flow): places(flow) for flow in flows}
    for flow in flows:
        rows = Rows.of(flow)
        triggers = next((place for place in found[id(flow)] if place.path == ("triggers",)), None)
        for language in languages(flow):
            for word, path in rows.added_words(triggers, language) if triggers else []:
                owner = owners.setdefault(normalise(word), _Trigger(flow, language))
                if owner.flow is not flow:
                    yield flow, Finding(path, f"{language}: trigger {_spelled(flow, path, word)} is also a trigger "
                                              f"of flow {owner.flow.flow!r}{_in(owner)}",
                                        hint="a word can start only one flow: choose another word")
    for flow in flows:
        yield from ((flow, finding) for finding in _waited_for_triggers(flow, found[id(flow)], owners))


def _spelled(flow: Flow, path: Path, word: str) -> str:
    """``word`` as the row writes it; a spelling the bot adds (MENÚ heard as "menu") says so."""
    _, number, code, index = path
    written = flow.translations[int(number)][str(code)][int(index)]
    return repr(word) if written == word else f"{written!r} (heard without its accents as {word!r})"


def _in(owner: _Trigger) -> str:
    return f" in {language_name(owner.language)}" if owner.language else ""


_EFFECT = {"keywords": "so this reply never sees it",
           "any_of": "so a message of just that word starts it instead of reaching this reply",
           "menu": "so a message of just that word starts it instead of choosing this item"}


def _waited_for_triggers(flow: Flow, found: list[Place], owners: dict[str, _Trigger]) -> Iterator[Finding]:
    rows = Rows.of(flow)
    at = {place.path: place for place in found}
    reported: set[Path] = set()
    for language in languages(flow) or [flow.language]:
        for name, state in flow.states.items():
            listeners = [*_replies(flow.anywhere, ("anywhere",), "", at, rows, language),
                         *_menu(("states", name, "menu", "choices"), state.menu.choices if state.menu else [],
                                at, rows, language),
                         *_replies(state.rules, ("states", name, "replies"), "", at, rows, language)]
            for listener in listeners:
                for word in listener.words[1:] if listener.kind == "menu" else listener.words:
                    owner = owners.get(normalise(word.text))
                    if owner is None or (owner.language is None and word.language is None) or word.path in reported:
                        continue
                    reported.add(word.path)
                    prefix = f"{word.language}: " if word.language else ""
                    yield Finding(word.path, f"{prefix}{word.text!r} is a trigger of flow {owner.flow.flow!r}"
                                             f"{_in(owner)} (triggers are checked first), {_EFFECT[listener.kind]}",
                                  severity="warning", hint="use another word here, or remove it from the triggers")
