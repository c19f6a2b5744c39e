"""The fixed words the bot knows before any flow is written: compliance keywords and yes/no.

Compliance keywords are kept per language in :func:`bot.text.normalise.keyword_form`'s form
(folded, accents dropped: "ARRÊT" is "arret"). They are the floor: ``program.yaml`` may add words
(``consent:``), never remove these. English comes first, so a word two languages share ("stop",
"info") is answered in English.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from bot.text.normalise import keyword_form


class KeywordKind(enum.StrEnum):
    """What a compliance keyword asks for."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    OPT_IN_WHILE_OPTED_OUT = "opt_in_while_opted_out"  # YES: re-subscribes only someone opted out
    HELP = "help"


def _folded(words: Iterable[str]) -> frozenset[str]:
    return frozenset(keyword_form(word) for word in words)


#: Twilio's default English lists (Advanced Opt-Out), and the Spanish and French words carriers
#: and Twilio's Advanced Opt-Out examples use. Sources: docs/compliance.md.
BUILT_IN_KEYWORDS: Mapping[str, Mapping[KeywordKind, frozenset[str]]] = {
    "en": {
        KeywordKind.OPT_OUT: _folded(["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                                      "OPTOUT"]),
        KeywordKind.OPT_IN: _folded(["START", "UNSTOP"]),
        KeywordKind.OPT_IN_WHILE_OPTED_OUT: _folded(["YES"]),
        KeywordKind.HELP: _folded(["HELP", "INFO"]),
    },
    "es": {
        KeywordKind.OPT_OUT: _folded(["ALTO", "PARAR", "DETENER", "CANCELAR", "BAJA", "DESUSCRIBIR",
                                      "DESUSCRIBIRME"]),
        KeywordKind.OPT_IN: _folded(["COMENZAR", "INICIAR", "ALTA", "REANUDAR"]),
        KeywordKind.OPT_IN_WHILE_OPTED_OUT: _folded(["SÍ"]),
        KeywordKind.HELP: _folded(["AYUDA", "INFORMACIÓN"]),
    },
    "fr": {
        KeywordKind.OPT_OUT: _folded(["ARRÊT", "ARRÊTER", "ARRETEZ", "DÉSABONNER", "DÉSINSCRIRE",
                                      "DÉSINSCRIPTION"]),
        KeywordKind.OPT_IN: _folded(["COMMENCER", "DÉMARRER", "REPRENDRE"]),
        KeywordKind.OPT_IN_WHILE_OPTED_OUT: _folded(["OUI"]),
        KeywordKind.HELP: _folded(["AIDE"]),
    },
}

OPT_OUT_WORDS = BUILT_IN_KEYWORDS["en"][KeywordKind.OPT_OUT]
OPT_IN_WORDS = BUILT_IN_KEYWORDS["en"][KeywordKind.OPT_IN]
HELP_WORDS = BUILT_IN_KEYWORDS["en"][KeywordKind.HELP]
#: Words no flow may capture, in every built-in language: carriers require them to work from any
#: state. (YES, SÍ, OUI are left out: they are a flow's answers unless the sender opted out.)
COMPLIANCE_WORDS = frozenset(
    word for kinds in BUILT_IN_KEYWORDS.values() for kind, words in kinds.items()
    if kind is not KeywordKind.OPT_IN_WHILE_OPTED_OUT for word in words
)


def is_compliance_word(text: str) -> bool:
    """Whether a whole message would be taken as a built-in compliance keyword."""
    return keyword_form(text) in COMPLIANCE_WORDS


def compliance_kind(text: str) -> KeywordKind | None:
    """What a whole message of ``text`` asks for as a built-in keyword (the first language's
    reading, as the bot answers), or None."""
    word = keyword_form(text)
    return next((kind for kinds in BUILT_IN_KEYWORDS.values() for kind, words in kinds.items()
                 if word in words), None)


YES_WORDS = frozenset(
    {"yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "correct", "si", "sí", "👍"}
)
NO_WORDS = frozenset({"no", "n", "nope", "nah", "not really", "👎"})
#: Each language's own yes and no, heard as well as the English ones from someone talked to in it
#: (a flow's ``translations:``). Words two languages share ("no") mean the same in both.
ANSWER_WORDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "es": (frozenset({"si", "sí", "claro", "vale", "de acuerdo", "correcto", "por supuesto"}),
           frozenset({"no", "nop", "para nada", "no gracias"})),
    "fr": (frozenset({"oui", "ouais", "d accord", "bien sur", "bien sûr", "exact"}),
           frozenset({"non", "non merci", "pas du tout"})),
    "pt": (frozenset({"sim", "claro", "certo"}), frozenset({"nao", "não"})),
}
