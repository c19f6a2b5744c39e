"""Typed settings from the environment (and an optional ``.env`` file, which git ignores)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from bot.twilio_api import TWILIO_API, OutboundSettings

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A setting that cannot work; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    twilio_auth_token: str = ""
    public_url: str = ""  # e.g. https://abc.ngrok.app; the signature URL is this + path + query
    trust_proxy: bool = False  # take scheme and host from X-Forwarded-Proto/Host instead
    store_url: str = "sqlite:///bot.db"
    flows_dir: str = "flows"
    host: str = "127.0.0.1"
    port: int = 8000
    dev_mode: bool = False  # accept unsigned requests (loopback only, no auth token)
    max_body_bytes: int = 64 * 1024
    log_level: str = "info"
    reload_flows: bool = True  # watch FLOWS_DIR and swap in changed flows that pass the checks
    workers: int = 1  # server processes (uvicorn workers); >1 needs SQLite on one machine or Redis
    retention_seconds: float = 30 * 24 * 3600.0  # transcripts and idle conversations; MessageSids >= 48 h
    # outbound messages (all optional: without them only outbound features are unavailable)
    twilio_account_sid: str = ""
    twilio_from: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_base_url: str = TWILIO_API
    slow_reply_seconds: float = 5.0  # answer "one moment" after this, send the real answer later
    broadcast_window: str = ""  # "09:00-20:00": broadcasts wait outside it (empty: any time)
    broadcast_timezone: str = "UTC"

    @property
    def outbound(self) -> OutboundSettings:
        return OutboundSettings(self.twilio_account_sid, self.twilio_auth_token, self.twilio_from,
                                self.twilio_messaging_service_sid, self.twilio_api_base_url)

    @property
    def status_callback_url(self) -> str | None:
        """Where Twilio reports delivery: only known when PUBLIC_URL says where we are."""
        return f"{self.public_url}/sms/status" if self.public_url else None

    @property
    def checks_signatures(self) -> bool:
        return bool(self.twilio_auth_token)

    @property
    def local_base_url(self) -> str:
        """How the bot reaches itself (for ``fetch`` URLs starting with ``/``)."""
        host = "127.0.0.1" if self.host in {"0.0.0.0", "", "::"} else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def validate(self) -> None:
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path = ".env") -> Settings:
    """Read settings: real environment variables win over ``.env``."""
    values: dict[str, str] = {}
    if environ is None:
        if Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ)
    else:
        values.update(environ)
    return Settings(
        twilio_auth_token=values.get("TWILIO_AUTH_TOKEN", ""),
        public_url=values.get("PUBLIC_URL", "").rstrip("/"),
        trust_proxy=_flag(values, "TRUST_PROXY"),
        store_url=values.get("STORE_URL") or Settings.store_url,
        flows_dir=values.get("FLOWS_DIR") or Settings.flows_dir,
        host=values.get("HOST") or Settings.host,
        port=_integer(values, "PORT", Settings.port),
        dev_mode=_flag(values, "DEV_MODE"),
        max_body_bytes=_integer(values, "MAX_BODY_BYTES", Settings.max_body_bytes),
        log_level=(values.get("LOG_LEVEL") or Settings.log_level).lower(),
        reload_flows=_flag(values, "RELOAD_FLOWS", default=True),
        workers=_integer(values, "WORKERS", Settings.workers),
        retention_seconds=_duration(values, "RETENTION", Settings.retention_seconds),
        twilio_account_sid=values.get("TWILIO_ACCOUNT_SID", ""),
        twilio_from=values.get("TWILIO_FROM", ""),
        twilio_messaging_service_sid=values.get("TWILIO_MESSAGING_SERVICE_SID", ""),
        twilio_api_base_url=(values.get("TWILIO_API_BASE_URL") or TWILIO_API).rstrip("/"),
        slow_reply_seconds=_duration(values, "SLOW_REPLY_SECONDS", Settings.slow_reply_seconds),
        broadcast_window=values.get("BROADCAST_WINDOW", "").strip(),
        broadcast_timezone=values.get("BROADCAST_TIMEZONE", "").strip() or "UTC",
    )


def _flag(values: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = values.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be 1 or 0 (got {raw!r})")


def _integer(values: Mapping[str, str], name: str, default: int) -> int:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {raw!r})") from None


def _duration(values: Mapping[str, str], name: str, default: float) -> float:
    from bot.flows.schema import parse_duration

    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = parse_duration(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a duration such as 30d, 12h or 90m (got {raw!r})") from None
    if seconds <= 0:
        raise SettingsError(f"{name} must be longer than zero (got {raw!r})")
    return seconds
