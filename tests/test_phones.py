"""Phone numbers read by libphonenumber (issue 12): national formats, E.164, ``whatsapp:``, the
reason an impossible number is refused, and 555 numbers (possible, not assigned) still working."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from bot.fake_twilio import FakeTwilio
from bot.outbound import Outbox, send_for_turn
from bot.phones import InvalidNumber, is_assigned, normalise_and_warn, normalise_number, normalise_sender
from bot.settings import SettingsError, load_settings
from bot.store.memory import MemoryStore
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Inbound, OutboundMessage, OutboundState
from tests.test_outbound import outbound_env, output_of, run_bot, sqlite_url


@pytest.mark.parametrize("written", ["(415) 555-0123", "415.555.0123", "+1 415 555 0123", "415-555-0123",
                                     "4155550123", "1 (415) 555-0123", "+14155550123", " +1 (415) 555 0123 "])
def test_the_ways_people_write_a_number_are_one_number(written: str) -> None:
    assert normalise_number(written) == "+14155550123"
    assert normalise_number(written, "US") == "+14155550123"


def test_a_number_without_its_country_code_is_read_in_the_region() -> None:
    assert normalise_number("07911 123456", "GB") == "+447911123456"
    assert normalise_number("+44 7911 123456", "US") == "+447911123456"  # a country code wins
    assert normalise_number("030 1234567", "DE") == "+49301234567"
    with pytest.raises(InvalidNumber, match="invalid country code"):
        normalise_number("4155550123", None)  # no region: the number must say its country
    assert normalise_number("+14155550123", None) == "+14155550123"


def test_whatsapp_addresses_keep_their_prefix() -> None:
    assert normalise_number("whatsapp:+14155550123") == "whatsapp:+14155550123"
    assert normalise_number("whatsapp:(415) 555-0123") == "whatsapp:+14155550123"
    assert normalise_number("whatsapp:+44 7911 123456") == "whatsapp:+447911123456"
    with pytest.raises(InvalidNumber, match="not a phone number"):
        normalise_number("whatsapp:")


@pytest.mark.parametrize(("written", "reason"), [
    ("+1 415 555", "too short"),
    ("12345", "too short"),
    ("555-0123", "too short: a local number, without its area code"),
    ("+1 415 555 0123 4567", "too long"),
    ("+12345678901234567", "too long"),
    ("+0 415 555 0123", "invalid country code"),
    ("+999 1234567", "invalid country code"),
    ("", "not a phone number"),
    ("+", "not a phone number"),
    ("call me", "letters in the number"),
    ("1-800-FLOWERS", "letters in the number"),
    ("+1 415 555 0123 ext. 12", "letters in the number"),
    ("+1 415 555 0123;ext=12", "letters in the number"),
])
def test_impossible_numbers_are_refused_with_the_reason(written: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as refused:
        normalise_number(written)
    assert refused.value.reason == reason
    assert str(refused.value) == reason


def test_555_numbers_are_possible_but_not_assigned_and_still_work() -> None:
    for number in ("+15551234567", "555 123 4567", "(555) 020-0001"):
        e164 = normalise_number(number)
        assert e164.startswith("+1555")
        assert not is_assigned(e164)
    assert is_assigned("+14155550123") and is_assigned("whatsapp:+447911123456")


def test_a_number_not_in_use_is_sent_with_a_masked_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.phones"):
        assert normalise_and_warn("(555) 123-4567", what="--to") == "+15551234567"
        assert normalise_and_warn("(415) 555-0123") == "+14155550123"  # assigned: no warning
    assert len(caplog.records) == 1
    assert "--to +1555…4567 is not a number in use" in caplog.text
    assert "+15551234567" not in caplog.text


def test_senders_that_are_not_phone_numbers_are_kept() -> None:
    assert normalise_sender("Acme") == "Acme"  # an alphanumeric sender ID
    assert normalise_sender("12345") == "12345"  # a short code
    assert normalise_sender("") == ""
    assert normalise_sender("(415) 555-0123") == "+14155550123"
    assert normalise_sender("whatsapp:415 555 0123") == "whatsapp:+14155550123"
    with pytest.raises(InvalidNumber, match="too short"):
        normalise_sender("+1 415 555")


def test_settings_default_region_and_twilio_from() -> None:
    settings = load_settings({"TWILIO_FROM": "(415) 555-0123"})
    assert (settings.default_region, settings.twilio_from) == ("US", "+14155550123")
    assert settings.outbound.from_number == "+14155550123" and settings.outbound.region == "US"
    settings = load_settings({"DEFAULT_REGION": "gb", "TWILIO_FROM": "07911 123456"})
    assert (settings.default_region, settings.twilio_from, settings.outbound.region) == (
        "GB", "+447911123456", "GB")
    assert load_settings({"DEFAULT_REGION": ""}).default_region == "US"
    assert load_settings({"TWILIO_FROM": "Acme"}).twilio_from == "Acme"
    with pytest.raises(SettingsError, match=r"^DEFAULT_REGION must be a region code such as US"):
        load_settings({"DEFAULT_REGION": "Atlantis"})
    with pytest.raises(SettingsError, match=r"^TWILIO_FROM is not a phone number: too short"):
        load_settings({"TWILIO_FROM": "+1 415 555"})


async def test_the_outbox_sends_in_e164_and_refuses_with_the_reason(fake_twilio: FakeTwilio) -> None:
    store = MemoryStore()
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        sent = await outbox.send(OutboundMessage("n|1", "(415) 555-0123", "Hello"))
        refused = await outbox.send(OutboundMessage("n|2", "+1 415 555", "Hello"))
    finally:
        await outbox.close()
    assert (sent.state, sent.to) == (OutboundState.ACCEPTED, "+14155550123")
    assert (refused.state, refused.reason) == (OutboundState.SKIPPED, "invalid number (too short)")
    assert [attempt.to for attempt in fake_twilio.attempts] == ["+14155550123"]


async def test_an_opt_out_is_found_whatever_the_format(fake_twilio: FakeTwilio) -> None:
    store = MemoryStore()
    await store.set_consent(ConsentChange("+14155550123", ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR))
    outbox = Outbox(store, fake_twilio.outbound_settings())
    try:
        result = await outbox.send(OutboundMessage("n|1", "415.555.0123", "Hello"))
    finally:
        await outbox.close()
    assert (result.state, result.reason) == (OutboundState.SKIPPED, "opted out")
    assert fake_twilio.attempts == []


async def test_the_outbox_reads_numbers_in_its_region(fake_twilio: FakeTwilio) -> None:
    outbox = Outbox(MemoryStore(), dataclasses.replace(fake_twilio.outbound_settings(), region="GB"))
    try:
        sent = await outbox.send(OutboundMessage("n|1", "07911 123456", "Hello"))
    finally:
        await outbox.close()
    assert (sent.state, sent.to) == (OutboundState.ACCEPTED, "+447911123456")


async def test_notify_targets_in_any_format_are_one_recipient_in_e164(fake_twilio: FakeTwilio) -> None:
    outbox = Outbox(MemoryStore(), fake_twilio.outbound_settings())
    inbound = Inbound("SM" + "1" * 32, "+15557654321", to=fake_twilio.outbound_settings().from_number)
    try:
        await send_for_turn(outbox, inbound, "notify", [("(415) 555-0123", "first"), ("+1 415 555 0123", "second"),
                                                        ("+1 415 555", "nowhere")])
    finally:
        await outbox.close()
    assert [(attempt.to, attempt.body) for attempt in fake_twilio.created] == [
        ("+14155550123", "first"), ("+14155550123", "second")]  # one recipient, so one budget (and ids in order)


def test_send_to_a_national_format_number(fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    result = run_bot("send", "--to", "(415) 555-0123", "Hello", cwd=tmp_path,
                     env=outbound_env(fake_twilio, sqlite_url(tmp_path / "bot.db")))
    assert result.returncode == 0, output_of(result)
    assert [attempt.to for attempt in fake_twilio.created] == ["+14155550123"]
