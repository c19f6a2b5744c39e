"""Phone numbers as people write them, read by Google's libphonenumber (``phonenumbers``).

``(415) 555-0123``, ``415.555.0123`` and ``+1 415 555 0123`` are one number, ``+14155550123``
(E.164), which is how numbers are stored and sent. A number written without its country code is
read as a number of the ``DEFAULT_REGION`` setting (``US`` unless set). Only numbers that cannot be
anyone's are refused (:class:`InvalidNumber`, with the reason); a number that could be one but is
not assigned (the ``555`` numbers of examples and tests) is accepted, and callers may warn about it
(:func:`is_assigned`). A WhatsApp address keeps its ``whatsapp:`` prefix around its E.164 number.
"""

from __future__ import annotations

import logging

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from bot.privacy import mask
from bot.types import WHATSAPP

log = logging.getLogger(__name__)

DEFAULT_REGION = "US"

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "invalid country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "invalid country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "invalid length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short: a local number, without its area code",
}


class InvalidNumber(ValueError):
    """A number that cannot be anyone's; ``reason`` says why (too short, too long, …)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_region(region: str) -> bool:
    """Whether ``region`` is a region libphonenumber knows (``US``, ``GB``, …)."""
    return region in phonenumbers.SUPPORTED_REGIONS


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    if any(character.isalpha() for character in text):  # a typo, or a vanity number (1-800-FLOWERS)
        raise InvalidNumber("letters in the number")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        raise InvalidNumber(_PARSE_REASONS.get(error.error_type, "not a phone number")) from None
    if number.extension:
        raise InvalidNumber("an extension cannot be texted")
    result = phonenumbers.is_possible_number_with_reason(number)
    if result != ValidationResult.IS_POSSIBLE:
        raise InvalidNumber(_POSSIBLE_REASONS.get(result, "not a phone number"))
    return number


def normalise_number(text: str, region: str | None = DEFAULT_REGION) -> str:
    """``text`` in E.164 (``whatsapp:`` kept in front), read as a number of ``region`` when it has no
    country code (``None``: it must have one); raises :class:`InvalidNumber` with the reason."""
    text = text.strip()
    prefix = WHATSAPP if text.startswith(WHATSAPP) else ""
    number = _parse(text.removeprefix(prefix), region)
    return prefix + phonenumbers.format_number(number, PhoneNumberFormat.E164)


def read_number(text: str, region: str | None = DEFAULT_REGION) -> tuple[str, bool]:
    """:func:`normalise_number` and :func:`is_assigned` of the result, from one parse (a broadcast
    reads a million numbers: the second parse was a third of its first pass)."""
    text = text.strip()
    prefix = WHATSAPP if text.startswith(WHATSAPP) else ""
    number = _parse(text.removeprefix(prefix), region)
    return prefix + phonenumbers.format_number(number, PhoneNumberFormat.E164), phonenumbers.is_valid_number(number)


def is_assigned(number: str) -> bool:
    """Whether an E.164 number (``whatsapp:`` or not) is one libphonenumber knows to be in use;
    ``+15555550123`` is possible but not: worth a warning, not a refusal."""
    return phonenumbers.is_valid_number(phonenumbers.parse(number.removeprefix(WHATSAPP), None))


def normalise_and_warn(text: str, region: str | None = DEFAULT_REGION, *, what: str = "number") -> str:
    """:func:`normalise_number`, logging a (masked) warning for a number not in use anywhere."""
    number = normalise_number(text, region)
    if not is_assigned(number):
        log.warning("%s %s is not a number in use (possible, but not assigned); sending anyway", what, mask(number))
    return number


def normalise_sender(text: str, region: str | None = DEFAULT_REGION) -> str:
    """A From address: a phone number (normalised), or as it is when it is an alphanumeric sender ID
    (``Acme``) or a short code (``12345``), which are not phone numbers."""
    text = text.strip()
    bare = text.removeprefix(WHATSAPP)
    if not bare or any(character.isalpha() for character in bare) or (bare.isdigit() and len(bare) <= 6):
        return text
    return normalise_number(text, region)
