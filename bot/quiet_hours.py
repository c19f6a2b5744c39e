"""Quiet hours: when a broadcast may text each recipient, in the recipient's own time.

The TCPA (47 CFR 64.1200(c)(1)) forbids solicitations before 8 a.m. and after 9 p.m. at the
*recipient's* location, so by default each recipient gets 08:00-21:00 in their own time zone: the
CSV's ``timezone`` column, else the zones libphonenumber gives the number. A number can be in several
zones (an area code across a zone line): then only the hours allowed in all of them count (a
toll-free +1 800 number lists every zone from Guam to St. John's: about 90 minutes a day). A number
whose zone is unknown (``555`` numbers; or zones whose hours never overlap, which libphonenumber's
data has none of today) gets ``BROADCAST_TIMEZONE`` when that is set, else the hours allowed in
every zone of ``DEFAULT_REGION`` (for ``US``: 08:00 Honolulu to 21:00 New York); should those
never overlap, the zone of the region's example number (its main zone) is used. A
``BROADCAST_WINDOW`` replaces all of this with one window in ``BROADCAST_TIMEZONE`` for everyone, and
``BROADCAST_WINDOW=any`` sends at any time. Times are instants (Unix seconds), so waits are real
seconds, right across a daylight-saving change.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers.timezone import UNKNOWN_TIMEZONE, time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA

from bot.types import WHATSAPP

TCPA_START, TCPA_END = dt.time(8), dt.time(21)
ANY_TIME = "any"  # BROADCAST_WINDOW=any: no quiet hours at all (for messages that are not solicitations)
_HORIZON_DAYS = 8  # how far ahead an opening is looked for: a day would do, a week spans clock changes


class HoursError(ValueError):
    """A sending-hours setting or a ``timezone`` cell that cannot be read; the text says how to fix it."""


def zone_named(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``America/New_York``), or :class:`HoursError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a 2,000-character name
        raise HoursError(f"{name[:60]!r} is not a time zone; use an IANA name such as America/New_York") from None


@dataclass(frozen=True)
class SendWindow:
    """Daily hours ``[start, end)`` that must hold in each of ``zones`` at once (``start`` after
    ``end``: overnight); ``why`` says where the zones came from, for the dry run."""

    start: dt.time
    end: dt.time
    zones: tuple[ZoneInfo, ...]
    why: str = ""

    @classmethod
    def parse(cls, window: str, timezone: str) -> SendWindow:
        """``BROADCAST_WINDOW`` (``09:00-20:00``) in ``BROADCAST_TIMEZONE`` (UTC when empty)."""
        try:
            start_text, end_text = window.split("-")
            start, end = dt.time.fromisoformat(start_text.strip()), dt.time.fromisoformat(end_text.strip())
        except ValueError:
            raise HoursError(f"BROADCAST_WINDOW must look like 09:00-20:00, or be {ANY_TIME} "
                             f"(got {window!r})") from None
        if start == end:
            raise HoursError(f"BROADCAST_WINDOW {window!r} is empty; to send at any time, set it to {ANY_TIME}")
        try:
            zone = zone_named(timezone or "UTC")
        except HoursError as error:
            raise HoursError(f"BROADCAST_TIMEZONE {error}") from None
        return cls(start, end, (zone,), "BROADCAST_WINDOW")

    @property
    def zone(self) -> ZoneInfo:
        return self.zones[0]

    def is_open(self, now: float) -> bool:
        return all(self._open_in(zone, now) for zone in self.zones)

    def _open_in(self, zone: ZoneInfo, now: float) -> bool:
        local = dt.datetime.fromtimestamp(now, zone).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_opening(self, now: float) -> float | None:
        """``now`` when open, else the next instant it opens; ``None`` when the zones' hours never
        overlap. An opening of all the zones together is one zone's opening, so only those are tried."""
        if self.is_open(now):
            return now
        openings: set[float] = set()
        for zone in self.zones:
            today = dt.datetime.fromtimestamp(now, zone).date()
            for days in range(-1, _HORIZON_DAYS):
                moment = dt.datetime.combine(today + dt.timedelta(days=days), self.start, tzinfo=zone).timestamp()
                if moment > now:
                    openings.add(moment)
        return next((moment for moment in sorted(openings) if self.is_open(moment)), None)

    def seconds_until_open(self, now: float) -> float:
        opening = self.next_opening(now)
        return math.inf if opening is None else opening - now

    def when(self, moment: float) -> str:
        """``moment`` as the recipient reads it: local time in the zone whose hours it starts (or
        the one zone), else UTC."""
        for zone in self.zones:
            local = dt.datetime.fromtimestamp(moment, zone)
            if len(self.zones) == 1 or local.time() == self.start:
                return f"{local:%Y-%m-%d %H:%M} {zone.key}"
        return f"{dt.datetime.fromtimestamp(moment, dt.UTC):%Y-%m-%d %H:%M} UTC"

    def describe(self) -> str:
        names = [zone.key for zone in self.zones]
        zones = " + ".join(names) if len(names) <= 3 else f"{len(names)} zones, {names[0]} … {names[-1]}"
        return f"{self.start:%H:%M}-{self.end:%H:%M} {zones}" + (f", {self.why}" if self.why else "")


def number_zones(phone: str) -> tuple[ZoneInfo, ...]:
    """The zones libphonenumber gives an E.164 number (``whatsapp:`` or not); none when unknown."""
    try:
        number = phonenumbers.parse(phone.removeprefix(WHATSAPP), None)
    except phonenumbers.NumberParseException:
        return ()
    return _loadable(time_zones_for_number(number))


def _loadable(names: Iterable[str]) -> tuple[ZoneInfo, ...]:
    zones = []
    for name in sorted(set(names)):
        if name != UNKNOWN_TIMEZONE:
            try:
                zones.append(zone_named(name))
            except HoursError:  # a name libphonenumber knows and this machine's tz database does not
                pass
    return tuple(zones)


@lru_cache(maxsize=32)
def region_zones(region: str) -> tuple[ZoneInfo, ...]:
    """Every zone libphonenumber lists for ``region``'s numbers. Where regions share a calling code
    (+1: US, CA, PR…), a prefix counts when a number starting with it (its other digits taken from
    the region's example number) belongs to ``region``; failing all that, the example number's zones."""
    code = phonenumbers.country_code_for_region(region)
    example = phonenumbers.example_number(region)
    if not code or example is None:
        return ()
    shared = len(phonenumbers.region_codes_for_country_code(code)) > 1
    national = str(example.national_number)
    names: set[str] = set()
    for prefix, zones in TIMEZONE_DATA.items():
        digits = prefix.removeprefix(str(code))
        if not prefix.startswith(str(code)) or (shared and not digits):
            continue
        if shared:
            try:
                number = phonenumbers.parse(f"+{code}{digits}{national[len(digits):]}", None)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.region_code_for_number(number) != region:
                continue
        names.update(zones)
    return _loadable(names) or main_zones(region)


def main_zones(region: str) -> tuple[ZoneInfo, ...]:
    """The zones of ``region``'s example number: its main zone (``US``: America/New_York)."""
    example = phonenumbers.example_number(region)
    return () if example is None else _loadable(time_zones_for_number(example))


@lru_cache(maxsize=32)
def region_window(region: str, day: dt.date) -> SendWindow:
    """08:00-21:00 in every zone of ``region`` (the most restrictive hours), for a number whose zone
    is unknown; the region's main zone when those never overlap, UTC when libphonenumber knows none.
    ``day`` (UTC) keys the cache: whether the hours overlap can change with daylight saving."""
    why = f"zone unknown: DEFAULT_REGION {region}"
    window = SendWindow(TCPA_START, TCPA_END, region_zones(region) or (ZoneInfo("UTC"),), why)
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC).timestamp()
    if window.next_opening(noon) is None:
        window = SendWindow(TCPA_START, TCPA_END, main_zones(region) or (ZoneInfo("UTC"),),
                            f"zone unknown: DEFAULT_REGION {region}'s main zone (its zones' hours never overlap)")
    return window


@dataclass(frozen=True)
class QuietHours:
    """How a broadcast picks each recipient's sending hours (see the module's docstring)."""

    window: SendWindow | None = None  # BROADCAST_WINDOW: one window for everyone
    any_time: bool = False  # BROADCAST_WINDOW=any
    fallback: ZoneInfo | None = None  # BROADCAST_TIMEZONE, for numbers whose zone is unknown

    @classmethod
    def from_settings(cls, window: str, timezone: str) -> QuietHours:
        if window.strip().lower() == ANY_TIME:
            return cls(any_time=True)
        if window.strip():
            return cls(window=SendWindow.parse(window, timezone))
        try:
            return cls(fallback=zone_named(timezone) if timezone else None)
        except HoursError as error:
            raise HoursError(f"BROADCAST_TIMEZONE {error}") from None

    def window_for(self, phone: str, zone: ZoneInfo | None, region: str, now: float) -> SendWindow | None:
        """The hours ``phone`` may be texted in (``None``: any time); ``zone`` is the CSV's
        ``timezone`` cell, ``region`` is DEFAULT_REGION."""
        if self.any_time:
            return None
        if self.window is not None:
            return self.window
        if zone is not None:
            return SendWindow(TCPA_START, TCPA_END, (zone,), "timezone column")
        zones = number_zones(phone)
        if zones:
            window = SendWindow(TCPA_START, TCPA_END, zones, "from the number")
            if len(zones) == 1 or window.next_opening(now) is not None:
                return window
        if self.fallback is not None:
            return SendWindow(TCPA_START, TCPA_END, (self.fallback,), "zone unknown: BROADCAST_TIMEZONE")
        return region_window(region, dt.datetime.fromtimestamp(now, dt.UTC).date())

    def describe(self, region: str) -> str:
        if self.any_time:
            return f"any time (BROADCAST_WINDOW={ANY_TIME})"
        if self.window is not None:
            return f"{self.window.start:%H:%M}-{self.window.end:%H:%M} {self.window.zone.key} for everyone " \
                   "(BROADCAST_WINDOW)"
        unknown = f"BROADCAST_TIMEZONE {self.fallback.key}" if self.fallback else f"DEFAULT_REGION {region}'s zones"
        return (f"{TCPA_START:%H:%M}-{TCPA_END:%H:%M} in each recipient's time zone (timezone column, else "
                f"the number's; unknown: {unknown})")
