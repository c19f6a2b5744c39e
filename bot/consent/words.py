"""What one language's consent file says (``bot/consent/languages/*.yaml``), and what
``program.yaml``'s ``consent:`` section may add to it: the same shape in both places."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

LANGUAGES_FOLDER = Path(__file__).parent / "languages"
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # BCP 47: en, es, fr, pt-BR


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Examples(_Strict):
    """Messages the phrases must get right; lint and the tests check every one."""

    revoke: list[str] = []  # each must opt the sender out
    keep: list[str] = []  # none may opt anyone out


class DefaultTexts(_Strict):
    """A language's consent texts when ``program.yaml`` has none for it; ``{name}`` is the program's name."""

    help: str
    opt_out: str
    opt_in: str
    stop_hint: str


class ConsentWords(_Strict):
    """How people of one language opt out, opt back in and ask for help."""

    #: Whole-message keywords added to the built-in ones (``bot/text/wordsets.py``, never removable).
    opt_out: list[str] = []
    opt_in: list[str] = []
    opt_in_while_opted_out: list[str] = []
    help: list[str] = []
    #: Revocations in people's own words, in the phrase language of ``bot/consent/phrases.py``;
    #: each must be the whole clause once filler words are set aside. Treated exactly like STOP.
    revoke: list[str] = []
    #: Revocations found anywhere inside a sentence ("I've asked twice, take me off your list now"):
    #: say who and what ("take me off your list", never just "stop"). A guard word shortly before
    #: (``guards``) cancels one ("why did you stop texting me", "please don't stop texting me").
    revoke_within: list[str] = []
    #: Words that, in the few words before a ``revoke_within`` phrase, mean it is not a request.
    guards: list[str] = []
    #: Words or phrases that *might* be a revocation anywhere in a message: when no flow answers
    #: such a message, the fallback adds the language's ``stop_hint`` line.
    maybe: list[str] = []
    #: Words that may surround a revocation without changing it ("please", "thanks", "now").
    fillers: list[str] = []
    #: How people really type a word the phrases use: ``word: [spelling, …]`` ("txt" for "text").
    #: A spelling may stand for several words ("dont": "do not").
    spellings: dict[str, list[str]] = {}
    #: Real words that look like typos of phrase words and must never be read as them
    #: ("spending" is not "sending").
    not_typos: list[str] = []
    #: Words dropped wherever they stand ("stop freaking texting me"): intensifiers, swearing.
    ignore: list[str] = []
    #: Words that join two clauses, each read on its own ("stop texting me or I'll report you").
    clause_breaks: list[str] = []
    examples: Examples = Field(default_factory=Examples)
    #: used when the program file has no texts in this language (shipped files only)
    texts: DefaultTexts | None = None

    @field_validator("opt_out", "opt_in", "opt_in_while_opted_out", "help", "fillers", "not_typos", "ignore",
                     "clause_breaks", "guards")
    @classmethod
    def _not_blank(cls, words: list[str]) -> list[str]:
        for word in words:
            if not word.strip():
                raise ValueError("an empty word; remove it or write the word")
        return words


def builtin_language_files() -> dict[str, Path]:
    """The shipped consent files by language code, English first (its answers win a shared word)."""
    files = {path.stem: path for path in sorted(LANGUAGES_FOLDER.glob("*.yaml"))}
    return dict(sorted(files.items(), key=lambda item: item[0] != "en"))
