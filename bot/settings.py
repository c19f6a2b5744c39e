"""Typed settings from the environment (and an optional ``.env`` file, which git ignores)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, DotEnvSettingsSource, EnvSettingsSource, NoDecode, SettingsConfigDict

from bot.twilio_outbound import TWILIO_API, OutboundSettings

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
LOG_FORMATS = ("text", "json")
MIN_TOKEN_LENGTH = 16  # Twilio's tokens have 32; a short one could be guessed, and then every signature forged


class SettingsError(ValueError):
    """A setting that cannot work; the message names the variable and the fix."""


def _read(parse: Callable[[str], object], strip: bool = True) -> BeforeValidator:
    """Parse a variable's text; typed values (``Settings(port=80)`` in code) are taken as they are."""

    def read(value: object) -> object:
        if not isinstance(value, str):
            return value
        raw = value.strip() if strip else value
        if not raw:
            raise PydanticUseDefault()  # `PORT=` in .env means "the default", as if unset
        return parse(raw)

    return BeforeValidator(read)


def _flag(raw: str) -> bool:
    if raw.lower() in TRUE_WORDS | FALSE_WORDS:
        return raw.lower() in TRUE_WORDS
    raise ValueError(f"must be 1 or 0 (got {raw.lower()!r})")


def _whole(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"must be a whole number (got {raw!r})") from None


def _duration(raw: str) -> float:
    from bot.flows.schema import parse_duration  # lazily, as ever: settings must not need the flow language

    try:
        seconds = parse_duration(raw)
    except ValueError:
        raise ValueError(f"must be a duration such as 30d, 12h or 90m (got {raw!r})") from None
    if seconds <= 0:
        raise ValueError(f"must be longer than zero (got {raw!r})")
    return seconds


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in names:
        if not name.isidentifier() or not name.isascii():
            raise ValueError(f"must be environment variable names separated by commas (got {name!r})")
    return names


def _log_format(raw: str) -> str:
    if raw.lower() not in LOG_FORMATS:
        raise ValueError(f"must be {' or '.join(LOG_FORMATS)} (got {raw!r})")
    return raw.lower()


def _rate(raw: str) -> float | None:
    from bot.broadcast_pacing import parse_rate  # lazily, as ever

    return parse_rate(raw)


def _nice(raw: str) -> int:
    from bot.broadcast_priority import parse_nice  # lazily, as _rate

    return parse_nice(raw)


def _region(raw: str) -> str:
    from bot.phones import is_region  # lazily: settings load before anything reads a number

    region = raw.upper()
    if not is_region(region):
        raise ValueError(f"must be a region code such as US, GB or DE (got {raw!r})")
    return region


def _sender(value: str, info: ValidationInfo) -> str:
    """A From number in E.164, read in DEFAULT_REGION (declared before it); an alphanumeric sender
    ID or a short code as it is."""
    from bot.phones import DEFAULT_REGION, InvalidNumber, normalise_sender

    try:
        return normalise_sender(value, info.data.get("default_region", DEFAULT_REGION))
    except InvalidNumber as error:
        raise ValueError(f"is not a phone number: {error.reason} (got {value!r})") from None


def _consent_days(days: int) -> int:
    from bot.store.base import MIN_CONSENT_RETENTION_DAYS  # lazily: settings load before the store

    if days < MIN_CONSENT_RETENTION_DAYS:
        raise ValueError(f"must be at least {MIN_CONSENT_RETENTION_DAYS} days (got {days}): the consent ledger "
                         "is evidence against claims under the TCPA, whose limitation period is 4 years")
    return days


# How each kind of variable is read; the text kinds keep their spaces, as they always have, except Word.
Flag = Annotated[bool, _read(_flag)]
Whole = Annotated[int, _read(_whole)]
Seconds = Annotated[float, _read(_duration)]  # written as a duration (30d, 1h30m), held in seconds
Text = Annotated[str, _read(str, strip=False)]
Word = Annotated[str, _read(str)]
Lower = Annotated[str, _read(str.lower, strip=False)]
Url = Annotated[str, _read(lambda raw: raw.rstrip("/"), strip=False)]  # paths are appended to it
Names = Annotated[tuple[str, ...], NoDecode, _read(_names)]  # "ORDERS_API, ONCALL_NUMBER", not JSON
Region = Annotated[str, _read(_region)]  # "US", "gb": libphonenumber's region codes
Rate = Annotated[float | None, _read(_rate)]  # messages a second, or "unlimited" (None)
Nice = Annotated[int, _read(_nice)]  # a broadcast's CPU priority, 0 (as started) to 19 (bot/broadcast_priority.py)
Sender = Annotated[str, AfterValidator(_sender)]  # "(415) 555-0123" is held as +14155550123
ConsentDays = Annotated[int, _read(_whole), AfterValidator(_consent_days)]  # at least 1461 (4 years)
LogFormat = Annotated[str, _read(_log_format)]  # "text" (a line for people) or "json" (bot/json_logs.py)


class Settings(BaseModel):
    # Each setting is declared once, here: its variable is its name in capitals unless an alias says
    # otherwise. A plain model, not BaseSettings, so Settings(...) in code never reads the environment.
    model_config = ConfigDict(frozen=True, alias_generator=AliasGenerator(validation_alias=str.upper),
                              validate_by_name=True, validate_by_alias=True)

    twilio_auth_token: str = ""
    public_url: Url = ""  # e.g. https://abc.ngrok.app; the signature URL is this + path + query
    trust_proxy: Flag = False  # take scheme and host from X-Forwarded-Proto/Host instead
    store_url: Text = "sqlite:///bot.db"
    flows_dir: Text = "flows"
    host: Text = "127.0.0.1"
    port: Whole = 8000
    dev_mode: Flag = False  # accept unsigned requests (loopback only, no auth token)
    demo_orders: Flag = False  # serve the demo order service at /demo (always on in dev mode)
    max_body_bytes: Whole = 64 * 1024
    log_level: Lower = "info"
    log_format: LogFormat = "text"  # json: one JSON object per line, for a log pipeline (bot/json_logs.py)
    reload_flows: Flag = True  # watch FLOWS_DIR and swap in changed flows that pass the checks
    workers: Whole = 1  # server processes (uvicorn workers); >1 needs SQLite on one machine or Redis
    # transcripts and idle conversations; MessageSids >= 48 h
    retention_seconds: Seconds = Field(default=30 * 24 * 3600.0, validation_alias="RETENTION")
    # the consent ledger (evidence, kept apart from conversations): days, at least 4 years (TCPA)
    consent_retention_days: ConsentDays = 1826
    default_region: Region = "US"  # a number written without +country code is read as this region's
    # outbound messages (all optional: without them only outbound features are unavailable)
    twilio_account_sid: str = ""
    twilio_from: Sender = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_base_url: Url = TWILIO_API
    slow_reply_seconds: Seconds = 5.0  # answer "one moment" after this, send the real answer later
    # unset: 08:00-21:00 in each recipient's own zone (bot/quiet_hours.py); "09:00-20:00": that window in
    # BROADCAST_TIMEZONE (UTC if unset) for everyone; "any": any time
    broadcast_window: Word = ""
    broadcast_timezone: Word = ""  # with a window, its zone; without, the zone of numbers whose zone is unknown
    broadcast_rate: Rate = 1.0  # a broadcast's messages a second unless --rate says otherwise; "unlimited": unpaced
    broadcast_nice: Nice = 10  # a broadcast's CPU priority (nice) unless --nice says otherwise: replies go first
    notify_per_sender_per_hour: Whole = 3  # staff notifications (notify:) for one person's turns; more are held
    notify_per_hour: Whole = 20  # staff notifications in all (per process); more are held back and logged
    # The environment variables flows may read as {{ env.NAME }} (an allow-list: nothing else, so no secret)
    flow_env: Names = ("ORDERS_API", "ONCALL_NUMBER")
    suggest_triggers: Flag = True  # a mistyped trigger (STAUTS) gets "Did you mean STATUS?" instead of the fallback
    # the web console at /console (bot/console/): on only when set; its login password, and the key its
    # session cookies are signed with (changing it logs everyone out)
    admin_password: str = Field(default="", repr=False)
    # /metrics for Prometheus (bot/metrics_endpoint.py): "Authorization: Bearer <this>"; empty: only a
    # console login opens it (and with neither, /metrics does not exist)
    metrics_token: SecretStr = SecretStr("")

    @property
    def outbound(self) -> OutboundSettings:
        return OutboundSettings(self.twilio_account_sid, self.twilio_auth_token, self.twilio_from,
                                self.twilio_messaging_service_sid, self.twilio_api_base_url, self.default_region)

    @property
    def status_callback_url(self) -> str | None:
        """Where Twilio reports delivery: only known when PUBLIC_URL says where we are."""
        return f"{self.public_url}/sms/status" if self.public_url else None

    @property
    def checks_signatures(self) -> bool:
        return bool(self.twilio_auth_token)

    @property
    def serves_demo(self) -> bool:
        """The demo order service (``/demo``) is for trying the bot, not for production."""
        return self.dev_mode or self.demo_orders

    @property
    def local_base_url(self) -> str:
        """How the bot reaches itself (for ``fetch`` URLs starting with ``/``)."""
        host = "127.0.0.1" if self.host in {"0.0.0.0", "", "::"} else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def validate(self) -> None:  # type: ignore[override]  # replaces pydantic v1's deprecated classmethod
        """Refuse settings that cannot work or would serve unsafely. ``create_app`` calls it, so the
        app is never built (by server.py, a uvicorn factory or a test) around settings that accept
        unsigned requests without dev mode, or sign with a token anyone could guess."""
        token = self.twilio_auth_token
        if token and len(token.strip()) < MIN_TOKEN_LENGTH:
            raise SettingsError(
                f"TWILIO_AUTH_TOKEN is {'blank' if not token.strip() else 'too short'} "
                f"({len(token.strip())} characters, at least {MIN_TOKEN_LENGTH} characters needed): anyone "
                "who guesses it can sign requests. Set it to your account's auth token (Console → "
                "Account info), or for local tries to a random secret such as the output of "
                "`python -c 'import secrets; print(secrets.token_hex(16))'`."
            )
        if not self.twilio_auth_token and not self.dev_mode:
            raise SettingsError(
                "TWILIO_AUTH_TOKEN is not set, so Twilio's signatures cannot be checked. Set it "
                "(in the environment or .env) to your account's auth token, or start local dev "
                "mode with DEV_MODE=1 (loopback only, unsigned requests accepted)."
            )
        if self.dev_mode and not self.twilio_auth_token and not is_loopback(self.host):
            raise SettingsError(
                f"DEV_MODE without TWILIO_AUTH_TOKEN accepts unsigned requests, so it only listens on "
                f"loopback; HOST={self.host} is not. Use HOST=127.0.0.1 or set TWILIO_AUTH_TOKEN."
            )
        if not 0 < self.slow_reply_seconds < 14:
            raise SettingsError("SLOW_REPLY_SECONDS must be below 14 s: Twilio gives up on a webhook after 15 s")
        if self.workers < 1:
            raise SettingsError(f"WORKERS must be 1 or more (got {self.workers})")
        if self.workers > 1 and self.store_url.startswith("memory://"):
            raise SettingsError("WORKERS > 1 needs a shared store: STORE_URL=sqlite:///bot.db or redis://…")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise SettingsError(f"PUBLIC_URL must start with https:// (got {self.public_url!r})")
        metrics_token = self.metrics_token.get_secret_value()
        if metrics_token and len(metrics_token.strip()) < MIN_TOKEN_LENGTH:
            raise SettingsError(
                f"METRICS_TOKEN is {'blank' if not metrics_token.strip() else 'too short'} (at least "
                f"{MIN_TOKEN_LENGTH} characters): anyone who guesses it reads /metrics. Use a random secret such "
                "as the output of `python -c 'import secrets; print(secrets.token_hex(16))'`, or leave it empty."
            )


class _Variables(Settings, BaseSettings):
    # Never built: it tells pydantic-settings' sources the variable names (exact capitals only, so no
    # `port=`) and gives them Settings' fields to look for.
    model_config = SettingsConfigDict(case_sensitive=True, validate_by_name=False, env_file_encoding="utf-8")


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback one. A name is resolved first:
    ``localhost`` is whatever the resolver (``/etc/hosts``) says, and a name that does not resolve
    is not trusted."""
    if is_loopback_address(host):
        return True
    try:
        ipaddress.ip_address(host)
        return False  # an address, and not a loopback one
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]) for info in found}
    return bool(addresses) and all(is_loopback_address(address) for address in addresses)


def is_loopback_address(address: str) -> bool:
    """``127.0.0.0/8``, ``::1``, or an IPv4-mapped IPv6 form of a loopback address; names are not."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped.is_loopback
    return parsed.is_loopback


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path = ".env") -> Settings:
    """Read settings from ``environ`` alone, or else from the environment over ``.env`` (real variables win)."""
    if environ is None:
        environ = {**DotEnvSettingsSource(_Variables, env_file=env_file)(), **EnvSettingsSource(_Variables)()}
    try:
        return Settings.model_validate(environ, by_name=False)
    except ValidationError as error:
        # The user wrote PORT=eighty, so name PORT and say why, never pydantic's report about a field.
        first = error.errors()[0]
        reason = first.get("ctx", {}).get("error") or first["msg"]
        raise SettingsError(f"{first['loc'][0]} {reason}") from None
