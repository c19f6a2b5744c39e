"""The program file (``flows/program.yaml``): the texts carriers require, in every language the
bot answers consent words in, and what ops staff add to the consent words and phrases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from liquid.exceptions import LiquidError
from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator

from bot.consent.words import LANGUAGE_CODE, ConsentWords, DefaultTexts
from bot.text import templates
from bot.text.normalise import fold, folded_words, normalise
from bot.text.wordsets import BUILT_IN_KEYWORDS, KeywordKind

DEFAULT_LANGUAGE = "en"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _language_code(code: str) -> str:
    if not LANGUAGE_CODE.fullmatch(code):
        raise ValueError(f"{code!r} is not a language code; write a code such as es, fr or pt-BR")
    return code


LanguageCode = Annotated[str, AfterValidator(_language_code)]


def _tells_how_to_stop(text: str, language: str) -> bool:
    """The text names STOP or one of the language's own opt-out words."""
    words = {"stop"} | BUILT_IN_KEYWORDS.get(language, {}).get(KeywordKind.OPT_OUT, frozenset())
    return bool(words & set(folded_words(fold(text))))


class LanguageTexts(_Strict):
    """The consent texts in one more language, sent when someone uses that language's words
    (ALTO, ARRÊT, "ya no me manden mensajes")."""

    help: str
    opt_out: str
    opt_in: str
    #: the line the fallback adds when a message might be a revocation
    stop_hint: str | None = None
    #: the program's other texts for someone talked to in this language (the flows' ``translations:``
    #: set it): the English ones when missing
    fallback: str | None = None
    wait: str | None = None
    reset: str | None = None
    did_you_mean: str | None = None


class ProgramTexts(_Strict):
    """The texts carriers require, sent by the built-in compliance handler."""

    name: str
    help: str  # answer to HELP / INFO
    opt_out: str  # confirmation of STOP (sent once)
    opt_in: str  # confirmation of START / UNSTOP
    fallback: str = "Sorry, I didn't understand that. Text HELP for what you can do."
    #: added to the fallback when a message might be a revocation ("can you stop these?")
    stop_hint: str = "Reply STOP to stop all messages."
    #: the webhook's answer when a lookup is still running after SLOW_REPLY_SECONDS; the real
    #: answer follows as its own message
    wait: str = "One moment, I'm looking that up…"
    #: sent when a conversation's flow or state was removed by an update and it had to start over
    reset: str = "Sorry, this service was just updated and our conversation had to start over. " \
                 "Text HELP for what you can do."
    #: sent instead of the fallback when a message is a slip away from one trigger ("STAUTS");
    #: a yes to it starts that flow (SUGGEST_TRIGGERS). ``{{ trigger }}`` is the trigger, in capitals.
    did_you_mean: str = "Did you mean {{ trigger }}? Reply YES"
    #: CTIA's short-code rules: HELP is answered "regardless of whether the user is subscribed"
    help_when_opted_out: bool = True
    #: the same texts in other languages, by language code (English stays in the fields above)
    languages: dict[LanguageCode, LanguageTexts] = {}
    #: words and phrases added to the built-in ones per language (which can never be removed)
    consent: dict[LanguageCode, ConsentWords] = {}
    #: the language a person texting one of our numbers is talked to in until they choose (by the
    #: trigger they use, or a flow's ``language:``): {"+15550002222": es}
    numbers: dict[str, LanguageCode] = {}

    @field_validator("numbers")
    @classmethod
    def _our_numbers(cls, numbers: dict[str, str]) -> dict[str, str]:
        """Keys are compared with the number a message was sent to, as Twilio writes it (E.164):
        one written otherwise would never match, silently."""
        from bot.phones import InvalidNumber, normalise_number

        for number in numbers:
            try:
                written = normalise_number(number, None)
            except InvalidNumber as error:
                raise ValueError(f"numbers: {number!r} is not a phone number in E.164 ({error.reason}); write it "
                                 "as Twilio does, e.g. \"+15550002222\"") from None
            if written != number:
                raise ValueError(f"numbers: write {number!r} as Twilio does, {written!r}: messages name our "
                                 "number that way")
        return numbers

    def in_language(self, language: str | None) -> ProgramTexts:
        """These texts for someone talked to in ``language``: its own version of each text where
        ``languages:`` has one, the English one otherwise (None, or English: these)."""
        texts = (self.languages.get(language) or self.languages.get(language.split("-")[0].lower())) \
            if language else None  # es-MX: the es texts, when there are no es-MX ones
        if texts is None:
            return self
        own = {name: getattr(texts, name) for name in ("help", "opt_out", "opt_in", "stop_hint", "fallback",
                                                        "wait", "reset", "did_you_mean")
               if getattr(texts, name) is not None}
        return self.model_copy(update=own)

    @field_validator("help")
    @classmethod
    def _help_says_how_to_stop(cls, text: str) -> str:
        if "stop" not in normalise(text):
            raise ValueError("the help text must tell people how to opt out (mention STOP)")
        return text

    @field_validator("fallback", "reset")
    @classmethod
    def _points_to_help(cls, text: str) -> str:
        if "help" not in normalise(text):
            raise ValueError("this reply must point people to HELP")
        return text

    @field_validator("did_you_mean")
    @classmethod
    def _names_the_trigger(cls, text: str) -> str:
        template = templates.parse(text)  # its TemplateSyntaxError is a ValueError, located like the others
        read = templates.variables(template)
        if "trigger" not in read:
            raise ValueError("the did-you-mean text must name the trigger: write {{ trigger }} where it goes")
        if read - {"trigger"}:
            raise ValueError(f"the did-you-mean text can only use {{{{ trigger }}}}, not "
                             f"{', '.join(sorted(read - {'trigger'}))}")
        try:
            templates.render(template, {"trigger": "STATUS"})  # an unknown filter fails only when rendered
        except LiquidError as error:
            raise ValueError(f"the did-you-mean text cannot be sent: {str(error).splitlines()[0]}") from None
        return text

    @field_validator("stop_hint")
    @classmethod
    def _hint_says_how_to_stop(cls, text: str) -> str:
        if not _tells_how_to_stop(text, DEFAULT_LANGUAGE):
            raise ValueError("the stop hint must tell people how to opt out (mention STOP)")
        return text

    @model_validator(mode="after")
    def _other_languages_say_how_to_stop(self) -> ProgramTexts:
        for code, texts in self.languages.items():
            for name in ("help", "stop_hint"):
                text = getattr(texts, name)
                if text is not None and not _tells_how_to_stop(text, code):
                    raise ValueError(f"languages.{code}.{name} must tell people how to opt out "
                                     f"(mention STOP or one of the language's opt-out words)")
        return self

    def texts_in(self, language: str, defaults: Mapping[str, DefaultTexts]) -> LanguageTexts:
        """The consent texts in ``language``: the program's own; else the shipped ones for that
        language (``defaults``, from ``bot/consent/languages/``) with the program's name; else English."""
        texts = self.languages.get(language)
        if language == DEFAULT_LANGUAGE or (texts is None and language not in defaults):
            return LanguageTexts(help=self.help, opt_out=self.opt_out, opt_in=self.opt_in, stop_hint=self.stop_hint)
        if texts is None:
            shipped = defaults[language]
            return LanguageTexts(**{field: getattr(shipped, field).replace("{name}", self.name)
                                    for field in ("help", "opt_out", "opt_in", "stop_hint")})
        if texts.stop_hint is None:
            shipped_hint = defaults[language].stop_hint if language in defaults else self.stop_hint
            return texts.model_copy(update={"stop_hint": shipped_hint})
        return texts


class Program(_Strict):
    """The file (``flows/program.yaml``) holding the program's compliance texts."""

    program: ProgramTexts
