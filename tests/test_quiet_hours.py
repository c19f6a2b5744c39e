"""Quiet hours in the recipient's own time (bot/quiet_hours.py): the TCPA's 08:00-21:00 in the zone of
the CSV's ``timezone`` column, else of the number (all of its zones at once), else BROADCAST_TIMEZONE,
else DEFAULT_REGION's most restrictive hours; BROADCAST_WINDOW replaces all of it. Pure functions of
an instant: no clock, no waiting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from bot import quiet_hours
from bot.quiet_hours import (
    TCPA_END,
    TCPA_START,
    HoursError,
    QuietHours,
    SendWindow,
    main_zones,
    number_zones,
    region_window,
    region_zones,
    zone_named,
)

NEW_YORK, LOS_ANGELES, BOISE = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"), ZoneInfo("America/Boise")
HONOLULU, TOKYO, LONDON = ZoneInfo("Pacific/Honolulu"), ZoneInfo("Asia/Tokyo"), ZoneInfo("Europe/London")
UNKNOWN = "+15550200001"  # a 555 number: possible, assigned to no one, no zone
NEVER_OVERLAP = (ZoneInfo("Etc/GMT+8"), ZoneInfo("Etc/GMT"), ZoneInfo("Etc/GMT-8"))  # 8 h apart: 13 h windows miss


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """An instant, written as the local time in ``zone``."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return at(ZoneInfo("UTC"), year, month, day, hour, minute)


def tcpa(*zones: ZoneInfo) -> SendWindow:
    return SendWindow(TCPA_START, TCPA_END, zones)


@pytest.fixture
def fresh_region_cache() -> Iterator[None]:
    region_zones.cache_clear()
    region_window.cache_clear()
    yield
    region_zones.cache_clear()
    region_window.cache_clear()


# -- a number's zones ---------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "zone"), [("+12125550123", NEW_YORK), ("+14155550123", LOS_ANGELES),
                                              ("+18085550123", HONOLULU), ("whatsapp:+12125550123", NEW_YORK)])
def test_a_number_in_one_zone_gets_8_to_21_there(number: str, zone: ZoneInfo) -> None:
    assert number_zones(number) == (zone,)
    window = QuietHours().window_for(number, None, "US", utc(2024, 3, 15, 12))
    assert window == SendWindow(TCPA_START, TCPA_END, (zone,), "from the number")
    assert not window.is_open(at(zone, 2024, 3, 15, 7, 59, 59))
    assert window.is_open(at(zone, 2024, 3, 15, 8, 0))
    assert window.is_open(at(zone, 2024, 3, 15, 20, 59, 59))
    assert not window.is_open(at(zone, 2024, 3, 15, 21, 0))
    assert window.next_opening(at(zone, 2024, 3, 15, 21, 0)) == at(zone, 2024, 3, 16, 8, 0)
    assert window.next_opening(at(zone, 2024, 3, 15, 12, 0)) == at(zone, 2024, 3, 15, 12, 0)  # open: now


def test_a_number_in_several_zones_gets_only_the_hours_allowed_in_all() -> None:
    """Area code 208 (Idaho) is Mountain and Pacific: 08:00 Los Angeles (later) to 21:00 Boise (earlier)."""
    assert number_zones("+12085550123") == (BOISE, LOS_ANGELES)
    window = QuietHours().window_for("+12085550123", None, "US", utc(2024, 3, 15, 12))
    assert window is not None and window.zones == (BOISE, LOS_ANGELES)
    assert not window.is_open(at(BOISE, 2024, 3, 15, 8, 30))  # 07:30 in Los Angeles
    assert window.next_opening(at(BOISE, 2024, 3, 15, 8, 30)) == at(LOS_ANGELES, 2024, 3, 15, 8, 0)
    assert window.is_open(at(LOS_ANGELES, 2024, 3, 15, 19, 59))
    assert not window.is_open(at(LOS_ANGELES, 2024, 3, 15, 20, 0))  # 21:00 in Boise
    assert window.when(at(LOS_ANGELES, 2024, 3, 15, 8, 0)) == "2024-03-15 08:00 America/Los_Angeles"
    assert window.describe() == "08:00-21:00 America/Boise + America/Los_Angeles, from the number"


# -- daylight saving: the hours of the actual date ------------------------------------------------

def test_waits_are_real_seconds_across_daylight_saving() -> None:
    window = tcpa(LOS_ANGELES)
    # 21:30 on 9 March 2024, the night clocks go forward: 9.5 real hours until 08:00 PDT (not 10.5)
    assert window.seconds_until_open(at(LOS_ANGELES, 2024, 3, 9, 21, 30)) == 9.5 * 3600
    # 21:30 on 2 November 2024, the night clocks go back: 11.5 real hours until 08:00 PST
    assert window.seconds_until_open(at(LOS_ANGELES, 2024, 11, 2, 21, 30)) == 11.5 * 3600


def test_zones_that_change_clocks_on_different_dates() -> None:
    """New York and London are 5 h apart, but 4 h between the US change (10 March 2024) and the UK's
    (31 March): the hours allowed in both follow the date."""
    both = tcpa(NEW_YORK, LONDON)
    # January: 08:00 New York is 13:00 London; London closes at 21:00: 8 hours
    assert both.next_opening(at(LONDON, 2024, 1, 15, 9, 0)) == at(LONDON, 2024, 1, 15, 13, 0)
    assert not both.is_open(at(LONDON, 2024, 1, 15, 12, 59))
    # 15 March: 08:00 New York is 12:00 London
    assert both.next_opening(at(LONDON, 2024, 3, 15, 9, 0)) == at(LONDON, 2024, 3, 15, 12, 0)
    # Phoenix keeps standard time all year, Denver does not: one hour less together in summer
    mountain = tcpa(ZoneInfo("America/Phoenix"), ZoneInfo("America/Denver"))
    assert mountain.is_open(at(ZoneInfo("America/Phoenix"), 2024, 1, 15, 20, 30))
    assert not mountain.is_open(at(ZoneInfo("America/Phoenix"), 2024, 7, 15, 20, 30))  # 21:30 in Denver


# -- a zone nobody knows --------------------------------------------------------------------------

def test_an_unknown_zone_uses_broadcast_timezone_when_set() -> None:
    assert number_zones(UNKNOWN) == ()
    hours = QuietHours.from_settings("", "America/Chicago")
    window = hours.window_for(UNKNOWN, None, "US", utc(2024, 3, 15, 12))
    assert window == SendWindow(TCPA_START, TCPA_END, (ZoneInfo("America/Chicago"),),
                                "zone unknown: BROADCAST_TIMEZONE")
    # it is only the fallback: a number with a zone keeps its own
    assert hours.window_for("+12125550123", None, "US", utc(2024, 3, 15, 12)).zones == (NEW_YORK,)  # type: ignore[union-attr]


def test_an_unknown_zone_uses_the_default_regions_most_restrictive_hours(fresh_region_cache: None) -> None:
    """US: the hours allowed in every US zone, from 08:00 in Honolulu (Adak too, in winter) to 21:00
    in New York; not Guam's or Puerto Rico's, which are regions of their own."""
    zones = {zone.key for zone in region_zones("US")}
    assert {"America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage",
            "America/Adak", "Pacific/Honolulu"} <= zones
    assert not zones & {"Pacific/Guam", "America/Puerto_Rico", "America/Toronto"}
    window = QuietHours().window_for(UNKNOWN, None, "US", utc(2024, 1, 15, 12))
    assert window is not None and window.why == "zone unknown: DEFAULT_REGION US"
    assert window.next_opening(utc(2024, 1, 15, 12)) == at(HONOLULU, 2024, 1, 15, 8, 0)  # 18:00 UTC
    assert window.is_open(at(NEW_YORK, 2024, 1, 15, 20, 59)) and not window.is_open(at(NEW_YORK, 2024, 1, 15, 21, 0))
    assert window.when(at(HONOLULU, 2024, 1, 15, 8, 0)) == "2024-01-15 08:00 America/Adak"  # Honolulu's time in winter
    # July: New York on daylight time closes an hour earlier in UTC; Honolulu has no daylight time
    july = QuietHours().window_for(UNKNOWN, None, "US", utc(2024, 7, 15, 12))
    assert july is not None
    assert july.next_opening(utc(2024, 7, 15, 12)) == utc(2024, 7, 15, 18, 0)
    assert july.when(utc(2024, 7, 15, 18, 0)) == "2024-07-15 08:00 Pacific/Honolulu"
    assert july.is_open(utc(2024, 7, 16, 0, 59)) and not july.is_open(utc(2024, 7, 16, 1, 0))
    # another DEFAULT_REGION: its own zones
    assert {zone.key for zone in QuietHours().window_for(UNKNOWN, None, "DE", utc(2024, 1, 15)).zones} == {  # type: ignore[union-attr]
        "Europe/Berlin"}


def test_zones_whose_hours_never_overlap_count_as_unknown(monkeypatch: pytest.MonkeyPatch,
                                                          fresh_region_cache: None) -> None:
    """No number in libphonenumber's data has zones whose 08:00-21:00 never overlap, but should one
    (three zones 8 h apart), it is treated as a number whose zone is unknown; and should the region's
    own zones never overlap, its main zone (the example number's) is used."""
    now = utc(2024, 1, 15, 12)
    assert tcpa(*NEVER_OVERLAP).next_opening(now) is None
    assert tcpa(*NEVER_OVERLAP).seconds_until_open(now) == float("inf")
    monkeypatch.setattr(quiet_hours, "number_zones", lambda phone: NEVER_OVERLAP)
    fallback = QuietHours.from_settings("", "Asia/Kolkata").window_for("+12125550123", None, "US", now)
    assert fallback is not None and fallback.zones == (ZoneInfo("Asia/Kolkata"),)
    monkeypatch.setattr(quiet_hours, "region_zones", lambda region: NEVER_OVERLAP)
    window = QuietHours().window_for("+12125550123", None, "US", now)
    assert window is not None and window.zones == main_zones("US") == (NEW_YORK,)
    assert window.why == "zone unknown: DEFAULT_REGION US's main zone (its zones' hours never overlap)"


# -- the CSV's column, the settings ---------------------------------------------------------------

def test_the_timezone_column_wins_over_the_number() -> None:
    window = QuietHours().window_for("+12125550123", TOKYO, "US", utc(2024, 3, 15, 12))
    assert window == SendWindow(TCPA_START, TCPA_END, (TOKYO,), "timezone column")
    assert QuietHours().window_for(UNKNOWN, TOKYO, "US", utc(2024, 3, 15, 12)).zones == (TOKYO,)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["Eastern", "EST-ish", "america/new_york", "Etc/Unknown", "../../etc/passwd",
                                  "/etc/localtime", "zone.tab", "x" * 2000, "Europe/Lon\x00don", "America/"])
def test_a_name_that_is_not_a_time_zone_is_refused(name: str) -> None:
    with pytest.raises(HoursError, match="is not a time zone; use an IANA name such as America/New_York"):
        zone_named(name)


def test_broadcast_window_replaces_everything_and_any_means_any_time() -> None:
    now = utc(2024, 3, 15, 12)
    berlin = QuietHours.from_settings("10:00-12:00", "Europe/Berlin")
    for number, zone in (("+12125550123", None), ("+12125550123", TOKYO), (UNKNOWN, None)):
        assert berlin.window_for(number, zone, "US", now) == SendWindow(
            dt.time(10), dt.time(12), (ZoneInfo("Europe/Berlin"),), "BROADCAST_WINDOW")
    assert QuietHours.from_settings("09:00-20:00", "").window_for(UNKNOWN, None, "US", now).zones == (  # type: ignore[union-attr]
        ZoneInfo("UTC"),)  # a window without a zone is in UTC, as before
    for word in ("any", " ANY "):
        anytime = QuietHours.from_settings(word, "America/New_York")
        assert anytime.any_time and anytime.window_for("+12125550123", TOKYO, "US", now) is None
    assert QuietHours.from_settings("", "") == QuietHours()
    assert QuietHours().describe("US") == ("08:00-21:00 in each recipient's time zone (timezone column, else the "
                                           "number's; unknown: DEFAULT_REGION US's zones)")
    assert berlin.describe("US") == "10:00-12:00 Europe/Berlin for everyone (BROADCAST_WINDOW)"
    assert QuietHours.from_settings("any", "").describe("US") == "any time (BROADCAST_WINDOW=any)"
