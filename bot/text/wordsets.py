"""The fixed words the bot knows before any flow is written: compliance keywords and yes/no.

All in :func:`bot.text.normalise.normalise`'s form (case-folded, no surrounding punctuation).
"""

from __future__ import annotations

OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
OPT_IN_WORDS = frozenset({"start", "unstop"})
OPT_IN_WHILE_OPTED_OUT = frozenset({"yes"})  # YES re-subscribes only someone who opted out
HELP_WORDS = frozenset({"help", "info"})
#: Words no flow may capture: carriers require them to work from any state.
COMPLIANCE_WORDS = OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS

YES_WORDS = frozenset(
    {"yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "correct", "si", "sí", "👍"}
)
NO_WORDS = frozenset({"no", "n", "nope", "nah", "not really", "👎"})
