"""Recognising consent in what people text: the keywords (exact, as Twilio reads them) and
revocations in a person's own words ("stop texting me", "unsub pls", "ALTO por favor").

Built once per flow load from the shipped language files plus ``program.yaml``'s additions
(:mod:`bot.flows.consent_source` reads and locates them); asked on every message before any flow.
The FCC's rule (47 CFR 64.1200(a)(10)) is the reason: a revocation "by any reasonable means" must
be honoured, so a clear one is treated exactly like STOP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from bot.consent.phrases import PhraseError, read_phrase
from bot.consent.words import ConsentWords, DefaultTexts
from bot.text.normalise import fold, folded_words, keyword_form
from bot.text.wordsets import BUILT_IN_KEYWORDS, KeywordKind

MAX_ANALYSED_CHARACTERS = 1_600  # one full SMS concatenation; a revocation is never longer
#: How close a typed word must be to a phrase word to be read as it (rapidfuzz's ratio, 0-100):
#: "unsubcribe" → "unsubscribe" scores 95, "texing" → "texting" 92.
TYPO_SCORE = 85
GUARD_REACH = 4  # how many words before a phrase found inside a sentence a guard word cancels it
MIN_TYPO_LENGTH = 6  # shorter words are too easily a different word ("stpo" is a spelling instead)
_MAX_READINGS = 64  # filler-stripped readings tried per clause
_SPELT_OUT = re.compile(r"(?<![^\W_])(?:[^\W\d_][.\- ]){2,}[^\W\d_](?![^\W_])")  # "s.t.o.p", "S T O P"
_STRETCHED = re.compile(r"(.)\1{2,}")
_NON_SPACE = re.compile(r"\S+")
_LETTER = re.compile(r"[^\W\d_]")
_UNREAD = object()
_CLAUSE_BREAK = re.compile(r"[,.!?;:…\n\r¡¿]+|\s[-–—]+\s|[–—]+|\s-{2,}\s?")


@dataclass(frozen=True, slots=True)
class KeywordHit:
    """A whole message that is a compliance keyword: what it asks for, in which language."""

    kind: KeywordKind
    language: str
    word: str  # the keyword, folded ("arret")


@dataclass(frozen=True, slots=True)
class Revocation:
    """A message that revokes consent (``clear``) or only might (then the fallback says how to stop)."""

    clear: bool
    language: str
    phrase: str  # the phrase as the consent file writes it: never the texted words (they are tainted)


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """Something wrong in a consent file, by language, origin and path inside that file's words."""

    language: str
    origin: str  # a file path
    path: tuple[str | int, ...]
    message: str
    hint: str = ""


class ConsentRulesError(ValueError):
    def __init__(self, problems: list[RuleProblem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


@dataclass
class _Phrase:
    source: str
    pattern: re.Pattern[str]
    anchors: frozenset[str] | None  # one of these is in every match (None: no such words)
    origin: str
    path: tuple[str | int, ...]


@dataclass
class _Language:
    """One language's consent vocabulary, compiled."""

    code: str
    revoke: list[_Phrase] = field(default_factory=list)
    revoke_within: list[_Phrase] = field(default_factory=list)
    guards: set[str] = field(default_factory=set)
    maybe: list[_Phrase] = field(default_factory=list)
    fillers_by_first: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    fillers_by_last: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    spellings: dict[str, list[str]] = field(default_factory=dict)
    not_typos: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)  # intensifiers dropped anywhere ("freaking")
    breaks: set[str] = field(default_factory=set)  # words joining clauses ("or", "and", "but")
    vocabulary: dict[str, list[str]] = field(default_factory=dict)  # phrase words by first letter
    examples: list[tuple[bool, str, str, tuple[str | int, ...]]] = field(default_factory=list)
    any_revoke: re.Pattern[str] | None = None  # every revoke phrase in one expression: one match per reading
    any_within: re.Pattern[str] | None = None  # every revoke_within phrase, searched from a word's start
    #: words one of which any revoke/revoke_within match contains, and any maybe match
    #: (None: a phrase without such words, so every message must be tried)
    anchors: frozenset[str] | None = None
    maybe_anchors: frozenset[str] | None = None
    #: the flows' own words (their triggers) mended once at load: texted all day, never personal
    mends: dict[str, str] = field(default_factory=dict)

    def possible_words(self, typed: set[str]) -> set[str]:
        """Every word :meth:`words` could make of the words ``typed`` (folded, as typed), and
        those words themselves: a message none of whose words is a phrase's anchor cannot match
        it, so most messages skip phrase matching altogether."""
        said = set(typed)
        for word in typed:
            spelt = self.spellings.get(word)
            said.update(spelt if spelt is not None else (self._mended(word),))
        return said

    def words(self, folded: str) -> list[str]:
        """A clause's words as the phrases spell them: spellings applied, typos mended, repeats
        ("stop stop stop") collapsed."""
        said: list[str] = []
        for word in folded_words(folded):
            if word in self.ignored:
                continue
            for canonical in self.spellings.get(word) or [self._mended(word)]:
                if not said or said[-1] != canonical:
                    said.append(canonical)
        return said

    def found_within(self, said: list[str]) -> str | None:
        """The ``revoke_within`` phrase found inside the clause with no guard word in the
        :data:`GUARD_REACH` words before it, or None."""
        if self.any_within is None:
            return None
        text = _text(said)
        for found in self.any_within.finditer(text):
            before = text[:found.start()].split()[-GUARD_REACH:]
            if found.lastgroup is not None and not self.guards.intersection(before):
                return self.revoke_within[int(found.lastgroup[1:])].source
        return None

    def clauses(self, said: list[str]) -> list[list[str]]:
        """``said`` cut at the words that join clauses ("stop texting me or I'll report you")."""
        cut: list[list[str]] = [[]]
        for word in said:
            if word in self.breaks:
                cut.append([])
            else:
                cut[-1].append(word)
        return [clause for clause in cut if clause]

    def readings(self, said: list[str]) -> Iterator[str]:
        """The clause as it was said, then with filler words set aside at either end, one at a
        time ("no more texts please" is tried before "more texts"), as phrase text."""
        seen: set[tuple[str, ...]] = set()
        queue = [tuple(said)]
        while queue and len(seen) < _MAX_READINGS:
            words = queue.pop(0)
            if not words or words in seen:
                continue
            seen.add(words)
            yield _text(words)
            for filler in self.fillers_by_first.get(words[0], ()):
                if len(words) > len(filler) and words[:len(filler)] == filler:
                    queue.append(words[len(filler):])
            for filler in self.fillers_by_last.get(words[-1], ()):
                if len(words) > len(filler) and words[-len(filler):] == filler:
                    queue.append(words[:-len(filler)])

    def _mended(self, word: str) -> str:
        """``word``, or the phrase word it is a typo of ("unsubcribe"). Not cached: a cache would
        keep what people typed in memory, and rapidfuzz over one initial's words takes a microsecond;
        only the flows' own words are remembered (:meth:`ConsentRules.remember`)."""
        known = self.mends.get(word)
        if known is not None:
            return known
        if len(word) < MIN_TYPO_LENGTH or word in self.not_typos:
            return word
        candidates = self.vocabulary.get(word[0])
        if not candidates or word in candidates:
            return word
        found = process.extractOne(word, candidates, scorer=fuzz.ratio, score_cutoff=TYPO_SCORE)
        return found[0] if found else word


def _letterless_cannot_match(language: _Language) -> bool:
    """Whether no message without a letter can match ``language``'s phrases: every phrase has
    anchor words (one of which any match contains), each with a letter, and no spelling or typo
    mending turns a letterless word into a word (digits, symbols and punctuation stay what they are
    through every other step of reading)."""
    if language.anchors is None or language.maybe_anchors is None:
        return False
    lettered = (*language.anchors, *language.maybe_anchors)
    letterless = (*language.spellings, *language.vocabulary)  # spelt as, and typo candidates by first letter
    return all(_LETTER.search(word) for word in lettered) and not any(_LETTER.search(word) is None
                                                                       for word in letterless)


def _uncensored(found: re.Match[str]) -> str:
    """A word with asterisks ("f***ing") is a swear word, whatever it was: dropped. (Checked per
    word, in linear time, so a 1,600-character "word" cannot make matching quadratic.)"""
    return " " if "*" in found.group(0) else found.group(0)


def _text(words: Iterable[str]) -> str:
    return "".join(word + " " for word in words)


class ConsentRules:
    """Every language's consent words, ready to read messages."""

    def __init__(self, keywords: dict[str, tuple[KeywordKind, str]], languages: list[_Language],
                 default_texts: dict[str, DefaultTexts] | None = None) -> None:
        self._keywords = keywords
        self._languages = languages
        self.default_texts = default_texts or {}
        #: how the flows' own words read, as people usually type them (STATUS, status, Status): made
        #: at load by :meth:`remember`, never from what anyone texted
        self._read_at_load: dict[str, Revocation | None] = {}
        #: a message without a letter (an order number, "1", "👍") cannot hold a phrase: true when no
        #: language could make a phrase word of letterless words (see :func:`_letterless_cannot_match`)
        self._letterless_cannot_match = all(_letterless_cannot_match(language) for language in languages)

    @property
    def languages(self) -> list[str]:
        return [language.code for language in self._languages]

    def remember(self, phrases: Iterable[str]) -> None:
        """Work out once how each language mends the words of ``phrases``: the flows' own words
        (their triggers), which people text all day. Reading them is then a dict lookup instead of
        a fuzzy search; the result is the same (mending depends on the word alone)."""
        phrases = set(phrases)
        words = {word for phrase in phrases for word in folded_words(fold(phrase))}
        for language in self._languages:
            for word in words - language.mends.keys():
                language.mends[word] = language._mended(word)  # noqa: SLF001 - its own cache
        for phrase in phrases:
            for typed in (phrase.upper(), phrase.lower(), phrase.capitalize()):
                if typed not in self._read_at_load:
                    self._read_at_load[typed] = self._revocation(typed)

    @property
    def keywords(self) -> frozenset[str]:
        """Every language's whole-message keywords, folded: no trigger is ever suggested near one."""
        return frozenset(self._keywords)

    def keyword(self, text: str) -> KeywordHit | None:
        """The compliance keyword a whole message is, decorations aside ("STOP🛑", "\\ufeffSTOP")."""
        word = keyword_form(text[:MAX_ANALYSED_CHARACTERS])
        found = self._keywords.get(word)
        return KeywordHit(found[0], found[1], word) if found is not None else None

    def revocation(self, text: str) -> Revocation | None:
        """A revocation in the sender's own words (``clear``), a message that only might be one,
        or None. The whole message and each clause of it ("wrong number, stop") are tried."""
        known = self._read_at_load.get(text, _UNREAD)
        if known is not _UNREAD:
            return known  # type: ignore[return-value]
        return self._revocation(text)

    def _revocation(self, text: str) -> Revocation | None:
        folded = fold(text[:MAX_ANALYSED_CHARACTERS])
        if self._letterless_cannot_match and _LETTER.search(folded) is None:
            return None
        folded = _NON_SPACE.sub(_uncensored, folded)
        folded = _SPELT_OUT.sub(lambda found: re.sub(r"[.\- ]", "", found.group(0)), folded)
        folded = _STRETCHED.sub(r"\1", folded)  # "stoooop" -> "stop"
        parts = [part for part in _CLAUSE_BREAK.split(folded) if part.strip()]
        typed = set(folded_words(folded))
        possible = {language.code: language.possible_words(typed) for language in self._languages}
        for language in self._languages:
            if language.anchors is not None and language.anchors.isdisjoint(possible[language.code]):
                continue
            clauses = [clause for part in parts for clause in language.clauses(language.words(part))]
            whole = [word for clause in clauses for word in clause]
            candidates = [whole, *clauses] if len(clauses) > 1 else [whole]
            for index, clause in enumerate(candidates):
                within = language.found_within(clause) if index > 0 or len(candidates) == 1 else None
                if within is not None:
                    return Revocation(True, language.code, within)
                for said in language.readings(clause):
                    # One word alone ("stop") counts only as the whole message, fillers aside, or as
                    # its last sentence: "wrong number, stop" and "I said stop. STOP" are revocations;
                    # "Stop! That's the wrong address" is not.
                    if 0 < index < len(candidates) - 1 and said.count(" ") < 2:
                        continue
                    found = language.any_revoke.fullmatch(said) if language.any_revoke else None
                    if found is not None and found.lastgroup is not None:
                        return Revocation(True, language.code, language.revoke[int(found.lastgroup[1:])].source)
        plain = _text(folded_words(folded))
        for language in self._languages:
            if language.maybe_anchors is not None and language.maybe_anchors.isdisjoint(possible[language.code]):
                continue
            said = _text(language.words(folded))
            for phrase in language.maybe:
                if phrase.pattern.search(said) or phrase.pattern.search(plain):
                    return Revocation(False, language.code, phrase.source)
        return None

    def revokes(self, text: str) -> bool:
        """Whether ``text`` opts its sender out before any flow is asked: an opt-out keyword, or,
        when it is no keyword at all, a clear revocation (flow rules naming the words aside)."""
        found = self.keyword(text)
        if found is not None:
            return found.kind is KeywordKind.OPT_OUT
        revocation = self.revocation(text)
        return revocation is not None and revocation.clear

    def example_problems(self) -> list[RuleProblem]:
        """Every example in the consent files that the phrases get wrong."""
        problems: list[RuleProblem] = []
        for language in self._languages:
            for should_revoke, text, origin, path in language.examples:
                if self.revokes(text) != should_revoke:
                    wanted = "opt the sender out" if should_revoke else "leave consent alone"
                    problems.append(RuleProblem(language.code, origin, path, f"example {text!r} should {wanted}",
                                                hint="add or narrow a phrase in revoke: so it does" if should_revoke
                                                else "narrow the revoke: phrase that matches it"))
        return problems


def build_rules(parts: Mapping[str, Sequence[tuple[str, ConsentWords]]]) -> ConsentRules:
    """Compile every language's words (``parts``: language → [(origin file, words), …], built-in
    first); raise :class:`ConsentRulesError` with every problem found."""
    problems: list[RuleProblem] = []
    keywords: dict[str, tuple[KeywordKind, str]] = {}
    codes = list(dict.fromkeys([*BUILT_IN_KEYWORDS, *parts]))
    for code in codes:
        for kind, built_in in BUILT_IN_KEYWORDS.get(code, {}).items():
            for word in sorted(built_in):
                keywords.setdefault(word, (kind, code))
    languages = []
    default_texts: dict[str, DefaultTexts] = {}
    for code in codes:
        language = _Language(code)
        for origin, words in parts.get(code, ()):
            _add_keywords(keywords, code, origin, words, problems)
            _add_words(language, origin, words, problems)
            if words.texts is not None:
                default_texts.setdefault(code, words.texts)
        language.vocabulary = _vocabulary(language)
        language.any_revoke = _one_expression(language.revoke)
        language.any_within = _one_expression(language.revoke_within)
        language.anchors = _all_anchors([*language.revoke, *language.revoke_within])
        language.maybe_anchors = _all_anchors(language.maybe)
        languages.append(language)
    if problems:
        raise ConsentRulesError(problems)
    return ConsentRules(keywords, languages, default_texts)


def _add_keywords(keywords: dict[str, tuple[KeywordKind, str]], code: str, origin: str, words: ConsentWords,
                  problems: list[RuleProblem]) -> None:
    for kind in KeywordKind:
        for index, word in enumerate(getattr(words, kind.value)):
            folded = keyword_form(word)
            if not folded:
                problems.append(RuleProblem(code, origin, (kind.value, index), f"{word!r} has no letters or digits"))
                continue
            existing = keywords.get(folded)
            if existing is not None and existing[0] is not kind:
                problems.append(RuleProblem(
                    code, origin, (kind.value, index),
                    f"{word!r} is already a {existing[0].value} keyword ({existing[1]})",
                    hint="the built-in keywords cannot be changed or removed; choose another word"))
                continue
            keywords.setdefault(folded, (kind, code))


def _add_words(language: _Language, origin: str, words: ConsentWords, problems: list[RuleProblem]) -> None:
    for section, target in (("revoke", language.revoke), ("revoke_within", language.revoke_within),
                            ("maybe", language.maybe)):
        for index, source in enumerate(getattr(words, section)):
            try:
                read = read_phrase(source)
            except PhraseError as error:
                problems.append(RuleProblem(language.code, origin, (section, index), str(error),
                                            hint="see docs/compliance.md for how phrases are written"))
                continue
            pattern = read.pattern if section == "revoke" else re.compile(r"(?:^|(?<= ))" + read.pattern.pattern)
            target.append(_Phrase(source, pattern, read.anchors, origin, (section, index)))
    for filler in words.fillers:
        said = tuple(folded_words(fold(filler)))
        if said:  # indexed by first and last word: only those can start or end a message's words
            language.fillers_by_first.setdefault(said[0], []).append(said)
            language.fillers_by_last.setdefault(said[-1], []).append(said)
    for canonical, spellings in words.spellings.items():
        meant = folded_words(fold(canonical))
        for index, spelling in enumerate(spellings):
            typed = folded_words(fold(spelling))
            if len(typed) != 1 or not meant:
                problems.append(RuleProblem(language.code, origin, ("spellings", canonical, index),
                                            f"spelling {spelling!r} of {canonical!r} must be one word",
                                            hint="a spelling is how one typed word looks; "
                                                 "several words go in a phrase instead"))
                continue
            language.spellings[typed[0]] = meant
    language.not_typos.update(keyword_form(word) for word in words.not_typos)
    language.ignored.update(keyword_form(word) for word in words.ignore)
    language.breaks.update(keyword_form(word) for word in words.clause_breaks)
    language.guards.update(word for guard in words.guards for word in folded_words(fold(guard)))
    for should_revoke, texts in ((True, words.examples.revoke), (False, words.examples.keep)):
        section = "revoke" if should_revoke else "keep"
        language.examples.extend((should_revoke, text, origin, ("examples", section, index))
                                 for index, text in enumerate(texts))


def _one_expression(phrases: list[_Phrase]) -> re.Pattern[str] | None:
    """Every phrase in one alternation, each its own group (``p0``, ``p1``…) to tell which matched."""
    if not phrases:
        return None
    return re.compile("|".join(f"(?P<p{index}>{phrase.pattern.pattern})" for index, phrase in enumerate(phrases)))


def _all_anchors(phrases: list[_Phrase]) -> frozenset[str] | None:
    """Words one of which any match of any of ``phrases`` contains; None if one phrase has none."""
    if any(phrase.anchors is None for phrase in phrases):
        return None
    return frozenset().union(*(phrase.anchors or () for phrase in phrases))


def _vocabulary(language: _Language) -> dict[str, list[str]]:
    """The words typos are mended towards: every literal word of the revoke phrases."""
    found: set[str] = set()
    for phrase in [*language.revoke, *language.revoke_within]:
        found.update(word for word in folded_words(fold(phrase.source)) if len(word) > 2)
    by_initial: dict[str, list[str]] = {}
    for word in sorted(found):
        by_initial.setdefault(word[0], []).append(word)
    return by_initial


def rules_from(words: Iterable[tuple[str, str, ConsentWords]]) -> ConsentRules:
    """Build rules from (language, origin, words) triples: a convenience for tests and tools."""
    parts: dict[str, list[tuple[str, ConsentWords]]] = {}
    for code, origin, language_words in words:
        parts.setdefault(code, []).append((origin, language_words))
    return build_rules(parts)
