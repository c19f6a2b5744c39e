"""The shape of a flow file, as pydantic models: what ops staff may write, and nothing else.

Checks that need only one field live here (a regex that does not compile, a compliance word
used as a keyword); checks across the flow (a ``go`` to a state that does not exist) live in
:mod:`bot.flows.checks`, because they need the whole flow.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from bot.flows.json_body import JSON_BODY_SCHEMA, json_document
from bot.flows.problems import LocatedValueError
from bot.flows.schema_types import (  # noqa: F401 - the field types, re-exported for the flow language's users
    END,
    MAX_FETCH_TIMEOUT,
    MAX_MEDIA,
    NAME_PATTERN,
    PATH_PATTERN,
    STATE_PATTERN,
    Answer,
    Duration,
    Keyword,
    Keywords,
    LanguageCode,
    Media,
    Name,
    NumberRange,
    SavePath,
    Texts,
    TranslationRow,
    Words,
    _as_list,
    _as_words,
    _not_compliance_word,
    _Strict,
    parse_duration,
    valid_regex,
)
from bot.text.matching import CONDITION_NAMES
from bot.text.normalise import normalise
from bot.text.wordsets import is_compliance_word

MATCHERS = ("keywords", "any_of", "pattern", "number", "answer", "media")


# Flow files list these under ``replies:`` (the person's replies); the code calls them rules and
# keeps the word "replies" for what the bot sends.
class Rule(_Strict):
    """One way out of a waiting state: a test on the reply, and what to do when it passes."""

    keywords: Keywords | None = None  # the whole reply is one of these words or phrases
    any_of: Words | None = None  # the reply contains one of these words
    pattern: str | None = None  # a regular expression found in the reply (case-insensitive)
    number: NumberRange | None = None  # the reply is a number in this range
    answer: Answer | None = None  # the reply means yes (y, yeah, ok…) or no; any case
    media: Literal[True] | None = None  # the message carries pictures (MMS); save keeps their URLs
    save: SavePath | None = None  # store the reply under this name (or dotted path)
    say: Texts = []  # said before moving on
    go: str | None = None  # the next state; without it the conversation stays where it is
    language: LanguageCode | None = None  # from now on, talk to this person in this language

    _compiles = field_validator("pattern")(lambda pattern: valid_regex(pattern))

    @model_validator(mode="after")
    def _one_matcher(self) -> Rule:
        present = [name for name in MATCHERS if getattr(self, name) is not None]
        if len(present) != 1:
            found = ", ".join(present) if present else "none"
            raise ValueError(
                f"each reply needs exactly one test out of {', '.join(MATCHERS)} (found: {found}); "
                "write two replies for two tests"
            )
        return self


def _json_body(body: object) -> object:
    if not isinstance(body, (str, dict, list)):
        raise ValueError("json: write the document as a mapping (json: {when: \"{{ when }}\"}) or as JSON text")
    json_document(body)
    return body


JsonBody = Annotated[object, AfterValidator(_json_body), WithJsonSchema(JSON_BODY_SCHEMA)]


class Fetch(_Strict):
    """Call a web service (GET by default; JSON answer) before the state speaks."""

    url: str
    save: SavePath
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    params: dict[str, str] = {}  # query parameters (templates)
    json_body: JsonBody | None = Field(None, alias="json")  # the JSON document to send (see json_document)
    form: dict[str, str] | None = None  # form fields (templates) to send
    timeout: Duration = 5.0
    fallback: str = "Sorry, that service is not answering right now. Please try again later."
    not_found: str | None = None  # said instead of fallback when the service answers 404 Not Found
    on_error: str | None = None  # where to go when the lookup fails; default: end

    @model_validator(mode="after")
    def _one_body(self) -> Fetch:
        if self.json_body is not None and self.form is not None:
            raise ValueError("send either json or form, not both")
        if self.method == "GET" and (self.json_body is not None or self.form is not None):
            raise ValueError("a GET sends no body: use method: POST, or params for the query")
        return self

    @property
    def json_document(self) -> object:
        """The JSON document to send, parsed (json: may be written as JSON text); None for none."""
        return json_document(self.json_body) if self.json_body is not None else None

    @field_validator("timeout")
    @classmethod
    def _within_twilio_limit(cls, seconds: float) -> float:
        if not 0 < seconds <= MAX_FETCH_TIMEOUT:
            raise ValueError(
                f"timeout must be above 0 and at most {MAX_FETCH_TIMEOUT:g}s: Twilio gives up on "
                "the whole webhook after 15 s"
            )
        return seconds


class Notify(_Strict):
    """Text someone else (e.g. staff on call) when the conversation enters this state."""

    to: str  # a number in E.164 (+15551234567) or a template such as "{{ env.ONCALL_NUMBER }}"
    say: Texts = Field(min_length=1)
    media: Media = []  # pictures sent with the text (URL templates), at most 10


CONDITIONS = CONDITION_NAMES  # a case names exactly one of these


def _later(seconds: float) -> float:
    """A timer's delay: after no time at all, every reminder would go out at once (and two timers
    due at the same moment are one turn to the store, so the second would be lost)."""
    if not seconds > 0:
        raise ValueError("after must be longer than zero: write how long to wait, such as 10m or 1h")
    return seconds


class Timeout(_Strict):
    """What happens when a waiting state gets no reply in time (Studio's "timeout" branch)."""

    after: Duration
    go: str

    _waits = field_validator("after")(lambda seconds: _later(seconds))


class Remind(_Strict):
    """Re-send a nudge after a quiet spell, a fixed number of times, without leaving the state;
    then the state's ``timeout`` (if any) takes over. Counted from the person's last message."""

    after: Duration
    say: Texts = Field(min_length=1)
    times: int = Field(1, ge=1, le=10)

    _waits = field_validator("after")(lambda seconds: _later(seconds))


class Attempts(_Strict):
    """How many unmatched answers a waiting state takes: the ``max``-th goes to ``go``. Before
    that, unmatched answer n gets ``reask[n-1]`` (the last one repeats), else ``otherwise``."""

    max: int = Field(ge=1, le=20)
    go: str
    reask: Texts = []


class Choice(_Strict):
    """One item of a menu: shown as "1) label", taken by its number, its label or a synonym."""

    label: str = Field(min_length=1)
    also: Annotated[list[Keyword], BeforeValidator(_as_words)] = []  # synonyms: "pickup", "pick it up"
    value: str | None = None  # what ``save`` stores (default: the label)
    say: Texts = []
    go: str | None = None
    language: LanguageCode | None = None  # choosing it: from now on, talk to this person in this language

    @field_validator("label", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("label")
    @classmethod
    def _one_line_people_can_text_back(cls, label: str) -> str:
        """The label is listed as one line ("2) Delivery") and taken back as a reply: a line break
        would look like another item, and a compliance word texted back opts out instead."""
        if not label.strip() or "\n" in label or "\r" in label:
            raise ValueError("a menu label is one line of text, listed as \"1) Pick-up\"")
        if is_compliance_word(label):
            raise ValueError(f"{label!r} is a compliance keyword: a person who texts the label back is opted out, "
                             "opted in or sent the help text, never given this choice; choose another label")
        return label


class Menu(_Strict):
    """Numbered choices, listed under the state's text ("1) Pick-up", "2) Delivery")."""

    save: SavePath | None = None  # store the chosen item's value (or label) under this name
    choices: list[Choice] = Field(min_length=2, max_length=20)

    @model_validator(mode="after")
    def _distinct(self) -> Menu:
        seen: dict[str, str] = {}
        for number, choice in enumerate(self.choices, start=1):
            for word in (str(number), choice.label, *choice.also):
                key = normalise(word)
                if key in seen and seen[key] != choice.label:
                    raise ValueError(f"{word!r} would choose both {seen[key]!r} and {choice.label!r}; "
                                     "each number, label and synonym must choose one item")
                seen[key] = choice.label
        return self


class SplitPath(_Strict):
    """One path of a random split, taken by ``weight`` out of the total of the split's weights."""

    weight: float = Field(gt=0, allow_inf_nan=False)  # YAML reads 1e400 as infinite
    go: str

class Enter(_Strict):
    """Run another flow from its start; when it ends, carry on at ``then`` in this one."""

    flow: Name
    then: str


class Case(_Strict):
    """One test of a ``branch`` (Twilio Studio's split conditions); values may be templates."""

    equal_to: str | None = None
    not_equal_to: str | None = None
    matches_any_of: str | None = None  # a comma-separated list, as in Studio: "yes, y, sure"
    does_not_match_any_of: str | None = None
    contains: str | None = None
    does_not_contain: str | None = None
    starts_with: str | None = None
    does_not_start_with: str | None = None
    regex: str | None = None
    is_blank: bool | None = None
    is_not_blank: bool | None = None
    less_than: str | None = None
    greater_than: str | None = None
    go: str

    @field_validator("equal_to", "not_equal_to", "matches_any_of", "does_not_match_any_of", "contains",
                     "does_not_contain", "starts_with", "does_not_start_with", "less_than", "greater_than",
                     mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    _compiles = field_validator("regex")(lambda pattern: valid_regex(pattern))

    @model_validator(mode="after")
    def _one_condition(self) -> Case:
        present = [name for name in CONDITIONS if getattr(self, name) is not None]
        if len(present) != 1:
            raise ValueError(f"each case needs exactly one condition out of {', '.join(CONDITIONS)} "
                             f"(found: {', '.join(present) or 'none'})")
        if present[0] in ("is_blank", "is_not_blank") and getattr(self, present[0]) is not True:
            raise ValueError(f"write {present[0]}: true")
        return self

    @property
    def condition(self) -> str:
        return next(name for name in CONDITIONS if getattr(self, name) is not None)


class Branch(_Strict):
    """Choose the next state by a value (a saved answer, a lookup's result), not by a reply:
    the first case that holds wins, else ``otherwise``. Comparisons ignore case, as in Studio."""

    value: str
    cases: list[Case] = Field(min_length=1)
    otherwise: str


class State(_Strict):
    """One step of a conversation.

    A state speaks (``say``), may look something up first (``fetch``), then either waits for
    a reply (``replies``), moves on by itself (``go``), or — with neither — ends the conversation.
    """

    set: dict[Annotated[str, Field(pattern=PATH_PATTERN)], str] = {}  # values (templates) saved on entry
    say: Texts = []
    fetch: Fetch | None = None
    notify: Notify | None = None  # sent once each time the conversation enters the state
    rules: list[Rule] = Field(default=[], alias="replies")  # written `replies:` in flow files
    otherwise: Texts = []  # said when a reply matches none of ``replies``; the state waits again
    go: str | None = None
    branch: Branch | None = None  # moves on by itself, to the state its first true case names
    timeout: Timeout | None = None  # a waiting state's "no reply in time" branch
    enter: Enter | None = None  # hand over to another flow, come back at enter.then
    menu: Menu | None = None  # numbered choices: a waiting state
    attempts: Attempts | None = None  # how many unmatched answers before giving up
    remind: Remind | None = None  # nudges while waiting, before the timeout
    split: list[SplitPath] | None = Field(None, min_length=2)  # A/B test: a path by weight, sticky per sender
    media: Media = []  # pictures sent with the state's text (URL templates), at most 10

    @field_validator("set", mode="before")
    @classmethod
    def _set_texts(cls, values: object) -> object:
        if isinstance(values, dict):
            return {key: str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
                    for key, value in values.items()}
        return values

    @model_validator(mode="after")
    def _waits_or_moves(self) -> State:
        waits = self.waits
        for name in ("timeout", "attempts", "remind"):
            if getattr(self, name) is not None and not waits:
                raise ValueError(f"{name} is for a state that waits for replies")
        if self.enter is not None and (waits or self.go is not None or self.branch is not None
                                       or self.split is not None):
            raise ValueError("a state that enters another flow carries on at enter.then: no replies, go or branch")
        if self.branch is not None and (waits or self.go is not None or self.split is not None):
            raise ValueError("a state with a branch moves on by itself: it cannot also have replies or go")
        if self.split is not None and (waits or self.go is not None):
            raise ValueError("a state with a split moves on by itself: it cannot also have replies or go")
        if waits and self.go is not None:
            raise ValueError(
                "a state either waits for replies or moves on with go, not both; "
                "put the go inside one of the replies"
            )
        if self.otherwise and not waits:
            raise ValueError("otherwise only makes sense in a state that waits for replies")
        return self

    @property
    def waits(self) -> bool:
        return bool(self.rules) or self.menu is not None

    @property
    def moves_on(self) -> bool:
        return self.go is not None or self.branch is not None or self.enter is not None or self.split is not None


class Flow(_Strict):
    """One conversation an ops person designed: its trigger words and its states."""

    flow: Name
    description: str = ""
    triggers: Keywords | None = None
    #: how the program's texts list the flow (``{{ triggers }}``, bot/flows/program_texts.py): true, by
    #: its first trigger; false, not at all; a text, said after it by ``{{ triggers_described }}``
    listed: bool | Annotated[str, Field(min_length=1)] = True
    start: str
    expires_after: Duration = 24 * 3600.0
    start_on_any_message: bool = False  # a catch-all: starts on a message no trigger matched, when idle
    #: replies heard in every waiting state of the flow, before the state's own (CANCEL REFILL)
    anywhere: list[Rule] = []
    states: dict[Annotated[str, Field(pattern=STATE_PATTERN)], State] = Field(min_length=1)
    language: LanguageCode = "en"  # the language the flow is written in
    #: its texts and words in other languages, one row per text (bot/flows/translations.py)
    translations: list[TranslationRow] = []

    @model_validator(mode="after")
    def _rows_have_the_base_text(self) -> Flow:
        for number, row in enumerate(self.translations, start=1):
            if self.language not in row:
                raise LocatedValueError(f"translation {number} has no {self.language!r} text: each row starts from "
                                        f"the text as the flow says it in its language ({self.language}), e.g. "
                                        f"{self.language}: \"...\"", ("translations", number - 1))
            if len(row) < 2:
                raise LocatedValueError(f"translation {number} has only the {self.language!r} text: add its version "
                                        "in another language (es: \"...\")", ("translations", number - 1))
            # The base words are checked where the flow uses them (any_of may hold "cancel"); a
            # translated word is heard as a whole message (a trigger, a keyword, a menu synonym):
            # never ALTO, whatever list it extends.
            for code, value in row.items():
                if code != self.language and isinstance(value, list):
                    for index, word in enumerate(value):
                        try:
                            _not_compliance_word(word)
                        except ValueError as error:
                            raise LocatedValueError(f"translation {number}, {code}: {error}",
                                                    ("translations", number - 1, code, index)) from None
        return self

    @field_validator("expires_after")
    @classmethod
    def _positive(cls, seconds: float) -> float:
        if not seconds > 0:  # NaN too
            raise ValueError("expires_after must be longer than zero")
        return seconds


def json_schema() -> dict[str, object]:
    """The JSON Schema of a file in ``flows/``: a flow, or the program file."""
    from bot.flows.program import Program  # the program file's models build on this module's

    schema = TypeAdapter(Flow | Program).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "textflow flow file", **schema}
